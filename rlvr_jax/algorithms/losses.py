"""Policy, value, KL and entropy losses and their aggregation over [..., T] token matrices.

Every leading axis of a [..., T] loss matrix is a sequence axis (so [B, G, T] is B·G sequences).
Losses return (scalar, metrics) where metrics are float32 scalars computed on the arrays passed.

Gradient accumulation. Every aggregation mode is numerator / normaliser, where the numerator is a
sum over sequences of the passed micro-batch and the normaliser is a mini-batch statistic
(`aggregate_normalizer`: valid-token count, sequence count or 1). Compute the normaliser once on
the whole mini-batch mask, pass it as `normalizer=` to every micro-batch loss, and SUM the
micro-batch gradients: the result equals the full mini-batch gradient exactly, for every mode.
"""

from fractions import Fraction

import jax
import jax.numpy as jnp

Array = jax.Array

AGGREGATIONS = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean",
                "seq-mean-token-sum-norm")
KL_KINDS = ("k1", "k2", "k3", "abs")
GSPO_AGGREGATION = "seq-mean-token-mean"  # the only one `gspo_loss` computes (GSPO eq. 13)


def _f32(x) -> Array:
  return jnp.asarray(x, jnp.float32)


def check_aggregation(mode: str) -> str:
  """Returns `mode` if it is a loss aggregation mode, else raises ValueError listing them."""
  if mode not in AGGREGATIONS:
    raise ValueError(f"Unknown loss aggregation {mode!r}; valid: {', '.join(AGGREGATIONS)}.")
  return mode


def masked_mean(x: Array, mask: Array, *, premasked: bool = False) -> Array:
  """Σ x·m / max(Σ m, 1): the mean over valid entries (0 when there are none). `premasked`: x
  is already 0 off the mask, so Σ x is summed as it is (the same value; XLA may order that sum
  differently from Σ x·m, so metrics keep the form they were recorded with)."""
  total = jnp.sum(x) if premasked else jnp.sum(x * mask)
  return total / jnp.maximum(jnp.sum(mask), 1.0)


def aggregate_normalizer(mask: Array, mode: str) -> Array:
  """The denominator of `mode` over a whole mini-batch: float32 scalar.

  token-mean: Σ mask (valid tokens); token-sum: 1; seq-mean-*: number of sequences with at least
  one valid token (a fully masked sequence, e.g. a group dropped by dynamic sampling, is excluded).
  """
  check_aggregation(mode)
  mask = _f32(mask)
  if mode == "token-mean":
    return jnp.sum(mask)
  if mode == "token-sum":
    return jnp.ones((), jnp.float32)
  return jnp.sum(_f32(jnp.sum(mask, axis=-1) > 0))


def aggregate(x: Array, mask: Array, mode: str, max_len: int | None = None,
              normalizer: Array | None = None) -> Array:
  """Reduce a token loss matrix L [..., T] with mask M to a scalar (docs/ALGORITHMS.md).

  token-mean = ΣL·M / ΣM · token-sum = ΣL·M · seq-mean-token-sum = mean_b Σ_t L·M ·
  seq-mean-token-mean = mean_b (Σ_t L·M / Σ_t M) ·
  seq-mean-token-sum-norm = mean_b (Σ_t L·M) / L_max (Dr. GRPO; L_max = max_len, default T).
  mean_b runs over sequences with a valid token. `normalizer` (see `aggregate_normalizer`)
  replaces this batch's denominator by the mini-batch one, for exact gradient accumulation.
  """
  check_aggregation(mode)
  x, mask = _f32(x), _f32(mask)
  if mode == "seq-mean-token-mean":
    seq_sum = jnp.sum(x * mask, axis=-1)
    numer = jnp.sum(seq_sum / jnp.maximum(jnp.sum(mask, axis=-1), 1.0))
  else:
    numer = jnp.sum(x * mask)
  if mode == "seq-mean-token-sum-norm":
    numer = numer / (x.shape[-1] if max_len is None else max_len)
  denom = aggregate_normalizer(mask, mode) if normalizer is None else _f32(normalizer)
  return numer / jnp.where(denom > 0, denom, 1.0)


