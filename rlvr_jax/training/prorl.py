"""ProRL reference resets: the KL anchor and the optimizer's moments restart at the current policy.

Liu et al. 2025, "ProRL: Prolonged Reinforcement Learning Expands Reasoning Boundaries in Large
Language Models" (arXiv 2505.24864), §2: a KL penalty (k3) to a reference policy keeps long runs
stable, but it comes to dominate the loss; so the reference is hard-reset to a recent snapshot of
the online policy, and the optimizer states are reinitialised, whenever validation stalls. Here a
reset happens every `algorithm.ref_reset_every` steps (inside the compiled step, a `lax.cond` on
the step counter) and/or when the held-out accuracy has not improved by more than
`algorithm.ref_reset_min_delta` over its best for `algorithm.ref_reset_patience` evaluations in a
row (decided by the loop, which has that number, and applied by `reset_reference` jitted).

Only the KL anchor moves: PRIME's implicit PRM keeps its own frozen reference
(`TrainState.prime_ref_params`, kept when PRIME and resets are both configured), as verl's
recipe/prime does (its PRM worker deep-copies a reference at start and never updates it).

"Reinitialise the optimizer" is read as a fresh Adam: first and second moments zero and its bias
correction count 0. The learning-rate schedule keeps its place (the paper's is constant, so this
only matters with a warm-up or decay configured here).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from rlvr_jax.training.state import TrainState

META_KEY = "prorl_plateau"  # the plateau tracker's state in each checkpoint's meta


def _is_adam(x: Any) -> bool:
  return isinstance(x, optax.ScaleByAdamState)


def reset_moments(opt_state: optax.OptState, fresh: optax.OptState) -> optax.OptState:
  """`opt_state` with every Adam state (count, mu, nu) taken from `fresh` (`optimizer.init`),
  everything else (the learning-rate schedule's count) kept."""
  return jax.tree.map(lambda old, new: new if _is_adam(old) else old, opt_state, fresh,
                      is_leaf=_is_adam)


def reset_reference(state: TrainState, optimizer: optax.GradientTransformation) -> TrainState:
  """ProRL's hard reset: ref_params := params, Adam moments := their initial (zero) values.
  PRIME's reference (`prime_ref_params`) and the implicit PRM are left as they are."""
  if state.ref_params is None:
    raise ValueError("a ProRL reference reset needs a reference policy (algorithm.terms.kl)")
  fresh = optimizer.init(state.params)
  return state.replace(ref_params=jax.tree.map(jnp.copy, state.params),
                       opt_state=reset_moments(state.opt_state, fresh))


def scheduled_reset(state: TrainState, optimizer: optax.GradientTransformation, every: int
                    ) -> tuple[TrainState, jax.Array]:
  """`reset_reference` when `state.step` (steps done, the current one included) is a multiple of
  `every`, else `state` unchanged; traced once (`lax.cond`), no host transfer.
  Returns (state, float32 1.0 if it reset else 0.0)."""
  do = state.step % every == 0
  state = jax.lax.cond(do, lambda s: reset_reference(s, optimizer), lambda s: s, state)
  return state, do.astype(jnp.float32)


@dataclasses.dataclass
class PlateauTracker:
  """Host-side plateau detector over the held-out metric (higher is better).

  `observe(value)`: the first value sets `best`; a later value improves when it exceeds
  best + min_delta (then best = value and the count of stalled evaluations restarts); otherwise
  the count grows, and when it reaches `patience` it restarts and `observe` returns True (reset
  now). `best` is kept across resets: a run that never beats it again resets every `patience`
  evaluations. Its whole state is `to_meta()`, saved with every checkpoint, so a resumed run
  decides exactly as an uninterrupted one.
  """

  patience: int
  min_delta: float
  best: float | None = None
  stalled: int = 0

  def observe(self, value: float) -> bool:
    if self.best is None or value > self.best + self.min_delta:
      self.best, self.stalled = value, 0
      return False
    self.stalled += 1
    if self.stalled >= self.patience:
      self.stalled = 0
      return True
    return False

  def to_meta(self) -> dict[str, Any]:
    return {META_KEY: {"best": self.best, "stalled": self.stalled}}

  @classmethod
  def from_config(cls, alg, meta: dict | None = None) -> "PlateauTracker | None":
    """The tracker of `alg` (the algorithm config; None when ref_reset_patience is 0), with the
    state saved in a checkpoint's `meta` when given (a checkpoint without one: a fresh tracker)."""
    if not alg.ref_reset_patience:
      return None
    saved = (meta or {}).get(META_KEY) or {}
    return cls(patience=alg.ref_reset_patience, min_delta=alg.ref_reset_min_delta,
               best=saved.get("best"), stalled=saved.get("stalled", 0))
