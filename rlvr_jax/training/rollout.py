"""The RL step's phases before the update: sample, score, select, and credit (`advantages`).

Each is a module-level function of a static `StepSpec` (what the config and the method resolve
to) and arrays; the step is their composition (`rl_step.make_rl_step`). A `Rollout` carries one
step's data with fixed fields: the prompts' batch, the completions, the rewards, and what the
credit phase adds (behaviour / reference log-probs, values, PRM step rewards, implicit-PRM token
rewards, advantages, critic returns and the loss mask). Fields nobody needs stay None.

Shapes: b prompts, G completions each, n = b·G rows, t completion tokens.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from rlvr_jax import models, parallel, sampling
from rlvr_jax.algorithms import advantages as adv_lib
from rlvr_jax.algorithms import filters, losses
from rlvr_jax.algorithms import rollout_correction as correction_lib
from rlvr_jax.algorithms.method import Method
from rlvr_jax.algorithms.registry import AdvantageInputs, ImplicitPRMContext
from rlvr_jax.models import lora
from rlvr_jax.rewards import prm
from rlvr_jax.training import row_chunks
from rlvr_jax.training.forward import completion_logprobs, completion_values, repeat
from rlvr_jax.training.state import TrainState

Array = jax.Array
RewardFn = Callable[[Array, Array, Array, Array], Array]

# PRIME's implicit PRM and its reference score with log_softmax of the raw logits, whatever the
# sampling temperature: verl's recipe/prime (prime_dp_rm.py `_forward_micro_batch`, at 10a6180)
# divides no logits by it; only the actor's log-probs (and the KL reference's, which verl's
# `compute_ref_log_prob` computes at rollout.temperature) are tempered.
IMPLICIT_PRM_TEMPERATURE = 1.0

# The parameters and optimizer state a term's `trains` names, as TrainState fields.
MODEL_FIELDS = {"policy": ("params", "opt_state"), "critic": ("value_params", "value_opt_state"),
                "implicit_prm": ("prime_params", "prime_opt_state")}


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """Everything static the phases read, resolved once from the run config."""
  model_config: models.ModelConfig
  method: Method
  reward_fn: RewardFn
  optimizers: Mapping[str, optax.GradientTransformation]  # by `trains` ("policy", ...)
  group_size: int
  batch_size: int
  sample_kw: Mapping[str, Any]
  temperature: float
  ppo_epochs: int
  minibatches: int
  microbatches: int
  agg: str
  max_len: int | None
  high_entropy_frac: float | None
  high_entropy_invert: bool
  dynamic_sampling: str
  overlong_filter: bool
  ref_reset_every: int
  eos_id: int
  step_end_table: Any = None
  proxy_min_p: float | None = None  # κ of the min-p proxy log-probs a component needs
  frozen_pass_chunks: int = 1  # the gradient-free passes in this many chunks (row_chunks)
  correction: correction_lib.Correction = correction_lib.Correction("none", {})
  staleness: int = 0  # rl.simulated_staleness: sample with the parameters of k updates ago

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, model_config: models.ModelConfig,
                  reward_fn: RewardFn, optimizers: Mapping[str, optax.GradientTransformation], *,
                  eos_id: int, pad_id: int, step_end_table: Any = None) -> StepSpec:
    rl, alg = config.rl, config.algorithm
    method = Method.from_config(alg)
    for trains in ("critic", "implicit_prm"):
      if method.terms_training(trains) and optimizers.get(trains) is None:
        raise ValueError(f"a term trains the {trains}: make_rl_step needs its optimizer")
    if method.needs_prm and step_end_table is None:
      raise ValueError("an estimator needs PRM step rewards: make_rl_step needs step_end_table")
    sample_kw = dict(max_new_tokens=rl.max_new_tokens, temperature=rl.temperature,
                     top_k=rl.get("top_k", 0), top_p=rl.get("top_p", 1.0),
                     eos_id=None if rl.get("ignore_eos", False) else eos_id, pad_id=pad_id)
    if rl.get("decode_refill", False):  # in-flight refill (0: sampling.auto_slots)
      sample_kw["decode_slots"] = rl.get("decode_slots", 0)
    return cls(model_config=model_config, method=method, reward_fn=reward_fn,
               optimizers=dict(optimizers), group_size=rl.group_size, batch_size=rl.batch_size,
               sample_kw=sample_kw, temperature=rl.temperature,
               ppo_epochs=rl.get("ppo_epochs", 1), minibatches=rl.get("minibatches", 1),
               microbatches=rl.get("microbatches", 1), agg=losses.check_aggregation(alg.loss_agg),
               max_len=alg.get("max_len"), high_entropy_frac=alg.get("high_entropy_frac"),
               high_entropy_invert=bool(alg.get("high_entropy_invert", False)),
               dynamic_sampling=alg.get("dynamic_sampling", "none"),
               overlong_filter=bool(alg.get("overlong_filter", False)),
               ref_reset_every=int(alg.get("ref_reset_every", 0)), eos_id=eos_id,
               step_end_table=step_end_table, proxy_min_p=method.proxy_min_p,
               frozen_pass_chunks=rl.get("frozen_pass_chunks", 1),
               correction=correction_lib.from_config(alg),
               staleness=int(rl.get("simulated_staleness", 0)))

  @property
  def on_policy(self) -> bool:
    """One optimizer update per rollout: the policy being updated is the one that sampled, so
    the behaviour log-probs are the loss's own forward under stop-gradient (ratio 1, the same
    gradient) and no separate teacher-forced pass computes them. Not with a rollout correction,
    whose weights need π_old apart from the sampler's μ before the update."""
    return self.ppo_epochs * self.minibatches == 1 and not self.correction.on


