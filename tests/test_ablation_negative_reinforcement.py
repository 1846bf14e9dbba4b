"""experiments/negative_reinforcement.py --tiny produces its table, results and plots."""

import json

from tests.helpers import assert_matches_golden, golden_runs, run_experiment_tiny


def test_negative_reinforcement_tiny(tmp_path):
  out, workdir = tmp_path / "out", tmp_path / "work"
  run_experiment_tiny("negative_reinforcement.py", out, workdir, "--seeds", "0,1")
  records = json.loads((out / "results.json").read_text())["records"]
  assert {(r["variant"], r["seed"]) for r in records} == {
      (v, s) for v in ("grpo", "psr", "nsr", "w_reinforce") for s in (0, 1)}
  for r in records:
    assert len(r["passk_counts"]) == len(r["sft_passk_counts"]) > 0
    assert all(0 <= c <= r["passk_n"] for c in r["passk_counts"])
  table = (out / "table.md").read_text()
  assert "pass@1" in table and "| nsr |" in table and "| sft |" in table
  for png in ("pass_at_k.png", "accuracy.png"):
    assert (out / png).stat().st_size > 0
  # Every run's metrics rows (all metrics.jsonl under the workdir), exactly as recorded.
  assert_matches_golden("ablation_negative_reinforcement", golden_runs(workdir))
