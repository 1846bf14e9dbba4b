"""KV-cache decoding vs recomputing the full forward pass for every new token.

    python benchmarks/sampler.py [--batch 16 --prompt 32 --new 64 --layers 4 --d_model 256]

Both variants are jitted, produce the same greedy tokens (checked), and are timed after
compilation; prints the speed ratio.
"""

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax import models, sampling


def naive_greedy(c, params, prompts, n):
  """Greedy decoding that re-runs the whole sequence at each step (no cache)."""
  b, p = prompts.shape
  seq = jnp.concatenate([prompts, jnp.zeros((b, n), jnp.int32)], axis=1)

  def body(i, seq):
    mask = (jnp.arange(p + n) < p + i)[None].repeat(b, 0).astype(jnp.int32)
    logits = models.forward(c, params, seq, mask)
    nxt = jnp.argmax(logits[:, p + i - 1], axis=-1).astype(jnp.int32)
    return seq.at[:, p + i].set(nxt)

  return jax.lax.fori_loop(0, n, body, seq)[:, p:]


def _time(fn, repeats=5):
  jax.block_until_ready(fn())
  t0 = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn())
  return (time.perf_counter() - t0) / repeats


def main():
  ap = argparse.ArgumentParser()
  for name, default in [("batch", 16), ("prompt", 32), ("new", 64), ("layers", 4),
                        ("d_model", 256), ("vocab", 512)]:
    ap.add_argument(f"--{name}", type=int, default=default)
  a = ap.parse_args()
  c = models.ModelConfig(vocab_size=a.vocab, d_model=a.d_model, n_layers=a.layers, n_heads=8,
                         n_kv_heads=4, d_ff=4 * a.d_model)
  params = models.init_params(c, jax.random.key(0))
  prompts = jax.random.randint(jax.random.key(1), (a.batch, a.prompt), 3, a.vocab)
  mask = jnp.ones_like(prompts)
  cached = jax.jit(functools.partial(sampling.generate, c, max_new_tokens=a.new, temperature=0.0))
  naive = jax.jit(functools.partial(naive_greedy, c, n=a.new))
  np.testing.assert_array_equal(np.asarray(cached(params, prompts, mask, jax.random.key(0)).tokens),
                                np.asarray(naive(params, prompts)))
  t_cached = _time(lambda: cached(params, prompts, mask, jax.random.key(0)).tokens)
  t_naive = _time(lambda: naive(params, prompts))
  print(f"device: {jax.devices()[0].platform}  batch {a.batch}, prompt {a.prompt}, "
        f"new {a.new}, {a.layers} layers, d_model {a.d_model}")
  print(f"kv-cache decode: {t_cached * 1e3:8.1f} ms   full recompute: {t_naive * 1e3:8.1f} ms   "
        f"speed-up: {t_naive / t_cached:.1f}x")


if __name__ == "__main__":
  main()
