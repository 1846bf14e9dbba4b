"""PURE ablation: min-form vs sum-form (vs strict min, vs outcome-only GRPO) credit assignment.

    python experiments/pure_min_vs_sum.py [--seeds 0,1,2] [--variants grpo,min,sum,min-vr1,...]
        [--workdir /tmp/pure_min_vs_sum] [--rl_steps N] [--eval_prompts 512] [--tiny] [--replot]

Task: the quickstart's 3-digit addition with a scratchpad (configs/quickstart.py); the
scratchpad's columns are the reasoning steps (configs/pure_addition.py). For each seed one SFT
run (experiments/common.py) and one PRM run (`<workdir>/seed<s>/prm`: the PRM trained on that
SFT policy's samples, then frozen) are shared: every variant starts RL from the SFT checkpoint
(`sft.init_from`) and every PRM variant scores with the same PRM (`prm.init_from`), so variants
differ only in `algorithm.advantage` and `algorithm.advantage_kw.verifiable_coef`:

  grpo    outcome reward only (the quickstart)
  min     pure_min: min-form step rewards (softmax(-r/0.1) weights) + 5 x verifiable reward
  strict  pure_min_strict: running-min step rewards + 5 x verifiable reward
  sum     pure_sum: summed step rewards + 5 x verifiable reward (the paper's hacked contrast)
  *-vr1   the same with the verifiable reward weighted 1 (algorithm.advantage_kw.verifiable_coef=1)

By default the strict variants are left out (the paper's comparison is min vs sum; 7 variants x
3 seeds at 400 steps take ~50 minutes here, over the 45-minute budget): add them with
--variants grpo,min,strict,sum,min-vr1,strict-vr1,sum-vr1, or run them alone later into the same
--workdir, which reuses each seed's SFT and PRM (results.json merges the runs).

After RL each policy (and each seed's SFT policy) decodes the held-out prompts greedily; the
tables report answer accuracy, scratchpad exact match (every column equals the gold one: the
process is right), answers that are right with a wrong scratchpad, mean steps per completion, and
the first evaluation at which a run fell below half its SFT accuracy (reward hacking). Outputs
in --out: results.json (every run's metrics rows), table.md, curves.png.
"""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from experiments import common  # noqa: E402
from rlvr_jax.evaluation import evaluate  # noqa: E402
from rlvr_jax.rewards import prm  # noqa: E402
from rlvr_jax.training import loop  # noqa: E402
from rlvr_jax.training.run import Run  # noqa: E402

NAME = "pure_min_vs_sum"
BASE = "configs/quickstart.py"
PURE = "configs/pure_addition.py"  # advantage_kw.verifiable_coef 5; "-vr1" sets it to 1
OUT = os.path.join(ROOT, "experiments", "results", NAME)
_VR1 = {"algorithm.advantage_kw.verifiable_coef": 1.0}
VARIANTS = {"grpo": {}, "min": {}, "strict": {}, "sum": {},
            "min-vr1": _VR1, "strict-vr1": _VR1, "sum-vr1": _VR1}
DEFAULT = ("grpo", "min", "sum", "min-vr1", "sum-vr1")
VARIANT_BASE = {"min": PURE, "strict": PURE + ":strict", "sum": PURE + ":sum",
                "min-vr1": PURE, "strict-vr1": PURE + ":strict", "sum-vr1": PURE + ":sum"}
# --tiny: the PRM phase of configs/pure_addition.py:tiny.
TINY_PRM = {"prm.steps": 3, "prm.batch_size": 4, "prm.group_size": 2, "prm.eval_prompts": 8}


# ---------------------------------------------------------------------------------------------
# Held-out process metrics
# ---------------------------------------------------------------------------------------------
def process_metrics(run: Run, params, num_prompts: int) -> dict[str, float]:
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


def collapse_step(record: dict) -> int | None:
  """The first evaluation step at which held-out accuracy fell below half the SFT policy's."""
  curve = [(r["step"], r["eval_accuracy"]) for r in record["rows"] if "eval_accuracy" in r]
  start = curve[0][1]
  return next((step for step, acc in curve[1:] if acc < start / 2), None)


# ---------------------------------------------------------------------------------------------
# Tables and plots
# ---------------------------------------------------------------------------------------------
def _prm_acc(record: dict) -> float | None:
  return record["rows"][0].get("prm_eval_balanced_accuracy")


def _per_seed(values) -> str:
  return " / ".join(f"{v:.3f}" for v in values)


