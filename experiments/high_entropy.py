"""80/20 ablation: policy gradient on the top-20% entropy tokens vs all tokens vs the other 80%.

    python experiments/high_entropy.py [--seeds 0,1,2] [--variants grpo,top20,bottom80]
        [--rl_steps 125] [--fork_prompts 128] [--workdir /tmp/abl_quickstart] [--tiny]

Wang et al. 2025, "Beyond the 80/20 Rule: High-Entropy Minority Tokens Drive Effective
Reinforcement Learning for LLM Reasoning": keeping the policy gradient only on the 20% of tokens
with the highest entropy (per batch; advantages unchanged) matches or beats the full gradient,
while training only on the 80% lowest-entropy tokens degrades performance; the high-entropy
tokens are "forks" where the reasoning branches.

Task and model: configs/quickstart.py (GRPO, 3-digit addition with a scratchpad, 2-layer d=96
model, SFT to 50% held-out greedy accuracy). Every variant of a seed starts RL from that seed's
SFT checkpoint (experiments/common.py):

  grpo      every valid token (the quickstart)
  top20     algorithm.high_entropy_frac = 0.2: the top ⌈0.2·N⌉ tokens by entropy of the current
            policy among the N valid tokens of each update's (micro-)batch
  bottom80  the same with algorithm.high_entropy_invert = True: the other N − ⌈0.2·N⌉ tokens

Forking tokens: each seed's SFT policy samples `--fork_samples` completions at T = 1 for each of
the first `--fork_prompts` held-out prompts (rlvr_jax.sampling.generate returns each token's
entropy); the top 20% of all valid tokens by entropy are tabulated by decoded token, by the token
before it (its context in the scratchpad) and by relative position in the completion.

The default workdir is shared with experiments/negative_reinforcement.py: both use the quickstart
with the same RL steps, so their SFT runs and their `grpo` runs are the same runs.
"""

from __future__ import annotations

import collections
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from experiments import common  # noqa: E402
from rlvr_jax import sampling  # noqa: E402
from rlvr_jax.evaluation import evaluate  # noqa: E402
from rlvr_jax.data import pipeline  # noqa: E402
from rlvr_jax.training.run import Run  # noqa: E402

NAME = "high_entropy"
BASE = "configs/quickstart.py"
VARIANTS = {"grpo": {},
            "top20": {"algorithm.high_entropy_frac": 0.2},
            "bottom80": {"algorithm.high_entropy_frac": 0.2, "algorithm.high_entropy_invert": True}}
TOP_FRAC = 0.2
POSITION_BINS = 10


# ---------------------------------------------------------------------------------------------
# Forking tokens of the SFT policy
# ---------------------------------------------------------------------------------------------
def sample_entropies(run: Run, params, *, num_prompts: int, n: int, seed: int):
  """(tokens int [P·n, T], entropies float [P·n, T], mask [P·n, T]) of n samples at the RL
  temperature for each of the first `num_prompts` held-out prompts."""
  examples = [pipeline.TaskSource(run.task, "test", run.config.data.eval_seed, num_prompts)[i]
              for i in range(num_prompts)]
  encoded = [pipeline.encode_example(e, run.tokenizer, run.shapes, with_demo=False)
             for e in examples]
  ids = np.repeat(np.stack([e["prompt_ids"] for e in encoded]), n, axis=0)
  pmask = np.repeat(np.stack([e["prompt_mask"] for e in encoded]), n, axis=0)
  generate = jax.jit(lambda p, i, m, r: sampling.generate(
      run.model_config, p, i, m, r, max_new_tokens=run.config.rl.max_new_tokens,
      temperature=run.config.rl.temperature, eos_id=run.tokenizer.eos_id,
      pad_id=run.tokenizer.pad_id))
  comp = jax.device_get(generate(params, ids, pmask, jax.random.key(seed)))
  return np.asarray(comp.tokens), np.asarray(comp.entropies), np.asarray(comp.mask)


