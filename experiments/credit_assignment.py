"""Credit assignment: GRPO vs Dr. GRPO vs RLOO vs TEMPO (prefix-tree credit) vs PPO with GAE.

    python experiments/credit_assignment.py [--seeds 0,1,2] [--variants grpo,tempo,...]
        [--rl_steps 80] [--workdir /tmp/abl_credit_len] [--tiny]

Task: the quickstart's 3-digit addition with a column scratchpad (configs/quickstart.py). Its
completions ("7+5+0=12,3+8+1=12#122") share long prefixes inside a group, since most columns are
copied right, and branch where a sample makes a column error: the tree TEMPO needs. Every
variant of a seed starts RL from the same SFT policy (`common.run_ablation`) and differs only in:

  grpo     (R - mean) / std, token-mean (the quickstart)
  dr_grpo  R - mean, per-sequence token sum / constant max length (seq-mean-token-sum-norm)
  rloo     leave-one-out mean baseline, token-mean
  tempo    GRPO plus the prefix-tree TD term mean R[B_t] - mean R[P_t] at each token
  ppo_gae  a critic (initialised from the policy trunk) and GAE(gamma=1, lambda=0.95), whitened
           (advantage "gae" with advantage_kw lam=0.95; the `value` term trains the critic)

Besides accuracy against RL step and RL wall clock, it samples groups from each seed's SFT
policy and from every final policy and reports the share of valid tokens whose TEMPO advantage
has the opposite sign to GRPO's (both from the registry functions on the same groups).
Outputs: table.md, results.json, accuracy.png, accuracy_wall.png (in --out).
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from experiments import common  # noqa: E402
from rlvr_jax.evaluation import evaluate  # noqa: E402
from rlvr_jax.algorithms import advantages as adv_lib  # noqa: E402
from rlvr_jax.algorithms import registry  # noqa: E402
from rlvr_jax.training.run import Run  # noqa: E402

NAME = "credit_assignment"
BASE = "configs/quickstart.py"
OUT = os.path.join(ROOT, "experiments", "results", NAME)
# The quickstart's RL shrunk to what six runs x three seeds allow on a 2-core CPU shared by four
# engineers: 16 prompts x G=8 a step (not 32), 2 PPO minibatches a rollout (not 4), by default 80
# steps (not 400), 256 held-out prompts every 20 steps (not 512 every 25).
SETUP = {"rl.batch_size": 16, "rl.minibatches": 2, "eval.every": 20, "eval.num_prompts": 256,
         "checkpoint.every": 20}
DR_GRPO = {"algorithm.advantage": "dr_grpo", "algorithm.loss_agg": "seq-mean-token-sum-norm"}
VARIANTS = {
    "grpo": {},
    "dr_grpo": DR_GRPO,
    "rloo": {"algorithm.advantage": "rloo"},
    "tempo": {"algorithm.advantage": "tempo"},
    # GAE reads a critic's values; the `value` term trains it (clipped value loss, defaults).
    "ppo_gae": {"algorithm.advantage": "gae", "algorithm.advantage_kw": {"lam": 0.95},
                "algorithm.terms": {"value": {}}},
}


# ---------------------------------------------------------------------------------------------
# TEMPO vs GRPO token advantages on sampled groups
# ---------------------------------------------------------------------------------------------
def sample_groups(run: Run, params, *, prompts: int, seed: int):
  """tokens [B, G, T], mask [B, G, T], rewards [B, G] of G = rl.group_size samples (at the RL
  temperature) for each of `prompts` training prompts, with the RL step's own sample/score."""
  g = run.config.rl.group_size
  phases = run._rl_step.phases  # the compiled step's sampling and reward, not a re-implementation
  state = run.make_state(params, run.rl_optimizer, with_reference=False)
  batch = next(iter(run.dataset("train", prompts, seed=10_000 + seed, shuffle=True,
                                size=100_000)))

  @jax.jit
  def draw(state, batch, rng):
    comp, _ = phases.sample(state, batch, rng)
    rewards, _ = phases.score(batch, comp, None)
    b, n = batch["prompt_ids"].shape[0], comp.tokens.shape[-1]
    return comp.tokens.reshape(b, g, n), comp.mask.reshape(b, g, n), rewards

  return jax.device_get(draw(state, run.device_batch(batch), jax.random.key(seed)))


