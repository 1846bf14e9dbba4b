"""Train state pytree and optimizer construction."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from rlvr_jax import models


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree (donated to the compiled step).

  Attributes:
    step: int32 scalar, the number of optimizer steps of this phase taken so far.
    params: policy parameters.
    opt_state: optax state of the policy optimizer.
    ref_params: frozen reference policy for the KL term, or None when no KL is used.
    value_params: PPO critic (same trunk code with a scalar head), or None.
    value_opt_state: optax state of the critic optimizer, or None.
    prm_params: frozen process reward model (policy trunk + scalar head) for PURE, or None.
  """

  step: jax.Array
  params: models.Params
  opt_state: optax.OptState
  ref_params: models.Params | None = None
  value_params: models.Params | None = None
  value_opt_state: optax.OptState | None = None
  prm_params: models.Params | None = None


def make_optimizer(opt: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """AdamW with linear warm-up then constant (or cosine) learning rate, global-norm clipping."""
  warmup = int(opt.get("warmup_steps", 0))
  lr = float(opt.learning_rate)
  if opt.get("schedule", "constant") == "cosine":
    # decay_steps counts the warm-up too and must exceed it, even for runs shorter than it.
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, lr, max(warmup, 1), max(total_steps, warmup + 2),
        end_value=lr * opt.get("final_lr_frac", 0.1))
  else:
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, lr, max(warmup, 1)), optax.constant_schedule(lr)], [warmup])
  return optax.chain(
      optax.clip_by_global_norm(float(opt.get("max_grad_norm", 1.0))),
      optax.adamw(schedule, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.99),
                  weight_decay=float(opt.get("weight_decay", 0.0))),
  )


def critic_from_policy(params: models.Params) -> models.Params:
  """A value model initialised from the policy trunk with a zero scalar head (PPO practice)."""
  trunk = jax.tree.map(jnp.copy, {k: v for k, v in params.items() if k != "lm_head"})
  d = params["final_norm"].shape[-1]
  dtype = params["final_norm"].dtype
  return trunk | {"head": {"w": jnp.zeros((d,), dtype), "b": jnp.zeros((), dtype)}}


def create_state(params: models.Params, optimizer: optax.GradientTransformation, *,
                 with_reference: bool,
                 value_optimizer: optax.GradientTransformation | None = None,
                 prm_params: models.Params | None = None) -> TrainState:
  """A fresh state at step 0; the reference policy and the critic start from `params`."""
  ref = jax.tree.map(jnp.copy, params) if with_reference else None
  value = critic_from_policy(params) if value_optimizer is not None else None
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params), ref_params=ref, value_params=value,
                    value_opt_state=value_optimizer.init(value) if value is not None else None,
                    prm_params=prm_params)


def tree_size(tree: Any) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))
