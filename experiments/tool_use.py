"""Tool use: SmolLM2-135M with a calculator on GSM-style problems, before and after RL.

    python experiments/tool_use.py [--seeds 0,1,2] [--workdir /tmp/tool_use]
    python experiments/tool_use.py --tiny --out /tmp/tool_use_tiny     # smoke run (tests)

Three policies are evaluated on the same 64 held-out problems, greedy, as whole episodes of the
`tool` environment (configs/tool_gsm.py: a turn ending in <tool>expr</tool> gets
<result>value</result> back; a turn without a call is the answer):
- **base**: the bundled SmolLM2-135M-Instruct as it is (seed-independent: greedy);
- **SFT**: after 20 steps of fine-tuning on whole calculator episodes (`tool_gsm.py:cold_start`,
  `demo_format="tool"`), the cold start: the base model never calls the tool from the
  instruction alone, so RL alone would have no call to reinforce;
- **RL**: after 30 GRPO steps of episodes from the SFT policy (2 prompts x G 8 a step).
Columns: held-out accuracy (episode reward), tool-call rate (episodes with >= 1 call), tool
success rate (calls the calculator could evaluate), truncated episodes; mean ± standard error
over seeds. Nothing is tuned on the held-out problems (the test split of `gsm_arith`).
Outputs: table.md, results.json, curves.png in --out.
"""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments import common  # noqa: E402
from rlvr_jax.training.run import Run  # noqa: E402

NAME = "tool_use"
BASE = "configs/tool_gsm.py:cold_start"
TINY_BASE = "configs/tool_gsm.py:tiny"  # a scratch model, its SFT demos tool episodes too
OUT = os.path.join(ROOT, "experiments", "results", NAME)
VARIANTS = {"grpo": {}}
PANELS = (("eval_accuracy", "held-out accuracy (greedy episodes)"),
          ("eval_env_tool_calls_frac", "held-out tool-call rate"),
          ("reward_mean", "train reward (episodes at T=1)"))


def describe(row: dict) -> dict[str, float]:
  """The table's columns from one evaluation (a metrics row or `Run.evaluate_all`'s dict)."""
  calls, errors = row.get("eval_env_tool_calls", 0.0), row.get("eval_env_tool_errors", 0.0)
  return {"accuracy": row["eval_accuracy"],
          "tool-call rate": row.get("eval_env_tool_calls_frac", 0.0),
          "tool success rate": (calls - errors) / calls if calls > 0 else float("nan"),
          "truncated": row["eval_truncated_frac"]}


def main():
  args = common.parser(__doc__, out=OUT).parse_args()
  base = TINY_BASE if args.tiny else BASE
  if not args.replot:
    run = Run(common.config_for(base, {}, 0, args.tiny))  # the untrained policy, greedy
    base_eval = run.evaluate_all(run.init_params())
    records = common.run_ablation(args, base=base, variants=VARIANTS, name=NAME)
    common.save_results(args.out, records, {"base": base_eval, "machine": common.machine()})
  write_table(args.out)


def write_table(out: str) -> None:
  with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
    saved = json.load(f)
  records = saved["records"]
  evals = lambda r: [x for x in r["rows"] if "eval_accuracy" in x]
  sft = [describe(evals(r)[0]) for r in records]  # step 0 of the RL run: the SFT policy
  final = [describe(evals(r)[-1]) for r in records]
  cols = list(sft[0])
  base = describe(saved["base"])
  lines = ["| policy | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols),
           "| base (no SFT, no RL) | " + " | ".join(f"{base[c]:.3f}" for c in cols) + " |"]
  for name, rows in (("after SFT (RL step 0)", sft), ("after RL", final)):
    lines.append(f"| {name} | " + " | ".join(
        common.fmt([e[c] for e in rows if e[c] == e[c]]) for c in cols) + " |")
  lines += ["", f"Seeds {sorted({r['seed'] for r in records})}; {saved.get('machine', '')}"]
  with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  common.plot_training_curves(records, list(VARIANTS), os.path.join(out, "curves.png"), PANELS)


if __name__ == "__main__":
  main()
