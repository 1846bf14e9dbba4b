"""The sampler on LoRA weights: merged once per call (what `sampling.generate` does) vs unmerged.

    python benchmarks/lora_sampler.py [--d-model 512 --layers 8 --batch 16 --group 4
        --prompt 64 --new 128 --rank 16 --repeats 5]

Both variants run the real `sampling.generate` (prefill + KV-cache decode loop) on a random model
with rank-r adapters on every linear weight (B moved off zero), once with `lora.sampler`
"merged" and once "unmerged" (the decode step then runs x W + ((x A) B)·α/r for every adapted
weight and token). Prints the median wall time of each after a warm-up call,
and checks that both sampled the same tokens. Wall times depend on the machine and its load;
benchmarks/MEMORY.md records a run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax import models, sampling
from rlvr_jax.models import lora


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--d-model", type=int, default=512)
  parser.add_argument("--layers", type=int, default=8)
  parser.add_argument("--vocab", type=int, default=4096)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--group", type=int, default=4)
  parser.add_argument("--prompt", type=int, default=64)
  parser.add_argument("--new", type=int, default=128)
  parser.add_argument("--rank", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  d = args.d_model
  c = models.ModelConfig(vocab_size=args.vocab, d_model=d, n_layers=args.layers,
                         n_heads=d // 64, n_kv_heads=max(1, d // 256), d_ff=4 * d)
  params = models.init_params(c, jax.random.key(0))
  prompts = jax.random.randint(jax.random.key(3), (args.batch, args.prompt), 0, args.vocab)
  mask = jnp.ones_like(prompts)

  def sample(p):
    return sampling.generate(c, p, prompts, mask, jax.random.key(4), max_new_tokens=args.new,
                             num_samples=args.group)

  results = {}
  for name in ("merged", "unmerged"):
    adapters = lora.init(c, lora.LoraConfig(rank=args.rank, alpha=2.0 * args.rank, sampler=name),
                         jax.random.key(1))
    adapters = jax.tree.map(lambda x: x + 0.01 * jax.random.normal(jax.random.key(2), x.shape),
                            adapters)
    adapted = lora.attach(params, adapters)
    fn = jax.jit(sample)
    comp = jax.block_until_ready(fn(adapted))  # compile + warm-up
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(fn(adapted))
      times.append(time.perf_counter() - t0)
    results[name] = (statistics.median(times), np.asarray(comp.tokens))
    print(f"{name:9s} median {results[name][0] * 1e3:8.1f} ms over {args.repeats} calls "
          f"({args.batch * args.group} rows x {args.new} tokens, d {d}, {args.layers} layers, "
          f"rank {args.rank}, {jax.devices()[0].platform})", flush=True)
  same = np.array_equal(results["merged"][1], results["unmerged"][1])
  print(f"same tokens: {same}; unmerged / merged time: "
        f"{results['unmerged'][0] / results['merged'][0]:.2f}")


if __name__ == "__main__":
  main()
