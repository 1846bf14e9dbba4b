"""The built-in policy losses on one micro-batch's [n, t] arrays -> (loss, metrics). The math is
in `losses.py`; `agg` / `max_len` come from algorithm.loss_agg / algorithm.max_len and
`normalizer` is the mini-batch's denominator (exact gradient accumulation)."""

from __future__ import annotations

from rlvr_jax.algorithms import losses
from rlvr_jax.algorithms.registry import bounds, register_policy_loss


@register_policy_loss("ppo", check=bounds(clip_low="[0, 1)", clip_high=">= 0", dual_clip="> 1"))
def ppo(logp, old_logp, advantages, mask, *, normalizer=None, agg="token-mean", max_len=None,
        clip_low=0.2, clip_high=0.2, dual_clip=None):
  """PPO-clip with clip-higher (DAPO: clip_high > clip_low) and dual-clip (None: off)."""
  return losses.policy_loss(logp, old_logp, advantages, mask, clip_low=clip_low,
                            clip_high=clip_high, dual_clip=dual_clip, agg=agg, max_len=max_len,
                            normalizer=normalizer)


@register_policy_loss("cispo", check=bounds(clip_low="[0, 1]", clip_high=">= 0"))
def cispo(logp, old_logp, advantages, mask, *, normalizer=None, agg="token-mean", max_len=None,
          clip_low=1.0, clip_high=4.0):
  """CISPO bounds an IS weight to [1 − clip_low, 1 + clip_high]: clip_low = 1 leaves it open below
  (MiniMax-M1), clip_high = 4 is ScaleRL's bound 5."""
  return losses.cispo_loss(logp, old_logp, advantages, mask, clip_low=clip_low,
                           clip_high=clip_high, agg=agg, max_len=max_len, normalizer=normalizer)


@register_policy_loss("gspo", requires={"loss_agg": losses.GSPO_AGGREGATION},
                      check=bounds(clip_low="[0, 1)", clip_high=">= 0"))
def gspo(logp, old_logp, advantages, mask, *, normalizer=None, clip_low=3e-4, clip_high=4e-4):
  """GSPO is a mean over sequences by definition (eq. 13), hence its required loss_agg; its
  sequence-level ratios need a far narrower clip than token ratios (the paper's 3e-4, 4e-4)."""
  return losses.gspo_loss(logp, old_logp, advantages, mask, clip_low=clip_low,
                          clip_high=clip_high, normalizer=normalizer)
