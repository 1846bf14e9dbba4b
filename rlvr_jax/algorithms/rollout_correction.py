"""Rollout correction: the decoupled (three-policy) objective around any policy loss, and the
training–inference mismatch diagnostics every run logs.

Three policies (Hilton et al. 2021, "Batch size-invariance for policy optimization", arXiv
2110.00641; verl docs/algo/rollout_corr_math.md §1.3, §2):
    μ       the sampler's log-probs of the tokens it drew (`Completions.logprobs`),
    π_old   the learner's teacher-forced log-probs at the start of the update (the PPO anchor),
    π_θ     the policy being updated.
    ρ_t = π_old(y_t) / μ(y_t);   L = Σ_t w_t · L_t(π_θ, π_old, A)  over the accepted tokens

A correction maps log ρ [n, t] (and the token mask) to a stop-gradient weight w [n, t] (None:
1) and an acceptance mask [n, t] (None: every token). The step multiplies the acceptance into
the loss mask (rejected tokens leave the loss and its normaliser, as verl's rejection sampling
edits `response_mask`) and applies w through `reweight`: the policy loss sees log-probs equal in
value to π_θ's whose gradient is w_t ∇log π_θ(y_t). For every loss that aggregates per-token
terms L_t(logp_t) (ppo, cispo, gspo's token form, ...) that is exactly ∇ Σ_t w_t L_t, the
decoupled objective, without editing the loss; ratios, clipping and the loss's metrics are
computed on unchanged values (the logged `loss` is the unweighted one).

Shapes: n sequences (rows) of t completion tokens; log ρ is clamped to ±20 before any exp
(verl's SAFETY_BOUND), per token or per sequence sum / mean.

Checked against verl (volcengine/verl) `verl/trainer/ppo/rollout_corr_helper.py`
(`compute_rollout_correction_weights`, `compute_rollout_rejection_mask`,
`compute_offpolicy_metrics`) and the presets of `RolloutCorrectionConfig` in
`verl/trainer/config/algorithm.py` (decoupled_token_is / decoupled_seq_is: threshold 2.0;
decoupled_seq_is_rs: IS 2.0 with sequence ratio bounds 0.5_2.0; decoupled_geo_rs:
0.999_1.001). Differences: no batch normalisation of the weights and no per-token veto;
token_mis keeps the true ratio on accepted tokens (verl's older `rollout_is_mode="mask"`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from rlvr_jax.algorithms.registry import Registry, all_of, bounds

Array = jax.Array

SAFETY_BOUND = 20.0  # |log ρ| is clamped here before exp (verl's bound)
CORRECTIONS: Registry = Registry("rollout_correction")
# The per-token key the update's loss returns its own (stop-gradient) log-probs under, when that
# forward is π_old (one update per rollout, no correction): the mismatch diagnostics read it.
LEARNER_LOGP = "_learner_logp"


def register_correction(name: str, *, check=None):
  """Decorator: `fn(log_rho [n, t], mask [n, t], **caps) -> (weight | None, accept | None)`
  becomes `algorithm.rollout_correction=name`; its keyword defaults are the caps'."""
  return CORRECTIONS.register(name, check=check)


def _exp(log_ratio: Array) -> Array:
  return jnp.exp(jnp.clip(log_ratio, -SAFETY_BOUND, SAFETY_BOUND))


def _seq_sum(log_rho: Array, mask: Array) -> Array:
  """Σ_t log ρ over each row's valid tokens, [n, 1]."""
  return jnp.sum(log_rho * mask, axis=-1, keepdims=True)


def _within(x: Array, low: float, high: float) -> Array:
  return ((x >= low) & (x <= high)).astype(jnp.float32)


def _low_below_high(hp):
  return None if hp["low"] <= hp["high"] else f"'low' ({hp['low']}) must not exceed 'high' ({hp['high']})"


@register_correction("none")
def none(log_rho, mask):
  """No correction: the loss uses π_old as its anchor and ignores μ."""
  del log_rho, mask
  return None, None


@register_correction("token_tis", check=bounds(cap="> 0"))
def token_tis(log_rho, mask, *, cap=2.0):
  """Token truncated IS: w_t = min(ρ_t, cap)."""
  return jnp.minimum(_exp(log_rho), cap) * mask, None


@register_correction("seq_tis", check=bounds(cap="> 0"))
def seq_tis(log_rho, mask, *, cap=2.0):
  """Sequence truncated IS: w = min(Π_t ρ_t, cap) on every token of the sequence."""
  return jnp.minimum(_exp(_seq_sum(log_rho, mask)), cap) * mask, None


@register_correction("token_mis", check=all_of(bounds(low=">= 0", high="> 0"), _low_below_high))
def token_mis(log_rho, mask, *, low=0.5, high=2.0):
  """Token masked IS: tokens with ρ_t outside [low, high] are rejected; the others keep
  w_t = ρ_t."""
  rho = _exp(log_rho)
  accept = _within(rho, low, high) * mask
  return rho * accept, accept