def table(records: list[dict]) -> str:
  variants = [v for v in VARIANTS if any(r["variant"] == v for r in records)]
  by = lambda v: [r for r in records if r["variant"] == v]  # noqa: E731
  seeds = sorted({r["seed"] for r in records})
  final = lambda r, k: r["final"][k]  # noqa: E731
  lines = ["Final held-out greedy decoding (mean ± SE over seeds; every variant of a seed starts "
           "from the same SFT policy, every PRM variant of a seed uses the same frozen PRM):", "",
           "| variant | seeds | accuracy | per seed | scratchpad exact | right answer, wrong "
           "scratchpad | steps/completion | one-step answers |", "|---|---|---|---|---|---|---|---|"]
  for v in variants:
    rs = by(v)
    lines.append(
        f"| {v} | {','.join(str(r['seed']) for r in rs)} | "
        f"{common.fmt([final(r, 'accuracy') for r in rs])} | "
        f"{_per_seed([final(r, 'accuracy') for r in rs])} | "
        f"{common.fmt([final(r, 'scratchpad_exact') for r in rs])} | "
        f"{common.fmt([final(r, 'right_answer_wrong_scratchpad') for r in rs])} | "
        f"{common.fmt([final(r, 'steps_per_completion') for r in rs], 2)} | "
        f"{common.fmt([final(r, 'single_step_frac') for r in rs])} |")
  sft = {r["seed"]: r["sft"] for r in records}
  lines.append(f"| (SFT start) | {','.join(map(str, sorted(sft)))} | "
               f"{common.fmt([s['accuracy'] for s in sft.values()])} | "
               f"{_per_seed([sft[s]['accuracy'] for s in sorted(sft)])} | "
               f"{common.fmt([s['scratchpad_exact'] for s in sft.values()])} | "
               f"{common.fmt([s['right_answer_wrong_scratchpad'] for s in sft.values()])} | "
               f"{common.fmt([s['steps_per_completion'] for s in sft.values()], 2)} | "
               f"{common.fmt([s['single_step_frac'] for s in sft.values()])} |")
  if "grpo" in variants and len(variants) > 1:
    base = {r["seed"]: r for r in by("grpo")}
    lines += ["", "Paired by seed: variant minus grpo, final accuracy (mean ± SE over seeds):",
              "", "| variant − grpo | seeds | accuracy | scratchpad exact |", "|---|---|---|---|"]
    for v in variants[1:]:
      pairs = [(r, base[r["seed"]]) for r in by(v) if r["seed"] in base]
      diff = lambda k: [final(a, k) - final(b, k) for a, b in pairs]  # noqa: E731
      lines.append(f"| {v} | {','.join(str(a['seed']) for a, _ in pairs)} | "
                   f"{common.fmt(diff('accuracy'))} | {common.fmt(diff('scratchpad_exact'))} |")
  lines += ["", "First evaluation step at which held-out accuracy fell below half the SFT "
            "accuracy (reward hacking; – = never):", "",
            "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " |",
            "|---" * (len(seeds) + 1) + "|"]
  for v in variants:
    steps = {r["seed"]: collapse_step(r) for r in by(v)}
    lines.append(f"| {v} | " + " | ".join(
        "·" if s not in steps else ("–" if steps[s] is None else str(steps[s]))
        for s in seeds) + " |")
  lines += ["", "Per run:", "",
            "| variant | seed | accuracy SFT → RL | scratchpad exact SFT → RL | right answer, "
            "wrong scratchpad (RL) | steps/completion (RL; gold) | one-step answers (RL) | "
            "PRM held-out balanced acc | wall clock (s) |",
            "|---|---|---|---|---|---|---|---|---|"]
  for r in sorted(records, key=lambda r: (r["seed"], variants.index(r["variant"]))):
    s, f, acc = r["sft"], r["final"], _prm_acc(r)
    lines.append(
        f"| {r['variant']} | {r['seed']} | {s['accuracy']:.3f} → {f['accuracy']:.3f} | "
        f"{s['scratchpad_exact']:.3f} → {f['scratchpad_exact']:.3f} | "
        f"{f['right_answer_wrong_scratchpad']:.3f} | {f['steps_per_completion']:.2f}; "
        f"{f['gold_steps_per_completion']:.2f} | {f['single_step_frac']:.3f} | "
        f"{'–' if acc is None else f'{acc:.3f}'} | {r['wall_s']:.0f} |")
  lines += common.curve_table(records, variants, "eval_accuracy", "curves.png")
  by_seed = {r["seed"]: r for r in records}
  lines += ["", "Shared phases a seed (wall clock, s): " + "; ".join(
      f"seed {s}: SFT {by_seed[s]['sft_wall_s']:.0f}, PRM "
      f"{by_seed[s].get('prepare_wall_s', 0):.0f}" for s in seeds) + "."]
  return "\n".join(lines)


