"""rlvr_jax.plot / rlvr_jax.plotting: runs compared from metrics.jsonl alone; seeds of a run (a
glob) as mean ± standard error, checked against a plain loop over the files."""

import json
import math
import os
import subprocess
import sys

import matplotlib
import numpy as np
import pytest

from tests.helpers import ROOT
from rlvr_jax import plotting

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _write_run(path, rows, torn_tail=False):
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "metrics.jsonl"), "w") as f:
    for row in rows:
      f.write(json.dumps(row, allow_nan=False) + "\n")
    if torn_tail:  # a row a running job is still writing
      f.write('{"step": 99, "reward_me')


def _rows(rng, steps, kl_key):
  rows = [{"step": 0, "phase": "sft", "eval_accuracy": float(rng.uniform())}]
  for t in range(1, steps + 1):
    row = {"step": t, "phase": "rl", "reward_mean": float(rng.uniform()),
           "sample_entropy": float(rng.uniform()), "completion_tokens": float(rng.integers(1, 30)),
           kl_key: float(rng.uniform()), "step_time_s": float(rng.uniform(0.5, 2))}
    if t % 2 == 0:
      row["eval_accuracy"] = float(rng.uniform())
    rows.append(row)
  return rows


@pytest.fixture
def runs(tmp_path):
  """Run A: three seeds (one in progress: fewer steps, a torn last line, a null reward at step 2);
  run B: one workdir with a KL to the reference and rows moved aside on resume."""
  rng = np.random.default_rng(0)
  a = {s: _rows(rng, 6 if s < 2 else 5, "approx_kl") for s in range(3)}
  a[1][2] = {**a[1][2], "reward_mean": None, "non_finite": ["reward_mean"]}
  for s, rows in a.items():
    _write_run(tmp_path / "A" / f"seed{s}", rows, torn_tail=s == 2)
  (tmp_path / "A" / "notes").mkdir()  # matched by the glob, no metrics.jsonl: not a seed
  b = _rows(rng, 4, "kl_ref")
  _write_run(tmp_path / "B", b)
  with open(tmp_path / "B" / "metrics.jsonl.after_step_2.20260101-000000", "w") as f:
    f.write(json.dumps({"step": 3, "phase": "rl", "reward_mean": 123.0}) + "\n")
  return tmp_path, a, b


def _reference(per_seed_rows, key, wall=False):
  """(x, mean, se) by hand: the RL (or step-0) rows every seed has a non-null `key` at."""
  tables = []
  for rows in per_seed_rows:
    tables.append({r["step"]: r[key] for r in rows
                   if r.get(key) is not None and (r["phase"] == "rl" or r["step"] == 0)})
  steps = sorted(set(tables[0]).intersection(*tables[1:]))
  x, mean, se = [], [], []
  for t in steps:
    v = [tab[t] for tab in tables]
    mean.append(sum(v) / len(v))
    var = sum((u - mean[-1]) ** 2 for u in v) / (len(v) - 1) if len(v) > 1 else 0.0
    se.append(math.sqrt(var / len(v)))
    if wall:  # mean over seeds of the summed step times up to t
      x.append(sum(sum(r["step_time_s"] for r in rows if r["phase"] == "rl" and r["step"] <= t)
                   for rows in per_seed_rows) / len(per_seed_rows))
    else:
      x.append(t)
  return np.asarray(x, float), np.asarray(mean), np.asarray(se)


def test_seed_bands_match_a_hand_computation(runs):
  tmp, a, b = runs
  pattern = str(tmp / "A" / "seed*")
  records = plotting.load_runs([pattern, str(tmp / "B")])
  assert [(r["variant"], os.path.basename(r["seed"])) for r in records] == [
      (pattern, "seed0"), (pattern, "seed1"), (pattern, "seed2"), (str(tmp / "B"), "B")]
  assert max(row["step"] for row in records[2]["rows"]) == 5  # the torn line is left out
  assert records[3]["rows"] == b  # the rows moved aside on resume are not read
  a_seeds = [a[s][:7 if s < 2 else 6] for s in range(3)]
  for key in ("reward_mean", "eval_accuracy", "step_time_s"):
    for wall in (False, True):
      fig, ax = plt.subplots()
      plotting.plot_bands(ax, records, [pattern, str(tmp / "B")], key, wall=wall)
      for line, seeds in zip(ax.lines, (a_seeds, [b])):
        x, mean, se = _reference(seeds, key, wall)
        np.testing.assert_allclose(line.get_xdata(), x, rtol=1e-12)
        np.testing.assert_allclose(line.get_ydata(), mean, rtol=1e-12)
      band = ax.collections[0].get_paths()[0].vertices  # the first run's ± se band
      x, mean, se = _reference(a_seeds, key, wall)
      np.testing.assert_allclose(band[:, 1].max(), (mean + se).max(), rtol=1e-12)
      np.testing.assert_allclose(band[:, 1].min(), (mean - se).min(), rtol=1e-12)
      plt.close(fig)
  steps, _, _ = plotting.curve(records, pattern, "reward_mean")
  # seed 1 has a null at step 2 and seed 2 ends at 5: the steps all seeds have
  assert list(steps) == [1, 3, 4, 5]


def test_plot_runs_draws_every_panel(runs, tmp_path):
  tmp, _, _ = runs
  out = tmp_path / "cmp.png"
  records = plotting.load_runs([str(tmp / "A" / "seed*"), str(tmp / "B")])
  drawn = plotting.plot_runs(records, [str(tmp / "A" / "seed*"), str(tmp / "B")], str(out))
  # B has a KL to the reference, which is preferred over the old-to-new KL of A
  assert drawn == ["reward_mean", "eval_accuracy", "sample_entropy", "completion_tokens",
                   "kl_ref", "step_time_s"]
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_lines_name_file_and_line(tmp_path):
  _write_run(tmp_path / "r", [{"step": 0, "eval_accuracy": 0.5}])
  with open(tmp_path / "r" / "metrics.jsonl", "a") as f:
    f.write('{"step": 1, "reward_mean": NaN}\n{"step": 2}\n')
  with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a strict JSON line"):
    plotting.read_metrics(str(tmp_path / "r"))


def test_cli_on_experiment_results_and_errors(tmp_path):
  out = tmp_path / "smollm2.png"
  proc = subprocess.run(
      [sys.executable, "-m", "rlvr_jax.plot",
       "--workdir=experiments/results/smollm2_arithmetic", f"--out={out}"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "1 runs, 1 workdirs" in proc.stdout and out.read_bytes()[:4] == b"\x89PNG"
  proc = subprocess.run([sys.executable, "-m", "rlvr_jax.plot", f"--workdir={tmp_path}/none*"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  assert f"error: --workdir={tmp_path}/none*: no directory with a metrics.jsonl" in proc.stderr
