"""The update: ppo_epochs x minibatches x micro-batches of optimizer steps on a credited rollout.

It knows no algorithm: each micro-batch's policy loss is `method.policy_loss` plus the terms that
train the policy (`TermContext`); the critic, when a term trains one, takes its own step on the
same minibatch. Normalisers are mini-batch statistics, so summed micro-batch gradients are the
exact mini-batch gradient (`losses` module docstring); the 80/20 token selection is the one
exception (each micro-batch's selected tokens define its own mean, and the gradients average).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import optax

from rlvr_jax.algorithms import losses
from rlvr_jax.algorithms import rollout_correction as correction_lib
from rlvr_jax.algorithms.registry import CriticContext, TermContext
from rlvr_jax.models import lora
from rlvr_jax.training.forward import completion_logprobs, completion_values
from rlvr_jax.training.rollout import (Rollout, StepSpec, accumulated_grads, apply_grads,
                                       loss_prompt_rows, model_metrics, sampled_mask, sum_terms)
from rlvr_jax.training.state import TrainState

Array = jax.Array


@flax.struct.dataclass
class LossRows:
  """The rows the update draws minibatches from, [n, ...] (prompt rows [b, p] when whole groups
  stay together). old_logp only when it differs from the loss's own forward (several updates a
  rollout, a rollout correction, or tokens of an earlier policy); is_weight: a rollout
  correction's per-token weight (None: 1)."""
  prompt_ids: Array
  prompt_mask: Array
  tokens: Array
  mask: Array
  loss_mask: Array
  advantages: Array
  old_logp: Array | None = None
  stale: Array | None = None
  ref_logp: Array | None = None
  old_values: Array | None = None
  returns: Array | None = None
  proxy_logp: Array | None = None
  is_weight: Array | None = None


@flax.struct.dataclass
class Demos:
  """Completions beside the rollout, [rows, ...]: the prompts' expert demonstrations (CHORD), or
  completions sampled earlier with their sampling log-probs `logp` (stored samples, DPH-RL)."""
  prompt_ids: Array
  prompt_mask: Array
  tokens: Array
  mask: Array
  logp: Array | None = None


def loss_rows(spec: StepSpec, ro: Rollout) -> LossRows:
  prompt_ids, prompt_mask = loss_prompt_rows(spec, ro.batch)
  keep_old = not spec.on_policy or ro.stale is not None
  return LossRows(prompt_ids=prompt_ids, prompt_mask=prompt_mask, tokens=ro.completions.tokens,
                  mask=ro.completions.mask, loss_mask=ro.loss_mask, advantages=ro.advantages,
                  old_logp=ro.old_logp if keep_old else None, stale=ro.stale,
                  ref_logp=ro.ref_logp, old_values=ro.values, returns=ro.returns,
                  proxy_logp=ro.proxy_logp, is_weight=ro.is_weight)


def demo_shares(batch: dict[str, Array], n_mb: int) -> Demos:
  """The batch's demonstrations in `n_mb` consecutive shares, one a minibatch: [n_mb, b / n_mb, ...]."""
  demos = Demos(prompt_ids=batch["prompt_ids"], prompt_mask=batch["prompt_mask"],
                tokens=batch["demo_ids"], mask=batch["demo_mask"])
  return jax.tree.map(lambda x: x.reshape((n_mb, -1) + x.shape[1:]), demos)


def stored_shares(batch: dict[str, Array], n_mb: int) -> Demos:
  """The step's stored samples (`data.stored_samples`: the batch's stored_* rows) in `n_mb`
  consecutive shares, one a minibatch."""
  rows = Demos(prompt_ids=batch["stored_prompt_ids"], prompt_mask=batch["stored_prompt_mask"],
               tokens=batch["stored_ids"], mask=batch["stored_mask"], logp=batch["stored_logp"])
  return jax.tree.map(lambda x: x.reshape((n_mb, -1) + x.shape[1:]), rows)


# The rows beside the rollout a need brings: how the batch holds them (`n_mb` shares), their
# loss aggregation (None: algorithm.loss_agg) and the prefix of the TermContext fields they fill:
# <prefix>_logp, _mask, _normalizer, and _old_logp when the rows carry sampling log-probs.
ROWS = {"demos": (demo_shares, "token-mean", "demo"),
        "stored_samples": (stored_shares, None, "stored")}


def beside_rows(spec: StepSpec, batch: dict[str, Array], n_mb: int) -> dict[str, Demos]:
  """Need -> its rows in `n_mb` shares, for the needs of the method that bring rows."""
  return {need: shares(batch, n_mb) for need, (shares, _, _) in ROWS.items()
          if need in spec.method.needs}