def plot(records: list[dict], path: str) -> None:
  """Held-out accuracy (mean ± SE over seeds) with the verifiable reward at 5x and at 1x, and
  the steps per RL sample, where a hacked policy's outputs shrink to one step."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  present = [v for v in VARIANTS if any(r["variant"] == v for r in records)]
  panels = [([v for v in present if not v.endswith("-vr1")], "eval_accuracy",
             "held-out greedy accuracy", "verifiable reward 5x (grpo: outcome only)"),
            ([v for v in present if v == "grpo" or v.endswith("-vr1")], "eval_accuracy",
             "held-out greedy accuracy", "verifiable reward 1x"),
            ([v for v in present if v != "grpo"], "steps_per_completion",
             "steps per RL sample", "PRM variants: steps per completion")]
  fig, axes = plt.subplots(1, len(panels), figsize=(16, 4.5))
  for ax, (variants, key, ylabel, title) in zip(axes, panels):
    common.plot_bands(ax, records, variants, key, colour_index={v: i for i, v in
                                                                enumerate(VARIANTS)})
    ax.set_xlabel("RL step")
    ax.set_ylabel(ylabel)
    ax.set_title(title + ", mean ± SE over seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write(out: str, records: list[dict]) -> None:
  os.makedirs(out, exist_ok=True)
  text = table(records)
  with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
    f.write(text + "\n")
  plot(records, os.path.join(out, "curves.png"))
  print(text)


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------
def main():
  p = common.parser(__doc__.splitlines()[0], out=OUT, variants=",".join(DEFAULT))
  p.add_argument("--rl_steps", type=int, default=0, help="0 = the config's (400)")
  p.add_argument("--eval_prompts", type=int, default=512,
                 help="held-out prompts decoded greedily for the process metrics")
  args = p.parse_args()
  if args.replot:
    write(args.out, common.load_results(args.out))
    return
  eval_prompts = 32 if args.tiny else args.eval_prompts
  steps = {"rl.steps": args.rl_steps} if args.rl_steps and not args.tiny else {}
  prm_phase = TINY_PRM if args.tiny else {}
  variants = {k: {**v, **steps, **(prm_phase if k in VARIANT_BASE else {})}
              for k, v in VARIANTS.items()}
  chosen = args.variants.split(",") if args.variants else list(VARIANTS)

  def prepare(seed: int, sft_dir: str) -> dict[str, dict]:
    """Trains the seed's PRM once (on its SFT policy, no RL) for every PRM variant to share."""
    if not any(v in VARIANT_BASE for v in chosen):
      return {}
    prm_dir = os.path.join(os.path.dirname(sft_dir), "prm")
    loop.train(common.config_for(PURE, {"rl.steps": 0, "sft.init_from": sft_dir, **prm_phase},
                                 seed, args.tiny), prm_dir, progress=False)
    return {v: {"prm.init_from": prm_dir} for v in VARIANT_BASE}

  sft = {}  # seed -> the SFT policy's process metrics, measured once

  def after_run(run: Run, run_dir: str, record: dict) -> dict:
    seed = record["seed"]
    if seed not in sft:
      sft_dir = os.path.join(os.path.dirname(run_dir), "sft")
      sft_run = Run(common.config_for(BASE, {"rl.steps": 0}, seed, args.tiny))
      sft[seed] = process_metrics(sft_run, evaluate.restore_params(sft_run, sft_dir, "0")[0],
                                  eval_prompts)
    final = process_metrics(run, evaluate.restore_params(run, run_dir, "latest")[0],
                            eval_prompts)
    print(json.dumps({"variant": record["variant"], "seed": seed, "sft": sft[seed],
                      "final": final}), flush=True)
    return {"sft": sft[seed], "final": final}

  records = common.run_ablation(args, base=BASE, variants=variants, variant_base=VARIANT_BASE,
                                after_run=after_run, prepare=prepare, name=NAME)
  common.save_results(args.out, records, {"eval_prompts": eval_prompts, "tiny": args.tiny,
                                          "machine": common.machine()})
  write(args.out, common.load_results(args.out))


if __name__ == "__main__":
  main()