@flax.struct.dataclass
class Rollout:
  """One step's data. batch: the b prompts' rows; completions: n rows; rewards [b, G];
  greedy_rewards [b]; stale [n, t]: 1 on tokens an earlier policy sampled (APRIL); policy_mask
  [n, t]: 1 on the tokens the policy sampled, when the completions also hold tokens it attends to
  but does not train on (an environment's observations; None: every valid token). The sampler's
  log-probs μ stay in `completions.logprobs`. Added by `advantages`, [n, t]: old_logp (π_old,
  the update's anchor: the learner's, or μ where bypassed), ref_logp, values, step_end /
  step_rewards (PRM), process_rewards (implicit PRM), advantages, returns (critic targets),
  loss_mask (less a rollout correction's rejected tokens) and is_weight (its weight w, None: 1;
  `algorithms.rollout_correction`)., proxy_logp (the behaviour policy's
  min-p proxy)."""
  batch: dict[str, Array]
  completions: sampling.Completions
  rewards: Array
  greedy_rewards: Array | None = None
  stale: Array | None = None
  policy_mask: Array | None = None
  old_logp: Array | None = None
  ref_logp: Array | None = None
  values: Array | None = None
  step_end: Array | None = None
  step_rewards: Array | None = None
  process_rewards: Array | None = None
  advantages: Array | None = None
  returns: Array | None = None
  loss_mask: Array | None = None
  proxy_logp: Array | None = None
  is_weight: Array | None = None


# ---------------------------------------------------------------------------------------------
# Sample, score, select
# ---------------------------------------------------------------------------------------------
def rollout(spec: StepSpec, params: models.Params, batch: dict[str, Array], rng: Array
            ) -> tuple[sampling.Completions, sampling.Completions | None]:
  """G completions a prompt (each prompt prefilled once), and a greedy one when a component
  needs greedy rewards (ReMax's baseline)."""
  return rollout_with_stats(spec, params, batch, rng)[:2]


