"""rlvr_jax's side of the peer benchmark: the fused GRPO step of `configs/bench.py:<size>`,
built by the run builder (`rlvr_jax.training.run.Run`) as `python -m rlvr_jax.main` builds it.

    python benchmarks/peers/rlvr_jax_grpo.py --size larger --steps 5 --warmup 2 --out r.json

Writes step times, the same phases timed alone (sample, learn), and this process's f32 matmul
peak, so FLOP/s can be reported against it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import sizes  # noqa: E402  (plain-Python workload table shared with the peers' scripts)
from phases import matmul_peak  # noqa: E402

from rlvr_jax.configs_base import load_config  # noqa: E402
from rlvr_jax.training.run import Run  # noqa: E402


def check_dims(run, name: str) -> dict:
  c, rl = run.model_config, run.config.rl
  dims = dict(vocab=c.vocab_size, d_model=c.d_model, d_ff=c.d_ff, layers=c.n_layers,
              heads=c.n_heads, kv_heads=c.n_kv_heads, prompts=rl.batch_size, group=rl.group_size,
              new_tokens=rl.max_new_tokens, prompt_len=run.shapes.prompt_len)
  want = {k: sizes.SIZES[name][k] for k in sizes.DIMS}
  if dims != want or c.qkv_bias != sizes.arch(name)["qkv_bias"] or not c.tie_embeddings:
    raise SystemExit(f"configs/bench.py disagrees with benchmarks/peers/sizes.py: {dims}, "
                     f"qkv_bias {c.qkv_bias}, tied {c.tie_embeddings} vs {want}, "
                     f"{sizes.arch(name)}")
  return dict(dims, head_dim=c.resolved_head_dim, qkv_bias=c.qkv_bias)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--size", default="larger", choices=sorted(sizes.SIZES))
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--warmup", type=int, default=2)
  ap.add_argument("--out", required=True)
  ap.add_argument("--phases", action="store_true", help="also time sample / learn alone")
  args = ap.parse_args()
  run = Run(load_config(os.path.join(ROOT, f"configs/bench.py:{args.size}")))
  dims = check_dims(run, args.size)
  it = iter(run.dataset("train", run.config.rl.batch_size, seed=0, shuffle=True, size=10_000))
  state = run.make_rl_state(run.init_params())
  step = run.compile_step(run._rl_step, state, with_rng=True)
  key = jax.random.key(0)
  times = []
  for i in range(args.warmup + args.steps):
    batch = run.device_batch(next(it))
    t0 = time.perf_counter()
    state, m = step(state, batch, jax.random.fold_in(key, i))
    jax.block_until_ready((state, m))
    times.append(time.perf_counter() - t0)
  lengths = float(m["completion_tokens"])
  phase_times = {}
  if args.phases:
    phases = run._rl_step.phases
    sample, learn = jax.jit(phases.sample), jax.jit(phases.learn)
    comp, greedy = sample(state, batch, key)
    rewards, greedy_rewards = jax.jit(phases.score)(batch, comp, greedy)
    for name, fn in [("sample", lambda: sample(state, batch, key)),
                     ("learn", lambda: learn(state, batch, comp, rewards, greedy_rewards, key))]:
      jax.block_until_ready(fn())
      phase_times[name] = []
      for _ in range(args.steps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        phase_times[name].append(time.perf_counter() - t0)
  result = dict(framework="rlvr_jax", version="main", jax=jax.__version__, size=args.size,
                step_times=times[args.warmup:], phase_times=phase_times, dims=dims,
                rows=dims["prompts"] * dims["group"], new_tokens=dims["new_tokens"],
                completion_lengths_checked=lengths == dims["new_tokens"],
                matmul_peak_flops=matmul_peak(),
                notes="fused step (sample + reward + advantage + 1 update in one jit); one "
                      "update per rollout, so behaviour log-probs come from the loss's own "
                      "forward (ratio 1) - the same maths as a separate old-logp forward")
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  print(f"rlvr_jax {args.size}: median step {np.median(result['step_times']):.3f} s over "
        f"{args.steps} steps; completions {lengths:.0f}/{dims['new_tokens']} tokens")


if __name__ == "__main__":
  main()
