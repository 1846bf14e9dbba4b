"""Advantage estimators for RL with verifiable rewards.

Shapes: the group axis G (responses sampled for one prompt) is the last axis of outcome rewards
(`rewards_g` = [..., G]); token tensors add a trailing T axis ([..., G, T]). Leading axes are
arbitrary, every function is jittable and vmappable, and outputs are float32 with 0 on masked
tokens. The exact math is in docs/ALGORITHMS.md; each docstring names its paper.
"""

import jax
import jax.numpy as jnp

Array = jax.Array


def _f32(x) -> Array:
  return jnp.asarray(x, jnp.float32)


def _safe_div(num: Array, den: Array) -> Array:
  """num / den, 0 where den == 0 (no NaN in values or gradients)."""
  ok = den != 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def broadcast_to_tokens(adv_g: Array, mask_gt: Array) -> Array:
  """Outcome advantage [..., G] -> token advantage [..., G, T]: A_i on valid tokens, 0 elsewhere."""
  return _f32(adv_g)[..., None] * _f32(mask_gt)


def last_token_onehot(mask_t: Array) -> Array:
  """[..., T] float32, 1 at the last valid token of each row (the EOS), 0 elsewhere / empty rows."""
  valid_t = _f32(mask_t) > 0
  t = valid_t.shape[-1]
  last = t - 1 - jnp.argmax(valid_t[..., ::-1], axis=-1)
  onehot_t = jnp.arange(t) == last[..., None]
  return _f32(onehot_t & jnp.any(valid_t, axis=-1, keepdims=True))


def whiten(x: Array, mask: Array, *, eps: float = 1e-8) -> Array:
  """Global whitening over valid entries: (x − mean) · rsqrt(max(var, eps)), 0 where mask is 0.

  mean and the population variance are taken over every entry with mask > 0 (all axes), as in
  OpenRLHF's advantage normalisation for REINFORCE++. Under vmap the statistics are per slice.
  Computed on x − x_first (x_first: the first valid entry), which changes nothing in exact
  arithmetic but makes all-equal valid entries give exactly 0: the float32 mean of n copies of
  2.3 is one ulp off, and rsqrt(eps) would amplify that ulp 10⁴-fold.
  """
  x = _f32(x)
  mask = jnp.broadcast_to(_f32(mask), x.shape)
  valid = mask > 0
  first = jnp.argmax(valid.reshape(-1))
  x = jnp.where(valid, x - x.reshape(-1)[first], 0.0)  # masked entries never reach the sums
  count = jnp.maximum(jnp.sum(mask), 1.0)
  mean = jnp.sum(x * mask) / count
  var = jnp.sum(jnp.square(x - mean) * mask) / count
  return (x - mean) * jax.lax.rsqrt(jnp.maximum(var, eps)) * mask


# ---------------------------------------------------------------------------------------------
# Outcome advantages: [..., G] -> [..., G].
# ---------------------------------------------------------------------------------------------


def _group_std(rewards_g: Array) -> Array:
  """Unbiased (ddof=1) std over the group axis, keepdims. Requires G >= 2."""
  return jnp.std(rewards_g, axis=-1, ddof=1, keepdims=True)


def _relative_to_first(rewards_g: Array) -> Array:
  """R − R_0 per group: every group baseline is shift-invariant, and after this shift a group
  whose rewards are all equal is exactly 0, so its baseline and std are exactly 0 too. Without it
  the float32 mean of [2.3] × 6 is one ulp off, the std is one ulp, and GRPO gives 0.19."""
  return rewards_g - rewards_g[..., :1]


def grpo(rewards: Array, *, scale_by_std: bool = True, eps: float = 1e-6) -> Array:
  """GRPO group-relative advantage (DeepSeekMath, Shao et al. 2024, eq. 3; verl).

  A_i = (R_i − mean(R)) / (std(R) + eps), std unbiased (ddof=1). `scale_by_std=False` gives
  Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-like training"): A_i = R_i − mean(R).
  A group of one has no baseline and gets 0; a group of equal rewards gets exactly 0.

  Args: rewards [..., G]. Returns [..., G] float32.
  """
  rewards_g = _f32(rewards)
  if rewards_g.shape[-1] < 2:
    return jnp.zeros_like(rewards_g)
  rewards_g = _relative_to_first(rewards_g)
  adv_g = rewards_g - jnp.mean(rewards_g, axis=-1, keepdims=True)
  if scale_by_std:
    adv_g = adv_g / (_group_std(rewards_g) + eps)
  return adv_g