def rollout_with_stats(spec: StepSpec, params: models.Params, batch: dict[str, Array],
                       rng: Array) -> tuple[sampling.Completions, sampling.Completions | None,
                                            dict[str, Array]]:
  """`rollout`, and what the sampled completions' decode loop cost: decode_steps (loop
  iterations) and decode_slot_utilisation (generated tokens / (decode_steps x rows decoding);
  `sampling.DecodeStats`). The greedy completions' loop is not counted. On-policy, a needed
  min-p proxy comes from the sampler's own logits (`Completions.proxy_logprobs`)."""
  proxy = {}
  if spec.proxy_min_p is not None and spec.on_policy:
    proxy["proxy_min_p"] = spec.proxy_min_p
  comp, stats = sampling.generate_with_stats(
      spec.model_config, params, batch["prompt_ids"], batch["prompt_mask"], rng,
      num_samples=spec.group_size, **spec.sample_kw, **proxy)
  greedy = None
  if "greedy_rewards" in spec.method.needs:
    greedy = sampling.generate(spec.model_config, params, batch["prompt_ids"],
                               batch["prompt_mask"], rng, **(spec.sample_kw | dict(temperature=0.0)))
  return comp, greedy, dict(decode_steps=stats.decode_steps,
                            decode_slot_utilisation=stats.slot_utilisation)


def score(spec: StepSpec, batch: dict[str, Array], comp: sampling.Completions,
          greedy: sampling.Completions | None) -> tuple[Array, Array | None]:
  """Rewards [b, G] (and [b] of the greedy completions)."""
  b, g = batch["prompt_ids"].shape[0], spec.group_size
  rewards = spec.reward_fn(comp.tokens, comp.mask, repeat(batch["answer_ids"], g),
                           repeat(batch["meta"], g)).reshape(b, g)
  greedy_rewards = None
  if greedy is not None:
    greedy_rewards = spec.reward_fn(greedy.tokens, greedy.mask, batch["answer_ids"],
                                    batch["meta"])
  return rewards, greedy_rewards


def select(spec: StepSpec, batch, comp, rewards, greedy_rewards):
  """With dynamic_sampling "fill", the rl.batch_size groups to learn on; else the identity."""
  if spec.dynamic_sampling != "fill":
    return batch, comp, rewards, greedy_rewards, {}
  return select_groups(batch, comp, rewards, greedy_rewards, spec.batch_size)


def select_groups(batch: dict[str, Array], comp: sampling.Completions, rewards: Array,
                  greedy_rewards: Array | None, num_groups: int):
  """DAPO dynamic sampling, fill mode: of the N = k·B groups sampled, the B = `num_groups` the
  update learns on (`filters.fill_groups`: kept groups first, in sampling order; a shortfall is
  filled with dropped groups, which the loss mask drops as it drops every zero-variance group).

  Args: batch rows [N, ...]; comp rows [N·G, ...]; rewards [N, G]; greedy_rewards [N] | None.
  Returns (batch, comp, rewards, greedy_rewards) restricted to the B groups, and metrics: the
  outcome metrics of all N groups (what the policy does, not the filtered batch),
  dynamic_sampling_kept_frac (kept / N) and dynamic_sampling_shortfall (groups of B left empty).
  """
  n, g = rewards.shape
  index_b, valid_b = filters.fill_groups(rewards, num_groups)
  take = lambda x: x[index_b]
  take_groups = lambda x: x.reshape((n, g) + x.shape[1:])[index_b].reshape((-1,) + x.shape[1:])
  metrics = dict(outcome_metrics(rewards),
                 dynamic_sampling_kept_frac=adv_lib.dynamic_sampling_mask(rewards)[:, 0].mean(),
                 dynamic_sampling_shortfall=num_groups - valid_b.sum())
  # stored samples (data.stored_samples) ride along with the batch but are not its prompts
  stored = {k: v for k, v in batch.items() if k.startswith("stored_")}
  batch = {**jax.tree.map(take, {k: v for k, v in batch.items() if k not in stored}), **stored}
  return (batch, jax.tree.map(take_groups, comp), take(rewards),
          None if greedy_rewards is None else take(greedy_rewards), metrics)


