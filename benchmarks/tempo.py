"""Vectorized TEMPO (jitted) vs the literal loop walk of docs/ALGORITHMS.md.

    python benchmarks/tempo.py [--batch 1 --group 8 --length 1024]

Responses are grown as a prefix tree (each copies an earlier one up to a random branch point), so
groups share long prefixes as real samples do. Compile time is reported apart from run time.
"""

import argparse
import time

import jax
import numpy as np

from rlvr_jax.algorithms.advantages import tempo

EPS = 1e-6


def loop_tempo(tokens, rewards, mask):
  """Reference walk: for each response i and token t, B = {k ∈ P : y_k[t] = y_i[t]}, P ← B."""
  out = np.zeros(tokens.shape, np.float64)
  for b in range(tokens.shape[0]):
    y, r, m = tokens[b], rewards[b].astype(np.float64), mask[b]
    g, length = y.shape
    mu, sigma = r.mean(), np.std(r, ddof=1)
    for i in range(g):
      p = list(range(g))
      for t in range(length):
        if len(p) == 1:
          out[b, i, t] = (r[i] - mu) / (sigma + EPS) * m[i, t]
          continue
        members = [k for k in p if y[k, t] == y[i, t]]
        if m[i, t]:
          out[b, i, t] = (r[i] - mu + r[members].mean() - r[p].mean()) / (sigma + EPS)
        p = members
  return out


def tree_rollout(rng, batch, group, length, vocab=32_000):
  tokens = rng.integers(1, vocab, (batch, group, length)).astype(np.int32)
  for b in range(batch):
    for i in range(1, group):
      parent, branch = rng.integers(0, i), rng.integers(0, length)
      tokens[b, i, :branch] = tokens[b, parent, :branch]
  lengths = rng.integers(length // 2, length + 1, (batch, group))
  mask = (np.arange(length) < lengths[..., None]).astype(np.float32)
  rewards = rng.integers(0, 2, (batch, group)).astype(np.float32)
  rewards[:, :2] = [1.0, 0.0]  # non-degenerate groups
  return np.where(mask > 0, tokens, 0).astype(np.int32), rewards, mask


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--group", type=int, default=8)
  parser.add_argument("--length", type=int, default=1024)
  parser.add_argument("--repeats", type=int, default=50)
  args = parser.parse_args()
  tokens, rewards, mask = tree_rollout(np.random.default_rng(0), args.batch, args.group,
                                       args.length)
  inputs = [jax.device_put(x) for x in (tokens, rewards, mask)]

  start = time.perf_counter()
  compiled = jax.jit(tempo).lower(*inputs).compile()
  compile_s = time.perf_counter() - start
  compiled(*inputs).block_until_ready()
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    out = compiled(*inputs).block_until_ready()
    times.append(time.perf_counter() - start)
  vec_s = float(np.median(times))

  start = time.perf_counter()
  want = loop_tempo(tokens, rewards, mask)
  loop_s = time.perf_counter() - start
  max_err = float(np.max(np.abs(np.asarray(out) - want)))

  print(f"device: {jax.devices()[0].device_kind}  B={args.batch} G={args.group} "
        f"T={args.length}")
  print(f"vectorized (jit): compile {compile_s * 1e3:.1f} ms, run {vec_s * 1e3:.3f} ms "
        f"(median of {args.repeats})")
  print(f"loop reference:   {loop_s * 1e3:.1f} ms")
  print(f"speed-up: {loop_s / vec_s:.0f}x   max |diff| = {max_err:.2e}")


if __name__ == "__main__":
  main()
