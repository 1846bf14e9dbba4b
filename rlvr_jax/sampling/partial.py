"""Resumable sampling for APRIL (active partial rollouts; Zhou et al. 2025, arXiv 2509.18521).

A pool of groups (G consecutive rows per prompt), some fresh and some holding a partial
completion from an earlier call, is decoded only until `min_groups_done` groups have every
sample finished; the other rows stop where they are and continue in a later call. Each row
owns its uniforms [n] (token i is drawn with uniforms[i]), so a row resumed under the same
parameters continues with exactly the tokens an uninterrupted decode would have drawn.

Layout of a resumed row: prompt + partial completion are right-aligned into one left-padded
sequence of p + n slots and prefilled; the decode loop writes its keys/values after them, into
slots [p + n, p + 2n). Positions come from the valid mask, so the cache slot order is free.
"""

from __future__ import annotations

from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp

from rlvr_jax import models
from rlvr_jax.sampling.sampler import _choose


@flax.struct.dataclass
class PartialCompletions:
  """Completions that may be unfinished. r rows, n = `max_new_tokens`.

  Attributes:
    tokens: int32 [r, n]; the sampled tokens so far, `pad_id` after them.
    logprobs: float32 [r, n]; each token's log-probability under the policy that sampled it
      (the sampling distribution, as in `Completions`); 0 on masked positions.
    entropies: float32 [r, n]; that distribution's entropy; 0 on masked positions.
    mask: float32 [r, n]; 1 on the tokens sampled so far (a prefix of the row).
    done: bool [r]; the row emitted a stop token or filled its n tokens.
    uniforms: float32 [r, n]; token i is drawn by inverting the CDF at uniforms[i].
  """

  tokens: jax.Array
  logprobs: jax.Array
  entropies: jax.Array
  mask: jax.Array
  done: jax.Array
  uniforms: jax.Array


def fresh(uniforms_rn: jax.Array, pad_id: int) -> PartialCompletions:
  """Empty rows (nothing sampled yet) that will draw with `uniforms_rn` [r, n]."""
  r, n = uniforms_rn.shape
  zeros = jnp.zeros((r, n), jnp.float32)
  return PartialCompletions(tokens=jnp.full((r, n), pad_id, jnp.int32), logprobs=zeros,
                            entropies=zeros, mask=zeros, done=jnp.zeros((r,), bool),
                            uniforms=uniforms_rn)


def groups_done(done_r: jax.Array, group_size: int) -> jax.Array:
  """bool [r / G]: every row of the group is done."""
  return done_r.reshape(-1, group_size).all(-1)


def resume(model_config: models.ModelConfig, params: models.Params, prompts: jax.Array,
           prompt_mask: jax.Array, part: PartialCompletions, *, group_size: int,
           min_groups_done: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           eos_id: int | None = None, stop_ids: Sequence[int] = (), pad_id: int = 0
           ) -> tuple[PartialCompletions, jax.Array]:
  """Continues `part` until at least `min_groups_done` groups are done (or all rows are).

  Args:
    model_config, params: the policy.
    prompts, prompt_mask: int32 [r / G, p], left-padded, one per group.
    part: the pool's rows, [r, n]; a group's G rows consecutive.
    group_size: G.
    min_groups_done: the loop stops once this many groups have every row done (static).
    temperature, top_k, top_p, eos_id, stop_ids, pad_id: as in `sampling.generate`.

  Returns:
    (the rows continued, int32 scalar: decode steps run, i.e. iterations of the loop).
  """
  r, n = part.tokens.shape
  p = prompts.shape[1]
  params = models.lora.for_sampling(params)  # LoRA adapters: as `sampling.generate`
  stops = ([eos_id] if eos_id is not None else []) + list(stop_ids)
  repeat = lambda x: jnp.repeat(x, group_size, axis=0)
  prompt_mask = repeat(prompt_mask.astype(jnp.int32))
  length_r = part.mask.sum(-1).astype(jnp.int32)
  seq, seq_mask = models.join_prompt(repeat(prompts), prompt_mask, part.tokens, part.mask)
  # Roll each row right by its unused completion slots: the valid tokens end at the last slot,
  # whose logits the prefill returns.
  source = (jnp.arange(p + n)[None] - (n - length_r)[:, None]) % (p + n)
  seq = jnp.take_along_axis(seq, source, axis=1)
  seq_mask = jnp.take_along_axis(seq_mask, source, axis=1)
  logits, cache = models.prefill(model_config, params, seq, seq_mask, p + 2 * n)
  params = models.unstack_layers(model_config, params)
  valid_rs = jnp.concatenate([seq_mask, jnp.zeros((r, n), jnp.int32)], axis=1)
  next_position_r = prompt_mask.sum(-1) + length_r
  rows = jnp.arange(r)

  def cond(s):
    return (s["j"] < n) & (groups_done(s["done"], group_size).sum() < min_groups_done)

  def body(s):
    j = s["j"]
    at_r = length_r + j  # completion index of this step's token in each row
    u_r = jnp.take_along_axis(part.uniforms, jnp.minimum(at_r, n - 1)[:, None], axis=1)[:, 0]
    token, logprob, entropy = _choose(u_r, s["logits"], temperature, top_k, top_p)
    live = ~s["done"]
    token = jnp.where(live, token, pad_id)
    write = jnp.where(live, at_r, n)  # finished rows write out of bounds: dropped
    put = lambda buf, x: buf.at[rows, write].set(x, mode="drop")
    done = s["done"] | (at_r + 1 >= n)
    if stops:
      done = done | jnp.isin(token, jnp.asarray(stops, jnp.int32))
    valid = s["valid"].at[:, p + n + j].set(1)
    logits, cache = models.decode_step(model_config, params, token, next_position_r + j,
                                       s["cache"], p + n + j, valid)
    return dict(j=j + 1, logits=logits, cache=cache, valid=valid, done=done,
                tokens=put(s["tokens"], token), logprobs=put(s["logprobs"], logprob),
                entropies=put(s["entropies"], entropy), mask=put(s["mask"], 1.0))

  init = dict(j=jnp.int32(0), logits=logits, cache=cache, valid=valid_rs, done=part.done,
              tokens=part.tokens, logprobs=part.logprobs, entropies=part.entropies,
              mask=part.mask)
  out = jax.lax.while_loop(cond, body, init)
  return part.replace(tokens=out["tokens"], logprobs=out["logprobs"],
                      entropies=out["entropies"], mask=out["mask"], done=out["done"]), out["j"]
