"""experiments/humaneval_rl.py --tiny: RL on code, pass@k on the held-out split before / after."""

import json
import os

from tests.helpers import run_experiment_tiny


def test_humaneval_rl_experiment_tiny_writes_pass_at_k(tmp_path):
  out, work = tmp_path / "out", tmp_path / "work"
  run_experiment_tiny("humaneval_rl.py", out, work)
  with open(os.path.join(out, "results.json")) as f:
    saved = json.load(f)
  (record,) = saved["records"]
  before, after = record["eval"]["before"], record["eval"]["after"]
  assert before["checkpoint"] == "none" and after["checkpoint"] == "2"  # the final step
  for e in (before, after):
    assert e["n"] == 2 and e["num_prompts"] == 2
    assert [row["k"] for row in e["table"]] == [1, 2]
    assert all(0 <= row["pass@k"] <= 1 for row in e["table"])
  table = open(os.path.join(out, "table.md")).read()
  assert "| before RL |" in table and "| after RL |" in table and "pass@2" in table
