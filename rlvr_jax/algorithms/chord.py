"""CHORD: SFT on expert demonstrations as a weighted auxiliary term of the on-policy RL loss.

Zhang et al. 2025, "On-Policy RL Meets Off-Policy Experts: Harmonizing Supervised Fine-Tuning and
Reinforcement Learning via Dynamic Weighting" (arXiv 2508.11408), with its reference code
(Trinity-RFT, `chord_policy_loss.py`, `examples/mix_chord`):

    L = (1 − μ) · L_RL + μ · L_SFT

- CHORD-μ: μ follows `mu_schedule` (linear warm-up 0 → μ_start, then cosine decay to μ_end) of
  the update number counted from 1, as Trinity-RFT's trainer counts it; the paper's values are
  μ 0.9 → 0.05 over 200 steps, no warm-up, plain NLL.
- CHORD-φ: each expert token's NLL is weighted by φ = p_t (1 − p_t), p_t = π_θ(y_t | ·),
  under stop-gradient (the reference detaches it), with a constant μ = 0.1.
L_SFT is the token mean over every valid expert token of the batch (the reference's
`use_token_level_loss_in_sft`). Only the policy loss is scaled by 1 − μ; KL and entropy terms are
added unscaled: the reference's mixed loss is a verl policy-loss function, and verl's actor adds
the entropy and KL terms to its result. Expert log-probs use the sampling temperature, as verl's
actor computes every log-prob.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlvr_jax.algorithms import losses

Array = jax.Array


def mu_schedule(step: Array, *, start: float, end: float, decay_steps: int,
                warmup_steps: int = 0) -> Array:
  """The global SFT weight μ at `step` (int, any shape): float32.

  `step` counts updates from 1, as Trinity-RFT's global step does: its trainer samples the batch
  of an update with `train_step_num + 1` (updates done before it, plus one) and `mix_chord`
  evaluates its `mu_schedule_function` there; the `chord` term passes `ctx.step + 1`. So the
  first update takes μ(1) (with a warm-up, start / warmup_steps, not 0) and μ(0) is never used.

  μ = start · step / warmup_steps while step < warmup_steps; then
  μ = end + (start − end) · ½ (1 + cos(π · (step − warmup_steps) / decay_steps)) until
  step = warmup_steps + decay_steps; μ = end afterwards (decay_steps = 0: μ = end at once).
  """
  s = jnp.asarray(step, jnp.float32)
  warm = start * s / max(warmup_steps, 1)
  cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * (s - warmup_steps) / max(decay_steps, 1)))
  decayed = end + (start - end) * cosine
  mu = jnp.where(s < warmup_steps, warm,
                 jnp.where(s >= warmup_steps + decay_steps, end, decayed))
  return mu.astype(jnp.float32)


def phi(p: Array) -> Array:
  """CHORD-φ token weight p (1 − p) ∈ [0, ¼]: small for tokens the policy already predicts
  (p → 1) and for tokens far from it (p → 0)."""
  return p * (1.0 - p)


def sft_loss(logp: Array, mask: Array, *, use_phi: bool, normalizer: Array | None = None
             ) -> tuple[Array, dict[str, Array]]:
  """Token-mean SFT loss of expert tokens: Σ −w_t · log p_t · m_t / Σ m_t, w = sg(φ(p_t)) with
  `use_phi`, else 1 (plain NLL).

  Args:
    logp: [..., T] float32 log-probabilities of the expert tokens under the policy.
    mask: [..., T], 1 on valid expert tokens (the demonstration and its EOS).
    use_phi: CHORD-φ weighting.
    normalizer: the mini-batch's Σ m (`losses.aggregate_normalizer(mask, "token-mean")`) for
      exact gradient accumulation over micro-batches; None: this batch's own.
  Returns: (loss scalar, {"chord_sft_loss": loss, "chord_sft_nll": plain token-mean NLL}).
  """
  weight = jax.lax.stop_gradient(phi(jnp.exp(logp))) if use_phi else jnp.ones_like(logp)
  loss = losses.aggregate(-weight * logp, mask, "token-mean", normalizer=normalizer)
  nll = losses.aggregate(jax.lax.stop_gradient(-logp), mask, "token-mean", normalizer=normalizer)
  return loss, {"chord_sft_loss": loss, "chord_sft_nll": nll}
