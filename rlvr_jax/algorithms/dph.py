"""DPH-RL: an f-divergence to the initial policy π₀ on π₀'s own correct samples, beside the RL loss.

Li et al. 2025, "The Choice of Divergence: A Neglected Key to Mitigating Diversity Collapse in
Reinforcement Learning with Verifiable Reward" (arXiv 2509.07430). Before RL, the prompts π₀
always solves (D_pef) are split off the training set; their correct π₀ samples, with π₀'s token
log-probs, are stored (`python -m rlvr_jax.prepare_dph`). RL trains on the rest (D_exp);
every step also sees a share of the stored rows, on which, with u = π_θ(y_t)/π₀(y_t), y ∼ π₀,

    L = L_RL + coef · aggregate(f(u), stored mask)

for a generator f with f(1) = f′(1) = 0 (so each token's value is ≥ 0 and 0 at π_θ = π₀).
E_{π₀}[f(π_θ/π₀)] is the f-divergence D_f(π_θ‖π₀); a mass-covering f keeps π_θ on what π₀
already solved instead of collapsing onto one answer (the paper's diversity argument).

Generators (`divergence`), as the reference code defines them (seamoke/DPH-RL@486d2e0b,
verl/trainer/ppo/core_algos.py `kl_penalty`, `js_low_var`, `alpha_divergence_f`; chosen by
`sft_loss_mode` in verl/workers/actor/dp_actor.py `update_policy`, the "type == 2" branch):
- "forward": u − log u − 1, verl's k3 (`low_var_kl`, log u clamped to ±20, the value to ±10):
  the low-variance estimate of KL(π₀‖π_θ) on π₀'s samples (the reference's default mode).
- "js_low_var": u log u − (u + 1) log((u + 1)/2), unclamped (E_{π₀} = 2·JS(π_θ, π₀)).
- "alpha": (u^{1−α} − (1 − α)u − α) / (α(α − 1)), α ∈ (0, 1), unclamped.
- "js": k3 of KL(π₀‖M), M = (π₀ + π_θ)/2, i.e. r − log r − 1 with r = (1 + u)/2, clamped like
  "forward". The reference's "js" mode also adds KL(π_θ‖M) toward its reference model on RL rows,
  on a random js_ratio/10 of micro-batches; that half is not built here.
Reference defaults: coef (`sft_loss_coeff`) 0.01, α (`alpha_coeff`) 0.2; the README suggests
coef 0.01–0.05 (forward, alpha) and 0.05–0.2 (js, js_low_var); its scripts run js_low_var.

Where this differs from the reference: there the stored chunk (256 rows) is concatenated after
the RL rows, so with its scripts' sizes it forms mini-batches of its own, a separate optimizer
step on coef·L_f (rows are typed and a micro-batch holds one type). Here each of the step's
`rl.minibatches` updates adds coef·L_f over an equal share of the step's stored rows to its
RL loss (as CHORD adds its demonstrations). L_f is aggregated with `algorithm.loss_agg` over the
stored tokens, as the reference aggregates it with `loss_agg_mode`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rlvr_jax.algorithms import losses
from rlvr_jax.algorithms.registry import all_of, bounds, one_of, register_term

Array = jax.Array

DIVERGENCES = ("forward", "js_low_var", "alpha", "js")
_LOG2 = math.log(2.0)


def _k3(x: Array) -> Array:
  """verl's `low_var_kl` of log-ratio x = log(p/q) on samples of q: e^x − x − 1 with x clamped
  to ±20 and the value to ±10 (the clamps of `losses.kl` "k3")."""
  x = jnp.clip(x, -20.0, 20.0)
  return jnp.clip(jnp.exp(x) - x - 1.0, -10.0, 10.0)


def f_forward_kl(log_u: Array) -> Array:
  """u − log u − 1 (clamped as verl's k3): per token, E_{π₀} = KL(π₀‖π_θ)."""
  return _k3(log_u)


def f_js(log_u: Array) -> Array:
  """u·log u − (u + 1)·log((u + 1)/2), from log u (log(1 + u) as logaddexp(0, log u))."""
  u = jnp.exp(log_u)
  return u * log_u - (u + 1.0) * (jnp.logaddexp(0.0, log_u) - _LOG2)


def f_alpha(log_u: Array, alpha: float) -> Array:
  """(u^{1−α} − (1 − α)·u − α) / (α(α − 1)), α ∈ (0, 1), computed as the equal
  ((u^{1−α} − 1) − (1 − α)(u − 1)) / (α(α − 1)) with expm1, so it is exactly 0 at u = 1."""
  return (jnp.expm1((1.0 - alpha) * log_u) - (1.0 - alpha) * jnp.expm1(log_u)) / (
      alpha * (alpha - 1.0))


def f_js_mixture(log_u: Array) -> Array:
  """k3 of KL(π₀‖M), M = (π₀ + π_θ)/2: r − log r − 1 with log r = log((1 + u)/2) (clamped)."""
  return _k3(jnp.logaddexp(0.0, log_u) - _LOG2)


def generator(logp: Array, pi0_logp: Array, divergence: str, *, alpha: float = 0.2) -> Array:
  """f(u) per token, u = exp(logp − pi0_logp). logp, pi0_logp [..., T] -> float32 [..., T]."""
  log_u = jnp.asarray(logp, jnp.float32) - jnp.asarray(pi0_logp, jnp.float32)
  if divergence == "forward":
    return f_forward_kl(log_u)
  if divergence == "js_low_var":
    return f_js(log_u)
  if divergence == "alpha":
    return f_alpha(log_u, alpha)
  if divergence == "js":
    return f_js_mixture(log_u)
  raise ValueError(f"Unknown DPH divergence {divergence!r}; valid: {', '.join(DIVERGENCES)}.")


@register_term("dph", needs=("stored_samples",),
               check=all_of(one_of("divergence", DIVERGENCES),
                            bounds(coef=">= 0", alpha="(0, 1)")))
def dph(ctx, *, coef=0.01, divergence="forward", alpha=0.2):
  """coef · aggregate(f(π_θ/π₀)) over the stored π₀ rows' tokens (`generator`); metrics
  dph_divergence (the aggregate before coef) and dph_log_ratio (aggregate of log π_θ/π₀)."""
  f_t = generator(ctx.stored_logp, ctx.stored_old_logp, divergence, alpha=alpha)
  value = losses.aggregate(f_t, ctx.stored_mask, ctx.agg, ctx.max_len, ctx.stored_normalizer)
  log_ratio = losses.aggregate(jax.lax.stop_gradient(ctx.stored_logp - ctx.stored_old_logp),
                               ctx.stored_mask, ctx.agg, ctx.max_len, ctx.stored_normalizer)
  # partial sums of the mini-batch means, which the trainer averages over micro-batches
  scale = ctx.micro_batches if ctx.stored_normalizer is not None else 1
  return coef * value, {"dph_divergence": jax.lax.stop_gradient(value) * scale,
                        "dph_log_ratio": log_ratio * scale}