def lite_ppo(rewards: Array, *, eps: float = 1e-6) -> Array:
  """Lite PPO advantage (Liu et al. 2025, "Part I: Tricks or Traps? A Deep Dive into RL for LLM
  Reasoning", arXiv 2508.08221): group-level mean, batch-level std.

  A_i = (R_i − mean_group(R)) / (std_batch(R) + eps), std_batch over every reward passed (all
  axes: the whole batch), unbiased (ddof=1) like `grpo`'s. The paper pairs it with token-level
  loss aggregation (token-mean) and no critic. A group of one gets 0; so does a group of equal
  rewards (exactly, as in `grpo`).

  Args: rewards [..., G]. Returns [..., G] float32.
  """
  rewards_g = _f32(rewards)
  if rewards_g.shape[-1] < 2:
    return jnp.zeros_like(rewards_g)
  return grpo(rewards_g, scale_by_std=False) / (jnp.std(rewards_g, ddof=1) + eps)


def rloo(rewards: Array) -> Array:
  """REINFORCE leave-one-out (Ahmadian et al. 2024): A_i = R_i − (1/(G−1)) Σ_{j≠i} R_j.

  Args: rewards [..., G]. Returns [..., G] float32; a group of one, or of equal rewards, gets 0.
  """
  rewards_g = _f32(rewards)
  g = rewards_g.shape[-1]
  if g < 2:
    return jnp.zeros_like(rewards_g)
  rewards_g = _relative_to_first(rewards_g)
  others_g = jnp.sum(rewards_g, axis=-1, keepdims=True) - rewards_g
  return rewards_g - others_g / (g - 1)


def remax(rewards: Array, greedy_rewards: Array) -> Array:
  """ReMax (Li et al. 2023): A_i = R_i − R(greedy response to the same prompt).

  Args: rewards [..., G]; greedy_rewards [...]. Returns [..., G] float32.
  """
  return _f32(rewards) - _f32(greedy_rewards)[..., None]


def weighted_reinforce(rewards: Array, *, positive_weight: float = 1.0,
                       negative_weight: float = 1.0) -> Array:
  """PSR / NSR / W-REINFORCE (Zhu et al. 2025, "The Surprising Effectiveness of Negative
  Reinforcement in LLM Reasoning"), no baseline.

  A = +positive_weight if R > 0 (correct), −negative_weight otherwise.
  PSR = (1, 0), NSR = (0, 1), W-REINFORCE = (0.1, 1).

  Args: rewards [..., G] (0/1). Returns [..., G] float32.
  """
  correct_g = _f32(rewards) > 0
  return jnp.where(correct_g, positive_weight, -negative_weight).astype(jnp.float32)


# ---------------------------------------------------------------------------------------------
# TEMPO: prefix-tree credit.
# ---------------------------------------------------------------------------------------------


def common_prefix_length(tokens: Array) -> Array:
  """lcp[..., i, k] = number of leading positions where responses i and k have equal raw tokens.

  Args: tokens [..., G, T] int. Returns [..., G, G] int32 (the diagonal is T).
  """
  t = tokens.shape[-1]
  differ_ggt = tokens[..., :, None, :] != tokens[..., None, :, :]
  return jnp.min(jnp.where(differ_ggt, jnp.arange(t, dtype=jnp.int32), t), axis=-1)


