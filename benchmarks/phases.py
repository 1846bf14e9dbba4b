"""Where the RL step's time goes: each phase jitted alone, the fused step, and achieved FLOP/s
against this machine's matmul peak measured in the same process.

    python benchmarks/phases.py --config configs/bench.py:larger [--steps 10] [--trace DIR]
        [--set FIELD=VALUE ...]

Phases (the same code the fused step runs, from `rl_step.phases`): sample (prefill + KV-cache
decode), score (jittable reward), learn (log-probs, advantages, one PPO update). FLOPs are counted
analytically from the model dims (matmuls only: 2 x params-in-matmuls per token, plus attention's
QK^T and PV), so the FLOP/s figures are comparable across frameworks doing the same work.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax.configs_base import load_config
from rlvr_jax.training.run import Run


def matmul_flops_per_token(c, context: float) -> float:
  """Forward matmul FLOPs for one token attending to `context` keys."""
  e = c.resolved_head_dim
  per_layer = c.d_model * e * (2 * c.n_heads + 2 * c.n_kv_heads) + 3 * c.d_model * c.d_ff
  attention = 2 * c.n_heads * e * context
  return 2 * (c.n_layers * per_layer + c.d_model * c.vocab_size) + 2 * c.n_layers * attention


def step_flops(run) -> dict[str, float]:
  """Forward/backward FLOPs of the work every framework does in one GRPO step."""
  c, rl = run.model_config, run.config.rl
  rows = rl.batch_size * rl.group_size
  p, n = run.shapes.prompt_len, rl.max_new_tokens
  seq = p + n
  # Sampling: prefill p tokens (causal: mean context p/2), then n decode tokens.
  sample = rows * (p * matmul_flops_per_token(c, p / 2) +
                   sum(matmul_flops_per_token(c, p + i) for i in range(n)))
  # Training: one teacher-forced forward of the full sequence, backward = 2x forward.
  forward = rows * seq * matmul_flops_per_token(c, seq / 2)
  return {"sample": sample, "learn": 3 * forward, "total": sample + 3 * forward}


def matmul_peak(dim: int = 1024, repeats: int = 30) -> float:
  """Best f32 FLOP/s of a square jitted matmul on this backend (the roofline we report
  against)."""
  a = jax.random.normal(jax.random.key(0), (dim, dim), jnp.float32)
  f = jax.jit(lambda x: x @ a * (1.0 / dim))
  x = f(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    x = f(x).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * dim**3 / best


def print_top_ops(directory: str, fn, top: int = 25) -> None:
  """Runs `fn` under `jax.profiler` and prints the XLA ops (thunks) by total time."""
  import collections
  import glob
  import gzip
  with jax.profiler.trace(directory, create_perfetto_trace=True):
    fn()
  path = sorted(glob.glob(os.path.join(directory, "**", "*.json.gz"), recursive=True))[-1]
  with gzip.open(path) as f:
    events = json.load(f)["traceEvents"]
  total, count = collections.Counter(), collections.Counter()
  for e in events:
    if e.get("ph") == "X" and not e["name"].startswith(("$", "Thunk", "Slinky", "Pjit")):
      total[e["name"]] += e["dur"]
      count[e["name"]] += 1
  print(f"XLA ops by total time over 2 fused steps ({path}):")
  for name, us in total.most_common(top):
    print(f"  {us / 2e3:9.1f} ms/step {count[name] // 2:6d} calls/step  {name}")


def timeit(fn, steps: int) -> list[float]:
  times = []
  for i in range(steps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(i))
    times.append(time.perf_counter() - t0)
  return times


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--config", default="configs/bench.py:larger")
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--trace", default="", help="also profile 2 fused steps into this directory "
                  "and print the XLA ops that took longest")
  ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                  help="override a config field, e.g. --set model.decode_cache_segments=4")
  args = ap.parse_args()
  config = load_config(args.config)
  for item in args.set:
    field, _, value = item.partition("=")
    try:  # a Python literal (4, 1e-3, False, None), else the string itself
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass
    config.update_from_flattened_dict({field: value})
  run = Run(config)
  phases = run._rl_step.phases
  it = iter(run.dataset("train", run.config.rl.batch_size, seed=0, shuffle=True, size=10_000))
  batch = run.device_batch(next(it))
  state = run.make_rl_state(run.init_params())
  sample = jax.jit(phases.sample)
  score = jax.jit(phases.score)
  learn = jax.jit(phases.learn)
  fused = run.compile_step(run._rl_step, state, with_rng=True)
  key = jax.random.key(0)
  comp, greedy = sample(state, batch, key)
  rewards, greedy_rewards = score(batch, comp, greedy)
  jax.block_until_ready(learn(state, batch, comp, rewards, greedy_rewards, key))
  results = {
      "sample": timeit(lambda i: sample(state, batch, jax.random.key(i)), args.steps),
      "score": timeit(lambda i: score(batch, comp, greedy), args.steps),
      "learn": timeit(lambda i: learn(state, batch, comp, rewards, greedy_rewards, key),
                      args.steps),
  }
  holder = {"state": state}

  def fused_step(i):
    holder["state"], m = fused(holder["state"], batch, jax.random.key(i))
    return m

  fused_step(0)
  results["fused step"] = timeit(fused_step, args.steps)
  if args.trace:
    print_top_ops(args.trace, lambda: [jax.block_until_ready(fused_step(i)) for i in range(2)])
  flops = step_flops(run)
  peak = matmul_peak()
  print(f"config {args.config}: {jax.devices()[0].platform}, matmul peak {peak / 1e9:.0f} GFLOP/s"
        f" (1024^2 f32, same process)")
  for name, times in results.items():
    med = float(np.median(times))
    work = {"sample": flops["sample"], "learn": flops["learn"],
            "fused step": flops["total"]}.get(name)
    extra = (f"  {work / 1e9:6.1f} GFLOP  {work / med / 1e9:6.1f} GFLOP/s  "
             f"{100 * work / med / peak:5.1f}% of peak") if work else ""
    print(f"{name:11s} median {med * 1e3:8.1f} ms (min {min(times) * 1e3:8.1f}){extra}")


if __name__ == "__main__":
  main()