def policy_loss(logp: Array, old_logp: Array, advantages: Array, mask: Array, *,
                clip_low: float = 0.2, clip_high: float = 0.2, dual_clip: float | None = None,
                agg: str = "token-mean", max_len: int | None = None,
                normalizer: Array | None = None) -> tuple[Array, dict[str, Array]]:
  """PPO-clip surrogate (Schulman et al. 2017) with clip-higher (DAPO) and dual-clip (Ye et al.
  2020) options.

  ratio = exp(clamp(logp − old_logp, ±20));
  L_t = max(−ratio·A, −clip(ratio, 1 − clip_low, 1 + clip_high)·A);
  dual-clip c: for A < 0, L_t = min(L_t, −c·A). Aggregated with `aggregate(..., agg)`.

  Args: logp, old_logp, advantages, mask [..., T]. Returns (loss, metrics) with metrics
  clip_fraction, dual_clip_fraction, approx_kl (mean of old_logp − logp), ratio_mean, all
  token means over this batch's valid tokens.
  """
  mask, adv = _f32(mask), _f32(advantages)
  log_ratio = jnp.clip(_f32(logp) - _f32(old_logp), -20.0, 20.0)
  ratio = jnp.exp(log_ratio)
  loss_unclipped = -adv * ratio
  loss_clipped = -adv * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
  loss_t = jnp.maximum(loss_unclipped, loss_clipped)
  dual_clipped = jnp.zeros_like(loss_t, dtype=bool)
  if dual_clip is not None:
    dual_clipped = (adv < 0) & (loss_t > -dual_clip * adv)
    loss_t = jnp.where(dual_clipped, -dual_clip * adv, loss_t)
  loss = aggregate(loss_t, mask, agg, max_len, normalizer)
  sg = jax.lax.stop_gradient
  metrics = {
      "clip_fraction": masked_mean(_f32(loss_clipped > loss_unclipped), mask),
      "dual_clip_fraction": masked_mean(_f32(dual_clipped), mask),
      "approx_kl": masked_mean(sg(-log_ratio), mask),
      "ratio_mean": masked_mean(sg(ratio), mask),
  }
  return loss, metrics


def gspo_loss(logp: Array, old_logp: Array, advantages: Array, mask: Array, *,
              clip_low: float = 3e-4, clip_high: float = 4e-4,
              normalizer: Array | None = None) -> tuple[Array, dict[str, Array]]:
  """GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization"), GSPO-token form (eq. 13).

  s_i = exp(mean_t(logp − old_logp)) over valid tokens, clamped to exp(±20); per token
  s_{i,t} = sg(s_i) · π(y_t) / sg(π(y_t)), whose value is s_i and whose gradient is the
  sequence-level one; L_t = max(−s_{i,t}·A_t, −clip(s_{i,t}, 1 − clip_low, 1 + clip_high)·A_t);
  loss = (1/N) Σ_i (1/|y_i|) Σ_t L_t over the N sequences with a valid token, as eq. 13 defines
  it (`GSPO_AGGREGATION`). There is no aggregation argument: any other mode weights sequences by
  their length, which is not GSPO's objective (token-mean gave −0.4999 where it is 8e-5). With A
  constant over a sequence this is −mean_i min(s_i A_i, clip(s_i) A_i) (value and gradient).
  `normalizer` = `aggregate_normalizer(mini-batch mask, GSPO_AGGREGATION)` for accumulation.

  Args: logp, old_logp, advantages, mask [..., T]. Returns (loss, metrics) with clip_fraction
  (fraction of sequences clipped) and approx_kl.
  """
  mask, adv = _f32(mask), _f32(advantages)
  logp = _f32(logp)
  sg = jax.lax.stop_gradient
  log_ratio = logp - _f32(old_logp)
  seq_log_ratio = jnp.sum(log_ratio * mask, axis=-1, keepdims=True) / jnp.maximum(
      jnp.sum(mask, axis=-1, keepdims=True), 1.0)
  seq_log_ratio = jnp.clip(seq_log_ratio, -20.0, 20.0)
  ratio = jnp.exp(sg(seq_log_ratio) + logp - sg(logp))
  loss_unclipped = -adv * ratio
  loss_clipped = -adv * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
  loss_t = jnp.maximum(loss_unclipped, loss_clipped)
  loss = aggregate(loss_t, mask, GSPO_AGGREGATION, normalizer=normalizer)
  has_tokens = _f32(jnp.sum(mask, axis=-1) > 0)
  seq_clipped = jnp.any((loss_clipped > loss_unclipped) & (mask > 0), axis=-1)
  metrics = {
      "clip_fraction": masked_mean(_f32(seq_clipped), has_tokens),
      "approx_kl": masked_mean(sg(-log_ratio), mask),
  }
  return loss, metrics


