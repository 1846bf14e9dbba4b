"""The RL step built as a new user builds it vs as the run builder (`Run.compile_step`, what
`benchmarks/peers/rlvr_jax_grpo.py` and `python -m rlvr_jax.main` run), timed interleaved in one
process (each round calls every variant once, in rotating order; medians and ratios to `run`; wall time and this process's CPU time, which other
processes on a busy machine disturb less).

    python benchmarks/plain_vs_run.py [--size tiny] [--rounds 60] [--variants plain,run,...]

Variants (each toggles one difference from `plain`; `run` is the bench path itself):
  plain        make_rl_step + create_state + jax.jit(step), a ModelConfig built from the dims
               (no valid_vocab_size), numpy batches passed straight to the call.
  plain_donate plain, with jax.jit(step, donate_argnums=0).
  plain_masked plain, with the run's ModelConfig (valid_vocab_size: the tokenizer's ids only).
  plain_device plain, the batch device_put before the call (as Run.device_batch does).
  plain_mesh   plain, traced under the run's mesh, shardings pinned (no donation).
  helper       `rlvr_jax.training.jit_rl_step` (what the plain API recommends), if present.
  run          Run.make_rl_state + Run.compile_step + Run.device_batch.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from rlvr_jax import models, parallel  # noqa: E402
from rlvr_jax.configs_base import load_config  # noqa: E402
from rlvr_jax.training import rl_step as rl_step_lib  # noqa: E402
from rlvr_jax.training.run import Run  # noqa: E402
from rlvr_jax.training.state import create_state, make_optimizer  # noqa: E402


def _cpu() -> float:
  """This process's user + system CPU seconds (less sensitive to other processes than wall)."""
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def build(name: str, run: Run, batches: list[dict[str, np.ndarray]]):
  """(call(state, i, rng) -> (state, metrics), state0) of one variant."""
  config = run.config
  optimizer = make_optimizer(config.rl.optimizer, config.rl.steps)
  ids = dict(eos_id=run.tokenizer.eos_id, pad_id=run.tokenizer.pad_id)
  if name == "run":
    state = run.make_rl_state(run.init_params())
    step = run.compile_step(run._rl_step, state, with_rng=True)
    dev = [run.device_batch(b) for b in batches]
    return (lambda s, i, rng: step(s, dev[i], rng)), state
  mc = run.model_config
  if name != "plain_masked":  # the dims a user writes, every id a real token
    mc = models.ModelConfig(**{f: getattr(mc, f) for f in (
        "vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "qkv_bias",
        "tie_embeddings", "unroll_layers")})
  fn = rl_step_lib.make_rl_step(config, mc, run.reward_fn, optimizer, **ids)
  params = models.init_params(mc, jax.random.key(0))
  state = create_state(params, optimizer, with_reference=False)
  if name == "helper":
    from rlvr_jax.training import jit_rl_step  # noqa: PLC0415
    step = jit_rl_step(fn)
  elif name == "plain_donate":
    step = jax.jit(fn, donate_argnums=0)
  elif name == "plain_mesh":
    shardings = jax.tree.map(lambda x: x.sharding, run.make_rl_state(run.init_params()))
    rep = parallel.replicated(run.mesh)
    step = jax.jit(parallel.traced_under_mesh(fn, run.mesh),
                   in_shardings=(shardings, parallel.batch_sharding(run.mesh, 1), rep),
                   out_shardings=(shardings, rep))
    state = jax.device_put(state, shardings)
  else:
    step = jax.jit(fn)
  if name == "plain_device":
    dev = [jax.device_put(b) for b in batches]
    return (lambda s, i, rng: step(s, dev[i], rng)), state
  return (lambda s, i, rng: step(s, batches[i], rng)), state


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--size", default="tiny")
  ap.add_argument("--rounds", type=int, default=60)
  ap.add_argument("--batches", type=int, default=8)
  ap.add_argument("--variants", default="plain,run")
  args = ap.parse_args()
  run = Run(load_config(os.path.join(ROOT, f"configs/bench.py:{args.size}")))
  it = iter(run.dataset("train", run.config.rl.batch_size, seed=0, shuffle=True, size=10_000))
  batches = [next(it) for _ in range(args.batches)]
  names = args.variants.split(",")
  calls, states = {}, {}
  for name in names:
    calls[name], states[name] = build(name, run, batches)
    for w in range(2):  # compile + one warm call
      states[name], m = calls[name](states[name], w, jax.random.key(w))
      jax.block_until_ready((states[name], m))
  times = {n: [] for n in names}
  cpu = {n: [] for n in names}
  print(f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
  for r in range(args.rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    for name in order:
      i = r % len(batches)
      c0, t0 = _cpu(), time.perf_counter()
      states[name], m = calls[name](states[name], i, jax.random.key(100 + r))
      jax.block_until_ready((states[name], m))
      times[name].append(time.perf_counter() - t0)
      cpu[name].append(_cpu() - c0)
  ref = "run" if "run" in names else names[-1]
  base, cpu_base = float(np.median(times[ref])), float(np.median(cpu[ref]))
  print(f"size {args.size}, {args.rounds} rounds, load average at end {os.getloadavg()[0]:.2f}")
  for name in names:
    med = float(np.median(times[name]))
    c = float(np.median(cpu[name]))
    print(f"{name:13s} wall median {med * 1e3:8.2f} ms (p25 {np.percentile(times[name], 25) * 1e3:7.2f})"
          f" ratio {med / base:.3f} | process CPU median {c * 1e3:8.2f} ms ratio {c / cpu_base:.3f}")


if __name__ == "__main__":
  main()
