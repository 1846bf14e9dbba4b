"""PRIME's implicit process reward model (Cui et al. 2025, "Process Reinforcement through Implicit
Rewards", §3.2): the math of its rewards, its online loss and its accuracy.

The implicit PRM π_φ is a causal LM (initialised from the policy) beside the frozen reference
π_ref. Its token reward is r_φ(y_t) = β·log(π_φ(y_t|y<t) / π_ref(y_t|y<t)) and its sequence
score R_φ(y) = Σ_t r_φ(y_t). It is trained on outcome labels r_o ∈ {0, 1} alone, with the
cross-entropy on σ(R_φ):  L = −[r_o·log σ(R_φ) + (1 − r_o)·log(1 − σ(R_φ))]  (paper eq. 4).
The compiled RL step (`training.rl_step`) scores each rollout with the current π_φ, takes one
optimizer step on L over the same rollouts and hands the pre-update rewards to the advantage
(verl's `update: after`, "single forward"; verl's yaml default
`update: before` re-scores with the updated PRM, a second forward pass).

Shapes: n completions, t completion tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_rewards(prm_logp_nt: jax.Array, ref_logp_nt: jax.Array, mask_nt: jax.Array,
                  beta: float) -> jax.Array:
  """r_φ(y_t) = β·(log π_φ − log π_ref) [n, t] float32, 0 on masked tokens."""
  return beta * (prm_logp_nt - ref_logp_nt) * mask_nt.astype(jnp.float32)


def ce_loss(scores_n: jax.Array, labels_n: jax.Array) -> jax.Array:
  """Per-sequence cross-entropy of σ(R_φ) against the outcome label [n]: −[y·log σ(R) +
  (1 − y)·log σ(−R)] (log σ(−R) = log(1 − σ(R)), computed stably)."""
  labels_n = labels_n.astype(jnp.float32)
  return -(labels_n * jax.nn.log_sigmoid(scores_n)
           + (1.0 - labels_n) * jax.nn.log_sigmoid(-scores_n))


def outcome_accuracy(scores_n: jax.Array, labels_n: jax.Array) -> jax.Array:
  """Share of sequences whose score sign matches the outcome: R_φ > 0 iff r_o > 1/2."""
  return jnp.mean(((scores_n > 0) == (labels_n > 0.5)).astype(jnp.float32))
