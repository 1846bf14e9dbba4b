"""NaN/inf in any phase (sft, prm, rl) stops the run naming phase, step and quantity, saves
nothing non-finite, and leaves metrics.jsonl strict JSON."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from rlvr_jax.training import finite, loop
from rlvr_jax.training import metrics as metrics_lib
from tests.helpers import ROOT


def _main(workdir, config, *args):
  return subprocess.run(
      [sys.executable, "-m", "rlvr_jax.main", f"--config=configs/{config}",
       f"--workdir={workdir}", "--noprogress", *args],
      cwd=ROOT, capture_output=True, text=True, timeout=600)


def _strict_rows(workdir):
  """metrics.jsonl parsed by a reader that rejects NaN/Infinity (strict JSON)."""
  def reject(name):
    raise ValueError(f"metrics.jsonl holds {name}, which is not JSON")
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line, parse_constant=reject) for line in f]


def _checkpoint_steps(workdir):
  ckpt = os.path.join(workdir, "checkpoints")
  return sorted(int(d) for d in os.listdir(ckpt) if d.isdigit()) if os.path.isdir(ckpt) else []


def _all_finite(workdir, step):
  state = ocp.StandardCheckpointer().restore(
      os.path.join(workdir, "checkpoints", str(step), "state"))
  return all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state)
             if np.issubdtype(np.asarray(x).dtype, np.inexact))


def _error_line(stderr):
  return next(line for line in stderr.splitlines() if line.startswith("error: "))


def test_sft_nan_saves_nothing_and_a_rerun_fails_the_same_way(tmp_path):
  workdir = tmp_path / "run"
  args = ("--config.sft.optimizer.learning_rate=1e30", "--config.sft.optimizer.warmup_steps=0")
  first = _main(workdir, "quickstart.py:tiny", *args)
  assert first.returncode == 1, first.stderr[-2000:]
  error = _error_line(first.stderr)
  assert error.startswith("error: sft step ") and "non-finite" in error
  assert "grad_norm=nan" in error or "sft_loss=" in error
  assert _checkpoint_steps(workdir) == []  # no checkpoint 0 holding NaN weights
  assert _strict_rows(workdir) == []
  # Nothing to resume into: the rerun trains SFT again and stops at the same step.
  second = _main(workdir, "quickstart.py:tiny", *args)
  assert second.returncode == 1 and "resumed from" not in second.stderr
  assert _error_line(second.stderr) == error
  assert _checkpoint_steps(workdir) == []


def test_prm_nan_stops_before_checkpoint_zero(tmp_path):
  workdir = tmp_path / "run"
  proc = _main(workdir, "pure_addition.py:tiny", "--config.prm.optimizer.learning_rate=1e38",
               "--config.prm.optimizer.warmup_steps=0")
  assert proc.returncode == 1, proc.stderr[-2000:]
  error = _error_line(proc.stderr)
  assert error.startswith("error: prm step ") and "non-finite" in error
  assert "prm_loss=" in error or "prm_grad_norm=" in error or "non-finite params" in error
  assert _checkpoint_steps(workdir) == []
  assert _strict_rows(workdir) == []


def test_rl_nan_names_the_step_and_every_saved_checkpoint_is_finite(tmp_path):
  workdir = tmp_path / "run"
  proc = _main(workdir, "quickstart.py:tiny", "--config.rl.steps=6",
               "--config.checkpoint.every=1", "--config.rl.optimizer.learning_rate=1e30",
               "--config.rl.optimizer.warmup_steps=0", "--config.algorithm.advantage=nsr")
  assert proc.returncode == 1, proc.stderr[-2000:]
  error = _error_line(proc.stderr)
  assert error.startswith("error: rl step ") and "non-finite" in error and "intact" in error
  steps = _checkpoint_steps(workdir)
  assert steps and steps[0] == 0
  assert all(_all_finite(workdir, s) for s in steps)
  rows = _strict_rows(workdir)
  assert rows[0]["phase"] == "sft" and all("non_finite" not in r for r in rows)


class _FakeCheckpointer:
  directory = "/ckpt"

  def __init__(self):
    self.waited = False

  def wait(self):
    self.waited = True


def test_rl_state_check_names_the_leaf_and_waits_for_the_last_good_save():
  state = {"params": {"embed": jnp.ones((2, 3)), "lm_head": jnp.array([1.0, 2.0])},
           "step": jnp.array(3, jnp.int32)}
  ckpt, mesh = _FakeCheckpointer(), jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  loop._check_finite(5, {"loss": 0.5}, ckpt, state, mesh)
  assert not ckpt.waited
  state["params"]["embed"] = state["params"]["embed"].at[0, 0].set(jnp.nan)
  state["params"]["lm_head"] = state["params"]["lm_head"].at[1].set(jnp.inf)
  with pytest.raises(finite.NonFiniteError,
                     match=r"rl step 5: non-finite train state at params/embed \(and 1 more "
                           r"leaves\).*/ckpt is intact"):
    loop._check_finite(5, {"loss": 0.5}, ckpt, state, mesh)
  assert ckpt.waited


def test_lagged_fetches_each_step_once_in_order_after_the_next_is_pushed():
  fetched = []

  def fetch(step, m_dev, **kwargs):
    fetched.append((step, m_dev, kwargs))
    return finite.fetch_checked("sft", step, m_dev)

  lagged = metrics_lib.Lagged(fetch)
  assert lagged.flush() is None  # nothing held
  assert lagged.push(1, {"loss": jnp.float32(1.0)}) is None
  assert fetched == []  # step 1 waits for step 2's dispatch
  assert lagged.push(2, {"loss": jnp.float32(0.5)}) == (1, {"loss": 1.0})
  assert lagged.flush(saving="state") == (2, {"loss": 0.5})  # kwargs reach fetch
  assert [(s, kw) for s, _, kw in fetched] == [(1, {}), (2, {"saving": "state"})]
  assert lagged.flush() is None  # never twice
  lagged.push(3, {"loss": jnp.float32(jnp.nan)})
  with pytest.raises(finite.NonFiniteError, match=r"^sft step 3: non-finite loss=nan"):
    lagged.push(4, {"loss": jnp.float32(0.25)})  # step 3 fails when step 4 is dispatched


def test_check_metrics_names_every_non_finite_quantity():
  finite.check_metrics("sft", 1, {"sft_loss": 1.0, "grad_norm": 2.0, "sft_steps": 3})
  with pytest.raises(finite.NonFiniteError, match=r"prm step 7: non-finite prm_loss=nan, "
                                                  r"prm_grad_norm=inf"):
    finite.check_metrics("prm", 7, {"prm_loss": math.nan, "prm_step_accuracy": 0.5,
                                    "prm_grad_norm": math.inf})


def test_metrics_writer_writes_strict_json_with_nulls_and_a_flag(tmp_path):
  writer = metrics_lib.MetricsWriter(str(tmp_path), resume_step=None)
  writer.write(0, {"a": 1.0, "b": math.nan, "c": [1.0, -math.inf], "d": "x"})
  writer.write(1, {"a": 2.0})
  writer.close()
  rows = _strict_rows(tmp_path)
  assert rows == [{"step": 0, "a": 1.0, "b": None, "c": [1.0, None], "d": "x",
                   "non_finite": ["b", "c"]},
                  {"step": 1, "a": 2.0}]