@register_correction("seq_mis", check=all_of(bounds(low=">= 0", high="> 0"), _low_below_high))
def seq_mis(log_rho, mask, *, low=0.5, high=2.0):
  """Sequence masked IS: sequences whose Π_t ρ_t lies outside [low, high] are rejected; the
  others keep w = Π_t ρ_t on every token."""
  rho = _exp(_seq_sum(log_rho, mask))
  accept = _within(rho, low, high) * mask
  return rho * accept, accept


@register_correction("geo_rs", check=all_of(bounds(low=">= 0", high="> 0"), _low_below_high))
def geo_rs(log_rho, mask, *, low=0.999, high=1.001):
  """Geometric rejection sampling: sequences whose geometric-mean ratio
  exp(mean_t log ρ_t) lies outside [low, high] are rejected; no weight (w = 1)."""
  mean = _seq_sum(log_rho, mask) / jnp.maximum(jnp.sum(mask, axis=-1, keepdims=True), 1.0)
  return None, _within(_exp(mean), low, high) * mask


@dataclasses.dataclass(frozen=True)
class Correction:
  """A chosen correction with its resolved caps; `__call__(log_rho, mask)`."""
  name: str
  kw: Mapping[str, Any]

  @property
  def on(self) -> bool:
    """Whether the step must keep π_old apart from μ (a teacher-forced pass computes it)."""
    return self.name != "none"

  def __call__(self, log_rho: Array, mask: Array) -> tuple[Array | None, Array | None]:
    weight, accept = CORRECTIONS[self.name].fn(log_rho, mask, **self.kw)
    return (None if weight is None else jax.lax.stop_gradient(weight),
            None if accept is None else jax.lax.stop_gradient(accept))


def _kw(mapping: Any) -> dict[str, Any]:
  if mapping is None:
    return {}
  return dict(mapping.to_dict() if hasattr(mapping, "to_dict") else mapping)


def problems(alg: Mapping[str, Any]) -> list[str]:
  """'config.algorithm.rollout_correction[_kw]: why' for an unknown correction or bad caps."""
  name = alg.get("rollout_correction", "none")
  try:
    component = CORRECTIONS[name]
  except ValueError as e:
    return [f"config.algorithm.rollout_correction: {e}"]
  why = component.check(_kw(alg.get("rollout_correction_kw")))
  return [f"config.algorithm.rollout_correction_kw: {why}"] if why else []


def from_config(alg: Mapping[str, Any]) -> Correction:
  """The `algorithm` block's correction (default "none"); ValueError naming the field."""
  bad = problems(alg)
  if bad:
    raise ValueError(bad[0])
  name = alg.get("rollout_correction", "none")
  return Correction(name, CORRECTIONS[name].resolve(_kw(alg.get("rollout_correction_kw"))))


def reweight(logp: Array, weight: Array) -> Array:
  """logp in value, weight · ∇logp in gradient (per token): sg(logp) + w·(logp − sg(logp))."""
  frozen = jax.lax.stop_gradient(logp)
  return frozen + weight * (logp - frozen)


def diagnostics(mu_logp: Array, old_logp: Array, mask: Array,
                corrected: tuple[Array | None, Array | None] | None = None) -> dict[str, Array]:
  """Sampler vs learner on the same tokens, logged by every run (float32 scalars).

  Args: mu_logp μ, old_logp π_old, mask the sampled tokens [n, t]; corrected: a correction's
  (weight, accept) (their None: 1, every token), or None without one, when the weights
  reported are the untruncated ratios ρ (what a correction would start from).
  Returns, with log ρ = old_logp − mu_logp over the N valid tokens:
    mismatch_k1 = mean(−log ρ) (k1 estimate of KL(μ‖π_old)); mismatch_k3 = mean(ρ − 1 − log ρ);
    is_weight_mean / is_weight_max: of w over the accepted tokens; is_masked_frac: the share of
    valid tokens rejected; is_ess = (Σ w)² / (N Σ w²) over the valid tokens (rejected: w = 0),
    the effective sample size as a fraction of N (verl's rollout_is_eff_sample_size without its
    clamp; PipelineRL's (Σw)²/Σw² divided by N).
  """
  mask = mask.astype(jnp.float32)
  log_rho = jnp.clip(old_logp - mu_logp, -SAFETY_BOUND, SAFETY_BOUND) * mask
  rho = jnp.exp(log_rho)
  n = jnp.maximum(jnp.sum(mask), 1.0)
  weight, accept = (rho, None) if corrected is None else corrected
  accept = mask if accept is None else accept * mask
  weight = accept if weight is None else weight * accept
  kept = jnp.maximum(jnp.sum(accept), 1.0)
  sq = jnp.sum(weight * weight)
  return dict(
      mismatch_k1=jnp.sum(-log_rho) / n,
      mismatch_k3=jnp.sum((rho - 1.0 - log_rho) * mask) / n,
      is_weight_mean=jnp.sum(weight) / kept,
      is_weight_max=jnp.max(jnp.where(accept > 0, weight, 0.0)),
      is_masked_frac=1.0 - jnp.sum(accept) / n,
      is_ess=jnp.where(sq > 0, jnp.square(jnp.sum(weight)) / (n * jnp.where(sq > 0, sq, 1.0)),
                       0.0))
