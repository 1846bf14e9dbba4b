"""Autoregressive sampling: one prefill, then KV-cache decode inside `lax.while_loop`.

The loop exits as soon as every row has emitted EOS (or a stop token), so short answers cost
short loops even with a generous `max_new_tokens`. Everything is jittable; the arguments after
`rng` are static.
"""

from __future__ import annotations

from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp

from rlvr_jax import models


@flax.struct.dataclass
class Completions:
  """Sampled completions. n is `max_new_tokens`.

  Attributes:
    tokens: int32 [b, n]; `pad_id` after the first EOS / stop token.
    logprobs: float32 [b, n]; log-probability of each sampled token under the sampling
      distribution softmax(logits / temperature) before top-k / top-p truncation (raw logits
      when greedy); 0 on masked positions.
    entropies: float32 [b, n]; entropy of that same distribution; 0 on masked positions.
    mask: float32 [b, n]; 1 up to and including the first EOS / stop token.
  """

  tokens: jax.Array
  logprobs: jax.Array
  entropies: jax.Array
  mask: jax.Array

  @property
  def lengths(self) -> jax.Array:
    """int32 [b]: number of valid tokens (EOS included)."""
    return self.mask.sum(-1).astype(jnp.int32)


def filter_logits(logits_bv: jax.Array, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """Sets logits outside the top-k / nucleus (top-p) set to -inf. Static k and p."""
  if top_k > 0:
    kth = jax.lax.top_k(logits_bv, top_k)[0][..., -1:]
    logits_bv = jnp.where(logits_bv < kth, -jnp.inf, logits_bv)
  if top_p < 1.0:
    sorted_desc = jnp.sort(logits_bv, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(sorted_desc, axis=-1)
    # Keep a token while the mass strictly before it is < top_p: the top token always stays.
    keep = (jnp.cumsum(probs, axis=-1) - probs) < top_p
    threshold = jnp.min(jnp.where(keep, sorted_desc, jnp.inf), axis=-1, keepdims=True)
    logits_bv = jnp.where(logits_bv < threshold, -jnp.inf, logits_bv)
  return logits_bv


def categorical(rng: jax.Array, logits_bv: jax.Array) -> jax.Array:
  """int32 [b]: one exact draw per row from softmax(logits) by inverting its CDF.

  One uniform per row instead of the Gumbel-max trick's one per vocabulary entry: on CPU,
  generating b x v random bits every decode step cost more than the step's matmuls. Tokens of
  zero probability (filtered to -inf) are never drawn.
  """
  probs_bv = jax.nn.softmax(logits_bv, axis=-1)
  cdf_bv = jnp.cumsum(probs_bv, axis=-1)
  total_b1 = cdf_bv[:, -1:]
  u_b1 = jax.random.uniform(rng, total_b1.shape, jnp.float32)
  # threshold in [0, total): the first entry whose CDF exceeds it has positive probability
  threshold_b1 = jnp.minimum(u_b1 * total_b1, jnp.nextafter(total_b1, 0.0))
  return jnp.sum(cdf_bv <= threshold_b1, axis=-1).astype(jnp.int32)


def _choose(rng, logits_bv, temperature, top_k, top_p):
  """Returns (token [b], logprob [b], entropy [b]) for one decode position."""
  if temperature == 0.0:
    scaled = logits_bv
    token = jnp.argmax(logits_bv, axis=-1).astype(jnp.int32)
  else:
    scaled = logits_bv / temperature
    token = categorical(rng, filter_logits(scaled, top_k, top_p))
  logp_bv = jax.nn.log_softmax(scaled, axis=-1)
  entropy = -jnp.sum(jnp.exp(logp_bv) * logp_bv, axis=-1)
  logprob = jnp.take_along_axis(logp_bv, token[:, None], axis=-1)[:, 0]
  return token, logprob, entropy


def generate(model_config: models.ModelConfig, params: models.Params, prompts: jax.Array,
             prompt_mask: jax.Array, rng: jax.Array, *, max_new_tokens: int,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             eos_id: int | None = None, stop_ids: Sequence[int] = (),
             pad_id: int = 0, num_samples: int = 1) -> Completions:
  """Samples `max_new_tokens` continuations of left-padded prompts.

  Args:
    model_config: the policy architecture.
    params: policy parameters.
    prompts: int32 [b, p], left-padded.
    prompt_mask: [b, p], 1 on prompt tokens, 0 on left padding.
    rng: PRNG key; token i uses `fold_in(rng, i)`.
    max_new_tokens: n, the completion buffer length.
    temperature: 0 means greedy (argmax).
    top_k, top_p: truncation of the sampling distribution (0 / 1.0 disable).
    eos_id, stop_ids: a row finishes after emitting any of these (none: every row runs n tokens).
    pad_id: written after a row finishes.
    num_samples: completions per prompt (a GRPO group), in consecutive rows; each prompt is
      prefilled once and its cache shared by its samples.

  Returns:
    `Completions` with [b * num_samples, n] arrays.
  """
  n = max_new_tokens
  p = prompts.shape[1]
  stops = ([eos_id] if eos_id is not None else []) + list(stop_ids)
  prompt_mask = prompt_mask.astype(jnp.int32)
  logits, cache = models.prefill(model_config, params, prompts, prompt_mask, p + n)
  if num_samples > 1:
    expand = lambda x: jnp.repeat(x, num_samples, axis=0)
    logits, prompt_mask = expand(logits), expand(prompt_mask)
    cache = jax.tree.map(expand, cache)
  params = models.unstack_layers(params)
  b = logits.shape[0]
  valid_bs = jnp.concatenate([prompt_mask, jnp.zeros((b, n), jnp.int32)], axis=1)
  next_position_b = prompt_mask.sum(-1)

  zeros_f = jnp.zeros((b, n), jnp.float32)
  init = dict(i=jnp.int32(0), logits=logits, cache=cache, valid=valid_bs,
              done=jnp.zeros((b,), bool), tokens=jnp.full((b, n), pad_id, jnp.int32),
              logprobs=zeros_f, entropies=zeros_f, mask=zeros_f)

  def cond(s):
    return (s["i"] < n) & ~jnp.all(s["done"]) if stops else s["i"] < n

  def body(s):
    i = s["i"]
    token, logprob, entropy = _choose(jax.random.fold_in(rng, i), s["logits"], temperature,
                                      top_k, top_p)
    live = ~s["done"]
    token = jnp.where(live, token, pad_id)
    live_f = live.astype(jnp.float32)
    done = s["done"] | jnp.isin(token, jnp.asarray(stops, jnp.int32)) if stops else s["done"]
    valid = s["valid"].at[:, p + i].set(1)
    logits, cache = models.decode_step(model_config, params, token, next_position_b + i,
                                       s["cache"], p + i, valid)
    return dict(i=i + 1, logits=logits, cache=cache, valid=valid,
                done=done, tokens=s["tokens"].at[:, i].set(token),
                logprobs=s["logprobs"].at[:, i].set(logprob * live_f),
                entropies=s["entropies"].at[:, i].set(entropy * live_f),
                mask=s["mask"].at[:, i].set(live_f))

  out = jax.lax.while_loop(cond, body, init)
  return Completions(tokens=out["tokens"], logprobs=out["logprobs"],
                     entropies=out["entropies"], mask=out["mask"])
