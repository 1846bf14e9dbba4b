"""Teacher-forced passes over completions: the policy's log-probs and entropies, a critic's values.

Prompt rows: one per completion, or one per group of G consecutive completions, in which case
each prompt runs through the trunk once for its group (`models.completion_hidden_states`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlvr_jax import models


def completion_logprobs(model_config: models.ModelConfig, params: models.Params,
                        prompt_ids: jax.Array, prompt_mask: jax.Array, completion_ids: jax.Array,
                        completion_mask: jax.Array, temperature: float = 1.0, *,
                        proxy_min_p: float | None = None):
  """Float32 log-probs and entropies [n, t] of completions given their prompt rows. Logits are
  divided by the sampling temperature, as the sampler's distribution is; they exist only where
  completion tokens are predicted, a chunk of positions at a time when the micro-batch's whole
  logits would be large (`models.token_logprobs`, `model.logprob_chunk`). With `proxy_min_p`
  κ also a third [n, t]: the min-p proxy log-probs of the same logits (`models.min_p_logprobs`)."""
  if prompt_ids.shape[0] != completion_ids.shape[0]:
    h_ntd = models.completion_hidden_states(model_config, params, prompt_ids, prompt_mask,
                                            completion_ids, completion_mask)
  else:
    p = prompt_ids.shape[1]
    seq, seq_mask = models.join_prompt(prompt_ids, prompt_mask, completion_ids, completion_mask)
    h_ntd = models.hidden_states(model_config, params, seq, seq_mask)[:, p - 1:-1]
  return models.token_logprobs(model_config, params, h_ntd, completion_ids,
                               temperature=temperature, proxy_min_p=proxy_min_p)


def completion_values(model_config: models.ModelConfig, value_params: models.Params,
                      prompt_ids: jax.Array, prompt_mask: jax.Array, completion_ids: jax.Array,
                      completion_mask: jax.Array) -> jax.Array:
  """Critic values V(s_t) [n, t]: the state before completion token t is read at the position
  of the token preceding it, as the policy's logits for token t are."""
  g = completion_ids.shape[0] // prompt_ids.shape[0]
  prompt_ids, prompt_mask = repeat(prompt_ids, g), repeat(prompt_mask, g)
  p = prompt_ids.shape[1]
  seq, seq_mask = models.join_prompt(prompt_ids, prompt_mask, completion_ids, completion_mask)
  return models.scalar_head(model_config, value_params, seq, seq_mask)[:, p - 1:-1]


def repeat(x: jax.Array, g: int) -> jax.Array:
  """Each row G times in a row: [b, ...] -> [b * G, ...]."""
  return jnp.repeat(x, g, axis=0)
