"""Lp-Reg, low-probability regularisation (Huang et al. 2025, "Low-probability Tokens Sustain
Exploration in Reinforcement Learning with Verifiable Reward", arXiv 2510.03222).

PPO-clip, except on the lowest-probability negative-advantage tokens whose probability is below
the behaviour policy's min-p proxy: there the unclipped policy-gradient term plus a clamped k3
KL toward the proxy, which pushes these "reasoning sparks" back up instead of letting negative
advantages drive them to zero. On one micro-batch's [n, t] arrays:

  ratio_t = exp(clamp(logp_t − old_logp_t, ±20))
  pg_t    = max(−A_t ratio_t, −A_t clip(ratio_t, 1 − clip_low, 1 + clip_high))
  S_neg   = the k lowest sg(logp) among valid tokens with A < 0, k = max(1, ⌊N_neg · neg_frac⌋),
            empty unless k > 1 (the reference's guard; `k_guard=False`: any k, and
            neg_frac = 0 empty); S_pos the same over A > 0 with pos_frac
  S'      = {t ∈ S_neg ∪ S_pos : sg(logp_t) < proxy_logp_t}   (the proxy keeps the token, and
            gives it more probability than the policy does)
  L_t     = −A_t ratio_t + coef · k3(logp_t, proxy_logp_t)   on S';  pg_t elsewhere
  k3(l, p) = clamp(exp(p − l) − (p − l) − 1, −10, 10)          (verl's "low_var_kl")
  loss    = aggregate(L, mask, agg, max_len, normalizer)

∂k3/∂logp = 1 − π_proxy/π_θ < 0 on S' (π_θ < π_proxy): the regulariser raises those tokens.
The proxy (`proxy_logp`, the need of that name) is π_old's min-p filter renormalised: ids whose
RAW probability is below min_p times the top one dropped, the rest renormalised at the sampling
temperature (`models.min_p_logprobs`); filtered sampled tokens get ≈ −1e4 / T, so they are never
in S'. The trainer computes it from the parameters before the update, the sampler's logits when
on-policy and the behaviour pass's otherwise (`training.rollout.advantages`).

Checked against CarlanLark/Lp-Reg-dev (the authors' verl fork):
- `verl/trainer/ppo/core_algos.py` `compute_policy_loss_lp_reg` (read at 700298fb; L648–737
  at 33b27e27 by an earlier reading): selection by `topk(largest=False)` among
  `response_mask > 0` and A < 0 of the micro-batch, `if neg_logp_k > 1`, the
  `log_prob.detach() < tgt_log_prob` test, the unclipped term plus
  `ppo_kl_coef · kl_penalty(..., "low_var_kl")` clamped to ±10, token-mean.
- `verl/workers/actor/dp_actor.py` `apply_min_p` (read at 7e7d20b2): softmax of the raw logits,
  keep p ≥ κ·max p, others to −1e4, then `logits.div_(temperature)` and log-softmax; with
  `minp_old_log_prob=True` the loss reads `minp_old_log_probs`, computed once per rollout by
  `verl/workers/fsdp_workers.py` `compute_minp_log_prob` (8858da2e) with the rollout
  temperature.
- `recipe/lp_reg/Qwen3_14b_lp_reg_onpolicy_64gpu.sh`, `Qwen2.5_32b_lp_reg_onpolicy_64gpu.sh`
  (700298fb): κ = 0.02, neg_frac 0.01 (14B) / 0.005 (32B), pos_frac 0, coef 1, clip_ratio_low
  1.0, clip_ratio_high 9.0, token-mean, T = 1: this function's defaults.
Where this differs: ties in the selection go to the earlier flat position (torch's topk leaves
them unspecified); ⌊N·ρ⌋ is exact for ρ as a fraction with denominator ≤ 10⁴ (the reference's
float64 product gives the same for 0.01 and 0.005); the log-ratio is clamped to ±20 as in our
`ppo`; exp in k3 takes min(p − l, 20), which changes no value below the clamp (k3 > 10 from
p − l ≈ 2.6) and keeps the gradient finite where exp would overflow. The modes not in the
shipped scripts (`minp_soft`, `regular_type="fixed"`, a proxy from the current micro-batch or
from the reference model, separate positive / negative proxy temperatures) are not built.
"""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp

from rlvr_jax.algorithms import losses
from rlvr_jax.algorithms.registry import bounds, register_policy_loss

Array = jax.Array

K3_CLAMP = 10.0
# A sampled token whose proxy log-prob is below this was filtered out by min-p (it sits near
# −1e4 / T; kept tokens are above log(min_p) / T − log v), for temperatures up to ~9.
FILTERED_BELOW = -1000.0


def k3(logp: Array, target_logp: Array) -> Array:
  """clamp(exp(d) − d − 1, −10, 10), d = target − logp: the low-variance KL(π‖target) estimate
  at a token sampled from π (Schulman 2020), as verl's `kl_penalty(..., "low_var_kl")`. The
  exponent is capped at 20, which leaves every unclamped value (k3 reaches 10 near d = 2.6) and
  keeps the gradient 0, not NaN, where exp(d) would overflow."""
  d = target_logp - logp
  return jnp.clip(jnp.exp(jnp.minimum(d, 20.0)) - d - 1.0, -K3_CLAMP, K3_CLAMP)


