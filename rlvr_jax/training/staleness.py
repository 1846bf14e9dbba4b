"""Simulated staleness: sample with the policy of k updates ago, to study off-policy training
(asynchronous rollouts, `rl.simulated_staleness = k`) inside the one synchronous step.

    θ_sample = stale[0];  stale = stale[1:] + (θ_s,)    # a queue of the last k parameter sets

The state carries the queue (`TrainState.stale_params`, k copies of the policy; None for k = 0,
the default, which keeps no copy), so a resumed run samples as an uninterrupted one. At step s
the sampler uses θ_{max(s − k, 0)}: the queue starts as k copies of the starting parameters.
The update learns on those tokens as on APRIL's carried ones (their sampler log-probs μ are the
behaviour policy's; `rollout.advantages`), so a rollout correction (`algorithms.
rollout_correction`) weighs them by π_old/μ, and without one PPO's ratio is taken against μ.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def initial(params: Any, k: int) -> tuple[Any, ...] | None:
  """The queue of a fresh state: k copies of `params` (None for k = 0)."""
  return tuple(jax.tree.map(jnp.copy, params) for _ in range(k)) or None


def take(state):
  """(the parameters to sample with, `state` with the queue advanced past them). Without a
  queue: (state.params, state)."""
  if state.stale_params is None:
    return state.params, state
  queue = state.stale_params
  return queue[0], state.replace(stale_params=queue[1:] + (state.params,))
