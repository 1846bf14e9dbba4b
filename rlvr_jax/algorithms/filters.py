"""Which rollouts the loss sees: DAPO's dynamic sampling (fill) and overlong filtering.

Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale" (arXiv
2503.14476). §3.2 over-samples prompts, drops those whose G answers are all right or all wrong
(accuracy 1 or 0: the group-relative advantage is 0) and keeps sampling until the batch is full;
§3.4 masks the loss of truncated samples. Inside one compiled step the re-sampling loop becomes
a fixed over-sampling factor k: k·B groups are sampled and the first B kept ones are learned on,
with any shortfall masked (`fill_groups`). The loss weight itself is
`advantages.dynamic_sampling_mask`. All functions are jittable with static shapes.
"""

import jax
import jax.numpy as jnp

from rlvr_jax.algorithms import advantages as adv_lib

Array = jax.Array


def fill_groups(rewards_ng: Array, num_groups: int) -> tuple[Array, Array]:
  """Picks `num_groups` of N sampled groups: the kept ones first, in sampling order.

  A group is kept when its rewards are not all equal (`dynamic_sampling_mask`). The selection is
  stable: kept groups in their original order, then (only if fewer than `num_groups` were kept)
  dropped groups in their original order, which fill the shortfall and must be masked out of
  the loss (`valid_b` = 0 there).

  Args: rewards_ng [N, G] outcome rewards of the N = k·B sampled groups; num_groups B <= N.
  Returns: (index_b int32 [B] rows of the N groups, valid_b float32 [B] 1 on kept groups).
  """
  n = rewards_ng.shape[0]
  if num_groups > n:
    raise ValueError(f"fill_groups: cannot pick {num_groups} of {n} groups")
  keep_n = adv_lib.dynamic_sampling_mask(rewards_ng)[:, 0] > 0
  index_b = jnp.argsort(~keep_n, stable=True)[:num_groups].astype(jnp.int32)
  return index_b, keep_n[index_b].astype(jnp.float32)


def finished(tokens: Array, mask: Array, eos_id: int) -> Array:
  """1 for completions that emitted EOS within the budget, 0 for truncated ones (DAPO §3.4
  overlong filtering: multiply into the loss mask so truncated samples leave the loss).

  Args: tokens int [..., T]; mask [..., T] (1 up to and including EOS). Returns [...] float32.
  """
  eos_t = (tokens == eos_id) & (jnp.asarray(mask) > 0)
  return jnp.any(eos_t, axis=-1).astype(jnp.float32)
