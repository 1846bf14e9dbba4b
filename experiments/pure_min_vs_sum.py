"""PURE ablation: min-form vs sum-form (vs strict min, vs outcome-only GRPO) credit assignment.

    python experiments/pure_min_vs_sum.py [--seeds 0,1,2] [--variants grpo,min,sum,strict,min-vr1,...]
        [--workdir /tmp/pure_min_vs_sum] [--rl_steps N] [--eval_prompts 512]

Task: the quickstart's 3-digit addition with a scratchpad (configs/quickstart.py); the
scratchpad's columns are the reasoning steps (configs/pure_addition.py). Every variant of a seed
starts RL from the same SFT checkpoint (same seed, same warm start); the PURE variants add the
same PRM training phase and differ only in `algorithm.advantage`:

  grpo    outcome reward only (the quickstart)
  min     pure_min: min-form step rewards (softmax(-r/0.1) weights) + 5 x verifiable reward
  strict  pure_min_strict: running-min step rewards + 5 x verifiable reward
  sum     pure_sum: summed step rewards + 5 x verifiable reward (the paper's hacked contrast)
  *-vr1   the same with the verifiable reward weighted 1 (algorithm.verifiable_coef=1)

After RL each policy decodes the held-out prompts greedily; the table reports answer accuracy,
scratchpad exact match (every column equals the gold one: the process is right), answers that
are right with a wrong scratchpad, and mean steps per completion. Results go to
experiments/results/pure_min_vs_sum/ (results.json, README.md table, curves.png).
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import logging  # noqa: E402
import numpy as np  # noqa: E402

from rlvr_jax.evaluation import evaluate  # noqa: E402
from rlvr_jax.configs_base import load_config  # noqa: E402
from rlvr_jax.rewards import prm  # noqa: E402
from rlvr_jax.training import loop  # noqa: E402

RESULTS = os.path.join(ROOT, "experiments", "results", "pure_min_vs_sum")
# name -> (config, overrides). pure_addition.py defaults to verifiable_coef=5; the "-vr1" rows
# weigh the verifiable reward 1:1 with the PRM returns.
_VR1 = {"algorithm.verifiable_coef": 1.0}
VARIANTS = {"grpo": ("configs/quickstart.py", {}),
            "min": ("configs/pure_addition.py", {}),
            "strict": ("configs/pure_addition.py:strict", {}),
            "sum": ("configs/pure_addition.py:sum", {}),
            "min-vr1": ("configs/pure_addition.py", _VR1),
            "strict-vr1": ("configs/pure_addition.py:strict", _VR1),
            "sum-vr1": ("configs/pure_addition.py:sum", _VR1)}


def _config(variant: str, seed: int, rl_steps: int | None):
  spec, overrides = VARIANTS[variant]
  config = load_config(os.path.join(ROOT, spec))
  config.update_from_flattened_dict(overrides)
  config.seed = seed
  config.checkpoint.use_async = False
  if rl_steps:
    config.rl.steps = rl_steps
  return config


def process_metrics(run: loop.Run, params, num_prompts: int) -> dict[str, float]:
  """Greedy held-out decoding: answer accuracy, scratchpad exact match, steps per answer."""
  s = evaluate.sample_and_score(run, params, n=1, temperature=0.0, num_prompts=num_prompts,
                                batch_size=min(num_prompts, 256), seed=0, progress=False)
  correct = s["correct"][:, 0]
  texts = [c[0] for c in s["completions"]]
  exact = np.asarray([t == e.demo for t, e in zip(texts, s["examples"])])
  steps = [len(prm.split_steps(t, ",")) for t in texts if t is not None]
  return {"accuracy": float(correct.mean()), "scratchpad_exact": float(exact.mean()),
          "right_answer_wrong_scratchpad": float((correct & ~exact).mean()),
          "steps_per_completion": float(np.mean(steps)) if steps else 0.0,
          "single_step_frac": float(np.mean([n == 1 for n in steps])) if steps else 0.0,
          "gold_steps_per_completion": float(np.mean(
              [len(prm.split_steps(e.demo, ",")) for e in s["examples"]]))}


def run_one(variant: str, seed: int, args) -> dict:
  config = _config(variant, seed, args.rl_steps)
  workdir = os.path.join(args.workdir, f"{variant}_seed{seed}")
  t0 = time.time()
  summary = loop.train(config, workdir, progress=False)
  wall = time.time() - t0
  run = loop.Run(_config(variant, seed, args.rl_steps))
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  sft_params, _ = evaluate.restore_params(run, workdir, "0")
  params, _ = evaluate.restore_params(run, workdir, "latest")
  result = {"variant": variant, "seed": seed, "wall_s": wall, "summary": summary,
            "sft": process_metrics(run, sft_params, args.eval_prompts),
            "final": process_metrics(run, params, args.eval_prompts),
            "curve": [(r["step"], r["eval_accuracy"]) for r in rows if "eval_accuracy" in r],
            "train_curve": [(r["step"], r["reward_mean"], r["completion_tokens"],
                             r.get("steps_per_completion"), r.get("prm_step_reward_mean"))
                            for r in rows if r.get("phase") == "rl"]}
  result["prm"] = {k: v for k, v in rows[0].items() if k.startswith("prm_")}
  print(json.dumps({k: result[k] for k in ("variant", "seed", "sft", "final", "prm")}),
        flush=True)
  return result


def _table(results: list[dict]) -> str:
  lines = ["| variant | seed | accuracy SFT → RL | scratchpad exact SFT → RL | right answer, "
           "wrong scratchpad (RL) | steps/completion (RL; gold) | one-step answers (RL) | "
           "PRM held-out balanced acc |",
           "|---|---|---|---|---|---|---|---|"]
  for r in results:
    s, f = r["sft"], r["final"]
    prm_acc = r["prm"].get("prm_eval_balanced_accuracy")
    lines.append(
        f"| {r['variant']} | {r['seed']} | {s['accuracy']:.3f} → {f['accuracy']:.3f} | "
        f"{s['scratchpad_exact']:.3f} → {f['scratchpad_exact']:.3f} | "
        f"{f['right_answer_wrong_scratchpad']:.3f} | {f['steps_per_completion']:.2f}; "
        f"{f['gold_steps_per_completion']:.2f} | {f['single_step_frac']:.3f} | "
        f"{'–' if prm_acc is None else f'{prm_acc:.3f}'} |")
  return "\n".join(lines)


def _plot(results: list[dict], path: str) -> None:
  """Held-out accuracy over RL steps: one colour per variant, one line style per seed."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  colours = dict(zip(VARIANTS, plt.get_cmap("tab10").colors))
  styles = ["-", "--", ":", "-."]
  seeds = sorted({r["seed"] for r in results})
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for r in results:
    steps, acc = zip(*r["curve"])
    ax.plot(steps, acc, marker=".", color=colours[r["variant"]],
            linestyle=styles[seeds.index(r["seed"]) % len(styles)],
            label=f"{r['variant']} seed {r['seed']}")
  ax.set_xlabel("RL step")
  ax.set_ylabel("held-out greedy accuracy")
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--workdir", default="/tmp/pure_min_vs_sum")
  parser.add_argument("--rl_steps", type=int, default=0, help="0 = the config's")
  parser.add_argument("--eval_prompts", type=int, default=512)
  parser.add_argument("--out", default=RESULTS)
  parser.add_argument("--replot", action="store_true",
                      help="redraw curves.png and table.md from --out/results.json, no runs")
  args = parser.parse_args()
  if args.replot:
    with open(os.path.join(args.out, "results.json")) as f:
      results = json.load(f)
    _plot(results, os.path.join(args.out, "curves.png"))
    with open(os.path.join(args.out, "table.md"), "w") as f:
      f.write(_table(results) + "\n")
    return
  logging.set_verbosity(logging.WARNING)
  results = []
  for seed in [int(s) for s in args.seeds.split(",")]:
    for variant in args.variants.split(","):
      if variant not in VARIANTS:
        parser.error(f"--variants: unknown {variant!r}; known: {', '.join(VARIANTS)}")
      results.append(run_one(variant, seed, args))
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "results.json")
  if os.path.exists(path):  # keep earlier runs of other (variant, seed) pairs
    done = {(r["variant"], r["seed"]) for r in results}
    with open(path) as f:
      results = [r for r in json.load(f) if (r["variant"], r["seed"]) not in done] + results
  order = list(VARIANTS)
  results.sort(key=lambda r: (r["seed"], order.index(r["variant"])))
  with open(path, "w") as f:
    json.dump(results, f, indent=1)
  _plot(results, os.path.join(args.out, "curves.png"))
  table = _table(results)
  with open(os.path.join(args.out, "table.md"), "w") as f:
    f.write(table + "\n")
  print(table)


if __name__ == "__main__":
  main()