def tempo(tokens: Array, rewards: Array, mask: Array, *, scale_by_std: bool = True,
          eps: float = 1e-6) -> Array:
  """TEMPO token advantages ("Exploiting Tree Structure for Credit Assignment in RL Training of
  LLMs"; reference: the authors' verl fork).

  With P_t = responses sharing response i's raw tokens 0..t−1 (padding included) and
  B_t = those sharing 0..t:
    A[i, t] = (R_i − μ + mean R[B_t] − mean R[P_t]) / (σ + eps)   on valid tokens, 0 elsewhere,
  μ = mean(R), σ = std(R, ddof=1) over the group. Once the prefix is unique (|P_t| = 1) the TD
  term is 0, so the row keeps (R_i − μ)/(σ + eps). Identical responses reduce to GRPO; a group
  of one, or of equal rewards, gives 0; `scale_by_std=False` drops the division. Vectorized through the pairwise common
  prefix length: k ∈ B_t ⇔ lcp[i, k] > t and k ∈ P_t ⇔ lcp[i, k] ≥ t; i is always in both, so
  the means never divide by zero.

  Args: tokens [..., G, T] int; rewards [..., G]; mask [..., G, T]. Returns [..., G, T] float32.
  """
  rewards_g, mask_gt = _f32(rewards), _f32(mask)
  g, t = tokens.shape[-2:]
  if g < 2:
    return jnp.zeros(tokens.shape, jnp.float32)
  rewards_g = _relative_to_first(rewards_g)
  lcp_gg1 = common_prefix_length(tokens)[..., None]
  t_idx = jnp.arange(t, dtype=jnp.int32)
  r_g1g1 = rewards_g[..., None, :, None]

  def group_mean(member_ggt):  # mean of R over the k axis restricted to members
    return (jnp.sum(jnp.where(member_ggt, r_g1g1, 0.0), axis=-2)
            / jnp.sum(member_ggt, axis=-2, dtype=jnp.float32))

  td_gt = group_mean(lcp_gg1 > t_idx) - group_mean(lcp_gg1 >= t_idx)
  adv_gt = (rewards_g - jnp.mean(rewards_g, axis=-1, keepdims=True))[..., None] + td_gt
  if scale_by_std:
    adv_gt = adv_gt / (_group_std(rewards_g)[..., None] + eps)
  return adv_gt * mask_gt


# ---------------------------------------------------------------------------------------------
# Token-level returns: GAE, REINFORCE++.
# ---------------------------------------------------------------------------------------------


def _reverse_scan_t(step, init, *xs_t):
  """lax.scan over the trailing T axis from t = T−1 down to 0; outputs keep [..., T] layout."""
  xs = tuple(jnp.moveaxis(x, -1, 0) for x in xs_t)
  _, out = jax.lax.scan(step, init, xs, reverse=True)
  return jnp.moveaxis(out, 0, -1)


def discounted_returns(rewards: Array, mask: Array, *, gamma: float = 1.0) -> Array:
  """G_t = Σ_{t'≥t} γ^{t'−t} r_{t'} over valid tokens (masked tokens are skipped, return 0).

  Args: rewards [..., T]; mask [..., T]. Returns [..., T] float32.
  """
  rewards_t, mask_t = _f32(rewards), _f32(mask)

  def step(next_return, xs):
    r, m = xs
    ret = r + gamma * next_return
    return jnp.where(m > 0, ret, next_return), ret * m

  return _reverse_scan_t(step, jnp.zeros(rewards_t.shape[:-1], jnp.float32), rewards_t, mask_t)


def gae(rewards: Array, values: Array, mask: Array, *, gamma: float = 1.0,
        lam: float = 1.0) -> tuple[Array, Array]:
  """Generalized Advantage Estimation (Schulman et al. 2016), token level.

  δ_t = r_t + γ·V_{t+1} − V_t with V = 0 past the last valid token; A_t = Σ_l (γλ)^l δ_{t+l}
  (reverse lax.scan); value targets = A + V. Masked tokens are skipped (the next *valid* token
  supplies V_{t+1}, as in verl) and get 0.

  Args: rewards, values, mask [..., T]. Returns (advantages, returns), each [..., T] float32.
  """
  rewards_t, values_t, mask_t = _f32(rewards), _f32(values), _f32(mask)

  def step(carry, xs):
    next_adv, next_value = carry
    r, v, m = xs
    adv = r + gamma * next_value - v + gamma * lam * next_adv
    valid = m > 0
    carry = (jnp.where(valid, adv, next_adv), jnp.where(valid, v, next_value))
    return carry, adv * m

  zeros = jnp.zeros(rewards_t.shape[:-1], jnp.float32)
  adv_t = _reverse_scan_t(step, (zeros, zeros), rewards_t, values_t, mask_t)
  return adv_t, (adv_t + values_t) * mask_t


def outcome_token_rewards(rewards: Array, mask: Array, kl: Array | None = None, *,
                          kl_coef: float = 0.0) -> Array:
  """RLHF token rewards: r_t = −kl_coef·KL_t on valid tokens, plus R at the last valid token.

  Args: rewards [...]; mask, kl [..., T]. Returns [..., T] float32.
  """
  mask_t = _f32(mask)
  token_r_t = _f32(rewards)[..., None] * last_token_onehot(mask_t)
  if kl is not None:
    token_r_t = token_r_t - kl_coef * _f32(kl) * mask_t
  return token_r_t


