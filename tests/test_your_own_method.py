"""A method written outside the package trains with `rlvr-train`: a config file that registers an
estimator, a policy loss and a term, each with hyperparameters, overridden on the command line;
validation, metrics, checkpoints and resume work as for the built-ins."""

import json
import os
import shutil
import subprocess
import sys

from tests.helpers import ROOT

METHOD = '''
import jax.numpy as jnp
from rlvr_jax import algorithms
from rlvr_jax.algorithms import losses
from rlvr_jax.configs_base import load_config


@algorithms.register_advantage("ext_centred", needs=("group",))
def ext_centred(x, *, scale=1.0):
  # the calling contract: rewards [B, G]; mask, tokens, logp [B, G, T]
  b, g = x.rewards.shape
  assert x.mask.shape[:2] == x.tokens.shape[:2] == x.logp.shape[:2] == (b, g)
  return scale * (x.rewards - x.rewards.mean(-1, keepdims=True))[..., None] * x.mask


@algorithms.register_policy_loss("ext_pg")
def ext_pg(logp, old_logp, advantages, mask, *, normalizer, my_coef=1.0):
  assert logp.ndim == old_logp.ndim == advantages.ndim == mask.ndim == 2
  loss = -losses.aggregate(my_coef * jnp.exp(logp - old_logp) * advantages, mask, "token-mean",
                           normalizer=normalizer)
  return loss, {"ext_my_coef": jnp.float32(my_coef)}


@algorithms.register_term("ext_entropy")
def ext_entropy(ctx, *, weight=0.5):
  for name in ("logp", "old_logp", "entropy", "mask", "advantages"):
    assert getattr(ctx, name).ndim == 2, name
  value = losses.aggregate(ctx.entropy, ctx.mask, "token-mean", normalizer=ctx.normalizer)
  return -weight * value, {"ext_weight": jnp.float32(weight), "ext_entropy": value}


def get_config(arg=None):
  c = load_config("configs/quickstart.py:tiny")
  c.rl.steps = 2
  c.checkpoint.every = 2
  c.algorithm.update(advantage="ext_centred", policy_loss="ext_pg",
                     terms=dict(ext_entropy=dict(weight=0.25)))
  return c
'''


def _train(config_path, workdir, *flags):
  """rlvr-train from a directory outside the checkout (this checkout's package imported)."""
  return subprocess.run(
      [sys.executable, "-m", "rlvr_jax.main", f"--config={config_path}", f"--workdir={workdir}",
       "--progress=false", *flags],
      cwd=os.path.dirname(config_path), env={**os.environ, "PYTHONPATH": ROOT},
      capture_output=True, text=True, timeout=600)


def _rl_rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [r for r in map(json.loads, f) if r.get("phase") == "rl"]


def test_a_method_in_a_config_file_outside_the_package_trains_and_resumes(tmp_path):
  config_path = tmp_path / "my_method.py"
  config_path.write_text(METHOD)
  workdir = tmp_path / "run"
  proc = _train(config_path, workdir, "--config.algorithm.policy_loss_kw.my_coef=0.5")
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = _rl_rows(workdir)
  assert [r["step"] for r in rows] == [1, 2]
  for r in rows:  # every component's metric, with the hyperparameters it was given
    assert r["ext_my_coef"] == 0.5 and r["ext_weight"] == 0.25 and r["ext_entropy"] > 0
  with open(workdir / "config.json", encoding="utf-8") as f:
    assert json.load(f)["algorithm"]["policy_loss_kw"] == {"my_coef": 0.5}

  proc = _train(config_path, workdir, "--config.algorithm.policy_loss_kw.my_coef=0.5",
                "--config.rl.steps=3")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "resumed from" in proc.stderr
  assert [r["step"] for r in _rl_rows(workdir)] == [1, 2, 3]


def test_an_unknown_hyperparameter_is_refused_before_anything_runs(tmp_path):
  config_path = tmp_path / "my_method.py"
  config_path.write_text(METHOD)
  workdir = tmp_path / "run"
  proc = _train(config_path, workdir, "--config.algorithm.policy_loss_kw.my_cof=0.5")
  assert proc.returncode != 0
  assert ("config.algorithm.policy_loss_kw: policy loss 'ext_pg' has no hyperparameter 'my_cof' "
          "(did you mean 'my_coef'?); valid: my_coef") in proc.stderr, proc.stderr[-2000:]
  assert not (workdir / "checkpoints").exists() and not (workdir / "metrics.jsonl").exists()


def test_the_shipped_example_trains_from_a_copy_outside_the_checkout(tmp_path):
  """configs/your_own_method.py, copied elsewhere, starts from the shipped quickstart config."""
  config_path = tmp_path / "your_own_method.py"
  shutil.copy(os.path.join(ROOT, "configs", "your_own_method.py"), config_path)
  proc = _train(f"{config_path}:tiny", tmp_path / "run", "--config.rl.steps=1",
                "--config.algorithm.terms.ratio_l2.coef=0.05")
  assert proc.returncode == 0, proc.stderr[-3000:]
  (row,) = _rl_rows(tmp_path / "run")
  assert {"clipped_pg_ratio", "ratio_l2", "reward_mean"} <= set(row)
