"""sft.init_from / prm.init_from: RL variants start from one earlier run's SFT checkpoint, and
PURE variants share one earlier run's PRM (ablations)."""

import json
from unittest import mock

import jax
import numpy as np
import pytest

from rlvr_jax.checkpoints.manager import Checkpointer, abstract_like
from rlvr_jax.training import loop, warm_start
from rlvr_jax.training.run import Run
from tests.helpers import load_config


def _config(**overrides):
  config = load_config()
  config.checkpoint.use_async = False
  config.rl.steps = 2
  config.update_from_flattened_dict(overrides)
  return config


def _state(workdir, config, step):
  """The RL state `config` lays out, as saved at `step` in `workdir`."""
  run = Run(config)
  ckpt = Checkpointer(str(workdir / "checkpoints"), read_only=True)
  try:
    state, _, _ = ckpt.restore(step, abstract_like(run.make_rl_state(run.init_params())))
  finally:
    ckpt.close()
  return jax.device_get(state)


def _params(workdir, config, step):
  return _state(workdir, config, step).params


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


def test_the_source_run_may_carry_more_state_than_a_plain_rl_run(tmp_path):
  """Only the policy is read: an APRIL run (a rollout buffer in its state) or a run with a KL
  reference can be the SFT source of a plain run, and a plain run of an APRIL one."""
  sources = {"april": load_config("april_longtail", "april,tiny"),
             "kl": load_config("april_longtail", "tiny")}
  sources["kl"].algorithm.terms.kl = dict(coef=0.01)
  for name, source_config in sources.items():
    source_config.checkpoint.use_async = False
    source_config.rl.steps = 1
    source = tmp_path / name
    loop.train(source_config, str(source), progress=False)
    for dest in ("", "april,tiny"):
      config = load_config("april_longtail", dest or "tiny")
      config.checkpoint.use_async = False
      config.rl.steps = 1
      config.sft.init_from = str(source)
      workdir = tmp_path / f"{name}_to_{dest or 'plain'}"
      loop.train(config, str(workdir), progress=False)
      jax.tree.map(np.testing.assert_array_equal, _state(source, source_config, 0).params,
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


def _pure(**overrides):
  config = load_config("pure_addition", "tiny")
  config.checkpoint.use_async = False
  config.rl.steps = 2
  config.update_from_flattened_dict(overrides)
  return config


def _prm_params(workdir, config):
  return _state(workdir, config, 0).prm_params


def test_pure_variants_share_the_prm_of_an_earlier_run(tmp_path):
  sft = tmp_path / "sft"
  loop.train(_config(**{"rl.steps": 0}), str(sft), progress=False)
  source = tmp_path / "prm"  # trains the PRM on top of the SFT policy, no RL
  loop.train(_pure(**{"rl.steps": 0, "sft.init_from": str(sft)}), str(source), progress=False)
  source_row0 = json.loads(open(source / "metrics.jsonl").readline())
  trained = tmp_path / "trained_here"  # what sharing must reproduce: the PRM trained in the run
  loop.train(_pure(**{"sft.init_from": str(sft)}), str(trained), progress=False)
  shared = tmp_path / "shared"
  config = _pure(**{"sft.init_from": str(sft), "prm.init_from": str(source),
                    "algorithm.advantage": "pure_sum"})
  loop.train(config, str(shared), progress=False)
  row0 = json.loads(open(shared / "metrics.jsonl").readline())
  assert row0["prm_init_from"] == str(source) and row0["prm_same_policy"] is True
  for k in ("prm_steps", "prm_eval_balanced_accuracy", "prm_eval_loss"):
    assert row0[k] == source_row0[k]
  jax.tree.map(np.testing.assert_array_equal, _prm_params(source, config),
               _prm_params(shared, config))
  jax.tree.map(np.testing.assert_array_equal, _prm_params(trained, config),
               _prm_params(shared, config))


def test_a_prm_of_another_policy_is_used_with_a_warning(tmp_path):
  source = tmp_path / "prm"
  loop.train(_pure(**{"rl.steps": 0}), str(source), progress=False)
  other = tmp_path / "other_sft"  # another seed: another SFT policy
  loop.train(_config(**{"rl.steps": 0, "seed": 7}), str(other), progress=False)
  config = _pure(**{"sft.init_from": str(other), "prm.init_from": str(source)})
  with mock.patch.object(warm_start.logging, "warning") as warning:
    loop.train(config, str(tmp_path / "run"), progress=False)
  assert any("different policy" in call.args[0] for call in warning.call_args_list)
  row0 = json.loads(open(tmp_path / "run" / "metrics.jsonl").readline())
  assert row0["prm_same_policy"] is False


def test_prm_init_from_of_a_run_without_a_prm_is_refused_naming_the_field(tmp_path):
  source = tmp_path / "sft"
  loop.train(_config(**{"rl.steps": 0}), str(source), progress=False)
  with pytest.raises(ValueError, match=r"config.prm.init_from: .*"):
    loop.train(_pure(**{"prm.init_from": str(source)}), str(tmp_path / "run"), progress=False)
  assert not (tmp_path / "run" / "checkpoints" / "0").exists()


def test_prm_init_from_is_checked_before_anything_runs(tmp_path):
  with pytest.raises(ValueError, match="config.prm.init_from: .* holds no checkpoints"):
    loop.train(_pure(**{"prm.init_from": str(tmp_path / "nothing")}), str(tmp_path / "run"),
               progress=False)
  (tmp_path / "src" / "checkpoints").mkdir(parents=True)
  with pytest.raises(ValueError, match="config.prm.init_from: advantage 'grpo' uses no process"):
    loop.train(_config(**{"prm.init_from": str(tmp_path / "src")}), str(tmp_path / "run"),
               progress=False)
  assert not (tmp_path / "run").exists()
