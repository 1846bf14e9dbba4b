"""Clip-Cov and KL-Cov: policy losses that act on the few tokens whose advantage and log-prob
covary most (Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning
Language Models", arXiv 2505.22617, §4).

The paper's first-order account of entropy under a softmax policy is
ΔH ≈ −Cov_{a∼π}(log π(a|s), A(s, a)) (natural PG): confident tokens with a high advantage lower
entropy. Both losses score each valid token i of the micro-batch by its centred product

    cov_i = (A_i − mean(A)) · (log π_θ(y_i) − mean(log π_θ))      (means over valid tokens, sg)

- Clip-Cov drops the loss (value and gradient) of k = max(1, ⌊r·N⌋) tokens drawn uniformly at
  random among those PPO does not already clip whose cov_i lies strictly inside (lb, ub);
- KL-Cov adds β·|log π_θ − log π_old| to the loss of the k = max(1, ⌊r·N⌋) tokens of largest
  cov_i, with no PPO clipping at all.
N counts the micro-batch's valid tokens: the selection is per micro-batch, as in the reference
(per GPU there), an approximation of the paper's selection over the whole batch.

Reference code, read for this port (not copied): PRIME-RL/Entropy-Mechanism-of-RL
verl/trainer/ppo/core_algos.py@6071b11c, `compute_policy_loss_kl_cov` and
`compute_policy_loss_clip_cov` (the paper's repository); volcengine/verl
verl/trainer/ppo/core_algos.py@012be9d9, the same two functions registered as "kl_cov" and
"clip_cov" (verl takes KL-Cov's fraction as a fraction, the original repository as a percentage).
Where this port differs: the log-ratio is clamped to ±20 before exp (as every loss here); KL-Cov
ties in cov are broken by position (torch.topk leaves them unspecified); ⌊r·N⌋ is exact for r
taken as a fraction with denominator ≤ 10⁴ (the reference's int(r·N) in float64 can round
across an integer); the subgradient of |x| at 0 is 0, as torch's (jnp.abs has 1 there).
"""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp

from rlvr_jax.algorithms import losses
from rlvr_jax.algorithms.registry import all_of, bounds, register_policy_loss

Array = jax.Array


def _f32(x) -> Array:
  return jnp.asarray(x, jnp.float32)


def token_covariance(advantages: Array, logp: Array, mask: Array) -> Array:
  """cov_i = (A_i − mean_M(A)) · (sg(logp_i) − mean_M(sg(logp))), means over the valid tokens of
  the whole array (ALGORITHMS.md §1.2). Args: [..., T]; returns float32 [..., T] under
  stop-gradient (meaningful only where mask > 0)."""
  adv, mask = _f32(advantages), _f32(mask)
  logp = jax.lax.stop_gradient(_f32(logp))
  cov = (adv - losses.masked_mean(adv, mask)) * (logp - losses.masked_mean(logp, mask))
  return jax.lax.stop_gradient(cov)