def cispo_loss(logp: Array, old_logp: Array, advantages: Array, mask: Array, *,
               clip_low: float = 1.0, clip_high: float = 4.0, agg: str = "token-mean",
               max_len: int | None = None, normalizer: Array | None = None
               ) -> tuple[Array, dict[str, Array]]:
  """CISPO, clipped IS-weight policy optimisation (MiniMax-M1, arXiv 2506.13585).

  ratio = exp(clamp(logp − old_logp, ±20)); ρ̂ = clip(ratio, 1 − clip_low, 1 + clip_high);
  L_t = −sg(ρ̂)·A_t·logp_t, aggregated with `aggregate(..., agg)` (the paper: token-mean over
  the batch). The gradient is −ρ̂·A_t·∇logp_t on every valid token: unlike PPO-clip no token's
  gradient is dropped, only its weight is truncated. clip_low = 1 leaves the lower side
  unbounded (ratios are > 0), which is what MiniMax-M1 does ("we did not impose a lower bound");
  MiniMax-M1 gives no value for its tuned upper side; clip_high = 4 is the bound ε_max = 5 of
  ScaleRL (arXiv 2510.13786, clip(ratio, 0, ε_max); it found ε_max in {4, 5, 8} alike).

  Args: logp, old_logp, advantages, mask [..., T]. Returns (loss, metrics) with metrics
  clip_fraction (tokens whose weight was truncated), approx_kl, ratio_mean over valid tokens.
  """
  mask, adv, logp = _f32(mask), _f32(advantages), _f32(logp)
  sg = jax.lax.stop_gradient
  log_ratio = sg(jnp.clip(logp - _f32(old_logp), -20.0, 20.0))
  ratio = jnp.exp(log_ratio)
  weight = jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
  loss = aggregate(-weight * adv * logp, mask, agg, max_len, normalizer)
  metrics = {
      "clip_fraction": masked_mean(_f32(weight != ratio), mask),
      "approx_kl": masked_mean(-log_ratio, mask),
      "ratio_mean": masked_mean(ratio, mask),
  }
  return loss, metrics


def kl(logp: Array, ref_logp: Array, kind: str = "k3") -> Array:
  """Per-token KL(π‖π_ref) estimators (Schulman 2020, "Approximating KL divergence"), with
  x = ref_logp − logp on tokens sampled from π:

    k1 = −x;  k2 = ½x²;  k3 = clamp(eˣ − 1 − x, −10, 10) (verl `low_var_kl`, x clamped to ±20
    first so the gradient stays finite);  abs = |x|.

  All are unbiased-or-low-variance estimates of the *value* KL(π‖π_ref), but their gradients
  differ by use:
  * Differentiated loss term (GRPO-style `loss += β·aggregate(kl(...))`): ∇k1 = ∇logp, zero in
    expectation (no regularisation); ∇k2 = (logp − ref_logp)∇logp, the exact ∇KL(π‖π_ref) in
    expectation; ∇k3 = (1 − π_ref/π)∇logp, whose expectation is ∇KL(π_ref‖π) (forward KL);
    ∇abs = sign(logp − ref_logp)∇logp.
  * Reward penalty (REINFORCE++ / PURE: `r_t −= β·stop_gradient(kl(...))`, credited through the
    policy gradient): k1 gives the unbiased score-function gradient of KL(π‖π_ref); k2, k3 and
    abs are biased there.

  Args: logp, ref_logp [..., T]. Returns [..., T] float32.
  """
  x = _f32(ref_logp) - _f32(logp)
  if kind == "k1":
    return -x
  if kind == "k2":
    return 0.5 * jnp.square(x)
  if kind == "k3":
    x = jnp.clip(x, -20.0, 20.0)
    return jnp.clip(jnp.exp(x) - 1.0 - x, -10.0, 10.0)
  if kind == "abs":
    return jnp.abs(x)
  raise ValueError(f"Unknown KL estimator {kind!r}; valid: {', '.join(KL_KINDS)}.")