def _row_fields(rows: dict[str, Demos], logp: dict[str, Array],
                normalizers: dict[str, Array | None]) -> dict[str, Array | None]:
  fields = {}
  for need, r in rows.items():
    prefix = ROWS[need][2]
    fields.update({f"{prefix}_logp": logp[need], f"{prefix}_mask": r.mask,
                   f"{prefix}_normalizer": normalizers[need]})
    if r.logp is not None:
      fields[f"{prefix}_old_logp"] = r.logp
  return fields


def loss_keys(spec: StepSpec, rng: Array) -> Array | None:
  """Random keys [ppo_epochs, minibatches, microbatches], one a micro-batch update, for a policy
  loss that takes `key` (Clip-Cov's random draw), from the update's key; None for every other
  loss, which then traces the same program as before keys existed."""
  if "key" not in spec.method.policy_loss.component.context_keywords:
    return None
  shape = (spec.ppo_epochs, spec.minibatches, spec.microbatches)
  return jax.random.split(jax.random.fold_in(rng, 1), shape)


def policy_loss(spec: StepSpec, step: Array, params,
                m: tuple[LossRows, dict[str, Demos], Array | None],
                normalizers: tuple[Array, dict[str, Array | None]]):
  """One micro-batch's policy loss: `method.policy_loss` (its gradient reweighted per token by a
  rollout correction's weight) + the policy terms, and metrics. On-policy, the metrics also hold
  this forward's stop-gradient log-probs (π_old) under `rollout_correction.LEARNER_LOGP`.
  m: the rows, the rows beside them (`beside_rows`) and the loss's key ([1]: its micro-batch's
  share; None when the loss takes none)."""
  mb, rows, key = m
  context = {} if key is None else {"key": key[0]}
  normalizer, row_normalizers = normalizers
  logp, entropy = completion_logprobs(spec.model_config, params, mb.prompt_ids, mb.prompt_mask,
                                      mb.tokens, mb.mask, spec.temperature)
  mask = mb.loss_mask
  if spec.high_entropy_frac is not None:
    mask = mask * losses.high_entropy_mask(jax.lax.stop_gradient(entropy), mask,
                                           top_frac=float(spec.high_entropy_frac),
                                           invert=spec.high_entropy_invert)
    normalizer = None  # the selected tokens of this micro-batch define its own mean
  old_logp = jax.lax.stop_gradient(logp) if spec.on_policy else mb.old_logp
  if mb.stale is not None:  # APRIL: tokens of an earlier policy keep their behaviour log-probs
    old_logp = jnp.where(mb.stale > 0, mb.old_logp, old_logp)
  # the decoupled objective: w_t scales token t's gradient (rollout_correction module docstring)
  loss_logp = logp if mb.is_weight is None else correction_lib.reweight(logp, mb.is_weight)
  loss, metrics = spec.method.policy_loss(loss_logp, old_logp, mb.advantages, mask,
                                          normalizer=normalizer, agg=spec.agg,
                                          max_len=spec.max_len, proxy_logp=mb.proxy_logp,
                                          **context)
  metrics = dict(metrics)
  terms = spec.method.terms_training("policy")
  if terms:
    rows_logp = {need: completion_logprobs(spec.model_config, params, r.prompt_ids,
                                           r.prompt_mask, r.tokens, r.mask,
                                           spec.temperature)[0] for need, r in rows.items()}
    ctx = TermContext(logp=logp, old_logp=old_logp, entropy=entropy, mask=mask,
                      advantages=mb.advantages, normalizer=normalizer, agg=spec.agg,
                      max_len=spec.max_len, policy_loss=loss, step=step,
                      micro_batches=spec.microbatches, ref_logp=mb.ref_logp,
                      proxy_logp=mb.proxy_logp, **_row_fields(rows, rows_logp, row_normalizers))
    loss, term_metrics = sum_terms(terms, ctx, loss)
    metrics.update(term_metrics)
  metrics["policy_entropy"] = losses.masked_mean(entropy, mb.mask)
  if spec.on_policy:
    metrics[correction_lib.LEARNER_LOGP] = jax.lax.stop_gradient(logp)
  return loss, metrics