def reinforce_plus_plus(rewards: Array, mask: Array, kl: Array | None = None, *,
                        kl_coef: float = 0.0, gamma: float = 1.0, baseline: bool = False,
                        eps: float = 1e-8) -> Array:
  """REINFORCE++ (Hu 2025; OpenRLHF).

  Token reward r_t = −β·KL_t, plus R at the last valid token; G_t = Σ_{t'≥t} γ^{t'−t} r_{t'};
  advantages = whiten(G) over all valid tokens of the batch (all leading axes). `baseline=True`
  first subtracts the group mean of R (REINFORCE++-baseline; a group of equal rewards then
  contributes exactly 0). Pass `kl` as a stop-gradient per-token estimate (k1 in OpenRLHF), see
  `losses.kl`.

  Args: rewards [..., G]; mask [..., G, T]; kl [..., G, T] or None. Returns [..., G, T] float32.
  """
  rewards_g, mask_gt = _f32(rewards), _f32(mask)
  if baseline:
    rewards_g = _relative_to_first(rewards_g)
    rewards_g = rewards_g - jnp.mean(rewards_g, axis=-1, keepdims=True)
  token_r_gt = outcome_token_rewards(rewards_g, mask_gt, kl, kl_coef=kl_coef)
  returns_gt = discounted_returns(token_r_gt, mask_gt, gamma=gamma)
  return whiten(returns_gt, mask_gt, eps=eps)


# ---------------------------------------------------------------------------------------------
# PURE: process rewards with min-form credit assignment.
# ---------------------------------------------------------------------------------------------


def segment_steps(step_end: Array, mask: Array) -> tuple[Array, Array]:
  """Reasoning-step bookkeeping for token-level process rewards (PURE, Cheng et al. 2025).

  A step is the run of valid tokens ending at (and including) a step-end token.
  Returns:
    step_id [..., T] int32: index of the step each token belongs to (0-based).
    step_len [..., T] float32: the step's valid-token count at its step-end token, 0 elsewhere.
  Args: step_end, mask [..., T].
  """
  end_t = _f32(step_end) * _f32(mask)
  step_id = (jnp.cumsum(end_t, axis=-1) - end_t).astype(jnp.int32)
  count_t = jnp.cumsum(_f32(mask), axis=-1)
  end_count_t = jax.lax.cummax(end_t * count_t, axis=end_t.ndim - 1)
  prev_end_count_t = jnp.concatenate(
      [jnp.zeros_like(end_count_t[..., :1]), end_count_t[..., :-1]], axis=-1)
  return step_id, (count_t - prev_end_count_t) * end_t


def place_at_step_ends(step_values: Array, step_end: Array, mask: Array) -> Array:
  """Scatter per-step scores [..., K] onto their step-end tokens: [..., T], 0 elsewhere."""
  step_id_t, _ = segment_steps(step_end, mask)
  k = step_values.shape[-1]
  vals_t = jnp.take_along_axis(_f32(step_values), jnp.minimum(step_id_t, k - 1), axis=-1)
  return vals_t * _f32(step_end) * _f32(mask)


def min_form(step_rewards: Array, step_mask: Array, *, temperature: float = 0.1) -> Array:
  """PURE min-form transform (Cheng et al. 2025, "Stop Summation: Min-Form Credit Assignment Is
  All Process Reward Model Needs for Reasoning", eq. 6; reference: the authors' OpenRLHF code).

  w = softmax_k(−r_k / T) over valid steps, r'_k = w_k · r_k, so Σ_k r'_k → min_k r_k as T → 0.
  Works on a step layout [..., K] or on a token layout [..., T] with step_mask = step-end tokens.

  Args: step_rewards, step_mask [..., K]. Returns [..., K] float32, 0 where step_mask is 0.
  """
  r, m = _f32(step_rewards), _f32(step_mask)
  z = jnp.where(m > 0, -r / temperature, -jnp.inf)
  z_max = jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
  e = jnp.exp(z - jnp.where(jnp.isfinite(z_max), z_max, 0.0))  # 0 on invalid steps
  return _safe_div(e, jnp.sum(e, axis=-1, keepdims=True)) * r


