"""Entropy mechanism ablation: GRPO vs Clip-Cov vs KL-Cov (vs Lp-Reg), several updates a rollout.

    python experiments/entropy_mechanism.py [--seeds 0,1,2] [--variants grpo,clip_cov,kl_cov,lp_reg]
        [--rl_steps 150] [--minibatches 4] [--passk_prompts 32] [--n 256]
        [--lp_reg_loss lp_reg] [--workdir /tmp/abl_entropy] [--tiny]

Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models"
(arXiv 2505.22617): under GRPO the policy entropy collapses early and held-out accuracy saturates
with it; dropping the gradient of a few high-covariance tokens (Clip-Cov) or penalising their
drift from the behaviour policy (KL-Cov) keeps entropy up and ends higher (their 7B: 38.6 →
40.4 / 40.6 average over seven math sets). Lp-Reg (Huang et al. 2025, arXiv 2510.03222) is a
later entropy-preserving loss built on the same recipe; its arm runs only where a policy loss of
that name (`--lp_reg_loss`) is registered, with its defaults, and is skipped otherwise.

Task and model: configs/quickstart.py (3-digit addition with a scratchpad, 2-layer d=96 model, SFT
to 50% held-out greedy accuracy), `rl.minibatches` updates a rollout (4: KL-Cov needs at least
2, and the paper's runs had 8). Every variant of a seed starts RL from that seed's SFT checkpoint
(experiments/common.py) and differs only in `algorithm.policy_loss` / `policy_loss_kw`:
- grpo: `ppo` with clip 0.2 / 0.2;
- clip_cov: `clip_cov` with the paper's r = 2e-4, band (1, 5) and its runs' clip 1 / 1;
- kl_cov: `kl_cov` with the 7B run's ratio 2e-3 and β = 1 (no PPO clip);
- lp_reg: `--lp_reg_loss` with its own defaults.
At this size a micro-batch holds ~1k valid tokens, so both methods act on max(1, ⌊r·N⌋) = 1-2
tokens an update (a larger fraction than the paper's); `--clip_cov_ratio` / `--kl_cov_ratio`
change that. Reported: entropy curves (the sampler's `sample_entropy` and the trained tokens'
`policy_entropy`), held-out greedy accuracy, the covariance metrics (`cov_selected_frac`,
`cov_mean`), and pass@k up to k = n = 256 at T = 1 on `--passk_prompts` held-out prompts after RL
(the unbiased estimator, as experiments/negative_reinforcement.py), all mean ± SE over seeds.

Prepared, not yet run: there is no results/entropy_mechanism/ README until it is.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from experiments import common  # noqa: E402
from experiments.negative_reinforcement import (  # noqa: E402
    ks_upto, make_after_run, passk_by_seed)
from rlvr_jax.algorithms import registry  # noqa: E402

NAME = "entropy_mechanism"
BASE = "configs/quickstart.py"
ORDER = ("grpo", "clip_cov", "kl_cov", "lp_reg")
TABLE_KS = (1, 4, 16, 64, 256)
ENTROPY = (("sample_entropy", "sample entropy (nats/token, T=1)"),
           ("policy_entropy", "entropy of the trained tokens' policy"))


def variants_for(args) -> dict[str, dict]:
  """The variants' config overrides; lp_reg only when `args.lp_reg_loss` is registered."""
  clip = {"clip_low": args.clip_cov_clip, "clip_high": args.clip_cov_clip}
  out = {
      "grpo": {"algorithm.policy_loss": "ppo",
               "algorithm.policy_loss_kw": {"clip_low": 0.2, "clip_high": 0.2}},
      "clip_cov": {"algorithm.policy_loss": "clip_cov",
                   "algorithm.policy_loss_kw": {"clip_cov_ratio": args.clip_cov_ratio,
                                                "clip_cov_lb": 1.0, "clip_cov_ub": 5.0, **clip}},
      "kl_cov": {"algorithm.policy_loss": "kl_cov",
                 "algorithm.policy_loss_kw": {"kl_cov_ratio": args.kl_cov_ratio,
                                              "ppo_kl_coef": 1.0}},
  }
  if args.lp_reg_loss in registry.POLICY_LOSSES:
    out["lp_reg"] = {"algorithm.policy_loss": args.lp_reg_loss, "algorithm.policy_loss_kw": {}}
  else:
    print(f"lp_reg: no policy loss {args.lp_reg_loss!r} is registered; its arm is skipped",
          flush=True)
  updates = {"rl.minibatches": args.minibatches}
  steps = {} if args.tiny else {"rl.steps": args.rl_steps}
  return {v: {**steps, **updates, **o} for v, o in out.items()}


# ---------------------------------------------------------------------------------------------
# Tables and plots
# ---------------------------------------------------------------------------------------------
def _last(record: dict, key: str):
  values = [row[key] for row in record["rows"] if row.get("phase") == "rl" and key in row]
  return values[-1] if values else None


def _first(record: dict, key: str):
  values = [row[key] for row in record["rows"] if row.get("phase") == "rl" and key in row]
  return values[0] if values else None


