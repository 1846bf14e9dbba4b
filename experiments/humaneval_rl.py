"""HumanEval pass@k of SmolLM2-135M on a held-out split, before and after a short RL run.

    python experiments/humaneval_rl.py [--seeds 0] [--n 16] [--workdir /tmp/humaneval_rl]
    python experiments/humaneval_rl.py --tiny --out /tmp/humaneval_tiny   # smoke run (tests)

RL (configs/code_humaneval.py: GRPO, 2 problems x G 8 a step, 20 steps, 192 new tokens,
T = 0.8, reward = the problem's unit tests pass in the sandbox) trains on HumanEval's first
132 problems; pass@k (the unbiased estimator, n samples a problem at T = 0.8) is measured on
the last 32, which RL never sees, for the bundled model ("before") and the final checkpoint
("after"). Those 32 are not HumanEval's 164: the numbers are not comparable to published
pass@1. Outputs: table.md and results.json in --out.
"""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments import common  # noqa: E402
from rlvr_jax.evaluation import evaluate  # noqa: E402
from rlvr_jax.training import loop  # noqa: E402

NAME = "humaneval_rl"
OUT = os.path.join(ROOT, "experiments", "results", NAME)


def main():
  p = common.parser(__doc__, out=OUT, seeds="0")
  p.add_argument("--n", type=int, default=16, help="samples a held-out problem")
  p.add_argument("--temperature", type=float, default=0.8)
  args = p.parse_args()
  base = "configs/code_humaneval.py" + (":tiny" if args.tiny else "")
  n = 2 if args.tiny else args.n
  ks = sorted({k for k in (1, 4, n) if k <= n})
  workdir = args.workdir or os.path.join("/tmp", NAME)
  records = []
  for seed in common.seeds_of(args):
    config = common.config_for(base, {}, seed, tiny=False)  # the tiny config is already small
    run_dir = os.path.join(workdir, f"seed{seed}")
    summary = loop.train(config, run_dir, progress=False)
    evals = {label: evaluate.run_eval(config, run_dir, checkpoint=ckpt, n=n, ks=ks,
                                      temperature=args.temperature, progress=False)
             for label, ckpt in (("before", "none"), ("after", "latest"))}
    records.append({"variant": "grpo", "seed": seed, "summary": summary,
                    "rows": common.read_metrics(run_dir),
                    "eval": {label: {key: e[key] for key in
                                     ("checkpoint", "num_prompts", "n", "temperature", "table",
                                      "mean_completion_tokens", "truncated_frac", "samples")}
                             for label, e in evals.items()}})
  common.save_results(args.out, records, {"machine": common.machine(), "ks": ks, "n": n})
  write_table(args.out)


def write_table(out: str) -> None:
  with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
    saved = json.load(f)
  records, ks = saved["records"], saved["ks"]
  pass_at = lambda e, k: next(row["pass@k"] for row in e["table"] if row["k"] == k)
  lines = ["| policy | " + " | ".join(f"pass@{k}" for k in ks) + " | completions cut |",
           "|---|" + "---|" * (len(ks) + 1)]
  for label in ("before", "after"):
    evals = [r["eval"][label] for r in records]
    lines.append(f"| {label} RL | " + " | ".join(common.fmt([pass_at(e, k) for e in evals])
                                                for k in ks)
                 + f" | {common.fmt([e['truncated_frac'] for e in evals])} |")
  e = records[0]["eval"]["before"]
  lines += ["", f"{e['num_prompts']} held-out problems, n = {e['n']}, T = {e['temperature']}; "
            f"seeds {[r['seed'] for r in records]}; {saved['machine']}"]
  with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