def sign_stats(tokens, mask, rewards, eps: float = 1e-6) -> dict[str, float]:
  """Where TEMPO's token advantage and GRPO's have opposite signs (product < 0), as a share of
  all valid tokens and of the valid tokens of groups with mixed rewards (the only ones where
  either is non-zero), plus how much of each completion its group shares (prefix structure).
  Both estimators get the same `eps` (their shared hyperparameter; 1e-6 is their default)."""
  x = registry.AdvantageInputs(rewards=rewards, tokens=tokens, mask=mask,
                               logp=np.zeros(mask.shape, np.float32))
  grpo = np.asarray(registry.ADVANTAGES["grpo"](x, eps=eps))
  tempo = np.asarray(registry.ADVANTAGES["tempo"](x, eps=eps))
  valid = mask > 0
  mixed = valid & (rewards.std(-1) > 0)[..., None, None]
  flip = (grpo * tempo < 0) & valid
  lcp = np.asarray(adv_lib.common_prefix_length(tokens))  # [B, G, G]
  g = lcp.shape[-1]
  shared = np.where(np.eye(g, dtype=bool), 0, lcp).max(-1)  # longest prefix shared with another
  lengths = mask.sum(-1)
  return {"flip_frac_valid": float(flip.sum() / max(valid.sum(), 1)),
          "flip_frac_mixed": float(flip.sum() / max(mixed.sum(), 1)),
          "mixed_token_frac": float(mixed.sum() / max(valid.sum(), 1)),
          "shared_prefix_frac": float(np.minimum(shared, lengths).sum() / max(lengths.sum(), 1)),
          "reward_mean": float(rewards.mean()),
          "tokens": int(valid.sum())}


def sign_stats_of(config, workdir: str, checkpoint: str, *, prompts: int, seed: int) -> dict:
  run = Run(config)
  params, _ = evaluate.restore_params(run, workdir, checkpoint)
  tokens, mask, rewards = sample_groups(run, params, prompts=prompts, seed=seed)
  return sign_stats(tokens, mask, rewards)


# ---------------------------------------------------------------------------------------------
# Tables and plots
# ---------------------------------------------------------------------------------------------
def _evals(record) -> list[float]:
  return [r["eval_accuracy"] for r in record["rows"]
          if r.get("phase") == "rl" and r.get("eval_accuracy") is not None]


def _rl_seconds(record) -> float:
  return max(common.wall_clock(record, exclude_compile=True).values())