def tables(records, variants) -> str:
  n = records[0]["passk_n"]
  ks = [k for k in TABLE_KS if k <= n]
  prompts = len(records[0]["passk_counts"])
  lines = ["Held-out greedy accuracy and entropy (mean ± SE over seeds):", "",
           "| policy | seeds | after SFT | best eval | final eval | sample entropy, first → "
           "last RL step | policy entropy, last | cov_selected_frac, last | cov_mean, last |",
           "|---|---|---|---|---|---|---|---|---|"]
  for v in variants:
    rs = [r for r in records if r["variant"] == v]
    if not rs:
      continue
    cells = [common.fmt([r["summary"][k] for r in rs]) for k in
             ("sft_eval_accuracy", "best_eval_accuracy", "final_eval_accuracy")]
    entropy = (f"{common.fmt([_first(r, 'sample_entropy') for r in rs])} → "
               f"{common.fmt([_last(r, 'sample_entropy') for r in rs])}")
    extra = [common.fmt([_last(r, k) for r in rs], 4) if any(_last(r, k) is not None for r in rs)
             else "–" for k in ("policy_entropy", "cov_selected_frac", "cov_mean")]
    lines.append(f"| {v} | {len(rs)} | " + " | ".join(cells) + f" | {entropy} | "
                 + " | ".join(extra) + " |")
  lines += ["", f"pass@k (unbiased; n = {n} samples at T = 1 on each of {prompts} held-out "
            "prompts; mean ± SE over seeds):", "",
            "| policy | " + " | ".join(f"pass@{k}" for k in ks) + " |",
            "|---|" + "---|" * len(ks)]
  for v in ["sft", *variants]:
    by_seed = passk_by_seed(records, v, ks)
    if by_seed:
      cells = [common.fmt([c[j] for c in by_seed.values()]) for j in range(len(ks))]
      lines.append(f"| {v} | " + " | ".join(cells) + " |")
  lines += common.curve_table(records, variants, "eval_accuracy", "training.png")
  return "\n".join(lines)


def plots(records, variants, out: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  common.plot_training_curves(
      records, variants, os.path.join(out, "training.png"),
      panels=(("eval_accuracy", "held-out greedy accuracy"), *ENTROPY))
  n = records[0]["passk_n"]
  ks = ks_upto(n)
  fig, ax = plt.subplots(figsize=(6, 4.5))
  colours = plt.get_cmap("tab10").colors
  for i, v in enumerate(["sft", *variants]):
    by_seed = passk_by_seed(records, v, ks)
    if not by_seed:
      continue
    stats = [common.mean_se([c[j] for c in by_seed.values()]) for j in range(len(ks))]
    m = np.asarray([s[0] for s in stats])
    se = np.nan_to_num(np.asarray([s[1] for s in stats]))
    style = dict(color="black", linestyle="--") if v == "sft" else dict(color=colours[i - 1])
    ax.plot(ks, m, marker=".", label=f"{v} ({len(by_seed)} seeds)", **style)
    ax.fill_between(ks, m - se, m + se, alpha=0.2, linewidth=0, color=style["color"])
  ax.set_xscale("log", base=2)
  ax.set_xlabel("k")
  ax.set_ylabel(f"pass@k (n={n})")
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "pass_at_k.png"), dpi=120)
  plt.close(fig)


def report(records, out: str) -> None:
  variants = [v for v in ORDER if any(r["variant"] == v for r in records)]
  records = sorted(records, key=lambda r: (r["seed"], ORDER.index(r["variant"])))
  plots(records, variants, out)
  text = tables(records, variants)
  with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
    f.write(text + "\n")
  print(text)


def main():
  p = common.parser(__doc__.splitlines()[0], out=os.path.join(ROOT, "experiments", "results", NAME))
  p.add_argument("--rl_steps", type=int, default=150)
  p.add_argument("--minibatches", type=int, default=4, help="updates a rollout (>= 2)")
  p.add_argument("--passk_prompts", type=int, default=32)
  p.add_argument("--n", type=int, default=256, help="samples per prompt for pass@k")
  p.add_argument("--clip_cov_ratio", type=float, default=2e-4)
  p.add_argument("--clip_cov_clip", type=float, default=1.0,
                 help="Clip-Cov's PPO clip_low = clip_high (the paper's runs: 1)")
  p.add_argument("--kl_cov_ratio", type=float, default=2e-3)
  p.add_argument("--lp_reg_loss", default="lp_reg",
                 help="the registered policy loss of the lp_reg arm (skipped if absent)")
  args = p.parse_args()
  if args.replot:
    report(common.load_results(args.out), args.out)
    return
  if args.minibatches < 2:
    raise SystemExit("--minibatches: KL-Cov needs several updates a rollout (>= 2)")
  if args.tiny:
    args.n, args.passk_prompts = min(args.n, 8), min(args.passk_prompts, 4)
  variants = variants_for(args)
  if args.variants:  # a requested arm that is not available (lp_reg) is dropped, not an error
    args.variants = ",".join(v for v in args.variants.split(",")
                             if v in variants or v not in ORDER)
    if not args.variants:
      raise SystemExit("--variants: none of the requested arms is available")
  records = common.run_ablation(args, base=BASE, variants=variants, name="abl_entropy",
                                after_run=make_after_run(args))
  common.save_results(args.out, records, {"machine": common.machine()})
  report(common.load_results(args.out), args.out)


if __name__ == "__main__":
  main()
