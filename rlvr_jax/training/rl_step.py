"""The compiled RL step: sample -> score -> select -> advantages -> update, one `jax.jit`.

    state, metrics = rl_step(state, batch, rng)

1. `rollout.rollout`: G completions a prompt from the KV-cache sampler (with APRIL,
   `rl.partial_rollouts`, unfinished groups of earlier steps resume from the state's buffer;
   with `rl.decode_refill`, a finished row's slot takes the next waiting row inside the loop;
   with `rl.simulated_staleness` = k, the policy of k updates ago samples: `staleness`).
2. `rollout.score`: the task's jittable reward (or a `jax.pure_callback` verifier).
3. `rollout.select`: with DAPO's `dynamic_sampling="fill"`, the first B groups that vary.
4. `rollout.advantages`: what the method's components need (π_old, reference and critic
   log-probs / values, PRM step rewards, an implicit PRM's update), a rollout correction's
   weights and rejected tokens (`algorithms.rollout_correction`), then the estimator.
5. `update.update`: ppo_epochs x minibatches x micro-batches of the method's policy loss and
   terms; then ProRL's scheduled reference reset.

Which components run, and what is built for them, is the config's `algorithm` block resolved by
`algorithms.method.Method`; nothing here names a method. Nothing leaves the device.

Compile it with `jit_rl_step` (what `Run.compile_step` and so `python -m rlvr_jax.main` use):

    step = jit_rl_step(make_rl_step(config, model_config, reward_fn, optimizer, eos_id=.., pad_id=..))
    state = create_state(params, optimizer, with_reference=False)
    state, metrics = step(state, batch, rng)   # `state` is donated: use the returned one
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import ml_collections
import optax

from rlvr_jax import models, parallel, sampling
from rlvr_jax.training import april, prorl, staleness
from rlvr_jax.training.forward import completion_logprobs, completion_values  # noqa: F401
from rlvr_jax.training.rollout import (RewardFn, Rollout, StepSpec, advantages,
                                       length_by_outcome, outcome_metrics, rollout,
                                       rollout_metrics, rollout_with_stats, score, select,
                                       select_groups)  # noqa: F401
from rlvr_jax.training.state import TrainState
from rlvr_jax.training.update import update


class RLPhases(NamedTuple):
  """The phases `rl_step` fuses, for a split rollout / update mode and for benchmarks:
  sample(state, batch, rng) -> (comp, greedy); score(batch, comp, greedy) -> (rewards [b, g],
  greedy_rewards [b] | None); select(batch, comp, rewards, greedy_rewards) -> (the same four for
  the groups learned on, metrics); learn(state, batch, comp, rewards, greedy_rewards, rng[,
  stale, policy_mask]) -> (state, metrics)."""

  sample: Callable
  score: Callable
  learn: Callable
  select: Callable


def make_rl_step(config: ml_collections.ConfigDict, model_config: models.ModelConfig,
                 reward_fn: RewardFn, optimizer: optax.GradientTransformation, *,
                 eos_id: int, pad_id: int,
                 value_optimizer: optax.GradientTransformation | None = None,
                 step_end_table: Any = None,
                 prime_optimizer: optax.GradientTransformation | None = None
                 ) -> Callable[..., tuple[TrainState, dict[str, Any]]]:
  """Builds `rl_step(state, batch, rng) -> (state, metrics)` (not yet jitted: compile it with
  `jit_rl_step`, which donates the state); its phases are also `rl_step.phases` (an `RLPhases`).

  Args:
    config: the run config (reads `rl` and `algorithm`).
    model_config: policy architecture.
    reward_fn: jittable (completion_ids [N, n], completion_mask [N, n], answer_ids [N, a],
      meta [N, m]) -> float32 rewards [N].
    optimizer: the policy's; value_optimizer / prime_optimizer: those of the critic / implicit
      PRM when a term trains one.
    eos_id, pad_id: token ids of the tokenizer.
    step_end_table: `prm.step_end_table`, when an estimator needs PRM step rewards.
  """
  optimizers = {"policy": optimizer, "critic": value_optimizer, "implicit_prm": prime_optimizer}
  spec = StepSpec.from_config(config, model_config, reward_fn, optimizers, eos_id=eos_id,
                              pad_id=pad_id, step_end_table=step_end_table)

  def learn(state, batch, comp, rewards, greedy_rewards, rng, stale=None, policy_mask=None):
    """Advantages and update of a rollout sampled from `state.params`, except where `stale`
    [b·G, n] is 1 (APRIL: tokens an earlier policy sampled, whose behaviour log-probs are
    `comp.logprobs`). With `policy_mask` [b·G, n] (multi-turn episodes) only its tokens are
    trained on; the rest of `comp.mask` (observations) is attended to."""
    ro = Rollout(batch=batch, completions=comp, rewards=rewards, greedy_rewards=greedy_rewards,
                 stale=stale, policy_mask=policy_mask)
    state, ro, credit_metrics = advantages(spec, state, ro)
    state, metrics = update(spec, state, ro, rng)
    metrics.update(rollout_metrics(ro), **credit_metrics)
    state = state.replace(step=state.step + 1)
    if spec.ref_reset_every:
      state, metrics["ref_reset"] = prorl.scheduled_reset(state, optimizer, spec.ref_reset_every)
    return state, metrics

  def rl_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    rng_sample, rng_learn = jax.random.split(rng)
    # rl.simulated_staleness: the policy of k updates ago samples (else state.params)
    sample_params, state = staleness.take(state)
    # decode metrics of every group sampled (with "fill": of all k·B groups)
    comp, greedy, decode_metrics = rollout_with_stats(spec, sample_params, batch, rng_sample)
    rewards, greedy_rewards = score(spec, batch, comp, greedy)
    *kept, select_metrics = select(spec, batch, comp, rewards, greedy_rewards)
    stale = kept[1].mask if spec.staleness else None  # every token: an earlier policy's
    state, metrics = learn(state, *kept, rng_learn, stale=stale)
    return state, {**metrics, **select_metrics, **decode_metrics}

  def april_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    """APRIL rollout (resume the buffer + fresh groups until b are done) -> score -> learn."""
    rng_sample, rng_learn = jax.random.split(rng)
    sample_params, state = staleness.take(state)
    train, buffer, stale, decode_steps = april.rollout(
        model_config, sample_params, state.rollouts, batch, rng_sample, state.step,
        group_size=spec.group_size, sample_kw=spec.sample_kw)
    # with rl.simulated_staleness every token (resumed or new) is an earlier policy's
    learn_stale = train.part.mask if spec.staleness else stale
    train_batch = train.batch()
    comp = sampling.Completions(tokens=train.part.tokens, logprobs=train.part.logprobs,
                                entropies=train.part.entropies, mask=train.part.mask)
    rewards, _ = score(spec, train_batch, comp, None)
    new_state, metrics = learn(state.replace(rollouts=buffer), train_batch, comp, rewards, None,
                               rng_learn, stale=learn_stale)
    return new_state, metrics | april.metrics(train, buffer, stale, state.step, decode_steps,
                                              state.rollouts)

  step_fn = april_step if config.rl.get("partial_rollouts", False) else rl_step
  step_fn.phases = RLPhases(
      sample=lambda state, batch, rng: rollout(spec, state.params, batch, rng),
      score=lambda batch, comp, greedy: score(spec, batch, comp, greedy),
      learn=learn,
      select=lambda *args: select(spec, *args))
  return step_fn


def jit_rl_step(step_fn: Callable, state: TrainState | None = None,
                mesh: jax.sharding.Mesh | None = None, *, with_rng: bool = True) -> Callable:
  """`step_fn(state, batch[, rng]) -> (state, metrics)` (`make_rl_step`'s step, an SFT step)
  compiled the way the run builder compiles it: the state is donated, so the update is written
  in place of the old state instead of into fresh buffers (the argument is consumed: use the
  returned state). With a `mesh` (and the `state` whose arrays carry its shardings) the state's
  shardings are also pinned on input and output, the batch is split over the mesh's data axes,
  and the step is traced under the mesh so the model's activation pins apply
  (`Run.compile_step`).
  """
  if mesh is None:
    return jax.jit(step_fn, donate_argnums=0)
  if state is None:
    raise ValueError("jit_rl_step: a mesh needs the state (its arrays' shardings are pinned)")
  shardings = jax.tree.map(lambda x: x.sharding, state)
  replicated = parallel.replicated(mesh)
  in_shardings = (shardings, parallel.batch_sharding(mesh, ndim=1)) + (
      (replicated,) if with_rng else ())
  return jax.jit(parallel.traced_under_mesh(step_fn, mesh), in_shardings=in_shardings,
                 out_shardings=(shardings, replicated), donate_argnums=0)


def make_eval_step(config: ml_collections.ConfigDict, model_config: models.ModelConfig,
                   reward_fn: RewardFn, *, eos_id: int, pad_id: int):
  """`eval_step(params, batch) -> rewards [b]` of greedy completions (held-out accuracy)."""
  n = config.rl.max_new_tokens

  def eval_step(params, batch):
    comp = sampling.generate(model_config, params, batch["prompt_ids"], batch["prompt_mask"],
                             jax.random.key(0), max_new_tokens=n, temperature=0.0,
                             eos_id=eos_id, pad_id=pad_id)
    return reward_fn(comp.tokens, comp.mask, batch["answer_ids"], batch["meta"])

  return eval_step