def table(records: list[dict], sft_stats: dict[int, dict]) -> str:
  variants = [v for v in VARIANTS if any(r["variant"] == v for r in records)]
  seeds = sorted({r["seed"] for r in records})
  by = lambda v: [r for r in records if r["variant"] == v]  # noqa: E731
  lines = ["| variant | seeds | SFT acc | final acc | best acc | mean acc over evals | "
           "RL wall s (no compile) | s/step (median) | TEMPO/GRPO opposite-sign share, "
           "final policy |",
           "|---|---|---|---|---|---|---|---|---|"]
  for v in variants:
    rs = by(v)
    lines.append(
        f"| {v} | {','.join(str(r['seed']) for r in rs)} | "
        f"{common.fmt([r['summary']['sft_eval_accuracy'] for r in rs])} | "
        f"{common.fmt([r['summary']['final_eval_accuracy'] for r in rs])} | "
        f"{common.fmt([r['summary']['best_eval_accuracy'] for r in rs])} | "
        f"{common.fmt([np.mean(_evals(r)) for r in rs])} | "
        f"{common.fmt([_rl_seconds(r) for r in rs], 1)} | "
        f"{common.fmt([r['summary']['median_step_time_s'] for r in rs])} | "
        f"{common.fmt([r['signs']['flip_frac_valid'] for r in rs if 'signs' in r], 4)} |")
  lines += ["", "Eval accuracy (greedy, held-out) at each evaluation step, mean ± SE over seeds:",
            "", "| step | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
  curves = {v: common.curve(records, v, "eval_accuracy") for v in variants}
  steps = sorted(set.intersection(*(set(c[0].tolist()) for c in curves.values())))
  for t in steps:
    cells = []
    for v in variants:
      s, m, se = curves[v]
      i = s.tolist().index(t)
      cells.append(f"{m[i]:.3f} ± {se[i]:.3f}")
    lines.append(f"| {t} | " + " | ".join(cells) + " |")
  lines += ["", "Eval accuracy against RL wall clock (mean seconds over seeds):", "",
            "| step | " + " | ".join(f"{v} s" for v in variants) + " |",
            "|---" * (len(variants) + 1) + "|"]
  walls = {v: common.wall_curve(records, v) for v in variants}
  for t in steps:
    cells = []
    for v in variants:
      i = curves[v][0].tolist().index(t)
      cells.append(f"{walls[v][0][i]:.1f}")
    lines.append(f"| {t} | " + " | ".join(cells) + " |")
  lines += ["", "TEMPO vs GRPO token advantages on G samples of training prompts, same groups "
            "(opposite sign: product < 0):", "",
            "| policy | seed | opposite sign / valid tokens | opposite sign / tokens of "
            "mixed-reward groups | mixed-group token share | shared-prefix token share | "
            "sample reward | tokens |", "|---|---|---|---|---|---|---|---|"]
  rows = [("SFT", s, sft_stats[s]) for s in seeds if s in sft_stats]
  rows += [(f"final {r['variant']}", r["seed"], r["signs"])
           for v in variants for r in by(v) if "signs" in r]
  for name, seed, st in rows:
    lines.append(f"| {name} | {seed} | {st['flip_frac_valid']:.4f} | {st['flip_frac_mixed']:.4f}"
                 f" | {st['mixed_token_frac']:.3f} | {st['shared_prefix_frac']:.3f} | "
                 f"{st['reward_mean']:.3f} | {st['tokens']} |")
  summary = [("SFT", [sft_stats[s] for s in seeds if s in sft_stats])]
  summary += [(f"final {v}", [r["signs"] for r in by(v) if "signs" in r]) for v in variants]
  lines += ["", "| policy | opposite sign / valid tokens (mean ± SE over seeds) | "
            "/ tokens of mixed groups | shared-prefix token share |", "|---|---|---|---|"]
  for name, sts in summary:
    if sts:
      lines.append(f"| {name} | {common.fmt([s['flip_frac_valid'] for s in sts], 4)} | "
                   f"{common.fmt([s['flip_frac_mixed'] for s in sts], 4)} | "
                   f"{common.fmt([s['shared_prefix_frac'] for s in sts])} |")
  return "\n".join(lines)


def plot(records: list[dict], out: str) -> list[str]:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  variants = [v for v in VARIANTS if any(r["variant"] == v for r in records)]
  paths = []
  fig, ax = plt.subplots(figsize=(7, 4.5))
  common.plot_bands(ax, records, variants, "eval_accuracy")
  ax.set_xlabel("RL step")
  ax.set_ylabel("held-out greedy accuracy")
  ax.set_title("mean ± SE over seeds")
  ax.legend(fontsize=8)
  fig.tight_layout()
  paths.append(os.path.join(out, "accuracy.png"))
  fig.savefig(paths[-1], dpi=120)
  fig, ax = plt.subplots(figsize=(7, 4.5))
  colours = plt.get_cmap("tab10").colors
  for i, v in enumerate(variants):
    sec, mean, se = common.wall_curve(records, v)
    ax.plot(sec, mean, color=colours[i], marker=".", label=v)
    ax.fill_between(sec, mean - se, mean + se, color=colours[i], alpha=0.2, linewidth=0)
  ax.set_xlabel("RL wall clock, s (sum of step times; compilation and evaluation excluded)")
  ax.set_ylabel("held-out greedy accuracy")
  ax.set_title("mean ± SE over seeds")
  ax.legend(fontsize=8)
  fig.tight_layout()
  paths.append(os.path.join(out, "accuracy_wall.png"))
  fig.savefig(paths[-1], dpi=120)
  plt.close("all")
  return paths


def write(out: str, records: list[dict], sft_stats: dict[int, dict]) -> None:
  os.makedirs(out, exist_ok=True)
  text = table(records, sft_stats)
  with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
    f.write(text + "\n")
  plot(records, out)
  print(text)


def main():
  p = common.parser(__doc__.splitlines()[0], out=OUT)
  p.add_argument("--rl_steps", type=int, default=80)
  p.add_argument("--sign_prompts", type=int, default=64,
                 help="training prompts (x group size) sampled for the sign comparison")
  args = p.parse_args()
  if args.replot:
    import json
    with open(os.path.join(args.out, "results.json"), encoding="utf-8") as f:
      data = json.load(f)
    write(args.out, data["records"], {int(k): v for k, v in data["sft_signs"].items()})
    return
  steps = {} if args.tiny else {"rl.steps": args.rl_steps, **SETUP}
  variants = {k: {**v, **steps} for k, v in VARIANTS.items()}
  prompts = 8 if args.tiny else args.sign_prompts

  def after_run(run, run_dir, record):
    return {"signs": sign_stats_of(run.config, run_dir, "latest", prompts=prompts,
                                   seed=record["seed"])}

  records = common.run_ablation(args, base=BASE, variants=variants, after_run=after_run,
                                name="abl_credit_len")
  workdir = args.workdir or "/tmp/abl_credit_len"
  sft_stats = {}
  for seed in common.seeds_of(args):
    config = common.config_for(BASE, {"rl.steps": 0}, seed, args.tiny)
    sft_stats[seed] = sign_stats_of(config, os.path.join(workdir, f"seed{seed}", "sft"), "0",
                                    prompts=prompts, seed=seed)
  path = os.path.join(args.out, "results.json")
  if os.path.exists(path):  # keep the SFT sign stats of seeds run earlier
    import json
    with open(path, encoding="utf-8") as f:
      sft_stats = {**{int(k): v for k, v in json.load(f).get("sft_signs", {}).items()},
                   **sft_stats}
  common.save_results(args.out, records, {"sft_signs": {str(k): v for k, v in
                                                        sft_stats.items()},
                                          "rl_steps": None if args.tiny else args.rl_steps,
                                          "tiny": args.tiny, "machine": common.machine()})
  write(args.out, common.load_results(args.out), sft_stats)


if __name__ == "__main__":
  main()
