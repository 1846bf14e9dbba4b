"""Train state pytree and optimizer construction."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from rlvr_jax import models, parallel
from rlvr_jax.models import lora
from rlvr_jax.training import staleness as staleness_lib


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree (donated to the compiled step).

  Attributes:
    step: int32 scalar, the number of optimizer steps of this phase taken so far.
    params: policy parameters.
    opt_state: optax state of the policy optimizer.
    ref_params: frozen reference policy (the KL term's anchor, which ProRL resets move; PRIME's
      π_ref too unless `prime_ref_params` is set), or None when nothing reads a reference.
    value_params: PPO critic (same trunk code with a scalar head), or None.
    value_opt_state: optax state of the critic optimizer, or None.
    prm_params: frozen process reward model (policy trunk + scalar head) for PURE, or None.
    rollouts: APRIL's buffer of unfinished rollout groups (`april.RolloutBuffer`), or None
      without rl.partial_rollouts.
    prime_params: PRIME's implicit PRM π_φ, a causal LM of the policy's shape trained online
      (its rewards are β·log π_φ/π_ref against `prime_ref_params`, else `ref_params`), or None.
    prime_opt_state: optax state of the implicit PRM's optimizer, or None.
    prime_ref_params: PRIME's own frozen π_ref, kept only when ProRL resets would move
      `ref_params` (verl's PRIME reference never moves); None otherwise (the two are one copy).
    stale_params: with rl.simulated_staleness = k, the policy's parameters of the last k steps,
      oldest first (`training/staleness.py`), or None.
  """

  step: jax.Array
  params: models.Params
  opt_state: optax.OptState
  ref_params: models.Params | None = None
  value_params: models.Params | None = None
  value_opt_state: optax.OptState | None = None
  prm_params: models.Params | None = None
  rollouts: Any = None
  prime_params: models.Params | None = None
  prime_opt_state: optax.OptState | None = None
  prime_ref_params: models.Params | None = None
  stale_params: tuple[models.Params, ...] | None = None


def float32_moments(inner: optax.GradientTransformation) -> optax.GradientTransformation:
  """`inner` run on float32 copies of the gradients and parameters, so its state (Adam's
  moments) is float32 whatever the parameter dtype.

  bfloat16 parameters are stored without a float32 master copy: that copy would cost 4 bytes a
  parameter, more than the 2 that bfloat16 storage saves. The float32 update is added in float32
  and rounded to the parameter dtype by `optax.apply_updates`; an update below bfloat16's
  resolution (~2^-8 of the weight) is lost, so small learning rates want float32 parameters
  with bfloat16 compute (model.param_dtype=float32, model.dtype=bfloat16). For float32
  parameters the casts are no-ops.
  """
  f32 = lambda tree: jax.tree.map(lambda x: x.astype(jnp.float32), tree)

  def init(params):
    return inner.init(f32(params))

  def update(grads, state, params=None):
    return inner.update(f32(grads), state, None if params is None else f32(params))

  return optax.GradientTransformation(init, update)


def make_optimizer(opt: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """AdamW with linear warm-up then constant (or cosine) learning rate, global-norm clipping;
  its moments are float32 even for bfloat16 parameters (`float32_moments`)."""
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
  return float32_moments(optax.chain(
      optax.clip_by_global_norm(float(opt.get("max_grad_norm", 1.0))),
      optax.adamw(schedule, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.99),
                  weight_decay=float(opt.get("weight_decay", 0.0))),
  ))


def critic_from_policy(params: models.Params) -> models.Params:
  """A value model initialised from the policy trunk with a zero scalar head (PPO practice)."""
  trunk = jax.tree.map(jnp.copy, {k: v for k, v in params.items() if k != "lm_head"})
  d = params["final_norm"].shape[-1]
  dtype = params["final_norm"].dtype
  return trunk | {"head": {"w": jnp.zeros((d,), dtype), "b": jnp.zeros((), dtype)}}


