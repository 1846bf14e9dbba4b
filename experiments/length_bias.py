"""Length bias: GRPO with per-sequence length normalisation and std scaling vs Dr. GRPO.

    python experiments/length_bias.py [--seeds 0,1,2] [--variants grpo_seqmean,dr_grpo,grpo]
        [--rl_steps 80] [--workdir /tmp/abl_credit_len] [--tiny]

Task: the quickstart's 3-digit addition with a column scratchpad (configs/quickstart.py), the
only synthetic task here whose completion length is the policy's choice: one "x+y+c=s" column
per digit of the longer operand, then '#' and the answer. A policy that drops or adds a column
changes its length (and is usually wrong); the gold length is fixed by the prompt. Every variant
of a seed starts RL from the same SFT policy and differs only in:

  grpo_seqmean  (R - mean) / std, loss = mean over sequences of each one's token MEAN
                (seq-mean-token-mean: the DeepSeekMath GRPO objective Dr. GRPO criticises)
  dr_grpo       R - mean, loss = mean over sequences of each one's token SUM / the constant
                max length (seq-mean-token-sum-norm)
  grpo          (R - mean) / std, token-mean over the batch (the quickstart; DAPO's choice)

The RL step reports the mean length of correct and of wrong completions every step
(`completion_tokens_correct` / `completion_tokens_wrong`). Outputs: table.md, results.json,
lengths.png (wrong and right lengths over RL steps), accuracy.png (in --out). The `dr_grpo` and
`grpo` runs are the same configs as experiments/credit_assignment.py's: with one --workdir the
second script reuses the first's runs instead of training them again.
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
from rlvr_jax.training.run import Run  # noqa: E402
# The same setup and Dr. GRPO run as the credit-assignment ablation: one workdir serves both.
from experiments.credit_assignment import DR_GRPO, SETUP  # noqa: E402

NAME = "length_bias"
BASE = "configs/quickstart.py"
OUT = os.path.join(ROOT, "experiments", "results", NAME)
VARIANTS = {
    "grpo_seqmean": {"algorithm.loss_agg": "seq-mean-token-mean"},
    "dr_grpo": DR_GRPO,
    "grpo": {},
}
LENGTHS = ("completion_tokens_wrong", "completion_tokens_correct")


# ---------------------------------------------------------------------------------------------
# Length against the gold scratchpad's (difficulty held fixed)
# ---------------------------------------------------------------------------------------------
def excess_length(config, workdir: str, checkpoint: str, *, prompts: int, seed: int) -> dict:
  """Samples G completions (RL temperature) for `prompts` held-out prompts from a checkpoint and
  compares each completion's length with its prompt's gold demonstration (scratchpad + answer +
  EOS). Longer operands make both longer and harder, so raw wrong-vs-right lengths mix
  difficulty with bias; the excess over the gold length does not."""
  run = Run(config)
  params, _ = evaluate.restore_params(run, workdir, checkpoint)
  s = evaluate.sample_and_score(run, params, n=config.rl.group_size,
                                temperature=config.rl.temperature, num_prompts=prompts,
                                batch_size=prompts, seed=seed, progress=False)
  gold = np.asarray([len(run.tokenizer.encode(e.demo)) + 1 for e in s["examples"]])
  lengths, correct = s["lengths"], s["correct"]
  excess = lengths - gold[:, None]
  wrong = ~correct
  mean = lambda x, m: float(x[m].mean()) if m.any() else None  # noqa: E731 (JSON: no NaN)
  return {"accuracy": float(correct.mean()),
          "len_wrong": mean(lengths, wrong), "len_right": mean(lengths, correct),
          "excess_wrong": mean(excess, wrong), "excess_right": mean(excess, correct),
          "longer_than_gold_wrong": mean(excess > 0, wrong),
          "shorter_than_gold_wrong": mean(excess < 0, wrong),
          "truncated": float(s["truncated"].mean()), "samples": int(lengths.size)}


def _window(record, key: str, lo: int, hi: int) -> float:
  """Mean of RL metric `key` over steps lo..hi, steps where its kind is absent left out."""
  rows = [r for r in record["rows"] if r.get("phase") == "rl" and lo <= r["step"] <= hi]
  kind_present = (lambda r: r["correct_frac"] < 1) if key.endswith("wrong") else (
      lambda r: r["correct_frac"] > 0)
  vals = [r[key] for r in rows if key in r and kind_present(r)]
  return float(np.mean(vals)) if vals else float("nan")


def table(records: list[dict], rl_steps: int) -> str:
  variants = [v for v in VARIANTS if any(r["variant"] == v for r in records)]
  by = lambda v: [r for r in records if r["variant"] == v]  # noqa: E731
  w = max(1, rl_steps // 10)
  early, late = (1, w), (rl_steps - w + 1, rl_steps)
  lines = [f"Completion length (tokens, EOS included) of wrong and right RL samples, averaged "
           f"over the first ({early[0]}–{early[1]}) and last ({late[0]}–{late[1]}) steps; "
           f"mean ± SE over seeds.", "",
           "| variant | seeds | wrong len, early | wrong len, late | right len, early | "
           "right len, late | wrong − right, late | all len, late | SFT acc | final acc |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for v in variants:
    rs = by(v)
    win = lambda key, span: [_window(r, key, *span) for r in rs]  # noqa: E731
    gap = [a - b for a, b in zip(win(LENGTHS[0], late), win(LENGTHS[1], late))]
    lines.append(
        f"| {v} | {','.join(str(r['seed']) for r in rs)} | "
        f"{common.fmt(win(LENGTHS[0], early), 2)} | {common.fmt(win(LENGTHS[0], late), 2)} | "
        f"{common.fmt(win(LENGTHS[1], early), 2)} | {common.fmt(win(LENGTHS[1], late), 2)} | "
        f"{common.fmt(gap, 2)} | {common.fmt(win('completion_tokens', late), 2)} | "
        f"{common.fmt([r['summary']['sft_eval_accuracy'] for r in rs])} | "
        f"{common.fmt([r['summary']['final_eval_accuracy'] for r in rs])} |")
  ref = "dr_grpo"
  if ref in variants and len(variants) > 1:
    lines += ["", f"Paired by seed (same SFT policy): variant minus {ref}, mean ± SE over seeds.",
              "", "| variant − dr_grpo | seeds | wrong len, late | wrong − right, late | final "
              "policy: wrong excess over gold | final acc |", "|---|---|---|---|---|---|"]
    base = {r["seed"]: r for r in by(ref)}
    for v in variants:
      if v == ref:
        continue
      pairs = [(r, base[r["seed"]]) for r in by(v) if r["seed"] in base]
      gap = lambda r: _window(r, LENGTHS[0], *late) - _window(r, LENGTHS[1], *late)  # noqa: E731
      excess = [a["gold"]["excess_wrong"] - b["gold"]["excess_wrong"] for a, b in pairs
                if None not in (a.get("gold", {}).get("excess_wrong"),
                                b.get("gold", {}).get("excess_wrong"))]
      wrong = [_window(a, LENGTHS[0], *late) - _window(b, LENGTHS[0], *late) for a, b in pairs]
      acc = [a["summary"]["final_eval_accuracy"] - b["summary"]["final_eval_accuracy"]
             for a, b in pairs]
      lines.append(f"| {v} | {','.join(str(a['seed']) for a, _ in pairs)} | "
                   f"{common.fmt(wrong, 2)} | {common.fmt([gap(a) - gap(b) for a, b in pairs], 2)}"
                   f" | {common.fmt(excess, 2)} | {common.fmt(acc)} |")
  lines += ["", f"Per-window means ({w} steps each) of the wrong / right lengths, mean ± SE "
            "over seeds (the numbers behind lengths.png):", "",
            "| steps | " + " | ".join(f"{v} wrong | {v} right" for v in variants) + " |",
            "|---" * (2 * len(variants) + 1) + "|"]
  for lo in range(1, rl_steps + 1, w):
    span = (lo, min(lo + w - 1, rl_steps))
    cells = []
    for v in variants:
      for key in LENGTHS:
        cells.append(common.fmt([_window(r, key, *span) for r in by(v)], 2))
    lines.append(f"| {span[0]}–{span[1]} | " + " | ".join(cells) + " |")
  gold = [("SFT", [r["sft_gold"] for r in records if "sft_gold" in r and r["variant"] ==
                   variants[0]])]
  gold += [(f"final {v}", [r["gold"] for r in by(v) if "gold" in r]) for v in variants]
  lines += ["", "Held-out samples (G per prompt, RL temperature) of the SFT and final policies: "
            "length minus the prompt's gold-demonstration length, mean ± SE over seeds:", "",
            "| policy | seeds | sample acc | wrong: len | wrong: excess over gold | wrong: share "
            "longer than gold | wrong: share shorter | right: excess over gold | truncated |",
            "|---|---|---|---|---|---|---|---|---|"]
  for name, gs in gold:
    if not gs:
      continue
    col = lambda k: common.fmt([g[k] for g in gs], 2)  # noqa: E731
    lines.append(f"| {name} | {len(gs)} | {col('accuracy')} | {col('len_wrong')} | "
                 f"{col('excess_wrong')} | {col('longer_than_gold_wrong')} | "
                 f"{col('shorter_than_gold_wrong')} | {col('excess_right')} | "
                 f"{col('truncated')} |")
  lines += ["", "Eval accuracy (greedy, held-out), mean ± SE over seeds:", "",
            "| step | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
  curves = {v: common.curve(records, v, "eval_accuracy") for v in variants}
  steps = sorted(set.intersection(*(set(c[0].tolist()) for c in curves.values())))
  for t in steps:
    cells = []
    for v in variants:
      s, m, se = curves[v]
      i = s.tolist().index(t)
      cells.append(f"{m[i]:.3f} ± {se[i]:.3f}")
    lines.append(f"| {t} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _smoothed(records, variant: str, key: str, rl_steps: int):
  """Per-window (steps, mean, se) over seeds of `key`, as in the table."""
  w = max(1, rl_steps // 10)
  xs, ms, ses = [], [], []
  for lo in range(1, rl_steps + 1, w):
    hi = min(lo + w - 1, rl_steps)
    m, se, n = common.mean_se([_window(r, key, lo, hi) for r in records
                               if r["variant"] == variant])
    if n:
      xs.append((lo + hi) / 2)
      ms.append(m)
      ses.append(0.0 if np.isnan(se) else se)
  return np.asarray(xs), np.asarray(ms), np.asarray(ses)


def plot(records: list[dict], out: str, rl_steps: int) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  variants = [v for v in VARIANTS if any(r["variant"] == v for r in records)]
  colours = plt.get_cmap("tab10").colors
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for i, v in enumerate(variants):
    for key, style, kind in ((LENGTHS[0], "--", "wrong"), (LENGTHS[1], "-", "right")):
      x, m, se = _smoothed(records, v, key, rl_steps)
      ax.plot(x, m, style, color=colours[i], marker=".", label=f"{v}, {kind}")
      ax.fill_between(x, m - se, m + se, color=colours[i], alpha=0.15, linewidth=0)
  ax.set_xlabel("RL step (window means)")
  ax.set_ylabel("completion tokens of RL samples")
  ax.set_title("wrong (dashed) vs right (solid): mean ± SE over seeds")
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "lengths.png"), dpi=120)
  fig, ax = plt.subplots(figsize=(7, 4.5))
  common.plot_bands(ax, records, variants, "eval_accuracy")
  ax.set_xlabel("RL step")
  ax.set_ylabel("held-out greedy accuracy")
  ax.set_title("mean ± SE over seeds")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "accuracy.png"), dpi=120)
  plt.close("all")


def write(out: str, records: list[dict], rl_steps: int) -> None:
  os.makedirs(out, exist_ok=True)
  text = table(records, rl_steps)
  with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
    f.write(text + "\n")
  plot(records, out, rl_steps)
  print(text)


def main():
  p = common.parser(__doc__.splitlines()[0], out=OUT)
  p.add_argument("--rl_steps", type=int, default=80)
  p.add_argument("--gold_prompts", type=int, default=256,
                 help="held-out prompts (x group size) sampled for the gold-length comparison")
  args = p.parse_args()
  if args.replot:
    with open(os.path.join(args.out, "results.json"), encoding="utf-8") as f:
      write(args.out, json.load(f)["records"], args.rl_steps)
    return
  rl_steps = common.TINY["rl.steps"] if args.tiny else args.rl_steps
  steps = {} if args.tiny else {"rl.steps": args.rl_steps, **SETUP}
  variants = {k: {**v, **steps} for k, v in VARIANTS.items()}
  prompts = 16 if args.tiny else args.gold_prompts
  workdir = args.workdir or "/tmp/abl_credit_len"
  sft_gold = {}
  for seed in common.seeds_of(args):  # the SFT policy of each seed, shared by its variants
    sft_dir = os.path.join(workdir, f"seed{seed}", "sft")
    if os.path.exists(os.path.join(sft_dir, "metrics.jsonl")):
      sft_gold[seed] = excess_length(common.config_for(BASE, {"rl.steps": 0}, seed, args.tiny),
                                     sft_dir, "0", prompts=prompts, seed=seed)

  def after_run(run, run_dir, record):
    out = {"gold": excess_length(run.config, run_dir, "latest", prompts=prompts,
                                 seed=record["seed"])}
    if record["seed"] not in sft_gold:
      sft_gold[record["seed"]] = excess_length(
          common.config_for(BASE, {"rl.steps": 0}, record["seed"], args.tiny),
          os.path.join(workdir, f"seed{record['seed']}", "sft"), "0", prompts=prompts,
          seed=record["seed"])
    return {**out, "sft_gold": sft_gold[record["seed"]]}

  records = common.run_ablation(args, base=BASE, variants=variants, after_run=after_run,
                                name="abl_credit_len")
  common.save_results(args.out, records, {"rl_steps": rl_steps, "tiny": args.tiny,
                                          "machine": common.machine()})
  write(args.out, common.load_results(args.out), rl_steps)


if __name__ == "__main__":
  main()