# ---------------------------------------------------------------------------------------------
# Credit: what the estimator reads, the estimator, and the loss mask
# ---------------------------------------------------------------------------------------------
def loss_prompt_rows(spec: StepSpec, batch: dict[str, Array]) -> tuple[Array, Array]:
  """The prompt rows the loss forward reads. One a group (each prompt runs once for its G
  completions) when whole groups stay together in every micro-batch; one a completion when
  minibatches draw rows across groups. Not with a sharded batch either: there XLA:CPU's schedule
  of the two streams raised the per-device peak (tests/test_memory.py, 25.1 vs 22.6 MB);
  unmeasured on accelerators."""
  b = batch["prompt_ids"].shape[0]
  if spec.minibatches == 1 and b % spec.microbatches == 0 and parallel.batch_shards() == 1:
    return batch["prompt_ids"], batch["prompt_mask"]
  return repeat(batch["prompt_ids"], spec.group_size), repeat(batch["prompt_mask"], spec.group_size)


def _frozen_logp(spec, params, prompts, comp, temperature: float | None = None) -> Array:
  """Log-probs of `comp` under frozen `params` at `temperature` (None: the sampling one), in
  `spec.frozen_pass_chunks` chunks of rows (`row_chunks`)."""
  temperature = spec.temperature if temperature is None else temperature
  logp = row_chunks.map_row_chunks(
      lambda *x: completion_logprobs(spec.model_config, params, *x, temperature)[0],
      *prompts, (comp.tokens, comp.mask), spec.frozen_pass_chunks)
  return jax.lax.stop_gradient(logp) * comp.mask


def _frozen_logp_and_proxy(spec, params, prompts, comp) -> tuple[Array, Array]:
  """`_frozen_logp` and the min-p proxy log-probs of the same logits (κ: spec.proxy_min_p), in
  the same row chunks."""

  def both(*rows):
    logp, _, proxy = completion_logprobs(spec.model_config, params, *rows, spec.temperature,
                                         proxy_min_p=spec.proxy_min_p)
    return jnp.stack([logp, proxy], axis=-1)

  out = jax.lax.stop_gradient(row_chunks.map_row_chunks(
      both, *prompts, (comp.tokens, comp.mask), spec.frozen_pass_chunks))
  return out[..., 0] * comp.mask, out[..., 1] * comp.mask


def implicit_prm_reference(state: TrainState) -> Any:
  """PRIME's frozen π_ref: its own copy when the state keeps one (ProRL resets move
  `ref_params`, verl's PRIME reference never moves), else the shared frozen `ref_params`."""
  return state.ref_params if state.prime_ref_params is None else state.prime_ref_params