def forking_stats(tokenizer, tokens, entropies, mask, top_frac: float = TOP_FRAC) -> dict:
  """Which tokens are in the top `top_frac` by entropy among all valid tokens, and where.

  Returns JSON-able counts: per decoded token and per (previous token, token) pair — `high`
  (in the top set), `all` (occurrences), `entropy_sum` — and histograms of relative position
  t / (length − 1) for the top set and for all tokens.
  """
  valid = mask > 0
  lengths = valid.sum(-1)
  flat_h = entropies[valid]
  k = max(1, int(np.ceil(top_frac * flat_h.size)))
  threshold = float(np.sort(flat_h)[::-1][k - 1])
  order = np.argsort(-entropies.ravel(), kind="stable")
  top = np.zeros(entropies.size, bool)
  top[[i for i in order if valid.ravel()[i]][:k]] = True
  top = top.reshape(entropies.shape)

  def piece(i):
    return "EOS" if i == tokenizer.eos_id else tokenizer.decode([int(i)])

  by_token = collections.defaultdict(lambda: [0, 0, 0.0])
  by_pair = collections.defaultdict(lambda: [0, 0, 0.0])
  pos_top, pos_all = np.zeros(POSITION_BINS, int), np.zeros(POSITION_BINS, int)
  for b, t in zip(*np.nonzero(valid)):
    tok = piece(tokens[b, t])
    prev = piece(tokens[b, t - 1]) if t > 0 else "<start>"
    rel = t / max(1, lengths[b] - 1)
    bin_ = min(POSITION_BINS - 1, int(rel * POSITION_BINS))
    for table, key in ((by_token, tok), (by_pair, f"{prev} → {tok}")):
      table[key][0] += int(top[b, t])
      table[key][1] += 1
      table[key][2] += float(entropies[b, t])
    pos_all[bin_] += 1
    pos_top[bin_] += int(top[b, t])
  return {"top_frac": top_frac, "num_tokens": int(flat_h.size), "num_top": k,
          "threshold": threshold, "mean_entropy": float(flat_h.mean()),
          "median_entropy": float(np.median(flat_h)),
          "by_token": {k_: v for k_, v in by_token.items()},
          "by_pair": {k_: v for k_, v in by_pair.items()},
          "position_top": pos_top.tolist(), "position_all": pos_all.tolist()}


def forking_analysis(args, seed: int) -> dict:
  config = common.config_for(BASE, {"rl.steps": 0}, seed, args.tiny)
  run = Run(config)
  params, _ = evaluate.restore_params(run, os.path.join(_workdir(args), f"seed{seed}", "sft"),
                                      "0")
  tokens, ent, mask = sample_entropies(run, params, num_prompts=args.fork_prompts,
                                       n=args.fork_samples, seed=2000 + seed)
  stats = forking_stats(run.tokenizer, tokens, ent, mask)
  stats.update(seed=seed, prompts=args.fork_prompts, samples_per_prompt=args.fork_samples)
  return stats


def _workdir(args) -> str:
  return args.workdir or os.path.join("/tmp", "abl_quickstart")


# ---------------------------------------------------------------------------------------------
# Tables and plots
# ---------------------------------------------------------------------------------------------
def _merge(forks: list[dict], field: str) -> dict[str, list]:
  out = collections.defaultdict(lambda: [0, 0, 0.0])
  for f in forks:
    for key, (h, a, s) in f[field].items():
      out[key][0] += h
      out[key][1] += a
      out[key][2] += s
  return out


def fork_tables(forks: list[dict], top_rows: int = 12) -> str:
  n_top = sum(f["num_top"] for f in forks)
  lines = [f"SFT-policy samples: {forks[0]['prompts']} held-out prompts × "
           f"{forks[0]['samples_per_prompt']} samples at T = 1, seeds "
           f"{', '.join(str(f['seed']) for f in forks)}; {sum(f['num_tokens'] for f in forks)} "
           f"valid tokens, top {TOP_FRAC:.0%} by entropy = {n_top}. Entropy threshold of the top "
           f"20% (per seed): {', '.join('%.3f' % f['threshold'] for f in forks)} nats; median "
           f"token entropy: {', '.join('%.3f' % f['median_entropy'] for f in forks)} nats.", ""]
  for field, title in (("by_token", "token"), ("by_pair", "previous token → token")):
    merged = _merge(forks, field)
    rows = sorted(merged.items(), key=lambda kv: -kv[1][0])[:top_rows]
    lines += [f"Most frequent high-entropy tokens by {title} (pooled over seeds):", "",
              f"| {title} | count in top 20% | share of top 20% | share of its occurrences in "
              "top 20% | mean entropy (nats) |", "|---|---|---|---|---|"]
    for key, (h, a, s) in rows:
      lines.append(f"| `{key}` | {h} | {h / n_top:.3f} | {h}/{a} = {h / a:.3f} | {s / a:.3f} |")
    lines.append("")
  pos_top = np.sum([f["position_top"] for f in forks], axis=0)
  pos_all = np.sum([f["position_all"] for f in forks], axis=0)
  lines += ["Relative position t / (length − 1) in the completion (pooled over seeds):", "",
            "| position bin | share of top-20% tokens | share of all tokens | top-20% rate in bin |",
            "|---|---|---|---|"]
  for i in range(POSITION_BINS):
    lines.append(f"| [{i / POSITION_BINS:.1f}, {(i + 1) / POSITION_BINS:.1f}"
                 f"{']' if i == POSITION_BINS - 1 else ')'} | {pos_top[i] / pos_top.sum():.3f} | "
                 f"{pos_all[i] / pos_all.sum():.3f} | {pos_top[i] / max(1, pos_all[i]):.3f} |")
  return "\n".join(lines)


