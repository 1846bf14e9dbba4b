"""rlvr_jax's jitted KV-cache sampler vs `transformers` `generate` on the same weights.

    python benchmarks/peers/sampler_vs_hf.py [--batches 1,32 --new 128 --rounds 5]

A random Qwen2-like model (d 256, 4 layers, 8q/4kv heads, ffn 1024, vocab 2048, tied) is
exported with `rlvr_jax.checkpoints.hf.save` and loaded by `AutoModelForCausalLM`; both decode
`--new` tokens greedily from the same 16-token prompts, the tokens are checked identical, and
each call is timed (rlvr_jax after compilation; torch eager, the default `generate`, 2 threads),
interleaved round by round. Needs the [hf] extra (torch CPU + transformers).
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from rlvr_jax import models, sampling
from rlvr_jax.checkpoints import hf


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batches", default="1,32")
  ap.add_argument("--new", type=int, default=128)
  ap.add_argument("--prompt", type=int, default=16)
  ap.add_argument("--rounds", type=int, default=5)
  args = ap.parse_args()
  c = models.ModelConfig(vocab_size=2048, d_model=256, n_layers=4, n_heads=8, n_kv_heads=4,
                         d_ff=1024, qkv_bias=True, tie_embeddings=True)
  # Scaled-up random weights: confident argmaxes, so float rounding never flips a greedy token.
  params = jax.tree.map(lambda x: x * 4 if x.ndim > 1 else x,
                        models.init_params(c, jax.random.key(0)))
  with tempfile.TemporaryDirectory() as d:
    hf.save(d, c, jax.tree.map(np.asarray, params))
    model = transformers.AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32)
  model.eval()
  ours = jax.jit(functools.partial(sampling.generate, c, max_new_tokens=args.new,
                                   temperature=0.0))
  print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers "
        f"{transformers.__version__}, jax {jax.__version__}; d 256, 4 layers, {args.new} new "
        f"tokens, greedy")
  print("| batch | rlvr_jax s | transformers generate s | speed-up | tokens identical |")
  print("|---|---|---|---|---|")
  for b in [int(x) for x in args.batches.split(",")]:
    prompts = np.asarray(jax.random.randint(jax.random.key(b), (b, args.prompt), 3, 2048))
    mask = np.ones_like(prompts)
    jax_tokens = np.asarray(ours(params, prompts, mask, jax.random.key(0)).tokens)

    def run_hf():
      with torch.inference_mode():
        out = model.generate(torch.from_numpy(prompts).long(),
                             attention_mask=torch.from_numpy(mask).long(), do_sample=False,
                             max_new_tokens=args.new, min_new_tokens=args.new, pad_token_id=0)
      return out[:, args.prompt:].numpy()

    identical = bool((run_hf() == jax_tokens).all())
    t_ours, t_hf = [], []
    for _ in range(args.rounds):
      t0 = time.perf_counter()
      jax.block_until_ready(ours(params, prompts, mask, jax.random.key(0)).tokens)
      t_ours.append(time.perf_counter() - t0)
      t0 = time.perf_counter()
      run_hf()
      t_hf.append(time.perf_counter() - t0)
    a, h = float(np.median(t_ours)), float(np.median(t_hf))
    print(f"| {b} | {a:.3f} | {h:.3f} | {h / a:.1f}x | {identical} |", flush=True)


if __name__ == "__main__":
  main()
