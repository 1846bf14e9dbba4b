"""Negative reinforcement ablation: PSR vs NSR vs W-REINFORCE (λ = 0.1) vs GRPO, pass@k up to 256.

    python experiments/negative_reinforcement.py [--seeds 0,1,2] [--variants grpo,psr,nsr,w_reinforce]
        [--rl_steps 125] [--passk_prompts 32] [--n 256] [--workdir /tmp/abl_quickstart] [--tiny]

Zhu et al. 2025, "The Surprising Effectiveness of Negative Reinforcement in LLM Reasoning": with a
0/1 reward and no baseline, PSR (A = +1 on correct samples only) lifts pass@1 but narrows the
policy and loses pass@k at large k; NSR (A = −1 on wrong samples only) keeps or improves pass@k
over the whole range; W-REINFORCE (+0.1 on correct, −1 on wrong) balances both.

Task and model: configs/quickstart.py (3-digit addition with a scratchpad, 2-layer d=96 model, SFT
to 50% held-out greedy accuracy). Every variant of a seed starts RL from that seed's SFT checkpoint
(experiments/common.py) and differs only in `algorithm.advantage` (registry names `grpo`, `psr`,
`nsr`, `w_reinforce` with `algorithm.advantage_kw = dict(positive_weight=0.1,
negative_weight=1.0)`, the estimator's defaults written out); PPO clip 0.2, token-mean, as in the
paper. After RL, each final policy (and each seed's SFT policy) samples n = 256 completions at
T = 1 for each of the first `--passk_prompts` held-out prompts; pass@k is the library's unbiased
estimator (rlvr_jax.evaluation.pass_at_k) averaged over prompts, then mean ± SE over seeds.

The default workdir is shared with experiments/high_entropy.py: both use the quickstart with the
same RL steps, so their SFT runs and their `grpo` runs are the same runs and are trained once.
"""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from experiments import common  # noqa: E402
from rlvr_jax import evaluation  # noqa: E402
from rlvr_jax.evaluation import evaluate  # noqa: E402

NAME = "negative_reinforcement"
BASE = "configs/quickstart.py"
VARIANTS = {"grpo": {},
            "psr": {"algorithm.advantage": "psr"},
            "nsr": {"algorithm.advantage": "nsr"},
            "w_reinforce": {"algorithm.advantage": "w_reinforce",
                            "algorithm.advantage_kw": {"positive_weight": 0.1,
                                                       "negative_weight": 1.0}}}
TABLE_KS = (1, 4, 16, 64, 256)


def ks_upto(n: int) -> list[int]:
  """1, 2, 4, ... up to n (n itself included)."""
  ks = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
  return ks if ks[-1] == n else ks + [n]


