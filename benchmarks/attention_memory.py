"""Compile-only memory of a teacher-forced loss + gradient, one-block vs blockwise attention.

    python benchmarks/attention_memory.py --lengths 2048,8192,16384

Nothing is allocated: inputs are `jax.ShapeDtypeStruct`s, each variant is lowered and compiled
on CPU and `memory_analysis()` read. "one block" is `model.attention_chunk = t` (today's path:
[b, k, g, t, s] float32 scores); the others run queries in blocks of `chunk`. `--path
completion` runs `completion_hidden_states` (one prompt of `--prompt` tokens, `--group`
completions of t tokens) instead of `hidden_states` over t tokens. `--time N` also times N
forward + backward runs of each variant (allocates; CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax import models

MiB = 2**20


def _model(chunk: int) -> models.ModelConfig:
  return models.ModelConfig(vocab_size=256, d_model=256, n_layers=2, n_heads=4, n_kv_heads=2,
                            d_ff=1024, remat="full", attention_chunk=chunk)


def _loss_and_grad(c: models.ModelConfig, path: str, prompt: int, group: int):
  """jitted (params, tokens, mask) -> (mean next-token NLL, gradient)."""
  def loss(params, tokens_nt, mask_nt):
    if path == "hidden":
      logits = models.forward(c, params, tokens_nt, mask_nt)[:, :-1]
      targets, weights = tokens_nt[:, 1:], mask_nt[:, 1:]
    else:
      prompt_bp = jnp.zeros((1, prompt), jnp.int32)
      h = models.completion_hidden_states(c, params, prompt_bp, jnp.ones_like(prompt_bp),
                                          tokens_nt, mask_nt)
      logits = models.logits_from_hidden(c, params, h)
      targets, weights = tokens_nt, mask_nt
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
    return -jnp.sum(logp * weights) / jnp.sum(weights)
  return jax.jit(jax.value_and_grad(loss))


def measure(t: int, chunk: int, path: str, prompt: int, group: int) -> dict:
  c = _model(chunk)
  params = jax.eval_shape(lambda: models.init_params(c, jax.random.key(0)))
  rows = 1 if path == "hidden" else group
  tokens = jax.ShapeDtypeStruct((rows, t), jnp.int32)
  start = time.perf_counter()
  compiled = _loss_and_grad(c, path, prompt, group).lower(params, tokens, tokens).compile()
  m = compiled.memory_analysis()
  return dict(path=path, t=t, chunk=chunk, temp_mib=m.temp_size_in_bytes / MiB,
              args_mib=m.argument_size_in_bytes / MiB, out_mib=m.output_size_in_bytes / MiB,
              compile_s=time.perf_counter() - start)


def timed(t: int, chunks: list[int], repeats: int) -> dict[int, float]:
  """Median seconds of forward + backward at length t, variants interleaved."""
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 256, (1, t)), jnp.int32)
  mask = jnp.ones_like(tokens)
  params = models.init_params(_model(0), jax.random.key(0))
  fns = {chunk: _loss_and_grad(_model(chunk), "hidden", 0, 1) for chunk in chunks}
  for f in fns.values():
    jax.block_until_ready(f(params, tokens, mask))
  times = {chunk: [] for chunk in chunks}
  for _ in range(repeats):
    for chunk, f in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(f(params, tokens, mask))
      times[chunk].append(time.perf_counter() - start)
  return {chunk: float(np.median(ts)) for chunk, ts in times.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--lengths", default="2048,8192,16384")
  parser.add_argument("--chunks", default="512", help="blockwise variants (queries per block)")
  parser.add_argument("--path", choices=("hidden", "completion"), default="hidden")
  parser.add_argument("--prompt", type=int, default=512)
  parser.add_argument("--group", type=int, default=2)
  parser.add_argument("--time", type=int, default=0, help="timed repeats (0: memory only)")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  chunks = [int(x) for x in args.chunks.split(",")]
  results = []
  for t in (int(x) for x in args.lengths.split(",")):
    one = t + args.prompt  # a chunk >= every attention's query count: one block each
    for chunk in [one] + chunks:
      r = measure(t, chunk, args.path, args.prompt, args.group)
      results.append(r)
      label = "one block" if chunk == one else f"chunk {chunk}"
      print(f"{args.path} t={t:6d} {label:>10}: temp {r['temp_mib']:10.1f} MiB  "
            f"args {r['args_mib']:.1f} MiB  (compile {r['compile_s']:.0f} s)", flush=True)
    if args.time:
      secs = timed(t, [one] + chunks, args.time)
      print(f"  forward + backward, median of {args.time}: "
            + ", ".join(f"{'one block' if k == one else k}: {v:.3f} s" for k, v in secs.items()),
            flush=True)
      results.append(dict(path="hidden", t=t, seconds={str(k): v for k, v in secs.items()}))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(dict(device=str(jax.devices()[0]), results=results), f, indent=1)


if __name__ == "__main__":
  main()
