"""Checkpoints: exact resume after SIGKILL, torn checkpoints skipped, NaN stops cleanly."""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import jax

from rlvr_jax.checkpoints import integrity
from rlvr_jax.checkpoints.manager import Checkpointer
from tests.helpers import ROOT

ARGS = ["--config.rl.steps=6", "--config.checkpoint.every=1", "--config.eval.every=2"]


def _main(workdir, *args):
  return subprocess.run(
      [sys.executable, "-m", "rlvr_jax.main", "--config=configs/quickstart.py:tiny",
       f"--workdir={workdir}", "--noprogress", *ARGS, *args],
      cwd=ROOT, capture_output=True, text=True, timeout=600)


def _metrics(workdir):
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  for r in rows:  # wall-clock timings legitimately differ between runs
    r.pop("step_time_s", None)
    r.pop("sft_time_s", None)
  return rows


def _params(workdir, step):
  restored = ocp.StandardCheckpointer().restore(
      os.path.join(workdir, "checkpoints", str(step), "state"))
  return jax.tree.map(np.asarray, restored["params"])


def test_sigkill_then_resume_is_bit_identical(tmp_path):
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  proc = _main(straight)
  assert proc.returncode == 0, proc.stderr[-2000:]
  proc = _main(killed, "--config.debug.sigkill_after_step=3")
  assert proc.returncode == -signal.SIGKILL
  assert max(r["step"] for r in _metrics(killed)) == 3
  proc = _main(killed)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "resumed from" in proc.stderr
  assert "config differs" not in proc.stderr  # fault injection (config.debug) is not a change
  assert _metrics(straight) == _metrics(killed)
  a, b = _params(straight, 6), _params(killed, 6)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_torn_newest_checkpoint_is_quarantined_and_saved_again(tmp_path):
  workdir = tmp_path / "run"
  assert _main(workdir, "--config.rl.steps=4").returncode == 0
  newest = workdir / "checkpoints" / "4"
  # Tear it: drop the array data but leave the directory looking finalized.
  shutil.rmtree(newest / "state")
  (newest / "state").mkdir()
  proc = _main(workdir, "--config.rl.steps=5")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "Quarantined unreadable checkpoint" in proc.stderr and str(newest) in proc.stderr
  assert "config differs" in proc.stderr and "rl.steps (4 -> 5)" in proc.stderr
  assert "resumed from" in proc.stderr and "at RL step 3" in proc.stderr
  assert [r["step"] for r in _metrics(workdir)] == [0, 1, 2, 3, 4, 5]
  # Nothing was deleted: the torn step sits in quarantine, the old row 4 next to metrics.jsonl.
  (moved,) = os.listdir(workdir / "checkpoints" / "quarantine")
  assert moved.startswith("4-") and os.path.isdir(workdir / "checkpoints" / "quarantine" / moved /
                                                  "state")
  (aside,) = [f for f in os.listdir(workdir) if f.startswith("metrics.jsonl.after_step_3.")]
  assert [json.loads(l)["step"] for l in open(workdir / aside)] == [4]
  # Step 4 was trained and saved again (the save is no longer silently dropped), verified.
  steps = sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())
  assert steps[-2:] == [4, 5]
  assert all(integrity.manifest_problem(str(workdir / "checkpoints" / str(s))) is None
             for s in steps)


def test_non_finite_loss_stops_with_step_and_quantity_and_keeps_checkpoint(tmp_path):
  workdir = tmp_path / "run"
  proc = _main(workdir, "--config.rl.optimizer.learning_rate=1e30",
               "--config.rl.optimizer.warmup_steps=0", "--config.algorithm.advantage=nsr")
  assert proc.returncode == 1
  assert "non-finite" in proc.stderr and "step " in proc.stderr
  steps = sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())
  assert steps, "the SFT checkpoint (step 0) must remain"
  last = _params(workdir, steps[-1])
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(last))


def test_keeps_the_last_n_checkpoints_and_step_zero(tmp_path):
  ckpt = Checkpointer(str(tmp_path / "checkpoints"), keep=2, use_async=False)
  try:
    for step in range(6):
      ckpt.save(step, {"w": np.full(3, step, np.float32)}, {"it": step}, {"step": step})
    assert ckpt.all_steps() == [0, 4, 5]
    state, data, _ = ckpt.restore(0, {"w": jax.ShapeDtypeStruct((3,), np.float32)})
    np.testing.assert_array_equal(state["w"], np.zeros(3, np.float32))
    assert data == {"it": 0}
  finally:
    ckpt.close()
