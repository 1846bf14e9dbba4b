"""BroRL: N rollouts a prompt at equal samples a step (N ∈ {16, 64, 256, 512}, 3 seeds).

    python experiments/brorl_n.py [--seeds 0,1,2] [--variants n16,n64,n256,n512]
        [--rl_steps 100] [--samples 512] [--timing_batches 6] [--workdir /tmp/brorl_n] [--tiny]
    python experiments/brorl_n.py --replot   # tables and plots from --out/results.json

The claim (Hu et al. 2025, "BroRL: Scaling Reinforcement Learning via Broadened Exploration",
arXiv 2510.01180): scaling the rollouts a prompt N to hundreds gives continued gains where more
steps at N = 16 plateau; at equal training time large N is more data- and compute-efficient:
fewer groups are all right or all wrong (fewer filtered by dynamic sampling), and generation is
compute-bound (NVIDIA's blog: nearly 2x throughput).

Setup: the quickstart (configs/quickstart.py: 3-digit addition with a scratchpad, its tiny model,
one SFT a seed to 50% held-out accuracy, shared by the seed's variants), then RL with `--samples`
completions a step (default 512) as `--samples / N` prompts x N: 32 x 16, 8 x 64, 2 x 256,
1 x 512. Everything else is the same for every N: GRPO, the quickstart's lr schedule and 4
minibatches a step, `dynamic_sampling="mask"` (zero-variance groups leave the loss; their share
is the logged `dynamic_sampling_kept_frac`), in-flight refill sampling (`rl.decode_refill`, the
automatic slots: 32 rows of 512 decoding at once), the behaviour log-prob pass in 16 chunks of
32 rows and 128 rows a micro-batch. So large N sees fewer distinct prompts: 512 / N a step.

Outputs (into --out): results.json (every run's metrics rows, the sampling timing), table.md,
accuracy.png (held-out greedy accuracy against RL steps), groups.png (solve_none_frac,
solve_all_frac, kept fraction and train reward against steps). Sampling throughput is measured
apart from the runs on each seed's SFT policy: the jitted sampler of each N on the same number
of rows, ABBA-interleaved over `--timing_batches` batches, generated tokens a second.
`--tiny`: 16 samples a step as N ∈ {2, 4, 8, 16}, 4 RL steps (the test's smoke run).
Not run by the author of this script: the lead schedules the full run; the README with the
verdict is written from its results.
"""

from __future__ import annotations

import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from experiments import common  # noqa: E402

NAME = "brorl_n"
BASE = "configs/quickstart.py"
OUT = os.path.join(ROOT, "experiments", "results", NAME)
NS, TINY_NS = (16, 64, 256, 512), (2, 4, 8, 16)
GROUP_KEYS = ("solve_none_frac", "solve_all_frac", "dynamic_sampling_kept_frac", "reward_mean")


