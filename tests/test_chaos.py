"""Chaos: a tiny RL run SIGKILLed at random moments (one of them mid checkpoint write) and
restarted, or resumed after its newest checkpoint is corrupted, ends exactly like an
uninterrupted run: same parameters, same metrics rows, none lost or duplicated."""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from typing import NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from rlvr_jax.checkpoints import integrity
from tests.helpers import ROOT

STEPS = 6
ARGS = [f"--config.rl.steps={STEPS}", "--config.checkpoint.every=1", "--config.eval.every=2"]
SEED = 20240611  # the kill plan is reproducible; where a timer kill lands depends on the machine
RANDOM_KILLS = 2


class Straight(NamedTuple):
  """The uninterrupted run: its workdir, and its wall time (scales the random kill moments)."""
  workdir: str
  wall_s: float


def _command(workdir, *args):
  return [sys.executable, "-m", "rlvr_jax.main", "--config=configs/quickstart.py:tiny",
          f"--workdir={workdir}", "--noprogress", *ARGS, *args]


def _main(workdir, *args):
  return subprocess.run(_command(workdir, *args), cwd=ROOT, capture_output=True, text=True,
                        timeout=600)


def _main_killed_after(workdir, delay_s):
  """Runs main, SIGKILLs it after `delay_s` unless it finished first; the return code."""
  proc = subprocess.Popen(_command(workdir), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  try:
    return proc.wait(timeout=delay_s)
  except subprocess.TimeoutExpired:
    os.kill(proc.pid, signal.SIGKILL)
    return proc.wait()


def _rows(path):
  rows = [json.loads(l) for l in open(path)]
  for r in rows:  # wall-clock timings legitimately differ between runs
    r.pop("step_time_s", None)
    r.pop("sft_time_s", None)
  return rows


def _params(workdir, step):
  step_dir = os.path.join(workdir, "checkpoints", str(step))
  assert integrity.manifest_problem(step_dir) is None
  restored = ocp.StandardCheckpointer().restore(os.path.join(step_dir, "state"))
  return jax.tree.map(np.asarray, restored["params"])


def _assert_same_run(workdir, straight):
  rows = _rows(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in rows] == list(range(STEPS + 1))  # none lost, none duplicated
  assert rows == _rows(os.path.join(straight, "metrics.jsonl"))
  a, b = _params(workdir, STEPS), _params(straight, STEPS)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def _aside_rows(workdir, resume_step):
  """Rows moved next to metrics.jsonl when a run resumed from `resume_step`."""
  prefix = f"metrics.jsonl.after_step_{resume_step}."
  files = [f for f in os.listdir(workdir) if f.startswith(prefix)]
  return [json.loads(l)["step"] for f in sorted(files) for l in open(os.path.join(workdir, f))]


def _tree_digest(root):
  """{relative path: sha256} of every file under `root`."""
  out = {}
  for dirpath, _, names in os.walk(root):
    for name in names:
      path = os.path.join(dirpath, name)
      out[os.path.relpath(path, root)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
  return out


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Straight:
  workdir = str(tmp_path_factory.mktemp("straight"))
  t0 = time.monotonic()
  proc = _main(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return Straight(workdir, time.monotonic() - t0)


def test_random_sigkills_then_restarts_match_an_uninterrupted_run(straight, tmp_path):
  workdir = str(tmp_path / "chaos")
  rng = random.Random(SEED)
  # Two kills at hooks (random steps, random order): one while orbax writes the step's arrays
  # (the async save has just started), one after orbax finished the step but before its
  # manifest; then RANDOM_KILLS at random moments.
  hooks = ["sigkill_after_step", "sigkill_before_manifest"]
  rng.shuffle(hooks)
  kills = list(zip(hooks, sorted(rng.sample(range(1, STEPS + 1), 2))))
  resumed_at = None
  for hook, step in kills:
    proc = _main(workdir, f"--config.debug.{hook}={step}")
    assert proc.returncode == -signal.SIGKILL, (hook, step, proc.stderr[-3000:])
    if resumed_at is not None:
      assert f"at RL step {resumed_at}" in proc.stderr
    # Killed mid-save: orbax had not finished (after_step), or had but the manifest was not
    # written (before_manifest); either way nothing vouches for the step.
    assert integrity.manifest_problem(os.path.join(workdir, "checkpoints", str(step)))
    resumed_at = step - 1  # the previous step's manifest was written before this save began
  # Random moments over a whole run's wall time (startup, SFT, steps, saves, metrics writes).
  for _ in range(RANDOM_KILLS):
    returncode = _main_killed_after(workdir, rng.uniform(0.1, 1.0) * straight.wall_s)
    assert returncode in (0, -signal.SIGKILL)
  proc = _main(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  _assert_same_run(workdir, straight.workdir)
  # What the kills cut short was kept aside, not deleted.
  for hook, step in kills:
    assert step in _aside_rows(workdir, step - 1), (hook, step)
  step = dict(kills)["sigkill_before_manifest"]
  assert any(d.startswith(f"{step}-")
             for d in os.listdir(os.path.join(workdir, "checkpoints", "quarantine")))


CORRUPTIONS = {
    "truncated": lambda path: os.truncate(path, os.path.getsize(path) // 2),
    "flipped": lambda path: _flip_bytes(path),
    "metadata deleted": None,  # state/_METADATA, the tree structure orbax restores from
}


def _flip_bytes(path):
  data = bytearray(open(path, "rb").read())
  for i in range(len(data) // 2, len(data) // 2 + 8):
    data[i] ^= 0xFF
  open(path, "wb").write(bytes(data))


def _array_data_file(step_dir):
  d = os.path.join(step_dir, "state", "ocdbt.process_0", "d")
  return max((os.path.join(d, f) for f in os.listdir(d)), key=os.path.getsize)


def test_corrupt_newest_checkpoint_resumes_from_the_previous_and_finishes(straight, tmp_path):
  workdir = str(tmp_path / "corrupt")
  shutil.copytree(straight.workdir, workdir)
  newest = os.path.join(workdir, "checkpoints", str(STEPS))
  for name, corrupt in CORRUPTIONS.items():
    if corrupt is None:
      os.remove(os.path.join(newest, "state", "_METADATA"))
    else:
      corrupt(_array_data_file(newest))
    proc = _main(workdir)
    assert proc.returncode == 0, (name, proc.stderr[-3000:])
    assert f"Quarantined unreadable checkpoint {newest}" in proc.stderr, name
    assert f"at RL step {STEPS - 1}" in proc.stderr, name
    _assert_same_run(workdir, straight.workdir)
  moved = os.listdir(os.path.join(workdir, "checkpoints", "quarantine"))
  assert len(moved) == 3 and all(d.startswith(f"{STEPS}-") for d in moved)
  assert _aside_rows(workdir, STEPS - 1) == [STEPS] * 3


def test_a_shape_changing_config_stops_before_anything_changes(straight, tmp_path):
  workdir = str(tmp_path / "reshaped")
  shutil.copytree(straight.workdir, workdir)
  before = _tree_digest(workdir)
  proc = _main(workdir, "--config.model.d_model=64", "--config.rl.steps=8")
  assert proc.returncode == 1
  (error,) = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert "model.d_model (32 -> 64)" in error and "rl.steps (6 -> 8)" in error
  assert "new --workdir" in error and "differently shaped state" in error
  assert _tree_digest(workdir) == before  # no file written, moved or removed


def test_a_changed_seed_stops_before_anything_changes(straight, tmp_path):
  workdir = str(tmp_path / "reseeded")
  shutil.copytree(straight.workdir, workdir)
  before = _tree_digest(workdir)
  proc = _main(workdir, "--config.seed=1")
  assert proc.returncode == 1
  (error,) = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert "config.seed" in error and "new --workdir" in error
  assert _tree_digest(workdir) == before