def selection_size(n_valid: Array, ratio: float) -> Array:
  """k = max(1, ⌊ratio · N⌋) for int32 N, exact for ratio as the nearest fraction with
  denominator ≤ 10⁴ (the reference's `max(int(ratio * N), 1)`)."""
  frac = Fraction(ratio).limit_denominator(10_000)
  p, q = frac.numerator, frac.denominator
  return jnp.maximum(1, p * (n_valid // q) + (p * (n_valid % q)) // q)


def _rank(score: Array) -> Array:
  """Position of each entry of flat `score` in ascending order (ties: earlier first)."""
  order = jnp.argsort(score, stable=True)
  return jnp.zeros_like(order).at[order].set(jnp.arange(order.size, dtype=order.dtype))


def random_subset(candidates: Array, k: Array, draw: Array) -> Array:
  """The min(k, #candidates) candidates with the smallest `draw`: with draw ~ U[0, 1) i.i.d. a
  uniformly random k-subset of them (the reference's torch.randperm). Args: candidates (bool),
  draw [...]; k int scalar. Returns bool [...]."""
  flat = candidates.reshape(-1)
  score = jnp.where(flat, _f32(draw).reshape(-1), jnp.inf)
  return (flat & (_rank(score) < k)).reshape(candidates.shape)


def top_k(score: Array, valid: Array, k: Array) -> Array:
  """The min(k, #valid) valid entries of largest `score` (ties: earlier position first).
  Returns bool of `score`'s shape."""
  flat = valid.reshape(-1)
  key = jnp.where(flat, -_f32(score).reshape(-1), jnp.inf)
  return (flat & (_rank(key) < k)).reshape(score.shape)


def _abs(x: Array) -> Array:
  """|x| whose gradient at 0 is 0 (torch's), so that KL-Cov's penalty has no gradient where
  π_θ = π_old; jnp.abs's is 1 there."""
  return jnp.sign(x) * x


def _band(hp):
  if hp["clip_cov_lb"] >= hp["clip_cov_ub"]:
    return (f"the band is empty: clip_cov_lb ({hp['clip_cov_lb']}) must be below clip_cov_ub "
            f"({hp['clip_cov_ub']})")
  return None


@register_policy_loss("clip_cov", check=all_of(
    bounds(clip_cov_ratio="(0, 1]", clip_low="[0, 1]", clip_high=">= 0"), _band))
def clip_cov(logp, old_logp, advantages, mask, *, key, normalizer=None, agg="token-mean",
             max_len=None, clip_cov_ratio=2e-4, clip_cov_lb=1.0, clip_cov_ub=5.0, clip_low=0.2,
             clip_high=0.2):
  """Clip-Cov: PPO-clip whose loss is dropped on k = max(1, ⌊clip_cov_ratio · N⌋) tokens drawn
  at random (`key`) among the valid, not PPO-clipped tokens with clip_cov_lb < cov < clip_cov_ub.

  ratio = exp(clamp(logp − old_logp, ±20)); pg1 = −A·ratio; pg2 = −A·clip(ratio, 1 − clip_low,
  1 + clip_high); L_t = max(pg1, pg2), 0 on the drawn tokens (which stay in the denominator);
  loss = aggregate(L, mask, agg, max_len, normalizer). The draw: u = uniform(key, mask.shape),
  the k candidates of smallest u (`random_subset`). No dual-clip (the reference has none here).
  Defaults: the reference's (r 2e-4, band (1, 5)); its runs set clip_low = clip_high = 1.

  Metrics: clip_fraction (PPO's), approx_kl, cov_mean (mean cov over valid tokens),
  cov_band_frac (candidates / N), cov_selected_frac (the reference's pg_clipfrac: dropped / N),
  cov_selected_mean (mean cov of the dropped tokens; 0 when none).
  """
  mask, adv = _f32(mask), _f32(advantages)
  valid = mask > 0
  log_ratio = jnp.clip(_f32(logp) - _f32(old_logp), -20.0, 20.0)
  ratio = jnp.exp(log_ratio)
  pg1 = -adv * ratio
  pg2 = -adv * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
  clipped = (pg2 > pg1) & valid
  cov = token_covariance(adv, logp, mask)
  band = valid & ~clipped & (cov > clip_cov_lb) & (cov < clip_cov_ub)
  k = selection_size(jnp.sum(valid, dtype=jnp.int32), clip_cov_ratio)
  dropped = random_subset(band, k, jax.random.uniform(key, mask.shape))
  loss_t = jnp.where(dropped, 0.0, jnp.maximum(pg1, pg2))
  loss = losses.aggregate(loss_t, mask, agg, max_len, normalizer)
  dropped_f = _f32(dropped)
  metrics = {
      "clip_fraction": losses.masked_mean(_f32(clipped), mask),
      "approx_kl": losses.masked_mean(jax.lax.stop_gradient(-log_ratio), mask),
      "cov_mean": losses.masked_mean(cov, mask),
      "cov_band_frac": losses.masked_mean(_f32(band), mask),
      "cov_selected_frac": losses.masked_mean(dropped_f, mask),
      "cov_selected_mean": losses.masked_mean(cov, dropped_f),
  }
  return loss, metrics


@register_policy_loss("kl_cov", needs=("several_updates",),
                      check=bounds(kl_cov_ratio="(0, 1]", ppo_kl_coef=">= 0"))
def kl_cov(logp, old_logp, advantages, mask, *, normalizer=None, agg="token-mean", max_len=None,
           kl_cov_ratio=2e-4, ppo_kl_coef=1.0):
  """KL-Cov: the unclipped importance-weighted PG, plus ppo_kl_coef·|logp − old_logp| on the
  k = max(1, ⌊kl_cov_ratio · N⌋) valid tokens of largest cov.

  d = logp − old_logp; ratio = exp(clamp(d, ±20)); L_t = −A·ratio, + β·|d| on the top-k;
  loss = aggregate(L, mask, agg, max_len, normalizer). With one update per rollout d = 0, and
  |d| has neither value nor gradient there: it needs several updates a rollout (refused
  otherwise). Defaults: verl's kl_cov_ratio 2e-4 and β = 1 (the paper's 7B run used 2e-3, its
  32B run 2e-4; the original repository's k_percent is this × 100).

  Metrics: approx_kl, ppo_kl_abs (mean |d|, what the reference logs), cov_mean,
  cov_selected_frac (k / N), cov_selected_mean (mean cov of the penalised tokens).
  """
  mask, adv = _f32(mask), _f32(advantages)
  valid = mask > 0
  diff = _f32(logp) - _f32(old_logp)
  ratio = jnp.exp(jnp.clip(diff, -20.0, 20.0))
  cov = token_covariance(adv, logp, mask)
  penalised = top_k(cov, valid, selection_size(jnp.sum(valid, dtype=jnp.int32), kl_cov_ratio))
  loss_t = -adv * ratio + jnp.where(penalised, ppo_kl_coef * _abs(diff), 0.0)
  loss = losses.aggregate(loss_t, mask, agg, max_len, normalizer)
  sg_diff = jax.lax.stop_gradient(diff)
  penalised_f = _f32(penalised)
  metrics = {
      "approx_kl": losses.masked_mean(-sg_diff, mask),
      "ppo_kl_abs": losses.masked_mean(jnp.abs(sg_diff), mask),
      "cov_mean": losses.masked_mean(cov, mask),
      "cov_selected_frac": losses.masked_mean(penalised_f, mask),
      "cov_selected_mean": losses.masked_mean(cov, penalised_f),
  }
  return loss, metrics
