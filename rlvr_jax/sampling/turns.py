"""The device side of multi-turn episodes: prefill, one assistant turn of KV-cache decoding, and
an observation appended to the cache. Each is one jittable call over the whole batch of
episodes (`episodes.EpisodeSampler` jits them once and runs the environments in between).

Cache layout: one write pointer (`slot`) shared by the batch, as in `generate`. A turn decodes
into slots [slot, slot + steps) where steps is the turn's longest row; a row that stopped
earlier (or had finished its episode) leaves its slots invalid, and an observation block is
left-padded. Invalid slots are masked out of attention and RoPE positions count valid tokens
only, so every row sees exactly its own conversation (tests/test_episodes.py checks it against
a teacher-forced `models.forward`). Shapes: b episodes, p prompt, s cache slots, n turn tokens,
l observation block, v vocab.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlvr_jax import models
from rlvr_jax.sampling.sampler import _choose
from rlvr_jax.sampling.stop_strings import StopMatcher

# ended_b: how a row's turn ended
CUT, EOS, STOP = 0, 1, 2


def start(c: models.ModelConfig, params: models.Params, prompts_bp: jax.Array,
          prompt_mask_bp: jax.Array, *, group: int, cache_len: int) -> dict[str, jax.Array]:
  """Prefills each prompt once and repeats its cache over its `group` episodes.

  Returns the carry: logits [b·group, v] of the next token, cache (`cache_len` slots), valid
  [b·group, s] int32, pos [b·group] int32 (next RoPE position)."""
  mask = prompt_mask_bp.astype(jnp.int32)
  logits, cache = models.prefill(c, params, prompts_bp, mask, cache_len)
  if group > 1:
    logits, mask = jnp.repeat(logits, group, axis=0), jnp.repeat(mask, group, axis=0)
    cache = models.repeat_cache(c, cache, group)
  valid = jnp.pad(mask, ((0, 0), (0, cache_len - mask.shape[1])))
  return dict(logits=logits, cache=cache, valid=valid, pos=mask.sum(-1))


def decode_turn(c: models.ModelConfig, params: models.Params, carry: dict, slot: jax.Array,
                live_b: jax.Array, budget_b: jax.Array, rng: jax.Array, *, max_new_tokens: int,
                temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                eos_id: int | None = None, stop: StopMatcher | None = None, pad_id: int = 0):
  """One assistant turn: up to n = `max_new_tokens` tokens for each live row, written to cache
  slots from `slot`; a row stops at EOS, at the token whose text completes the turn's stop
  string (`stop`, matched as text across tokens), or when its remaining episode budget
  `budget_b` [b] is spent. The loop ends when no row is live.

  Returns (carry, turn): turn holds tokens [b, n] (pad after the row stops), logprobs and
  entropies [b, n] (of the sampling distribution, as `generate`'s), mask [b, n] (1 on the
  row's tokens), ended [b] (CUT, EOS or STOP) and steps (int32 scalar: slots the turn used)."""
  n = max_new_tokens
  b = live_b.shape[0]
  params = models.unstack_layers(c, params)
  uniforms_nb = jax.random.uniform(rng, (n, b), jnp.float32)
  zeros = jnp.zeros((b, n), jnp.float32)
  state = dict(carry, i=jnp.int32(0), live=live_b & (budget_b > 0), budget=budget_b,
               ended=jnp.full((b,), CUT, jnp.int32), matched=jnp.zeros((b,), jnp.int32),
               tokens=jnp.full((b, n), pad_id, jnp.int32), logprobs=zeros, entropies=zeros,
               mask=zeros)

  def body(s):
    i, live = s["i"], s["live"]
    token, logprob, entropy = _choose(uniforms_nb[i], s["logits"], temperature, top_k, top_p)
    token = jnp.where(live, token, pad_id)
    ended, matched = s["ended"], s["matched"]
    if stop is not None:
      matched, hit = stop.step(matched, token)
      ended = jnp.where(live & hit, STOP, ended)
    if eos_id is not None:
      ended = jnp.where(live & (token == eos_id), EOS, ended)
    budget = s["budget"] - live
    valid = jax.lax.dynamic_update_slice_in_dim(
        s["valid"], live.astype(s["valid"].dtype)[:, None], slot + i, axis=1)
    logits, cache = models.decode_step(c, params, token, s["pos"], s["cache"], slot + i, valid)
    live_f = live.astype(jnp.float32)
    return dict(
        s, i=i + 1, logits=jnp.where(live[:, None], logits, s["logits"]), cache=cache,
        valid=valid, pos=s["pos"] + live, live=live & (ended == CUT) & (budget > 0),
        budget=budget, ended=ended, matched=matched, tokens=s["tokens"].at[:, i].set(token),
        logprobs=s["logprobs"].at[:, i].set(logprob * live_f),
        entropies=s["entropies"].at[:, i].set(entropy * live_f),
        mask=s["mask"].at[:, i].set(live_f))

  state = jax.lax.while_loop(lambda s: (s["i"] < n) & jnp.any(s["live"]), body, state)
  carry = {key: state[key] for key in carry}
  turn = {key: state[key] for key in ("tokens", "logprobs", "entropies", "mask", "ended")}
  return carry, dict(turn, steps=state["i"])


def append_observation(c: models.ModelConfig, params: models.Params, carry: dict,
                       tokens_bl: jax.Array, mask_bl: jax.Array, slot: jax.Array) -> dict:
  """Writes a left-padded observation block [b, l] into cache slots [slot, slot + l) with
  `models.extend_cache` (the history is not prefilled again); rows with an empty block keep
  their logits."""
  mask_bl = mask_bl.astype(jnp.int32)
  position_bl = jnp.maximum(carry["pos"][:, None] + jnp.cumsum(mask_bl, axis=1) - 1, 0)
  valid = jax.lax.dynamic_update_slice_in_dim(carry["valid"], mask_bl.astype(carry["valid"].dtype),
                                              slot, axis=1)
  logits, cache = models.extend_cache(c, params, tokens_bl, position_bl, carry["cache"], slot,
                                      valid)
  has_b = mask_bl.sum(-1) > 0
  return dict(carry, logits=jnp.where(has_b[:, None], logits, carry["logits"]), cache=cache,
              valid=valid, pos=carry["pos"] + mask_bl.sum(-1))