def variants(samples: int, ns, rl_steps: int | None, chunk_rows: int = 32) -> dict[str, dict]:
  """n<N> -> overrides: samples / N prompts x N, the settings every N shares; the frozen pass
  in chunks of `chunk_rows` rows (as near as N allows: a chunk takes N / chunks samples of each
  prompt)."""
  out = {}
  for n in ns:
    out[f"n{n}"] = {
        "rl.batch_size": samples // n, "rl.group_size": n, "rl.minibatches": 4,
        "rl.microbatches": max(1, samples // 4 // 128), "rl.decode_refill": True,
        "rl.frozen_pass_chunks": min(n, max(1, samples // chunk_rows)),
        "algorithm.dynamic_sampling": "mask",
        **({"rl.steps": rl_steps} if rl_steps else {})}
  return out


# ---------------------------------------------------------------------------------------------
# Sampling throughput
# ---------------------------------------------------------------------------------------------
def time_sampling(args, seed: int, sft_dir: str, chosen: dict[str, dict]) -> dict:
  """Per variant on the seed's SFT policy: the jitted sampler (refill, the step's settings) on
  `args.timing_batches` batches of its own prompts (the same number of rows for every N),
  ABBA-interleaved; median seconds a call and generated tokens a second."""
  import jax
  from rlvr_jax import sampling
  from rlvr_jax.training import warm_start
  from rlvr_jax.training.rollout import StepSpec
  from rlvr_jax.training.run import Run
  fns, batches = {}, {}
  for v, overrides in chosen.items():
    run = Run(common.config_for(BASE, overrides, seed, args.tiny))
    params, _ = warm_start.load_sft(run, sft_dir)
    spec = StepSpec.from_config(run.config, run.model_config, run.reward_fn,
                                {"policy": run.rl_optimizer}, eos_id=run.tokenizer.eos_id,
                                pad_id=run.tokenizer.pad_id)
    gen = jax.jit(lambda p, b, r, spec=spec: sampling.generate(
        spec.model_config, p, b["prompt_ids"], b["prompt_mask"], r,
        num_samples=spec.group_size, **spec.sample_kw).mask.sum())
    fns[v] = (gen, params)
    it = iter(run.rl_dataset())
    batches[v] = [run.device_batch(next(it)) for _ in range(args.timing_batches + 1)]
  seconds = {v: [] for v in chosen}
  tokens = {v: [] for v in chosen}
  order = list(chosen)
  for i in range(args.timing_batches + 1):
    rng = jax.random.key(2000 + i)
    for v in (order if i % 2 == 0 else order[::-1]):
      gen, params = fns[v]
      t0 = time.perf_counter()
      n_tokens = float(jax.block_until_ready(gen(params, batches[v][i], rng)))
      if i:  # the first call compiles
        seconds[v].append(time.perf_counter() - t0)
        tokens[v].append(n_tokens)
  return {"seconds": seconds, "tokens": tokens, "load_avg": os.getloadavg(),
          "median_s": {v: float(np.median(s)) for v, s in seconds.items()},
          "tokens_per_s": {v: float(np.sum(tokens[v]) / np.sum(seconds[v])) for v in chosen}}


# ---------------------------------------------------------------------------------------------
# Tables and plots
# ---------------------------------------------------------------------------------------------
def _rl(record: dict, key: str, last_frac: float = 1.0) -> float:
  """Mean of an RL metric over the run's steps (the last `last_frac` of them)."""
  vals = [r[key] for r in record["rows"] if r.get("phase") == "rl" and key in r]
  if not vals:
    return float("nan")
  return float(np.mean(vals[int(len(vals) * (1 - last_frac)):]))


def _final_acc(record: dict) -> float:
  return [r["eval_accuracy"] for r in record["rows"] if "eval_accuracy" in r][-1]


def table(records: list[dict], timing: dict, samples: int) -> list[str]:
  present = sorted({r["variant"] for r in records}, key=lambda v: int(v[1:]))
  by = lambda v: [r for r in records if r["variant"] == v]  # noqa: E731
  lines = [f"{samples} samples a step as (prompts x N); mean ± SE over seeds.", "",
           "| | " + " | ".join(f"{v} ({samples // int(v[1:])} x {v[1:]})" for v in present)
           + " |", "|---|" + "---|" * len(present)]
  rows = [("seeds", lambda rs: ",".join(str(r["seed"]) for r in rs)),
          ("held-out greedy accuracy after SFT",
           lambda rs: common.fmt([r["summary"]["sft_eval_accuracy"] for r in rs])),
          ("held-out greedy accuracy, final", lambda rs: common.fmt([_final_acc(r) for r in rs])),
          ("best held-out accuracy", lambda rs: common.fmt(
              [max(x["eval_accuracy"] for x in r["rows"] if "eval_accuracy" in x) for r in rs]))]
  for key in GROUP_KEYS + ("sample_entropy",):
    rows.append((f"{key}, mean over RL steps",
                 lambda rs, key=key: common.fmt([_rl(r, key) for r in rs])))
  rows.append(("train reward, last 10% of steps",
               lambda rs: common.fmt([_rl(r, "reward_mean", 0.1) for r in rs])))
  rows.append(("median RL step (s)",
               lambda rs: common.fmt([r["summary"]["median_step_time_s"] for r in rs], 2)))
  for label, fn in rows:
    lines.append(f"| {label} | " + " | ".join(fn(by(v)) for v in present) + " |")
  if timing:
    lines += ["", "Sampling alone on each seed's SFT policy (same rows for every N, "
              "ABBA-interleaved; mean ± SE over seeds of each seed's value):", "",
              "| | " + " | ".join(present) + " |", "|---|" + "---|" * len(present)]
    for label, key, digits in (("generated tokens / s", "tokens_per_s", 0),
                               ("seconds a call, median", "median_s", 3)):
      cells = [common.fmt([t[key][v] for t in timing.values() if v in t[key]], digits)
               for v in present]
      lines.append(f"| {label} | " + " | ".join(cells) + " |")
  lines += common.curve_table(records, present, "eval_accuracy", "accuracy.png")
  return lines


def plot(records: list[dict], out: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  present = sorted({r["variant"] for r in records}, key=lambda v: int(v[1:]))
  fig, ax = plt.subplots(figsize=(7, 4.5))
  common.plot_bands(ax, records, present, "eval_accuracy")
  ax.set_xlabel("RL step")
  ax.set_ylabel("held-out greedy accuracy")
  ax.set_title("equal samples a step: mean ± SE over seeds")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "accuracy.png"), dpi=120)
  fig, axes = plt.subplots(2, 2, figsize=(10, 7))
  for ax, key in zip(axes.ravel(), GROUP_KEYS):
    common.plot_bands(ax, records, present, key)
    ax.set_xlabel("RL step")
    ax.set_ylabel(key)
  axes[0, 0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "groups.png"), dpi=120)
  plt.close("all")


def write(out: str, records: list[dict], timing: dict, samples: int) -> None:
  os.makedirs(out, exist_ok=True)
  lines = table(records, timing, samples)
  with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  plot(records, out)
  print("\n".join(lines))


def main():
  p = common.parser(__doc__.splitlines()[0], out=OUT)
  p.add_argument("--rl_steps", type=int, default=100)
  p.add_argument("--samples", type=int, default=512, help="completions a step (all N)")
  p.add_argument("--timing_batches", type=int, default=6,
                 help="batches each N's sampler is timed on, per seed (0: no timing)")
  args = p.parse_args()
  if args.replot:
    with open(os.path.join(args.out, "results.json"), encoding="utf-8") as f:
      data = json.load(f)
    write(args.out, data["records"], data.get("timing", {}), data["samples"])
    return
  samples = 16 if args.tiny else args.samples
  if args.tiny:
    args.timing_batches = min(args.timing_batches, 2)
  ns = [n for n in (TINY_NS if args.tiny else NS) if samples % n == 0]
  all_variants = variants(samples, ns, None if args.tiny else args.rl_steps,
                          chunk_rows=4 if args.tiny else 32)
  chosen = args.variants.split(",") if args.variants else list(all_variants)
  timing = {}

  def prepare(seed, sft_dir):
    if args.timing_batches:
      timing[str(seed)] = time_sampling(args, seed, sft_dir,
                                        {v: all_variants[v] for v in chosen if v in all_variants})
      print(json.dumps({"seed": seed, "tokens_per_s": timing[str(seed)]["tokens_per_s"]}),
            flush=True)
    return {}

  records = common.run_ablation(args, base=BASE, variants=all_variants, prepare=prepare,
                                name=NAME)
  rl_steps = common.TINY["rl.steps"] if args.tiny else args.rl_steps
  path = common.save_results(args.out, records, {
      "samples": samples, "rl_steps": rl_steps, "tiny": args.tiny, "machine": common.machine()})
  with open(path, encoding="utf-8") as f:  # merged with earlier runs' records
    data = json.load(f)
  data["timing"] = {**data.get("timing", {}), **timing}
  with open(path, "w", encoding="utf-8") as f:
    json.dump(data, f, indent=1, allow_nan=False)
  write(args.out, data["records"], data["timing"], samples)


if __name__ == "__main__":
  main()
