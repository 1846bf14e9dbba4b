"""The built-in advantage estimators: `x: AdvantageInputs` -> token advantages [B, G, T] float32,
outcome advantages broadcast over valid tokens and 0 on masked tokens. The array math is in
`advantages.py`; docs/ALGORITHMS.md has each one's formula, paper and reference code.

A hyperparameter's default is written once, as the keyword default here
(`--config.algorithm.advantage_kw.eps=1e-5` overrides it).
"""

from __future__ import annotations

import jax

from rlvr_jax.algorithms import advantages as adv_lib
from rlvr_jax.algorithms import losses
from rlvr_jax.algorithms.registry import (AdvantageInputs, all_of, bounds, one_of,
                                          register_advantage)

Array = jax.Array


# The reward KL penalty of reinforce_pp, gae and PURE (k1 is the unbiased one there: losses.kl).
_PENALTY = all_of(one_of("kl_kind", losses.KL_KINDS), bounds(kl_coef=">= 0", gamma="[0, 1]"))
_PURE = all_of(one_of("kl_kind", losses.KL_KINDS), bounds(kl_coef=">= 0", verifiable_coef=">= 0"))


def _outcome(adv_bg: Array, x: AdvantageInputs) -> Array:
  return adv_lib.broadcast_to_tokens(adv_bg, x.mask)


def _kl_penalty(x: AdvantageInputs, kind: str) -> Array | None:
  """Stop-gradient per-token KL for a reward penalty, or None without a reference policy (one
  exists when another component needs `ref_logp`, e.g. the `kl` term)."""
  if x.ref_logp is None:
    return None
  return jax.lax.stop_gradient(losses.kl(x.logp, x.ref_logp, kind))


# --- Outcome estimators ----------------------------------------------------------------------


@register_advantage("grpo", needs=("group",), check=bounds(eps="> 0"))
def grpo(x, *, eps=1e-6):
  return _outcome(adv_lib.grpo(x.rewards, eps=eps), x)


@register_advantage("dr_grpo", needs=("group",))
def dr_grpo(x):
  return _outcome(adv_lib.grpo(x.rewards, scale_by_std=False), x)


@register_advantage("dapo", needs=("group",),
                    check=bounds(eps="> 0", overlong_buffer_len=">= 0"))
def dapo(x, *, eps=1e-6, overlong_buffer_len=0, max_len=None):
  """GRPO on overlong-shaped rewards (`overlong_buffer_len` > 0 enables it; L_max =
  algorithm.max_len, default T). DAPO's dynamic sampling and overlong filtering are
  `algorithm.dynamic_sampling` / `algorithm.overlong_filter`; a group whose shaped rewards are
  all equal gets exactly 0 here."""
  rewards = x.rewards
  if overlong_buffer_len:
    lengths = x.mask.sum(-1)
    rewards = rewards + adv_lib.overlong_penalty(lengths, max_len or x.mask.shape[-1],
                                                 overlong_buffer_len)
  return _outcome(adv_lib.grpo(rewards, eps=eps), x)


@register_advantage("lite_ppo", needs=("group",), requires={"loss_agg": "token-mean"},
                    check=bounds(eps="> 0"))
def lite_ppo(x, *, eps=1e-6):
  """Group mean, batch std over the [B, G] rewards of the update batch (Tricks or Traps' Lite
  PPO, defined with token-level aggregation)."""
  return _outcome(adv_lib.lite_ppo(x.rewards, eps=eps), x)


@register_advantage("rloo", needs=("group",))
def rloo(x):
  return _outcome(adv_lib.rloo(x.rewards), x)


@register_advantage("remax", needs=("greedy_rewards",))
def remax(x):
  return _outcome(adv_lib.remax(x.rewards, x.greedy_rewards), x)


@register_advantage("psr")
def psr(x):
  return _outcome(adv_lib.weighted_reinforce(x.rewards, positive_weight=1.0,
                                             negative_weight=0.0), x)


