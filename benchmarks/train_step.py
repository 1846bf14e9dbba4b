"""One compiled RL step vs the usual split pipeline, measured side by side in one process.

    python benchmarks/train_step.py [--steps 20] [--config configs/quickstart.py]

fused:        rl_step = sample -> reward -> advantage -> update, one jax.jit call per step.
split (jit):  jit(sample), jit(score), jit(learn): three dispatches, rewards stay on device.
split (host): jit(sample), decode + Python verifier on host (what most frameworks do),
              jit(learn).
Prints seconds per step and each variant's ratio to the fused step (compile time excluded).
"""

import argparse
import time

import jax
import numpy as np

from rlvr_jax.configs_base import load_config
from rlvr_jax.data.tasks.base import decode_completion
from rlvr_jax.training.run import Run


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/quickstart.py")
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args()
  run = Run(load_config(args.config))
  phases = run._rl_step.phases
  it = iter(run.dataset("train", run.config.rl.batch_size, seed=0, shuffle=True, size=100_000))
  batches = [run.device_batch(next(it)) for _ in range(args.steps + 1)]
  g = run.config.rl.group_size
  def host_rewards(batch_index, comp):
    """The addition task's rule (text after the last '#' equals the answer), in Python."""
    tokens, mask = np.asarray(comp.tokens), np.asarray(comp.mask)
    answers = np.asarray(batches[batch_index]["answer_ids"]).repeat(g, 0)
    out = np.zeros(len(tokens), np.float32)
    for i in range(len(tokens)):
      text = decode_completion(run.tokenizer, tokens[i], mask[i])
      gold = run.tokenizer.decode([t for t in answers[i] if t != run.tokenizer.pad_id])
      out[i] = float(text is not None and text.split("#")[-1] == gold)
    return out.reshape(-1, g)

  fused = jax.jit(run._rl_step, donate_argnums=0)
  sample, score = jax.jit(phases.sample), jax.jit(phases.score)
  learn = jax.jit(phases.learn, donate_argnums=0)

  def fused_step(state, i, rng):
    return fused(state, batches[i], rng)

  def split_jit_step(state, i, rng):
    r1, r2 = jax.random.split(rng)
    comp, greedy = sample(state, batches[i], r1)
    rewards, greedy_rewards = score(batches[i], comp, greedy)
    return learn(state, batches[i], comp, rewards, greedy_rewards, r2)

  def split_host_step(state, i, rng):
    r1, r2 = jax.random.split(rng)
    comp, _ = sample(state, batches[i], r1)
    rewards = jax.device_put(host_rewards(i, comp))
    return learn(state, batches[i], comp, rewards, None, r2)

  results = {}
  for name, fn in [("fused", fused_step), ("split (jit)", split_jit_step),
                   ("split (host)", split_host_step)]:
    state = run.make_rl_state(run.init_params())
    t0 = time.perf_counter()
    state, m = fn(state, 0, jax.random.key(0))
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(1, args.steps + 1):
      state, m = fn(state, i, jax.random.key(i))
      jax.block_until_ready(m)
    results[name] = ((time.perf_counter() - t0) / args.steps, compile_s)
  base = results["fused"][0]
  print(f"device: {jax.devices()[0].platform}  rollouts/step: {run.config.rl.batch_size * g}  "
        f"steps timed: {args.steps}")
  for name, (per_step, compile_s) in results.items():
    print(f"{name:14s} {per_step * 1e3:8.1f} ms/step  (first call incl. compile {compile_s:.1f} s)"
          f"  ratio to fused: {per_step / base:.2f}x")


if __name__ == "__main__":
  main()
