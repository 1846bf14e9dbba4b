"""experiments/rl_expands_reasoning.py --tiny produces its table, results and plots (the SmolLM2
part runs on its tiny scratch stand-in, one RL run a seed: no GGUF is read, nothing is
downloaded)."""

import json

from tests.helpers import assert_matches_golden, golden_runs, run_experiment_tiny


def _check_eval(ev: dict, n: int, prompts: int) -> None:
  """A policy's evaluation: pass@k at k = 1..n, non-decreasing in [0, 1]; one count a prompt."""
  curve = ev["pass_at_k"]
  assert len(curve) == n and 0 <= curve[0] and all(a <= b for a, b in zip(curve, curve[1:]))
  assert curve[-1] <= 1
  assert len(ev["counts"]) == prompts and all(0 <= c <= n for c in ev["counts"])


def test_rl_expands_reasoning_tiny_writes_every_output(tmp_path):
  out, work = tmp_path / "out", tmp_path / "work"
  run_experiment_tiny("rl_expands_reasoning.py", out, work, "--seeds", "0,1")
  with open(out / "results.json", encoding="utf-8") as f:
    data = json.load(f)
  n = data["n"]
  assert {(r["variant"], r["seed"]) for r in data["records"]} == {("grpo", 0), ("grpo", 1)}
  for r in data["records"]:
    for who in ("start", "rl"):
      _check_eval(r[who], n, r["coverage"]["prompts"])
  smollm2 = data["smollm2"]
  assert smollm2["stand_in"] is True
  # The stand-in does its own SFT per seed: no shared start, each seed has its own.
  assert smollm2["start"] is None
  assert [e["seed"] for e in smollm2["seeds"]] == [0, 1]
  for e in smollm2["seeds"]:
    prompts = e["coverage"]["prompts"]
    assert prompts == 4
    _check_eval(e["start"], n, prompts)
    _check_eval(e["rl"], n, prompts)
    assert e["start"]["checkpoint"] == "0" and e["rl"]["step"] == e["summary"]["rl_steps"]
    assert any(row.get("phase") == "rl" for row in e["rows"])
    assert (work / "smollm2" / f"seed{e['seed']}" / "metrics.jsonl").exists()
  table = (out / "table.md").read_text()
  assert "## (a) synthetic" in table and "## (b) tiny stand-in" in table
  part_b = table.split("## (b) tiny stand-in")[1]
  passk, per_seed = part_b.split("| seed |")
  assert f"| {n} |" in passk
  for seed in (0, 1):  # one row a seed in the per-seed table
    assert sum(line.startswith(f"| {seed} | ") for line in per_seed.splitlines()) == 1
  for png in ("passk_synthetic.png", "passk_smollm2.png"):
    assert (out / png).stat().st_size > 0
  # Every run's metrics rows (all metrics.jsonl under the workdir), exactly as recorded.
  assert_matches_golden("ablation_rl_expands_reasoning", golden_runs(work))
