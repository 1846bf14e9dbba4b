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
  """

  step: jax.Array
  params: models.Params
  opt_state: optax.OptState
  ref_params: models.Params | None = None


def make_optimizer(opt: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """AdamW with linear warm-up then constant (or cosine) learning rate, global-norm clipping."""
  warmup = int(opt.get("warmup_steps", 0))
  lr = float(opt.learning_rate)
  if opt.get("schedule", "constant") == "cosine":
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(total_steps, 2),
                                                  end_value=lr * opt.get("final_lr_frac", 0.1))
  else:
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, lr, max(warmup, 1)), optax.constant_schedule(lr)], [warmup])
  return optax.chain(
      optax.clip_by_global_norm(float(opt.get("max_grad_norm", 1.0))),
      optax.adamw(schedule, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.99),
                  weight_decay=float(opt.get("weight_decay", 0.0))),
  )


def create_state(params: models.Params, optimizer: optax.GradientTransformation, *,
                 with_reference: bool) -> TrainState:
  """A fresh state at step 0; the reference policy is a copy of the initial parameters."""
  ref = jax.tree.map(jnp.copy, params) if with_reference else None
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params), ref_params=ref)


def tree_size(tree: Any) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))
