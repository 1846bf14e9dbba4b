"""Stopping on NaN/inf in any phase (sft, prm, rl) before anything non-finite is saved.

Two checks, both naming the phase, the step and the quantity:
  check_metrics: a step's host metrics (loss, grad norm, ...); `fetch_checked` fetches them
                 first, which a loop does one step late (`metrics.Lagged`) so the devices never
                 wait on the host;
  check_tree:    every leaf of params (or a whole train state), one jitted reduction, run once
                 before a phase hands its params on and before every checkpoint save.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from rlvr_jax.training.metrics import to_python


class NonFiniteError(FloatingPointError):
  """A training quantity became NaN or infinite; nothing holding it was saved."""


def non_finite_metrics(metrics: dict[str, Any]) -> list[str]:
  """Names of the host metrics (floats) that are NaN or infinite."""
  return [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]


def hint(phase: str) -> str:
  """What to change, for the end of an error message: a rerun is deterministic."""
  return (f" The same config fails the same way: lower config.{phase}.optimizer.learning_rate "
          f"or raise its warmup_steps.")


def fetch_checked(phase: str, step: int, metrics_dev: dict[str, Any]) -> dict[str, Any]:
  """A step's device metrics on the host, after checking none (loss, grad norm, ...) is NaN/inf."""
  metrics = to_python(jax.device_get(metrics_dev))
  check_metrics(phase, step, metrics, hint=hint(phase))
  return metrics


def check_metrics(phase: str, step: int, metrics: dict[str, Any], hint: str = "") -> None:
  """Raises NonFiniteError naming every host metric (loss, grad_norm, ...) that is NaN/inf."""
  bad = non_finite_metrics(metrics)
  if bad:
    values = ", ".join(f"{k}={metrics[k]}" for k in bad)
    raise NonFiniteError(f"{phase} step {step}: non-finite {values}; stopping before anything "
                         f"of this step is saved.{hint}")


def _is_float(x) -> bool:
  return jnp.issubdtype(x.dtype, jnp.inexact)


def _leaves_finite(tree: Any) -> jax.Array:
  """bool [number of floating leaves]: whether each is free of NaN and inf."""
  flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if _is_float(x)]
  return jnp.stack(flags) if flags else jnp.ones((0,), bool)


@functools.lru_cache(maxsize=None)
def _compiled(replicated: jax.sharding.Sharding | None):
  if replicated is None:
    return jax.jit(_leaves_finite)
  return jax.jit(_leaves_finite, out_shardings=replicated)


def non_finite_leaves(tree: Any, replicated: jax.sharding.Sharding | None = None) -> list[str]:
  """Paths ("params/blocks/attn/q") of the floating leaves of `tree` holding a NaN or inf.

  One jitted reduction (a bool per leaf) and one small fetch. `replicated`: a fully replicated
  sharding of the run's mesh, so every process of a multi-process run can read the result.
  """
  paths = [jax.tree_util.keystr(p, simple=True, separator="/")
           for p, x in jax.tree_util.tree_leaves_with_path(tree) if _is_float(x)]
  ok = jax.device_get(_compiled(replicated)(tree))
  return [p for p, good in zip(paths, ok) if not good]


def check_tree(phase: str, step: int, tree: Any, name: str = "params",
               replicated: jax.sharding.Sharding | None = None, hint: str = "") -> None:
  """Raises NonFiniteError naming the first non-finite leaf of `tree` (called `name`)."""
  bad = non_finite_leaves(tree, replicated)
  if bad:
    more = f" (and {len(bad) - 1} more leaves)" if len(bad) > 1 else ""
    raise NonFiniteError(f"{phase} step {step}: non-finite {name} at {bad[0]}{more}; stopping "
                         f"without saving them.{hint}")
