"""experiments/tool_use.py --tiny: the base / SFT / RL evaluations of tool-use episodes."""

import json
import os

from tests.helpers import run_experiment_tiny


def test_tool_use_experiment_tiny_writes_its_table(tmp_path):
  out, work = tmp_path / "out", tmp_path / "work"
  run_experiment_tiny("tool_use.py", out, work, "--seeds", "0")
  with open(os.path.join(out, "results.json")) as f:
    saved = json.load(f)
  (record,) = saved["records"]
  assert record["variant"] == "grpo" and record["seed"] == 0
  evals = [r for r in record["rows"] if "eval_accuracy" in r]
  assert len(evals) >= 2  # the SFT policy (step 0) and after RL
  for r in evals + [saved["base"]]:
    assert 0 <= r["eval_accuracy"] <= 1 and 0 <= r["eval_truncated_frac"] <= 1
  table = open(os.path.join(out, "table.md")).read()
  for policy in ("base (no SFT, no RL)", "after SFT (RL step 0)", "after RL"):
    assert f"| {policy} |" in table
  assert "tool-call rate" in table and os.path.exists(os.path.join(out, "curves.png"))