def strict_min_form(step_rewards: Array, step_mask: Array) -> Array:
  """Strict min-form (PURE): rewards whose reverse cumulative sum is exactly the running minimum.

  With m_k = min_{k'≥k} r_{k'} over valid steps, r''_k = m_k − m_{next valid step} (0 past the
  last), so Σ_{k'≥k} r''_{k'} = m_k = V(s_k) of the paper.

  Args: step_rewards, step_mask [..., K] (or token layout). Returns [..., K] float32.
  """
  r, m = _f32(step_rewards), _f32(step_mask)
  valid = m > 0
  run_min = jax.lax.cummin(jnp.where(valid, r, jnp.inf), axis=r.ndim - 1, reverse=True)
  next_min = jnp.concatenate([run_min[..., 1:], jnp.full_like(run_min[..., :1], jnp.inf)], -1)
  next_min = jnp.where(jnp.isinf(next_min), 0.0, next_min)
  return jnp.where(valid, run_min - next_min, 0.0)


def pure_token_returns(process_rewards: Array, step_end: Array, mask: Array, *,
                       verifiable_rewards: Array | None = None, verifiable_coef: float = 1.0,
                       kl: Array | None = None, kl_coef: float = 0.0,
                       eps: float = 1e-8) -> Array:
  """PURE token advantages from (already transformed) step rewards at step-end tokens.

  Following docs/ALGORITHMS.md / the PURE reference:
    1. baseline b_i = Σ_{j≠i} S_j / Σ_{j≠i} L_j (S = sample's step-reward total, L = its valid
       token count); each step-end reward is reduced by b_i × (that step's valid-token count,
       step-end token included);
    2. PRM+VR: the verifiable reward v = R − 1 ∈ {−1, 0} enters as coef · (v_i − mean_{j≠i} v_j)
       at the EOS (last valid) token;
    3. per-token KL penalty −kl_coef · kl (stop-gradient k1 in the paper, kl_coef = 0.001);
    4. returns = reverse cumulative sum (γ = 1);
    5. advantages at step-end tokens (EOS included) are zeroed, and the rest are whitened over the
       batch excluding those zeros.
  The last valid token always ends a step, whether or not `step_end` marks it.

  Args: process_rewards [..., G, T] (min_form / strict_min_form / raw for sum-form, placed at
  step-end tokens); step_end, mask [..., G, T]; verifiable_rewards [..., G] (solved ∈ {0, 1});
  kl [..., G, T]. Returns [..., G, T] float32.
  """
  mask_gt = _f32(mask)
  eos_gt = last_token_onehot(mask_gt)
  end_gt = jnp.maximum(_f32(step_end) * mask_gt, eos_gt)
  pr_gt = _f32(process_rewards) * end_gt
  total_g = jnp.sum(pr_gt, axis=-1)
  length_g = jnp.sum(mask_gt, axis=-1)
  others = lambda x: jnp.sum(x, axis=-1, keepdims=True) - x
  baseline_g = _safe_div(others(total_g), others(length_g))
  _, step_len_gt = segment_steps(end_gt, mask_gt)
  token_r_gt = pr_gt - baseline_g[..., None] * step_len_gt
  if verifiable_rewards is not None:
    vr_g = rloo(_f32(verifiable_rewards) - 1.0)
    token_r_gt = token_r_gt + verifiable_coef * vr_g[..., None] * eos_gt
  if kl is not None:
    token_r_gt = token_r_gt - kl_coef * _f32(kl) * mask_gt
  returns_gt = discounted_returns(token_r_gt, mask_gt)
  return whiten(returns_gt, mask_gt * (1.0 - end_gt), eps=eps)


# ---------------------------------------------------------------------------------------------
# PRIME: implicit process rewards.
# ---------------------------------------------------------------------------------------------


def token_rloo(token_rewards: Array, reward_mask: Array) -> Array:
  """Leave-one-out over the group for token rewards (verl's PRIME recipe, `masked_rloo`).

  With m_j = mean of sample j's rewards over its `reward_mask` tokens (0 when it has none):
  r'_{i,t} = r_{i,t} · G/(G−1) − (Σ_j m_j)/(G−1) on masked tokens, 0 elsewhere. With one
  reward per sample (the outcome on its last token) this is RLOO, r_i − mean_{j≠i} r_j.

  Args: token_rewards, reward_mask [..., G, T]. Returns [..., G, T] float32; G = 1 gives 0.
  """
  r_gt, m_gt = _f32(token_rewards), _f32(reward_mask)
  g = r_gt.shape[-2]
  if g < 2:
    return jnp.zeros_like(r_gt)
  mean_g = _safe_div(jnp.sum(r_gt * m_gt, -1), jnp.sum(m_gt, -1))
  # Shift-invariant (the G/(G−1) and (Σ_j m_j)/(G−1) terms of a constant cancel): measured from
  # the first sample's mean, a group whose samples all carry one reward gets exactly 0, as in
  # `_relative_to_first`.
  first = mean_g[..., :1]
  baseline = jnp.sum(mean_g - first, -1)[..., None, None] / (g - 1)
  return ((r_gt - first[..., None]) * (g / (g - 1)) - baseline) * m_gt


