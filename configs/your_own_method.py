"""A new RL method in one file: an advantage estimator, a policy loss and a loss term, each one
registered function whose keyword arguments are its hyperparameters, and the config that uses
them. Copy this file anywhere and train it as it is:

    rlvr-train --config=your_own_method.py --workdir=/tmp/mine
    rlvr-train --config=your_own_method.py:tiny --workdir=/tmp/mine_tiny \
        --config.algorithm.policy_loss_kw.clip=0.1 --config.algorithm.terms.ratio_l2.coef=0.05

Validation, checkpoints, resume, metrics.jsonl and evaluation treat these as they treat the
built-ins (docs/ALGORITHMS.md, "Writing your own"). The method here is a toy: group-centred
advantages clipped to ±`clip_adv`, a clipped-ratio policy gradient whose ratio bound is `clip`,
and an L2 penalty on the log-ratio (a crude trust region) as a term, with two updates a rollout
(with one, the ratio is 1 and the penalty 0). The `tiny` variant runs in seconds.
"""

import jax
import jax.numpy as jnp

from rlvr_jax import algorithms
from rlvr_jax.algorithms import losses
from rlvr_jax.configs_base import load_config


@algorithms.register_advantage("clipped_centred", needs=("group",))
def clipped_centred(x, *, clip_adv=1.0):
  """(r − mean_group r) clipped to ±clip_adv, on every valid token. x.rewards [B, G];
  x.mask / x.tokens / x.logp [B, G, T]."""
  adv_bg = jnp.clip(x.rewards - x.rewards.mean(-1, keepdims=True), -clip_adv, clip_adv)
  return adv_bg[..., None] * x.mask


@algorithms.register_policy_loss("clipped_pg")
def clipped_pg(logp, old_logp, advantages, mask, *, normalizer, agg="token-mean", max_len=None,
               clip=0.2):
  """−min(ρA, clip(ρ, 1 ± clip)A) per token, aggregated as algorithm.loss_agg says; [n, t]."""
  ratio = jnp.exp(logp - old_logp)
  surrogate = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1 - clip, 1 + clip) * advantages)
  loss = losses.aggregate(-surrogate, mask, agg, max_len, normalizer)
  return loss, {"clipped_pg_ratio": losses.masked_mean(jax.lax.stop_gradient(ratio), mask)}


@algorithms.register_term("ratio_l2")
def ratio_l2(ctx, *, coef=0.01):
  """coef · aggregate((logp − old_logp)²): pulls the policy back towards the one that sampled."""
  sq = jnp.square(ctx.logp - ctx.old_logp)
  value = losses.aggregate(sq, ctx.mask, ctx.agg, ctx.max_len, ctx.normalizer)
  return coef * value, {"ratio_l2": value}


def get_config(arg=None):
  c = load_config("configs/quickstart.py" + (f":{arg}" if arg else ""))
  c.algorithm.update(advantage="clipped_centred", advantage_kw=dict(clip_adv=1.0),
                     policy_loss="clipped_pg", policy_loss_kw=dict(clip=0.2),
                     terms=dict(ratio_l2=dict(coef=0.01)))
  c.rl.ppo_epochs = 2
  return c
