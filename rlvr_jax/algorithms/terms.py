"""The built-in loss terms: `fn(ctx, **hp) -> (loss, metrics)`, each on when it is listed in
`algorithm.terms`. A policy term's loss is added to the policy loss of every micro-batch; the
`value` term trains the critic and `prime` PRIME's implicit PRM (`registry.TRAINS`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlvr_jax.algorithms import chord as chord_lib
from rlvr_jax.algorithms import losses
from rlvr_jax.algorithms.registry import all_of, bounds, one_of, register_term
from rlvr_jax.rewards import implicit_prm


@register_term("kl", needs=("ref_logp",), check=all_of(one_of("kind", losses.KL_KINDS), bounds(coef=">= 0")))
def kl(ctx, *, coef=0.001, kind="k3"):
  """coef · aggregate(kl(π‖π_ref)) over the loss tokens; metric kl_ref (before coef)."""
  value = losses.aggregate(losses.kl(ctx.logp, ctx.ref_logp, kind), ctx.mask, ctx.agg,
                           ctx.max_len, ctx.normalizer)
  return coef * value, {"kl_ref": value}


@register_term("entropy")
def entropy(ctx, *, coef=0.001):
  """−coef · aggregate(H) (coef > 0 rewards entropy, < 0 minimises it)."""
  return losses.entropy_bonus(ctx.entropy, ctx.mask, coef=coef, agg=ctx.agg,
                              max_len=ctx.max_len, normalizer=ctx.normalizer), {}


def _mu_order(hp):
  if hp["mu_end"] > hp["mu_start"]:
    return f"mu decays: mu_end ({hp['mu_end']}) must not exceed mu_start ({hp['mu_start']})"
  return None


@register_term("chord", needs=("demos",),
               check=all_of(_mu_order, bounds(mu_start="[0, 1]", mu_end="[0, 1]",
                                              mu_decay_steps=">= 0", mu_warmup_steps=">= 0")))
def chord(ctx, *, mu_start=0.9, mu_end=0.05, mu_decay_steps=200, mu_warmup_steps=0, phi=False):
  """CHORD: L = (1 − μ) L_RL + μ L_SFT, added to L_RL as μ · (L_SFT − L_RL); μ follows
  `chord.mu_schedule` at this update's number counted from 1 (ctx.step + 1: Trinity-RFT's
  trainer evaluates it at train_step_num + 1); phi: CHORD-φ token weights."""
  mu = chord_lib.mu_schedule(ctx.step + 1, start=mu_start, end=mu_end,
                             decay_steps=mu_decay_steps, warmup_steps=mu_warmup_steps)
  sft, metrics = chord_lib.sft_loss(ctx.demo_logp, ctx.demo_mask, use_phi=phi,
                                    normalizer=ctx.demo_normalizer)
  # partial sums of the mini-batch means, which the trainer averages over micro-batches
  metrics = {k: v * ctx.micro_batches for k, v in metrics.items()}
  return mu * (sft - ctx.policy_loss), {**metrics, "chord_mu": mu}


@register_term("value", needs=("values",), trains="critic", check=bounds(clip="> 0"))
def value(ctx, *, clip=0.2):
  """The critic's clipped value loss (PPO) on the GAE returns."""
  return losses.value_loss(ctx.values, ctx.old_values, ctx.returns, ctx.mask, clip=clip,
                           agg=ctx.agg, max_len=ctx.max_len, normalizer=ctx.normalizer)


@register_term("prime", needs=("ref_logp",), trains="implicit_prm",
               provides=("process_rewards",), check=bounds(beta="> 0"))
def prime(ctx, *, beta=0.05):
  """PRIME's implicit PRM loss Σ_n CE(σ(R_φ), r_o) / normalizer, R_φ = Σ_t β·log π_φ/π_ref; it
  provides the token rewards r_φ of the parameters before this update."""
  r_nt = implicit_prm.token_rewards(ctx.logp, ctx.ref_logp, ctx.mask, beta)
  loss = jnp.sum(implicit_prm.ce_loss(r_nt.sum(-1), ctx.labels)) / ctx.normalizer
  r_nt = jax.lax.stop_gradient(r_nt)
  scores = r_nt.sum(-1)
  return loss, {"prime_accuracy": implicit_prm.outcome_accuracy(scores, ctx.labels),
                "prime_score_mean": scores.mean(), "process_rewards": r_nt}
