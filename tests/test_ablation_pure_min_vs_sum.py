"""experiments/pure_min_vs_sum.py --tiny produces its table, results and plot, with one SFT and
one PRM a seed shared by the variants."""

import json

from tests.helpers import assert_matches_golden, golden_runs, run_experiment_tiny


def test_pure_min_vs_sum_tiny_writes_every_output(tmp_path):
  out, work = tmp_path / "out", tmp_path / "work"
  variants = ("grpo", "min", "sum-vr1")
  run_experiment_tiny("pure_min_vs_sum.py", out, work, "--seeds", "0,1",
                      "--variants", ",".join(variants))
  with open(out / "results.json", encoding="utf-8") as f:
    data = json.load(f)
  records = data["records"]
  assert {(r["variant"], r["seed"]) for r in records} == {(v, s) for v in variants
                                                           for s in (0, 1)}
  for r in records:
    row0 = r["rows"][0]
    assert row0["sft_init_from"] == str(work / f"seed{r['seed']}" / "sft")
    if r["variant"] == "grpo":
      assert "prm_init_from" not in row0
    else:  # every PRM variant of a seed scores with the seed's one PRM, trained on its SFT
      assert row0["prm_init_from"] == str(work / f"seed{r['seed']}" / "prm")
      assert row0["prm_same_policy"] is True and "prm_eval_balanced_accuracy" in row0
    for part in ("sft", "final"):
      assert 0 <= r[part]["accuracy"] <= 1 and r[part]["gold_steps_per_completion"] > 1
  table = (out / "table.md").read_text()
  for v in variants:
    assert f"| {v} | 0,1 |" in table
  assert "| (SFT start) |" in table
  assert "| min | 0,1 |" in table.split("Paired by seed")[1]
  assert (out / "curves.png").stat().st_size > 0
  # Every run's metrics rows (all metrics.jsonl under the workdir), exactly as recorded.
  assert_matches_golden("ablation_pure_min_vs_sum", golden_runs(work))