def training_tables(records, variants) -> str:
  lines = ["Held-out greedy accuracy (512 prompts), mean ± SE over seeds:", "",
           "| variant | seeds | after SFT (step 0) | best eval | final | final train reward "
           "(last 10 steps) | final sample entropy | RL step time s / run |",
           "|---|---|---|---|---|---|---|---|"]
  for v in variants:
    rs = [r for r in records if r["variant"] == v]
    ent = [[row["sample_entropy"] for row in r["rows"] if "sample_entropy" in row][-1]
           for r in rs]
    lines.append(
        f"| {v} | {len(rs)} | {common.fmt([r['summary']['sft_eval_accuracy'] for r in rs])} | "
        f"{common.fmt([r['summary']['best_eval_accuracy'] for r in rs])} | "
        f"{common.fmt([r['summary']['final_eval_accuracy'] for r in rs])} | "
        f"{common.fmt([r['summary']['final_reward_mean'] for r in rs])} | "
        f"{common.fmt(ent)} | "
        f"{common.fmt([max(common.wall_clock(r).values(), default=0) for r in rs], 0)} |")
  lines += ["", "Paired final-accuracy difference to `grpo` (same seed, same SFT), mean ± SE:",
            "", "| variant | final − grpo final |", "|---|---|"]
  final = {(r["variant"], r["seed"]): r["summary"]["final_eval_accuracy"] for r in records}
  for v in variants:
    if v == "grpo":
      continue
    diffs = [final[(v, s)] - final[("grpo", s)] for (vv, s) in final
             if vv == v and ("grpo", s) in final]
    lines.append(f"| {v} | {common.fmt(diffs)} |")
  lines += common.curve_table(records, variants, "eval_accuracy", "curves.png")
  return "\n".join(lines)


def plots(records, variants, forks, out: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  common.plot_training_curves(records, variants, os.path.join(out, "curves.png"))

  fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
  merged = _merge(forks, "by_token")
  rows = sorted(merged.items(), key=lambda kv: -kv[1][0])[:12]
  n_top = sum(f["num_top"] for f in forks)
  axes[0].bar([f"{k!r}"[1:-1] for k, _ in rows], [h / n_top for _, (h, _, _) in rows])
  axes[0].set_ylabel("share of the top-20% entropy tokens")
  axes[0].set_title("most frequent high-entropy tokens (SFT policy)")
  pos_top = np.sum([f["position_top"] for f in forks], axis=0)
  pos_all = np.sum([f["position_all"] for f in forks], axis=0)
  centres = (np.arange(POSITION_BINS) + 0.5) / POSITION_BINS
  width = 0.4 / POSITION_BINS
  axes[1].bar(centres - width / 2, pos_top / pos_top.sum(), width, label="top-20% entropy tokens")
  axes[1].bar(centres + width / 2, pos_all / pos_all.sum(), width, label="all tokens")
  axes[1].set_xlabel("relative position in the completion, t / (length − 1)")
  axes[1].set_ylabel("share of tokens")
  axes[1].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "forking_tokens.png"), dpi=120)
  plt.close(fig)


def report(results: dict, out: str) -> None:
  records = sorted(results["records"],
                   key=lambda r: (r["seed"], list(VARIANTS).index(r["variant"])))
  variants = [v for v in VARIANTS if any(r["variant"] == v for r in records)]
  forks = sorted(results.get("forking", {}).values(), key=lambda f: f["seed"])
  plots(records, variants, forks, out)
  text = training_tables(records, variants) + "\n\n" + fork_tables(forks)
  with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
    f.write(text + "\n")
  print(text)


def _load(out: str) -> dict:
  import json
  with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
    return json.load(f)


def main():
  p = common.parser(__doc__.splitlines()[0], out=os.path.join(ROOT, "experiments", "results", NAME))
  p.add_argument("--rl_steps", type=int, default=125)
  p.add_argument("--fork_prompts", type=int, default=128)
  p.add_argument("--fork_samples", type=int, default=8)
  p.add_argument("--fork_seeds", default="", help="seeds whose SFT policy the forking-token "
                 "analysis samples (needs only their SFT run); default: --seeds")
  args = p.parse_args()
  if args.replot:
    report(_load(args.out), args.out)
    return
  if args.tiny:
    args.fork_prompts, args.fork_samples = min(args.fork_prompts, 8), min(args.fork_samples, 4)
  steps = {} if args.tiny else {"rl.steps": args.rl_steps}
  variants = {v: {**steps, **o} for v, o in VARIANTS.items()}
  args.workdir = _workdir(args)
  records = common.run_ablation(args, base=BASE, variants=variants, name="abl_quickstart")
  forking = {}
  if os.path.exists(os.path.join(args.out, "results.json")):
    forking = _load(args.out).get("forking", {})
  for seed in [int(x) for x in args.fork_seeds.split(",") if x] or common.seeds_of(args):
    forking[str(seed)] = forking_analysis(args, seed)
  common.save_results(args.out, records, {"machine": common.machine(), "forking": forking})
  report(_load(args.out), args.out)


if __name__ == "__main__":
  main()