def correct_counts(run, params, *, n: int, num_prompts: int, seed: int) -> list[int]:
  """Correct samples out of n (T = 1) for each of the first `num_prompts` held-out prompts."""
  batch = max(1, min(num_prompts, 2048 // n))  # ~2k completions per sampler call
  s = evaluate.sample_and_score(run, params, n=n, temperature=1.0, num_prompts=num_prompts,
                                batch_size=batch, seed=seed, progress=False)
  return [int(c) for c in s["correct"].sum(-1)]


def pass_curve(counts: list[int], n: int, ks: list[int]) -> list[float]:
  """Unbiased pass@k averaged over prompts, one value per k."""
  c = np.asarray(counts)
  return [float(np.mean(evaluation.pass_at_k(n, c, k))) for k in ks]


def cached_counts(run, workdir: str, checkpoint: str, *, n: int, num_prompts: int, seed: int
                  ) -> tuple[list[int], int]:
  """(correct_counts, step) of `workdir`'s checkpoint, kept in `workdir` as JSON so a rerun (or a
  second process sharing the workdir) does not sample again."""
  params, step = evaluate.restore_params(run, workdir, checkpoint)
  path = os.path.join(workdir, f"passk_step{step}_n{n}_p{num_prompts}_s{seed}.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return json.load(f), step
  counts = correct_counts(run, params, n=n, num_prompts=num_prompts, seed=seed)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(counts, f)
  os.replace(path + ".tmp", path)
  return counts, step


def make_after_run(args):
  def after_run(run, run_dir, record):
    """pass@k of this variant's final policy and of its seed's SFT policy (checkpoint 0)."""
    sft_dir = os.path.join(os.path.dirname(run_dir), "sft")
    kw = dict(n=args.n, num_prompts=args.passk_prompts, seed=1000 + record["seed"])
    sft_counts, _ = cached_counts(run, sft_dir, "0", **kw)
    counts, step = cached_counts(run, run_dir, "latest", **kw)
    ks = ks_upto(args.n)
    print(f"  pass@k {record['variant']} seed {record['seed']} (step {step}): " + ", ".join(
        f"{k}:{v:.3f}" for k, v in zip(ks, pass_curve(counts, args.n, ks))), flush=True)
    return {"passk_n": args.n, "passk_step": step, "passk_counts": counts,
            "sft_passk_counts": sft_counts}

  return after_run


# ---------------------------------------------------------------------------------------------
# Tables and plots
# ---------------------------------------------------------------------------------------------
def passk_by_seed(records, variant: str, ks) -> dict[int, list[float]]:
  """seed -> pass@k curve; variant "sft" reads the SFT counts stored with every record."""
  out = {}
  for r in records:
    if variant == "sft" and "sft_passk_counts" in r:
      out[r["seed"]] = pass_curve(r["sft_passk_counts"], r["passk_n"], ks)
    elif r["variant"] == variant and "passk_counts" in r:
      out[r["seed"]] = pass_curve(r["passk_counts"], r["passk_n"], ks)
  return out


def tables(records, variants) -> str:
  n = records[0]["passk_n"]
  ks = [k for k in TABLE_KS if k <= n]
  prompts = len(records[0]["passk_counts"])
  lines = [f"pass@k (unbiased; n = {n} samples at T = 1 on each of {prompts} held-out prompts; "
           "mean ± SE over seeds):", "",
           "| policy | seeds | " + " | ".join(f"pass@{k}" for k in ks) + " |",
           "|---|---|" + "---|" * len(ks)]
  sft = passk_by_seed(records, "sft", ks)
  for v in ["sft", *variants]:
    by_seed = passk_by_seed(records, v, ks)
    if not by_seed:
      continue
    cells = [common.fmt([c[j] for c in by_seed.values()]) for j in range(len(ks))]
    lines.append(f"| {v} | {len(by_seed)} | " + " | ".join(cells) + " |")
  lines += ["", "Paired difference to the same seed's SFT policy (pass@k(RL) − pass@k(SFT), "
            "mean ± SE over seeds):", "",
            "| policy | " + " | ".join(f"Δpass@{k}" for k in ks) + " |",
            "|---|" + "---|" * len(ks)]
  for v in variants:
    by_seed = passk_by_seed(records, v, ks)
    if not by_seed:
      continue
    cells = [common.fmt([by_seed[s][j] - sft[s][j] for s in by_seed]) for j in range(len(ks))]
    lines.append(f"| {v} | " + " | ".join(cells) + " |")
  lines += ["", "Held-out greedy accuracy (512 prompts) during RL, mean ± SE over seeds:", "",
            "| policy | after SFT (step 0) | best eval | final | final train reward (last 10 "
            "steps) | final sample entropy | RL step time s / run |",
            "|---|---|---|---|---|---|---|"]
  for v in variants:
    rs = [r for r in records if r["variant"] == v]
    if not rs:
      continue
    ent = [[row["sample_entropy"] for row in r["rows"] if "sample_entropy" in row][-1]
           for r in rs]
    lines.append(
        f"| {v} | {common.fmt([r['summary']['sft_eval_accuracy'] for r in rs])} | "
        f"{common.fmt([r['summary']['best_eval_accuracy'] for r in rs])} | "
        f"{common.fmt([r['summary']['final_eval_accuracy'] for r in rs])} | "
        f"{common.fmt([r['summary']['final_reward_mean'] for r in rs])} | "
        f"{common.fmt(ent)} | "
        f"{common.fmt([max(common.wall_clock(r).values(), default=0) for r in rs], 0)} |")
  lines += common.curve_table(records, variants, "eval_accuracy", "accuracy.png")
  return "\n".join(lines)


def plots(records, variants, out: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  colours = plt.get_cmap("tab10").colors
  n = records[0]["passk_n"]
  ks = ks_upto(n)
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for i, v in enumerate(["sft", *variants]):
    by_seed = passk_by_seed(records, v, ks)
    if not by_seed:
      continue
    stats = [common.mean_se([c[j] for c in by_seed.values()]) for j in range(len(ks))]
    m = np.asarray([s[0] for s in stats])
    se = np.nan_to_num(np.asarray([s[1] for s in stats]))
    style = dict(color="black", linestyle="--") if v == "sft" else dict(color=colours[i - 1])
    axes[0].plot(ks, m, marker=".", label=f"{v} (n={len(by_seed)} seeds)", **style)
    axes[0].fill_between(ks, m - se, m + se, alpha=0.2, linewidth=0, color=style["color"])
    if v != "sft":
      sft = passk_by_seed(records, "sft", ks)
      d = [common.mean_se([by_seed[s][j] - sft[s][j] for s in by_seed]) for j in range(len(ks))]
      dm = np.asarray([x[0] for x in d])
      dse = np.nan_to_num(np.asarray([x[1] for x in d]))
      axes[1].plot(ks, dm, marker=".", label=v, **style)
      axes[1].fill_between(ks, dm - dse, dm + dse, alpha=0.2, linewidth=0, color=style["color"])
  prompts = len(records[0]["passk_counts"])
  for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
  axes[0].set_ylabel(f"pass@k ({prompts} held-out prompts, n={n})")
  axes[1].axhline(0, color="black", linewidth=0.8)
  axes[1].set_ylabel("pass@k − pass@k(SFT), paired by seed")
  fig.tight_layout()
  fig.savefig(os.path.join(out, "pass_at_k.png"), dpi=120)
  plt.close(fig)

  common.plot_training_curves(records, variants, os.path.join(out, "accuracy.png"))


def report(records, out: str) -> None:
  variants = [v for v in VARIANTS if any(r["variant"] == v for r in records)]
  records = sorted(records, key=lambda r: (r["seed"], list(VARIANTS).index(r["variant"])))
  plots(records, variants, out)
  text = tables(records, variants)
  with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
    f.write(text + "\n")
  print(text)


def main():
  p = common.parser(__doc__.splitlines()[0], out=os.path.join(ROOT, "experiments", "results", NAME))
  p.add_argument("--rl_steps", type=int, default=125)
  p.add_argument("--passk_prompts", type=int, default=32)
  p.add_argument("--n", type=int, default=256, help="samples per prompt for pass@k")
  args = p.parse_args()
  if args.replot:
    report(common.load_results(args.out), args.out)
    return
  if args.tiny:
    args.n, args.passk_prompts = min(args.n, 8), min(args.passk_prompts, 4)
  steps = {} if args.tiny else {"rl.steps": args.rl_steps}
  variants = {v: {**steps, **o} for v, o in VARIANTS.items()}
  records = common.run_ablation(args, base=BASE, variants=variants, name="abl_quickstart",
                                after_run=make_after_run(args))
  common.save_results(args.out, records, {"machine": common.machine()})
  report(common.load_results(args.out), args.out)


if __name__ == "__main__":
  main()
