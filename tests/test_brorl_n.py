"""experiments/brorl_n.py --tiny (N rollouts a prompt at equal samples a step) produces its
table, results, timing and plots, with every N's runs sampling the same number of rows."""

import json

from tests.helpers import run_experiment_tiny


def test_brorl_n_tiny_writes_every_output(tmp_path):
  out, work = tmp_path / "out", tmp_path / "work"
  run_experiment_tiny("brorl_n.py", out, work, "--seeds", "0", "--variants", "n2,n16",
                      "--timing_batches", "1")
  with open(out / "results.json", encoding="utf-8") as f:
    data = json.load(f)
  assert data["samples"] == 16 and data["tiny"]
  assert {(r["variant"], r["seed"]) for r in data["records"]} == {("n2", 0), ("n16", 0)}
  for r in data["records"]:
    rl = [row for row in r["rows"] if row.get("phase") == "rl"]
    assert len(rl) == 4
    for row in rl:  # the group outcomes BroRL is about
      assert row["solve_none_frac"] + row["solve_all_frac"] <= 1.0
      assert 0.0 <= row["dynamic_sampling_kept_frac"] <= 1.0
      assert 0.0 < row["decode_slot_utilisation"] <= 1.0
    n = int(r["variant"][1:])
    with open(work / "seed0" / r["variant"] / "config.json", encoding="utf-8") as f:
      rl_config = json.load(f)["rl"]
    assert (rl_config["batch_size"], rl_config["group_size"]) == (16 // n, n)
    assert rl_config["decode_refill"] and rl_config["frozen_pass_chunks"] == min(n, 4)
  timing = data["timing"]["0"]
  assert set(timing["tokens_per_s"]) == {"n2", "n16"}
  assert all(v > 0 for v in timing["tokens_per_s"].values())
  table = (out / "table.md").read_text()
  assert "| n2 (8 x 2) | n16 (1 x 16) |" in table and "generated tokens / s" in table
  for png in ("accuracy.png", "groups.png"):
    assert (out / png).stat().st_size > 0
