"""Temp bytes of a loss + grad over completion log-probs, full logits vs chunked (issue 21).

    python benchmarks/logprob_memory.py [--n 1 --t 4096 --vocab 32768 --d 256 --layers 1]
        [--chunks T,0,512,128]

Compile-only on CPU, nothing allocated (`jax.eval_shape` inputs): for each `model.logprob_chunk`
prints XLA's temp bytes of `jit(grad(loss))`, where the loss is the sum of log-probs plus 0.01 x
the entropies, untied head; "head": `models.token_logprobs` on given hidden states [n, t, d]
(grads w.r.t. h and the weights), "step": `completion_logprobs` through the trunk too (a 16-token
prompt; its attention is O(t^2) and shows up as a floor). A chunk >= t is the plain path (full
float32 logits [n, t, v], plain autodiff); 0 is the automatic size (`LOGITS_BUDGET_BYTES`).
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp

from rlvr_jax import models
from rlvr_jax.training.forward import completion_logprobs

MIB = 2**20


def temp_bytes(c: models.ModelConfig, n: int, t: int, step: bool, prompt: int = 16) -> int:
  """Temp bytes of jit(grad) of the summed log-probs and 0.01 x entropies (see above)."""
  params = jax.eval_shape(lambda: models.init_params(c, jax.random.key(0)))
  ids = lambda length: jax.ShapeDtypeStruct((n, length), jnp.int32)

  def step_loss(params, prompt_ids, completion_ids):
    logp, entropy = completion_logprobs(c, params, prompt_ids, jnp.ones_like(prompt_ids),
                                        completion_ids, jnp.ones_like(completion_ids))
    return jnp.sum(logp) + 0.01 * jnp.sum(entropy)

  def head_loss(params, h_ntd, completion_ids):
    logp, entropy = models.token_logprobs(c, params, h_ntd, completion_ids)
    return jnp.sum(logp) + 0.01 * jnp.sum(entropy)

  if step:
    lowered = jax.jit(jax.grad(step_loss)).lower(params, ids(prompt), ids(t))
  else:
    h = jax.ShapeDtypeStruct((n, t, c.d_model), jnp.float32)
    lowered = jax.jit(jax.grad(head_loss, (0, 1))).lower(params, h, ids(t))
  return lowered.compile().memory_analysis().temp_size_in_bytes


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--n", type=int, default=1)
  ap.add_argument("--t", type=int, default=4096)
  ap.add_argument("--vocab", type=int, default=32768)
  ap.add_argument("--d", type=int, default=256)
  ap.add_argument("--layers", type=int, default=1)
  ap.add_argument("--chunks", default="", help="model.logprob_chunk values; default t,0,512,128")
  args = ap.parse_args()
  c = models.tiny(args.vocab, d_model=args.d, d_ff=4 * args.d, n_layers=args.layers,
                  tie_embeddings=False)
  logits = args.n * args.t * args.vocab * 4
  print(f"n={args.n} t={args.t} v={args.vocab} d={args.d} layers={args.layers}: "
        f"full float32 logits {logits / MIB:.1f} MiB")
  for chunk in (int(x) for x in (args.chunks or f"{args.t},0,512,128").split(",")):
    cc = dataclasses.replace(c, logprob_chunk=chunk)
    head, step = (temp_bytes(cc, args.n, args.t, step) / MIB for step in (False, True))
    print(f"logprob_chunk={chunk} (chunk {models.logprob_chunk_size(cc, args.n, args.t)}): "
          f"temp head {head:.1f} MiB, step {step:.1f} MiB")


if __name__ == "__main__":
  main()
