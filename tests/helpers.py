"""Small builders shared by the training tests."""

import json
import os
import subprocess
import sys

import ml_collections

from rlvr_jax.configs_base import load_config as _load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str = "quickstart", arg: str | None = "tiny") -> ml_collections.ConfigDict:
  path = os.path.join(ROOT, "configs", f"{name}.py")
  return _load(f"{path}:{arg}" if arg else path)


def rl_run(config: ml_collections.ConfigDict | None = None, **overrides):
  """`run.Run` of `config` (default: quickstart:tiny) with dotted-path `overrides` applied."""
  from rlvr_jax.training.run import Run
  config = load_config() if config is None else config
  config.update_from_flattened_dict(overrides)
  return Run(config)


def device_batches(run, n: int, batch_size: int | None = None) -> list:
  """`n` device batches of the run's RL training split (seed 0), `batch_size` prompts each
  (default: what one RL step samples, `run.rl_prompts_per_step`)."""
  it = iter(run.dataset("train", batch_size or run.rl_prompts_per_step, seed=0, shuffle=True,
                        size=1000))
  return [run.device_batch(next(it)) for _ in range(n)]


def run_experiment_tiny(script: str, out, workdir, *args: str) -> None:
  """Runs `python experiments/<script> --tiny --out OUT --workdir WORKDIR *args` from the
  repository root; fails the test with the script's stderr tail if it exits non-zero."""
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", script), "--tiny", *args,
       "--out", str(out), "--workdir", str(workdir)],
      cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
      timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]


# ---------------------------------------------------------------------------------------------
# Golden metrics (tests/golden/): metrics.jsonl rows recorded at an earlier commit, which the
# current code must reproduce exactly (see tests/golden/README.md and tests/test_bit_for_bit.py).
# ---------------------------------------------------------------------------------------------
GOLDEN_DIR = os.path.join(ROOT, "tests", "golden")
# What an absolute filesystem path (e.g. `sft_init_from`, a temporary directory) is kept as.
PATH_MARKER = "<absolute path>"


def golden_row(row: dict) -> dict:
  """`row` as the goldens keep it: wall-clock keys (`*_time_s`) dropped, and string values that
  are absolute filesystem paths replaced by PATH_MARKER; every other key and value as it is."""
  return {k: PATH_MARKER if isinstance(v, str) and os.path.isabs(v) else v
          for k, v in row.items() if not k.endswith("_time_s")}


def golden_rows(workdir) -> list[dict]:
  """The rows of `workdir`/metrics.jsonl (in file order), each through `golden_row`."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [golden_row(json.loads(line)) for line in f if line.strip()]


def golden_runs(root) -> dict[str, list[dict]]:
  """{directory of a metrics.jsonl relative to `root` (posix, "." for root itself): its
  `golden_rows`}, for every metrics.jsonl under `root` (an ablation's --workdir: every seed's
  SFT, PRM and variant runs)."""
  runs = {}
  for dirpath, _, files in os.walk(root):
    if "metrics.jsonl" in files:
      rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
      runs[rel] = golden_rows(dirpath)
  return dict(sorted(runs.items()))


def load_golden(name: str) -> dict[str, list[dict]]:
  """The recorded runs of tests/golden/`name`.json: {run: rows}."""
  with open(os.path.join(GOLDEN_DIR, f"{name}.json"), encoding="utf-8") as f:
    return json.load(f)["runs"]


def _short(v) -> str:
  s = repr(v)
  return s if len(s) <= 300 else s[:300] + "..."


def rows_mismatch(run: str, old: list[dict], new: list[dict]) -> str | None:
  """None if `new` equals `old` exactly (same number of rows, same keys, values ==); else a
  message naming the first difference: run, row (its step and phase), key, old and new value."""
  for i, (a, b) in enumerate(zip(old, new)):
    where = f"run {run!r}, row {i} (step {a.get('step')}, phase {a.get('phase')!r})"
    if a.keys() != b.keys():
      return (f"{where}: keys differ; only in the golden: {sorted(a.keys() - b.keys())}, only "
              f"in the new run: {sorted(b.keys() - a.keys())}")
    for k in sorted(a):
      if a[k] != b[k]:
        detail = ""
        if isinstance(a[k], list) and isinstance(b[k], list) and len(a[k]) == len(b[k]):
          j = next(j for j, (x, y) in enumerate(zip(a[k], b[k])) if x != y)
          detail = f" (first at index {j}: old {a[k][j]!r}, new {b[k][j]!r})"
        return f"{where}, key {k!r}: old {_short(a[k])}, new {_short(b[k])}{detail}"
  if len(old) != len(new):
    return (f"run {run!r}: {len(old)} rows in the golden, {len(new)} in the new run (steps "
            f"{[r.get('step') for r in old]} vs {[r.get('step') for r in new]})")
  return None


def assert_matches_golden(name: str, runs: dict[str, list[dict]],
                          only: list[str] | None = None) -> None:
  """The `runs` ({run: golden_rows}) equal tests/golden/`name`.json's exactly (with `only`, just
  those runs of the golden); fails naming the first differing run, step and key."""
  golden = load_golden(name)
  if only is not None:
    golden = {r: golden[r] for r in only}
  assert runs.keys() == golden.keys(), (
      f"tests/golden/{name}.json: runs differ; only in the golden: "
      f"{sorted(golden.keys() - runs.keys())}, only in the new runs: "
      f"{sorted(runs.keys() - golden.keys())}")
  for run in golden:
    msg = rows_mismatch(run, golden[run], runs[run])
    assert msg is None, f"not bit-for-bit with tests/golden/{name}.json: {msg}"