def _floor_frac_times(n: Array, frac: Fraction) -> Array:
  """Exact ⌊frac · n⌋ for int32 n ≥ 0 and 0 ≤ frac ≤ 1 (no float rounding at integers)."""
  p, q = frac.numerator, frac.denominator
  return p * (n // q) + (p * (n % q)) // q


def lowest(logp: Array, candidates: Array, frac: float, guard: bool = True) -> Array:
  """bool [n, t]: the k candidates with the lowest logp, k = max(1, ⌊N·frac⌋) with N the number
  of candidates (frac as the nearest fraction with denominator ≤ 10⁴); none when `guard` and
  k ≤ 1 (Lp-Reg's `if k > 1`), or when frac is 0. Ties: the earlier flat position first."""
  if frac == 0:
    return jnp.zeros(candidates.shape, bool)
  n = jnp.sum(candidates, dtype=jnp.int32)
  k = jnp.maximum(1, _floor_frac_times(n, Fraction(frac).limit_denominator(10_000)))
  if guard:
    k = jnp.where(k > 1, k, 0)
  key = jnp.where(candidates, logp, jnp.inf).reshape(-1)
  order = jnp.argsort(key, stable=True)
  rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.size, dtype=order.dtype))
  return candidates & (rank < k).reshape(candidates.shape)


@register_policy_loss("lp_reg", needs=("proxy_logp",),
                      check=bounds(min_p="(0, 1]", neg_frac="[0, 1]", pos_frac="[0, 1]",
                                   coef=">= 0", clip_low="[0, 1]", clip_high=">= 0"))
def lp_reg(logp, old_logp, advantages, mask, *, proxy_logp, normalizer=None, agg="token-mean",
           max_len=None, min_p=0.02, neg_frac=0.01, pos_frac=0.0, coef=1.0, clip_low=1.0,
           clip_high=9.0, k_guard=True):
  """Lp-Reg's policy loss (module docstring) on one micro-batch's [n, t] arrays.

  Args:
    logp, old_logp, advantages, mask: as every policy loss; proxy_logp [n, t] the behaviour
      policy's min-p proxy log-probs of the sampled tokens (the trainer fills it).
    min_p: κ of the proxy; the trainer computes proxy_logp with it (this function does not read
      it).
    neg_frac, pos_frac: ρ, the share of negative- / positive-advantage tokens (lowest logp
      first) that may be regularised.
    coef: β, the weight of the k3 term.
    clip_low, clip_high: PPO's clip range elsewhere (the reference runs: [0, 10]).
    k_guard: the reference's `if k > 1`: nothing is regularised unless ⌊N·ρ⌋ ≥ 2 (e.g. ≥ 200
      negative tokens in the micro-batch at ρ = 0.01). False: at least one token whenever ρ > 0.

  Returns (loss, metrics): clip_fraction, approx_kl (as `ppo`'s), lp_reg_lowest_frac (tokens in
  S_neg ∪ S_pos), lp_reg_selected_frac (in S'), both over valid tokens, lp_reg_kl_mean (mean k3
  over S', 0 when empty) and lp_reg_filtered_frac (valid tokens the proxy filtered out).
  """
  del min_p  # the need's parameter: read by the trainer
  sg = jax.lax.stop_gradient
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  logp, adv, mask, proxy = f32(logp), f32(advantages), f32(mask), sg(f32(proxy_logp))
  log_ratio = jnp.clip(logp - f32(old_logp), -20.0, 20.0)
  ratio = jnp.exp(log_ratio)
  loss_unclipped = -adv * ratio
  loss_clipped = -adv * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
  pg_t = jnp.maximum(loss_unclipped, loss_clipped)
  valid, logp_sg = mask > 0, sg(logp)
  low = (lowest(logp_sg, valid & (adv < 0), neg_frac, k_guard)
         | lowest(logp_sg, valid & (adv > 0), pos_frac, k_guard))
  selected = low & (logp_sg < proxy)
  kl_t = k3(logp, proxy)
  loss_t = jnp.where(selected, loss_unclipped + coef * kl_t, pg_t)
  loss = losses.aggregate(loss_t, mask, agg, max_len, normalizer)
  metrics = {
      "clip_fraction": losses.masked_mean(f32(loss_clipped > loss_unclipped), mask),
      "approx_kl": losses.masked_mean(sg(-log_ratio), mask),
      "lp_reg_lowest_frac": losses.masked_mean(f32(low), mask),
      "lp_reg_selected_frac": losses.masked_mean(f32(selected), mask),
      "lp_reg_kl_mean": losses.masked_mean(sg(kl_t), f32(selected)),
      "lp_reg_filtered_frac": losses.masked_mean(f32(proxy < FILTERED_BELOW), mask),
  }
  return loss, metrics