def critic_loss(spec: StepSpec, value_params, mb: LossRows, normalizer: Array):
  """One micro-batch's loss of the terms that train the critic."""
  values = completion_values(spec.model_config, value_params, mb.prompt_ids, mb.prompt_mask,
                             mb.tokens, mb.mask)
  ctx = CriticContext(values=values, old_values=mb.old_values, returns=mb.returns, mask=mb.mask,
                      normalizer=normalizer, agg=spec.agg, max_len=spec.max_len)
  return sum_terms(spec.method.terms_training("critic"), ctx)


def update(spec: StepSpec, state: TrainState, ro: Rollout, rng: Array
           ) -> tuple[TrainState, dict[str, Array]]:
  """ppo_epochs passes over the rollout in `minibatches` random minibatches (one holding every
  row: no shuffle), each an optimizer step of the policy (and of the critic) summed over
  `microbatches`. Returns the state with new parameters (step not advanced) and the metrics
  averaged over the updates; on-policy, with the mismatch diagnostics of the sampler's μ against
  the one update's own forward (π_old, no extra pass; `rollout_correction.diagnostics`)."""
  rows, n_mb, n_micro = loss_rows(spec, ro), spec.minibatches, spec.microbatches
  rows_beside = beside_rows(spec, ro.batch, n_mb)
  critic_terms = spec.method.terms_training("critic")

  # `params` below are what the optimizer updates: all the policy params, or its LoRA adapters
  # (the frozen base then enters the loss as a constant: `lora.with_trainable`).
  full = lambda trained: lora.with_trainable(state.params, trained)

  def minibatch(carry, xs):
    (params, opt_state), critic = carry
    mb, rows, keys = xs
    row_normalizers = {need: losses.aggregate_normalizer(r.mask, ROWS[need][1] or spec.agg)
                       for need, r in rows.items()}
    if spec.high_entropy_frac is not None and "stored_samples" in rows:
      row_normalizers["stored_samples"] = None  # averaged over micro-batches like the RL loss
    normalizers = (losses.aggregate_normalizer(mb.loss_mask, spec.agg), row_normalizers)
    loss_fn = lambda p, m, norm: policy_loss(spec, state.step, full(p), m, norm)
    grads, (loss, metrics) = accumulated_grads(loss_fn, params, (mb, rows, keys), normalizers,
                                               n_micro)
    learner_logp = metrics.pop(correction_lib.LEARNER_LOGP, None)
    if spec.high_entropy_frac is not None:  # each micro-batch loss is a mean: average them
      grads = jax.tree.map(lambda x: x / n_micro, grads)
    params, opt_state = apply_grads(spec, "policy", grads, params, opt_state)
    metrics = jax.tree.map(jnp.mean, metrics)
    metrics.update(loss=loss.sum(), grad_norm=optax.tree.norm(grads))
    if critic_terms:
      v_params, v_opt_state = critic
      v_loss_fn = lambda p, m, norm: critic_loss(spec, p, m, norm)
      v_grads, (v_loss, v_metrics) = accumulated_grads(
          v_loss_fn, v_params, mb, losses.aggregate_normalizer(mb.mask, spec.agg), n_micro)
      critic = apply_grads(spec, "critic", v_grads, v_params, v_opt_state)
      metrics.update(model_metrics(critic_terms, v_loss, v_grads, v_metrics))
    return ((params, opt_state), critic), (metrics, learner_logp)

  def epoch(carry, xs):
    key, keys = xs
    if n_mb == 1:  # one minibatch holds every row: the order does not matter
      minibatches = jax.tree.map(lambda x: x[None], rows)
    else:
      perm = jax.random.permutation(key, rows.tokens.shape[0]).reshape(n_mb, -1)
      minibatches = jax.tree.map(lambda x: x[perm], rows)
    return jax.lax.scan(minibatch, carry, (minibatches, rows_beside, keys))

  carry = ((lora.trainable(state.params), state.opt_state),
           (state.value_params, state.value_opt_state))
  ((params, opt_state), (value_params, value_opt_state)), (metrics, learner_logp) = (
      jax.lax.scan(epoch, carry, (jax.random.split(rng, spec.ppo_epochs),
                                  loss_keys(spec, rng))))
  state = state.replace(params=full(params), opt_state=opt_state, value_params=value_params,
                        value_opt_state=value_opt_state)
  metrics = jax.tree.map(jnp.mean, metrics)
  if learner_logp is not None:  # one update, one minibatch: its micro-batches in row order
    comp = ro.completions
    metrics.update(correction_lib.diagnostics(
        comp.logprobs, learner_logp.reshape(comp.tokens.shape), sampled_mask(ro)))
  return state, metrics
