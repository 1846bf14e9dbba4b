"""sft.init_from: RL variants start from one earlier run's SFT checkpoint (ablations)."""

import json

import jax
import numpy as np
import pytest

from rlvr_jax.checkpoints.manager import Checkpointer, abstract_like
from rlvr_jax.training import loop
from tests.helpers import load_config


def _config(**overrides):
  config = load_config()
  config.checkpoint.use_async = False
  config.rl.steps = 2
  config.update_from_flattened_dict(overrides)
  return config


def _params(workdir, config, step):
  run = loop.Run(config)
  ckpt = Checkpointer(str(workdir / "checkpoints"), read_only=True)
  try:
    state, _, _ = ckpt.restore(step, abstract_like(run.make_rl_state(run.init_params())))
  finally:
    ckpt.close()
  return jax.device_get(state.params)


def test_variants_start_from_the_earlier_runs_sft_policy(tmp_path):
  source = tmp_path / "sft"
  loop.train(_config(**{"rl.steps": 0}), str(source), progress=False)
  first = json.loads(open(source / "metrics.jsonl").readline())
  variants = {"rloo": _config(**{"algorithm.advantage": "rloo"}),
              "pure_min": load_config("pure_addition", "tiny")}  # trains its PRM on top
  for name, config in variants.items():
    config.checkpoint.use_async = False
    config.rl.steps = 2
    config.sft.init_from = str(source)
    workdir = tmp_path / name
    summary = loop.train(config, str(workdir), progress=False)
    assert summary["rl_steps"] == 2
    row0 = json.loads(open(workdir / "metrics.jsonl").readline())
    assert row0["sft_init_from"] == str(source)
    assert row0["sft_steps"] == first["sft_steps"]
    assert row0["eval_accuracy"] == first["eval_accuracy"]  # the same policy, evaluated again
    assert ("prm_steps" in row0) == (name == "pure_min")
    jax.tree.map(np.testing.assert_array_equal, _params(source, _config(), 0),
                 _params(workdir, config, 0))


def test_a_different_model_is_refused_naming_the_differences(tmp_path):
  source = tmp_path / "sft"
  loop.train(_config(**{"rl.steps": 0}), str(source), progress=False)
  config = _config(**{"sft.init_from": str(source), "model.d_model": 48})
  with pytest.raises(ValueError, match=r"config.sft.init_from: .*differently shaped.*\[18, 32\]"):
    loop.train(config, str(tmp_path / "run"), progress=False)
  assert not (tmp_path / "run" / "checkpoints" / "0").exists()


def test_init_from_without_checkpoints_is_refused_before_anything_runs(tmp_path):
  config = _config(**{"sft.init_from": str(tmp_path / "nothing")})
  with pytest.raises(ValueError, match="config.sft.init_from: .* holds no checkpoints"):
    loop.train(config, str(tmp_path / "run"), progress=False)
  assert not (tmp_path / "run").exists()