def advantages(spec: StepSpec, state: TrainState, ro: Rollout
               ) -> tuple[TrainState, Rollout, dict[str, Array]]:
  """Everything the method needs from the rollout, then its estimator and the loss mask.

  π_old (the sampler's μ when on-policy, else one teacher-forced pass; without a rollout
  correction, tokens an earlier policy sampled (APRIL, simulated staleness) keep μ: PPO's ratio
  is then against μ, verl's "bypass"), the rollout correction's weights and rejected tokens
  (from log π_old/μ) and the mismatch diagnostics (here when π_old was computed here, else in
  the update), the reference's and the critic's log-probs / values (when the state carries
  them), the PRM's step rewards, and the implicit PRM's token rewards (which also takes its
  update here); then `method.advantage`; with a critic its targets adv + V and whitened
  advantages; the loss mask drops zero-variance groups (dynamic sampling), truncated samples
  (overlong filter) and the correction's rejected tokens. Returns the state (with the implicit
  PRM updated), the filled rollout, metrics.

  A needed min-p proxy (`proxy_logp`) is of the parameters before the update (π_old, as Lp-Reg's
  reference): the sampler's when on-policy, else from the behaviour pass's logits, or a pass of
  its own where the sampler did not give it (APRIL, multi-turn episodes)."""
  comp, batch = ro.completions, ro.batch
  b, g, n = ro.rewards.shape[0], spec.group_size, comp.tokens.shape[1]
  group_prompts = batch["prompt_ids"], batch["prompt_mask"]
  proxy_logp = None
  learner_logp = None  # π_old, when computed here
  if spec.on_policy:  # estimators that read logp (a KL reward penalty) get the sampler's
    old_logp = comp.logprobs * comp.mask
    if spec.proxy_min_p is not None and comp.proxy_logprobs is not None and ro.stale is None:
      proxy_logp = comp.proxy_logprobs * comp.mask
    elif spec.proxy_min_p is not None:
      proxy_logp = _frozen_logp_and_proxy(spec, state.params, group_prompts, comp)[1]
  elif spec.proxy_min_p is not None:
    old_logp, proxy_logp = _frozen_logp_and_proxy(spec, state.params, group_prompts, comp)
    learner_logp = old_logp
  else:
    old_logp = learner_logp = _frozen_logp(spec, state.params, group_prompts, comp)
  if ro.stale is not None and not spec.correction.on:
    old_logp = jnp.where(ro.stale > 0, comp.logprobs, old_logp) * comp.mask
  sampled = sampled_mask(ro)
  weight = accept = None
  if spec.correction.on:
    weight, accept = spec.correction((old_logp - comp.logprobs) * sampled, sampled)
  corr_metrics = {} if learner_logp is None else correction_lib.diagnostics(
      comp.logprobs, learner_logp, sampled, (weight, accept) if spec.correction.on else None)
  ref_logp = values = step_end = step_r = process_r = None
  ref_params = state.ref_params
  if ref_params is None and spec.method.needs_reference and lora.has_adapters(state.params):
    ref_params = lora.base(state.params)  # LoRA: the reference is the base, adapters off
  if spec.method.needs_policy_reference:
    ref_logp = _frozen_logp(spec, ref_params, group_prompts, comp)
  if state.value_params is not None:
    values = jax.lax.stop_gradient(row_chunks.map_row_chunks(
        functools.partial(completion_values, spec.model_config, state.value_params),
        *group_prompts, (comp.tokens, comp.mask), spec.frozen_pass_chunks)) * comp.mask
  if state.prm_params is not None:
    step_end = prm.step_ends(comp.tokens, comp.mask, spec.step_end_table)
    step_r = jax.lax.stop_gradient(prm.step_rewards(
        spec.model_config, state.prm_params, repeat(batch["prompt_ids"], g),
        repeat(batch["prompt_mask"], g), comp.tokens, comp.mask, step_end))
  metrics: dict[str, Array] = {}
  if spec.method.has_implicit_prm:
    prime_ref = implicit_prm_reference(state)
    if (ref_logp is not None and prime_ref is state.ref_params
        and spec.temperature == IMPLICIT_PRM_TEMPERATURE):  # the same pass: reuse it
      prime_ref_logp = ref_logp
    else:
      prime_ref_logp = _frozen_logp(spec, prime_ref, group_prompts, comp,
                                    IMPLICIT_PRM_TEMPERATURE)
    state, provided, metrics = implicit_prm_update(
        spec, state, loss_prompt_rows(spec, batch), comp, prime_ref_logp, ro.rewards)
    process_r = provided["process_rewards"]

  bgn = lambda x: None if x is None else x.reshape(b, g, n)
  x = AdvantageInputs(
      rewards=ro.rewards, tokens=bgn(comp.tokens), mask=bgn(comp.mask), logp=bgn(old_logp),
      ref_logp=bgn(ref_logp), values=bgn(values), greedy_rewards=ro.greedy_rewards,
      step_rewards=bgn(step_r), step_end=bgn(step_end), process_rewards=bgn(process_r))
  adv = spec.method.advantage(x, max_len=spec.max_len).reshape(b * g, n)
  returns = None
  if values is not None:  # critic targets: advantages + values; the policy sees them whitened
    returns = (adv + values) * comp.mask
    adv = adv_lib.whiten(adv, comp.mask)
  loss_mask, filter_metrics = _loss_mask(spec, comp, ro.rewards, ro.policy_mask)
  if accept is not None:
    loss_mask = loss_mask * accept
  ro = ro.replace(old_logp=old_logp, ref_logp=ref_logp, values=values, step_end=step_end,
                  step_rewards=step_r, process_rewards=process_r, advantages=adv,
                  returns=returns, loss_mask=loss_mask, proxy_logp=proxy_logp,
                  is_weight=weight)
  return state, ro, {**filter_metrics, **metrics, **corr_metrics}