def prime(rewards: Array, process_rewards: Array, mask: Array, *, process_coef: float = 5.0,
          outcome_coef: float = 5.0, eps: float = 1e-8) -> Array:
  """PRIME token advantages (Cui et al. 2025, "Process Reinforcement through Implicit Rewards",
  §3.3; the authors' code, verl's `recipe/prime`).

  Each reward source gets its own leave-one-out baseline inside the group (`token_rloo`): the
  implicit process rewards r_φ(y_t) = β·log(π_φ(y_t|y<t) / π_ref(y_t|y<t)) on every valid token,
  and the outcome reward r_o on the last valid token. Then
  r_t = process_coef · rloo(r_φ)_t + outcome_coef · rloo(r_o)_t, returns G_t = Σ_{t'≥t} r_{t'}
  (γ = 1), and advantages = whiten(G) over every valid token of the batch (all leading axes).

  The baseline form (G/(G−1) scaling, the sum over all G samples' token means) and the
  whitening are the authors' released code (verl `recipe/prime`, `compute_rloo_advantage_return`);
  the paper writes the process baseline as the mean over the other samples' rewards and does not
  whiten; for the outcome source the two agree exactly. Two verl options are left out: its "token"
  granularity zeroes the last token's process reward (kept here, as the paper defines r_φ on every
  token), and its `prime_norm: batch_norm` (its yaml default, not in the paper) divides r_φ by
  the batch's largest |Σ_{t'≥t} r_φ| before the baseline.

  Args: rewards [..., G] outcome rewards; process_rewards [..., G, T] r_φ (already × β, 0 on
  padding); mask [..., G, T]. Returns [..., G, T] float32, 0 on masked tokens.
  """
  mask_gt = _f32(mask)
  # The outcome source is RLOO of the sequence rewards on each last valid token: `token_rloo`
  # of r_o on that token alone, except that a sample without valid tokens still counts in the
  # others' baseline with its r_o (verl's token mean would count it as 0).
  outcome_gt = rloo(rewards)[..., None] * last_token_onehot(mask_gt)
  token_r = (process_coef * token_rloo(process_rewards, mask_gt) + outcome_coef * outcome_gt)
  return whiten(discounted_returns(token_r, mask_gt), mask_gt, eps=eps)


# ---------------------------------------------------------------------------------------------
# DAPO helpers.
# ---------------------------------------------------------------------------------------------


def overlong_penalty(lengths: Array, max_len: int, buffer_len: int) -> Array:
  """DAPO soft overlong punishment (Yu et al. 2025, eq. 13), added to the outcome reward.

  0 if |y| ≤ L_max − L_buf; ((L_max − L_buf) − |y|) / L_buf if L_max − L_buf < |y| ≤ L_max;
  −1 beyond. Args: lengths [...]. Returns [...] float32.
  """
  lengths = _f32(lengths)
  expected = max_len - buffer_len
  ramp = (expected - lengths) / max(buffer_len, 1)
  return jnp.where(lengths <= expected, 0.0, jnp.where(lengths <= max_len, ramp, -1.0))


def dynamic_sampling_mask(rewards: Array) -> Array:
  """DAPO dynamic sampling (Yu et al. 2025, §3.2) as a loss weight: [..., G] -> [..., G] float32.

  1 for groups whose rewards are not all equal, 0 for zero-variance groups (all right or all
  wrong), which carry no group-relative signal. DAPO drops and re-samples such groups; inside a
  compiled step we cannot re-sample, so the weight drops them from the loss instead: multiply it
  into the loss mask (`mask * w[..., None]`) so the aggregation's normaliser (token count or
  sequence count) renormalises over the kept groups only.
  """
  rewards_g = _f32(rewards)
  spread = jnp.max(rewards_g, axis=-1, keepdims=True) - jnp.min(rewards_g, axis=-1, keepdims=True)
  return jnp.broadcast_to(_f32(spread > 0), rewards_g.shape)
