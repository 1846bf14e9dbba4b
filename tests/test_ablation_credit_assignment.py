"""experiments/credit_assignment.py --tiny produces its table, results and plots."""

import json

from tests.helpers import assert_matches_golden, golden_runs, run_experiment_tiny


def test_credit_assignment_tiny_writes_every_output(tmp_path):
  # Three of the five variants: the plain outcome path, TEMPO and the critic; each one costs a
  # compilation of the RL step, the bulk of a --tiny run.
  out, work = tmp_path / "out", tmp_path / "work"
  run_experiment_tiny("credit_assignment.py", out, work, "--seeds", "0", "--variants", "grpo,tempo,ppo_gae")
  with open(out / "results.json", encoding="utf-8") as f:
    data = json.load(f)
  pairs = {(r["variant"], r["seed"]) for r in data["records"]}
  assert pairs == {(v, 0) for v in ("grpo", "tempo", "ppo_gae")}
  for r in data["records"]:
    assert 0 <= r["signs"]["flip_frac_valid"] <= 1 and r["signs"]["tokens"] > 0
  assert set(data["sft_signs"]) == {"0"}
  table = (out / "table.md").read_text()
  assert "| tempo |" in table and "opposite sign" in table
  for png in ("accuracy.png", "accuracy_wall.png"):
    assert (out / png).stat().st_size > 0
  # Every run's metrics rows (all metrics.jsonl under the workdir), exactly as recorded.
  assert_matches_golden("ablation_credit_assignment", golden_runs(work))