def sampled_mask(ro: Rollout) -> Array:
  """[n, t]: 1 on the tokens the policy sampled (`policy_mask`, else every valid token)."""
  return ro.completions.mask if ro.policy_mask is None else ro.policy_mask


def _loss_mask(spec: StepSpec, comp: sampling.Completions, rewards: Array,
               policy_mask: Array | None = None):
  """The completion mask (or `policy_mask`, the policy's own tokens of a multi-turn episode) less
  zero-variance groups (dynamic sampling: with "fill" the shortfall) and truncated samples
  (DAPO §3.4's overlong filter; advantages unchanged)."""
  loss_mask, metrics = (comp.mask if policy_mask is None else policy_mask), {}
  if spec.dynamic_sampling != "none":
    keep_bg = adv_lib.dynamic_sampling_mask(rewards)
    loss_mask = loss_mask * keep_bg.reshape(-1, 1)
    if spec.dynamic_sampling == "mask":
      metrics["dynamic_sampling_kept_frac"] = keep_bg[:, 0].mean()
  if spec.overlong_filter:
    finished_n = filters.finished(comp.tokens, comp.mask, spec.eos_id)
    loss_mask = loss_mask * finished_n[:, None]
    metrics["overlong_filtered_frac"] = 1.0 - finished_n.mean()
  return loss_mask, metrics


def accumulated_grads(loss_fn, params, mb, normalizer, n_micro: int):
  """Σ over `n_micro` micro-batches of ∇ loss_fn(params, micro, normalizer) (with the mini-batch
  normaliser that is the full gradient: `losses` module docstring), and the stacked
  (loss, metrics) of each micro-batch."""
  micro = jax.tree.map(lambda x: x.reshape((n_micro, -1) + x.shape[1:]), mb)

  def accumulate(grads, m):
    (loss, metrics), grad = jax.value_and_grad(loss_fn, has_aux=True)(params, m, normalizer)
    return jax.tree.map(jnp.add, grads, grad), (loss, metrics)

  return jax.lax.scan(accumulate, jax.tree.map(jnp.zeros_like, params), micro)


def apply_grads(spec: StepSpec, trains: str, grads, params, opt_state):
  updates, opt_state = spec.optimizers[trains].update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def model_metrics(terms, loss, grads, metrics) -> dict[str, Array]:
  """An auxiliary model's update metrics: its terms' own (micro-batch means), <names>_loss (the
  summed micro-batch losses) and <names>_grad_norm."""
  name = "_".join(t.name for t in terms)
  return {**jax.tree.map(jnp.mean, metrics), f"{name}_loss": loss.sum(),
          f"{name}_grad_norm": optax.tree.norm(grads)}


def implicit_prm_update(spec: StepSpec, state: TrainState, prompts, comp, ref_logp, rewards):
  """One update of the terms that train the implicit PRM, over the whole rollout (labels: the
  outcome rewards), and the inputs they provide (their token rewards from before the update).
  Its log-probs and `ref_logp` (its reference's) are of the raw logits
  (`IMPLICIT_PRM_TEMPERATURE`), not tempered like the policy's."""
  terms = spec.method.terms_training("implicit_prm")
  n = comp.tokens.shape[0]

  def loss_fn(params, m, normalizer):
    logp, _ = completion_logprobs(spec.model_config, params, m["prompt_ids"], m["prompt_mask"],
                                  m["tokens"], m["mask"], IMPLICIT_PRM_TEMPERATURE)
    ctx = ImplicitPRMContext(logp=logp, ref_logp=m["ref_logp"], mask=m["mask"],
                             labels=m["labels"], normalizer=normalizer)
    return sum_terms(terms, ctx)

  mb = dict(prompt_ids=prompts[0], prompt_mask=prompts[1], tokens=comp.tokens, mask=comp.mask,
            ref_logp=ref_logp, labels=rewards.reshape(n))
  grads, (loss, metrics) = accumulated_grads(loss_fn, state.prime_params, mb, n,
                                             spec.microbatches)
  params, opt_state = apply_grads(spec, "implicit_prm", grads, state.prime_params,
                                  state.prime_opt_state)
  provides = [k for t in terms for k in t.component.provides]
  provided = {k: metrics.pop(k).reshape(n, -1) for k in provides}
  return (state.replace(prime_params=params, prime_opt_state=opt_state), provided,
          model_metrics(terms, loss, grads, metrics))


