"""experiments/length_bias.py --tiny produces its table, results and plots."""

import json

from tests.helpers import assert_matches_golden, golden_runs, run_experiment_tiny


def test_length_bias_tiny_writes_every_output(tmp_path):
  out, work = tmp_path / "out", tmp_path / "work"
  run_experiment_tiny("length_bias.py", out, work, "--seeds", "0,1", "--variants", "grpo_seqmean,dr_grpo")
  with open(out / "results.json", encoding="utf-8") as f:
    data = json.load(f)
  pairs = {(r["variant"], r["seed"]) for r in data["records"]}
  assert pairs == {(v, s) for v in ("grpo_seqmean", "dr_grpo") for s in (0, 1)}
  for r in data["records"]:
    rl = [row for row in r["rows"] if row.get("phase") == "rl"]
    assert rl and all("completion_tokens_wrong" in row and "completion_tokens_correct" in row
                      for row in rl)
  table = (out / "table.md").read_text()
  assert "| grpo_seqmean |" in table and "| dr_grpo |" in table
  for png in ("lengths.png", "accuracy.png"):
    assert (out / png).stat().st_size > 0
  # Every run's metrics rows (all metrics.jsonl under the workdir), exactly as recorded.
  assert_matches_golden("ablation_length_bias", golden_runs(work))
