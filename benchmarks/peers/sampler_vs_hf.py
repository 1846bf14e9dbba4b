"""rlvr_jax's jitted KV-cache sampler vs `transformers` `generate` on the same weights.

    python benchmarks/peers/sampler_vs_hf.py [--batches 1,32 --new 128 --rounds 5 --segments 0,1]

A random Qwen2-like model (d 256, 4 layers, 8q/4kv heads, ffn 1024, vocab 2048, tied) is
exported with `rlvr_jax.checkpoints.hf.save` and loaded by `AutoModelForCausalLM`; both decode
`--new` tokens greedily from the same 16-token prompts, the tokens are checked identical, and
each call is timed (rlvr_jax after compilation; torch eager, the default `generate`, 2 threads),
interleaved round by round. `--segments` lists `model.decode_cache_segments` values to time
side by side (0: the automatic default; 1: one decode loop over the whole cache); the speed-up
column is the first value's. Needs the [hf] extra (torch CPU + transformers).
"""

from __future__ import annotations

import argparse
import dataclasses
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
  ap.add_argument("--segments", default="0", help="decode_cache_segments values, e.g. 0,1")
  args = ap.parse_args()
  segments = [int(x) for x in args.segments.split(",")]
  c = models.ModelConfig(vocab_size=2048, d_model=256, n_layers=4, n_heads=8, n_kv_heads=4,
                         d_ff=1024, qkv_bias=True, tie_embeddings=True)
  # Scaled-up random weights: confident argmaxes, so float rounding never flips a greedy token.
  params = jax.tree.map(lambda x: x * 4 if x.ndim > 1 else x,
                        models.init_params(c, jax.random.key(0)))
  with tempfile.TemporaryDirectory() as d:
    hf.save(d, c, jax.tree.map(np.asarray, params))
    model = transformers.AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32)
  model.eval()
  ours = {s: jax.jit(functools.partial(
      sampling.generate, dataclasses.replace(c, decode_cache_segments=s),
      max_new_tokens=args.new, temperature=0.0)) for s in segments}
  print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers "
        f"{transformers.__version__}, jax {jax.__version__}; d 256, 4 layers, {args.new} new "
        f"tokens, greedy")
  names = [f"rlvr_jax s (segments {s}{' = ' + str(c.cache_segments(args.new)) if s == 0 else ''})"
           for s in segments]
  print("| batch | " + " | ".join(names) + " | transformers generate s | speed-up | tokens identical |")
  print("|---|" + "---|" * len(names) + "---|---|---|")
  for b in [int(x) for x in args.batches.split(",")]:
    prompts = np.asarray(jax.random.randint(jax.random.key(b), (b, args.prompt), 3, 2048))
    mask = np.ones_like(prompts)
    jax_tokens = {s: np.asarray(f(params, prompts, mask, jax.random.key(0)).tokens)
                  for s, f in ours.items()}

    def run_hf():
      with torch.inference_mode():
        out = model.generate(torch.from_numpy(prompts).long(),
                             attention_mask=torch.from_numpy(mask).long(), do_sample=False,
                             max_new_tokens=args.new, min_new_tokens=args.new, pad_token_id=0)
      return out[:, args.prompt:].numpy()

    hf_tokens = run_hf()
    identical = all(bool((hf_tokens == t).all()) for t in jax_tokens.values())
    t_ours, t_hf = {s: [] for s in ours}, []
    for _ in range(args.rounds):
      for s, f in ours.items():
        t0 = time.perf_counter()
        jax.block_until_ready(f(params, prompts, mask, jax.random.key(0)).tokens)
        t_ours[s].append(time.perf_counter() - t0)
      t0 = time.perf_counter()
      run_hf()
      t_hf.append(time.perf_counter() - t0)
    a = [float(np.median(t_ours[s])) for s in ours]
    h = float(np.median(t_hf))
    cells = " | ".join(f"{x:.3f}" for x in a)
    print(f"| {b} | {cells} | {h:.3f} | {h / a[0]:.1f}x | {identical} |", flush=True)


if __name__ == "__main__":
  main()