def token_entropy(logits: Array, temperature: float = 1.0) -> Array:
  """Entropy of softmax(logits / temperature) per position: [..., V] -> [..., T] float32."""
  return entropy_from_logp(jax.nn.log_softmax(_f32(logits) / temperature, axis=-1))


def entropy_from_logp(logp_tv: Array) -> Array:
  """H = −Σ_v p_v log p_v per position, from normalised log-probs [..., V] -> [...]."""
  return -jnp.sum(jnp.exp(logp_tv) * logp_tv, axis=-1)


def entropy_bonus(entropy: Array, mask: Array, *, coef: float, agg: str = "token-mean",
                  max_len: int | None = None, normalizer: Array | None = None) -> Array:
  """Entropy regularisation loss term: −coef · aggregate(H, mask, agg). Args: entropy [..., T]."""
  return -coef * aggregate(entropy, mask, agg, max_len, normalizer)


def _ceil_frac_times(n: Array, frac: Fraction) -> Array:
  """Exact ⌈frac · n⌉ for int32 n via n = q·(n // q) + n % q (no float rounding at integers)."""
  p, q = frac.numerator, frac.denominator
  return p * (n // q) + (p * (n % q) + q - 1) // q


def high_entropy_mask(entropy: Array, mask: Array, top_frac: float = 0.2,
                      invert: bool = False) -> Array:
  """Keep the top k = max(1, ⌈ρ·N⌉) valid tokens by entropy (Wang et al. 2025, "Beyond the 80/20
  Rule: High-Entropy Minority Tokens Drive Effective RL for LLM Reasoning").

  N counts valid tokens over the whole array passed (one micro-batch). Ties are broken by flat
  position (earlier first), so the result is deterministic. ρ is taken as the nearest fraction
  with denominator ≤ 10⁴ (exact for decimal fractions such as 0.2) so ⌈ρ·N⌉ is exact.
  Multiply the returned mask into the policy-loss mask; advantages are unchanged.
  `invert=True` keeps the complement instead: the N − k valid tokens *not* in that top set (the
  paper's contrast, "the 80% lowest-entropy tokens" at ρ = 0.2); with N = 1 it keeps nothing.

  Args: entropy, mask [..., T]. Returns a float32 mask of the same shape.
  """
  valid = _f32(mask).reshape(-1) > 0
  n_valid = jnp.sum(valid, dtype=jnp.int32)
  k = jnp.maximum(1, _ceil_frac_times(n_valid, Fraction(top_frac).limit_denominator(10_000)))
  score = jnp.where(valid, _f32(entropy).reshape(-1), -jnp.inf)
  order = jnp.argsort(-score, stable=True)
  rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.size, dtype=order.dtype))
  keep = (rank >= k) if invert else (rank < k)
  return _f32(valid & keep).reshape(jnp.shape(mask))


def value_loss(values: Array, old_values: Array, returns: Array, mask: Array, *,
               clip: float = 0.2, agg: str = "token-mean", max_len: int | None = None,
               normalizer: Array | None = None) -> tuple[Array, dict[str, Array]]:
  """Clipped value loss (PPO; docs/ALGORITHMS.md GAE section):
  ½·max((V − R)², (V_old + clip(V − V_old, ±ε_v) − R)²), aggregated with `agg`.

  Args: values, old_values, returns, mask [..., T]. Returns (loss, metrics{value_clip_fraction}).
  """
  v, v_old, ret, mask = _f32(values), _f32(old_values), _f32(returns), _f32(mask)
  v_clipped = v_old + jnp.clip(v - v_old, -clip, clip)
  loss_unclipped = jnp.square(v - ret)
  loss_clipped = jnp.square(v_clipped - ret)
  loss = aggregate(0.5 * jnp.maximum(loss_unclipped, loss_clipped), mask, agg, max_len, normalizer)
  return loss, {"value_clip_fraction": masked_mean(_f32(loss_clipped > loss_unclipped), mask)}