def sum_terms(terms, ctx, total=None):
  """(Σ term losses (added to `total`), their merged metrics)."""
  metrics: dict[str, Array] = {}
  for term in terms:
    loss, m = term(ctx)
    total = loss if total is None else total + loss
    metrics.update(m)
  return total, metrics


# ---------------------------------------------------------------------------------------------
# Metrics of a rollout
# ---------------------------------------------------------------------------------------------
def rollout_metrics(ro: Rollout) -> dict[str, Array]:
  """Outcomes, lengths, entropies and credit of the rollout learned on."""
  comp, mask = ro.completions, ro.completions.mask
  lengths = mask.sum(-1)
  metrics = dict(
      **outcome_metrics(ro.rewards), completion_tokens=lengths.mean(),
      completion_tokens_max=lengths.max(),
      sample_entropy=losses.masked_mean(comp.entropies, mask, premasked=True),
      adv_abs_mean=losses.masked_mean(jnp.abs(ro.advantages), mask, premasked=True),
      loss_tokens_frac=losses.masked_mean(ro.loss_mask, mask, premasked=True),
      **length_by_outcome(lengths, ro.rewards.reshape(-1)))
  if "index" in ro.batch:  # data.record_example_accuracy (1-shot RLVR's historical variance)
    metrics.update(example_index=ro.batch["index"],
                   example_accuracy=jnp.mean(ro.rewards > 0, -1))
  if ro.step_rewards is not None:
    step_end = ro.step_end
    metrics.update(
        steps_per_completion=step_end.sum(-1).mean(),
        prm_step_reward_mean=losses.masked_mean(ro.step_rewards, step_end, premasked=True),
        prm_min_step_reward_mean=jnp.min(jnp.where(step_end > 0, ro.step_rewards, 1.0),
                                         -1).mean())
  return metrics


def outcome_metrics(rewards_bg: Array) -> dict[str, Array]:
  """Mean / std of the outcome rewards [b, g] and the share of groups solved by all / none."""
  return dict(reward_mean=rewards_bg.mean(), reward_std=rewards_bg.std(),
              solve_all_frac=jnp.mean(jnp.all(rewards_bg > 0, -1)),
              solve_none_frac=jnp.mean(jnp.all(rewards_bg <= 0, -1)))


def length_by_outcome(lengths_n: Array, rewards_n: Array) -> dict[str, Array]:
  """Mean completion length of the correct (reward > 0) and of the wrong completions, and the
  share that is correct; length bias (Dr. GRPO, "Understanding R1-Zero-Like Training" §3.1)
  shows as wrong answers growing longer than right ones. A kind absent from the batch reports 0
  (not NaN, which would stop the run): read it with `correct_frac` ∈ (0, 1).

  Args: lengths_n [n] valid tokens per completion; rewards_n [n] outcome rewards.
  """
  correct_n = (rewards_n > 0).astype(jnp.float32)
  lengths_n = lengths_n.astype(jnp.float32)
  n_correct = correct_n.sum()
  n_wrong = correct_n.size - n_correct
  return dict(
      correct_frac=n_correct / correct_n.size,
      completion_tokens_correct=jnp.sum(lengths_n * correct_n) / jnp.maximum(n_correct, 1),
      completion_tokens_wrong=jnp.sum(lengths_n * (1 - correct_n)) / jnp.maximum(n_wrong, 1))
