"""experiments/high_entropy.py --tiny produces its table, results and plots."""

import json

from tests.helpers import assert_matches_golden, golden_runs, run_experiment_tiny


def test_high_entropy_tiny(tmp_path):
  out, workdir = tmp_path / "out", tmp_path / "work"
  run_experiment_tiny("high_entropy.py", out, workdir, "--seeds", "0,1")
  results = json.loads((out / "results.json").read_text())
  assert {(r["variant"], r["seed"]) for r in results["records"]} == {
      (v, s) for v in ("grpo", "top20", "bottom80") for s in (0, 1)}
  assert set(results["forking"]) == {"0", "1"}
  for f in results["forking"].values():
    assert f["num_top"] == sum(h for h, _, _ in f["by_token"].values()) > 0
    assert sum(f["position_top"]) == f["num_top"]
  table = (out / "table.md").read_text()
  assert "| top20 |" in table and "| bottom80 |" in table and "top 20%" in table
  for png in ("curves.png", "forking_tokens.png"):
    assert (out / png).stat().st_size > 0
  # Every run's metrics rows (all metrics.jsonl under the workdir), exactly as recorded.
  assert_matches_golden("ablation_high_entropy", golden_runs(workdir))