def create_state(params: models.Params, optimizer: optax.GradientTransformation, *,
                 with_reference: bool,
                 value_optimizer: optax.GradientTransformation | None = None,
                 prm_params: models.Params | None = None,
                 prime_optimizer: optax.GradientTransformation | None = None,
                 rollouts: Any = None, with_prime_reference: bool = False,
                 staleness: int = 0) -> TrainState:
  """A fresh state at step 0; the reference policy, the critic, PRIME's implicit PRM (with
  `prime_optimizer`) and the `staleness` past policies (rl.simulated_staleness) start from
  `params`, and with `with_prime_reference` PRIME's own frozen reference too (a second copy, for
  when `ref_params` will be reset). With LoRA adapters in `params` the optimizer sees only them
  (`lora.trainable`) and the reference is the base weights themselves, not a copy."""
  adapted = lora.has_adapters(params)
  ref = jax.tree.map(jnp.copy, params) if with_reference and not adapted else None
  value = critic_from_policy(params) if value_optimizer is not None else None
  prime = jax.tree.map(jnp.copy, params) if prime_optimizer is not None else None
  if with_prime_reference and prime is None:
    raise ValueError("with_prime_reference: PRIME's reference needs its implicit PRM "
                     "(prime_optimizer)")
  prime_ref = jax.tree.map(jnp.copy, params) if with_prime_reference else None
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(lora.trainable(params)), ref_params=ref,
                    value_params=value,
                    value_opt_state=value_optimizer.init(value) if value is not None else None,
                    prm_params=prm_params, prime_params=prime,
                    prime_opt_state=prime_optimizer.init(prime) if prime is not None else None,
                    rollouts=rollouts, prime_ref_params=prime_ref,
                    stale_params=staleness_lib.initial(params, staleness))


def state_shardings(state: TrainState, model_config: models.ModelConfig, mesh: jax.sharding.Mesh,
                    optimizer: optax.GradientTransformation,
                    value_optimizer: optax.GradientTransformation | None = None,
                    prime_optimizer: optax.GradientTransformation | None = None) -> TrainState:
  """NamedShardings for (an abstract) `state`: parameters by their logical axes, optimizer
  moments like the parameters they track, counters and APRIL's rollout buffer replicated.

  Left to the compiler, the moments (fresh zeros, tied to no input) come out replicated, which
  costs 8 bytes a parameter on every device under FSDP.
  """
  replicated = parallel.replicated(mesh)
  policy = lambda tree: parallel.tree_shardings(lora.axes(model_config, tree), tree, mesh)
  scalar = lambda tree: parallel.tree_shardings(
      models.param_axes(model_config, head="scalar"), tree, mesh)

  def opt(optimizer, opt_state, param_shardings):
    return optax.tree_utils.tree_map_params(optimizer, lambda _, s: s, opt_state,
                                            param_shardings,
                                            transform_non_params=lambda _: replicated)

  params = policy(state.params)
  value = None if state.value_params is None else scalar(state.value_params)
  prime = None if state.prime_params is None else policy(state.prime_params)
  return TrainState(
      step=replicated, params=params,
      opt_state=opt(optimizer, state.opt_state, lora.trainable(params)),
      ref_params=None if state.ref_params is None else policy(state.ref_params),
      value_params=value,
      value_opt_state=(None if value is None
                       else opt(value_optimizer, state.value_opt_state, value)),
      prm_params=None if state.prm_params is None else scalar(state.prm_params),
      prime_params=prime,
      prime_opt_state=(None if prime is None
                       else opt(prime_optimizer, state.prime_opt_state, prime)),
      rollouts=jax.tree.map(lambda _: replicated, state.rollouts),
      prime_ref_params=None if state.prime_ref_params is None else policy(state.prime_ref_params),
      stale_params=(None if state.stale_params is None
                    else tuple(policy(p) for p in state.stale_params)))


def checkpointed(state: TrainState) -> TrainState:
  """What a checkpoint of `state` holds: all of it, except that with LoRA adapters the policy
  params are the adapters alone (the frozen base is rebuilt from the config: `restored`)."""
  if not lora.has_adapters(state.params):
    return state
  return state.replace(params=lora.trainable(state.params))


def restored(template: TrainState, state: TrainState) -> TrainState:
  """A state read from a checkpoint (`checkpointed` layout), completed with `template`'s frozen
  base weights when `template` carries LoRA adapters."""
  if not lora.has_adapters(template.params):
    return state
  return state.replace(params=lora.with_trainable(template.params, state.params))


def tree_size(tree: Any) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))