@register_advantage("nsr")
def nsr(x):
  return _outcome(adv_lib.weighted_reinforce(x.rewards, positive_weight=0.0,
                                             negative_weight=1.0), x)


@register_advantage("w_reinforce", check=bounds(positive_weight=">= 0", negative_weight=">= 0"))
def w_reinforce(x, *, positive_weight=0.1, negative_weight=1.0):
  return _outcome(adv_lib.weighted_reinforce(x.rewards, positive_weight=positive_weight,
                                             negative_weight=negative_weight), x)


# --- Token-level estimators ------------------------------------------------------------------


@register_advantage("tempo", needs=("group",), check=bounds(eps="> 0"))
def tempo(x, *, eps=1e-6):
  return adv_lib.tempo(x.tokens, x.rewards, x.mask, eps=eps)


@register_advantage("reinforce_pp", check=_PENALTY)
def reinforce_pp(x, *, kl_coef=0.01, kl_kind="k1", gamma=1.0):
  return adv_lib.reinforce_plus_plus(x.rewards, x.mask, _kl_penalty(x, kl_kind), kl_coef=kl_coef,
                                     gamma=gamma)


@register_advantage("reinforce_pp_baseline", needs=("group",), check=_PENALTY)
def reinforce_pp_baseline(x, *, kl_coef=0.01, kl_kind="k1", gamma=1.0):
  return adv_lib.reinforce_plus_plus(x.rewards, x.mask, _kl_penalty(x, kl_kind), kl_coef=kl_coef,
                                     gamma=gamma, baseline=True)


@register_advantage("gae", needs=("values",), check=all_of(_PENALTY, bounds(lam="[0, 1]")))
def gae(x, *, gamma=1.0, lam=1.0, kl_coef=0.01, kl_kind="k1"):
  """Un-whitened GAE; the trainer takes `adv + values` as the critic's targets and whitens the
  advantages the policy sees."""
  token_r = adv_lib.outcome_token_rewards(x.rewards, x.mask, _kl_penalty(x, kl_kind),
                                          kl_coef=kl_coef)
  adv, _ = adv_lib.gae(token_r, x.values, x.mask, gamma=gamma, lam=lam)
  return adv


def _pure(x, transform, verifiable_coef, kl_coef, kl_kind):
  process_r = transform(x.step_rewards, x.step_end * x.mask)
  return adv_lib.pure_token_returns(
      process_r, x.step_end, x.mask, verifiable_rewards=x.rewards,
      verifiable_coef=verifiable_coef, kl=_kl_penalty(x, kl_kind), kl_coef=kl_coef)


@register_advantage("pure_min", needs=("step_rewards", "group"),
                    check=all_of(_PURE, bounds(temperature="> 0")))
def pure_min(x, *, temperature=0.1, verifiable_coef=1.0, kl_coef=0.01, kl_kind="k1"):
  return _pure(x, lambda r, m: adv_lib.min_form(r, m, temperature=temperature),
               verifiable_coef, kl_coef, kl_kind)


@register_advantage("pure_min_strict", needs=("step_rewards", "group"), check=_PURE)
def pure_min_strict(x, *, verifiable_coef=1.0, kl_coef=0.01, kl_kind="k1"):
  return _pure(x, adv_lib.strict_min_form, verifiable_coef, kl_coef, kl_kind)


@register_advantage("pure_sum", needs=("step_rewards", "group"), check=_PURE)
def pure_sum(x, *, verifiable_coef=1.0, kl_coef=0.01, kl_kind="k1"):
  return _pure(x, lambda r, m: r * m, verifiable_coef, kl_coef, kl_kind)


def _prime_has_a_source(hp):
  if hp["process_coef"] + hp["outcome_coef"] <= 0:
    return "needs a reward source: process_coef and outcome_coef are both 0"
  return None


@register_advantage("prime", needs=("process_rewards", "group"), check=_prime_has_a_source)
def prime(x, *, process_coef=5.0, outcome_coef=5.0):
  return adv_lib.prime(x.rewards, x.process_rewards, x.mask, process_coef=process_coef,
                       outcome_coef=outcome_coef)
