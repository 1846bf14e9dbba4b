"""experiments/rl_expands_reasoning.py --tiny produces its table, results and plots (the SmolLM2
part runs on its tiny scratch stand-in: no GGUF is read, nothing is downloaded)."""

import json

from tests.helpers import run_experiment_tiny


def test_rl_expands_reasoning_tiny_writes_every_output(tmp_path):
  out, work = tmp_path / "out", tmp_path / "work"
  run_experiment_tiny("rl_expands_reasoning.py", out, work, "--seeds", "0,1")
  with open(out / "results.json", encoding="utf-8") as f:
    data = json.load(f)
  n = data["n"]
  assert {(r["variant"], r["seed"]) for r in data["records"]} == {("grpo", 0), ("grpo", 1)}
  for part in data["records"] + [data["smollm2"]]:
    for who in ("start", "rl"):
      curve = part[who]["pass_at_k"]
      assert len(curve) == n and all(0 <= a <= b <= 1 for a, b in zip(curve, curve[1:]))
      assert len(part[who]["counts"]) == part["coverage"]["prompts"]
  assert data["smollm2"]["stand_in"] is True
  table = (out / "table.md").read_text()
  assert "## (a) synthetic" in table and "## (b) tiny stand-in" in table
  assert f"| {n} |" in table
  for png in ("passk_synthetic.png", "passk_smollm2.png"):
    assert (out / png).stat().st_size > 0
