"""Supervised warm start on task demonstrations (teacher-forced cross-entropy)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from rlvr_jax import models
from rlvr_jax.algorithms import losses
from rlvr_jax.training.forward import completion_logprobs
from rlvr_jax.training.state import TrainState


def make_sft_step(model_config: models.ModelConfig, optimizer: optax.GradientTransformation):
  """`sft_step(state, batch) -> (state, metrics)`: token-mean NLL of demo_ids given the prompt."""

  def loss_fn(params, batch):
    logp, _ = completion_logprobs(model_config, params, batch["prompt_ids"],
                                  batch["prompt_mask"], batch["demo_ids"], batch["demo_mask"])
    mask = batch["demo_mask"]
    nll = -losses.masked_mean(logp, mask)
    seq_acc = jnp.mean(jnp.all((logp > jnp.log(0.5)) | (mask == 0), axis=-1))
    return nll, {"sft_loss": nll, "sft_confident_seq_frac": seq_acc}

  def sft_step(state: TrainState, batch):
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, batch)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["grad_norm"] = optax.tree.norm(grads)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return sft_step
