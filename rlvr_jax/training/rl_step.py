"""The compiled RL step: sample -> reward -> advantage -> PPO-style update, one `jax.jit`.

    state, metrics = rl_step(state, batch, rng)

1. Each prompt is repeated G times and completed by the KV-cache sampler (with APRIL,
   `rl.partial_rollouts`, unfinished groups of earlier steps are resumed from the state's buffer).
2. The task's jittable reward (or a `jax.pure_callback` verifier) scores every completion; with
   DAPO's `dynamic_sampling="fill"` the first B groups that are not all-equal are selected.
3. Reference log-probs (KL term, PRIME) come from one teacher-forced forward pass; so do
   behaviour log-probs when a rollout feeds several updates (with one update they are the
   loss's own forward under stop-gradient: ratio 1, no extra pass). PRIME's implicit PRM scores
   the rollouts and takes its own update here.
4. `ADVANTAGES[config.algorithm.advantage]` turns rewards into token advantages [B, G, T]
   (PURE estimators also get step ends and the frozen PRM's step rewards).
5. `lax.scan` over ppo_epochs x minibatches (x micro-batches for gradient accumulation) applies
   `POLICY_LOSSES[config.algorithm.policy_loss]` with optax (mixed with CHORD's SFT loss on the
   tasks' demonstrations when `algorithm.chord`); ProRL's scheduled reference reset follows.

Nothing here leaves the device; the only Python is the trace.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from rlvr_jax import models, parallel, sampling
from rlvr_jax.algorithms import advantages as adv_lib
from rlvr_jax.algorithms import chord, filters, losses, registry
from rlvr_jax.rewards import implicit_prm, prm
from rlvr_jax.training import april, prorl
from rlvr_jax.training.state import TrainState

RewardFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


class RLPhases(NamedTuple):
  """The phases `rl_step` fuses, exposed for a split rollout / update mode (giant models,
  host-side verifiers) and for benchmarks: sample(state, batch, rng) -> (comp, greedy);
  score(batch, comp, greedy) -> (rewards [b, g], greedy_rewards [b] | None);
  select(batch, comp, rewards, greedy_rewards) -> (the same four for the groups learned on,
  metrics) (the identity unless algorithm.dynamic_sampling == "fill");
  learn(state, batch, comp, rewards, greedy_rewards, rng) -> (state, metrics)."""

  sample: Callable
  score: Callable
  learn: Callable
  select: Callable


def completion_logprobs(model_config: models.ModelConfig, params: models.Params,
                        prompt_ids: jax.Array, prompt_mask: jax.Array, completion_ids: jax.Array,
                        completion_mask: jax.Array, temperature: float = 1.0):
  """Teacher-forced float32 log-probs and entropies [n, t] of completions given their prompts.

  Prompt rows: one per completion, or one per group of consecutive completions (n = rows x G),
  in which case each prompt runs through the trunk once for its group
  (`models.completion_hidden_states`). Logits are divided by the sampling temperature, as the
  sampler's distribution is; they exist only where completion tokens are predicted.
  """
  if prompt_ids.shape[0] != completion_ids.shape[0]:
    h_ntd = models.completion_hidden_states(model_config, params, prompt_ids, prompt_mask,
                                            completion_ids, completion_mask)
  else:
    p = prompt_ids.shape[1]
    seq, seq_mask = models.join_prompt(prompt_ids, prompt_mask, completion_ids, completion_mask)
    h_ntd = models.hidden_states(model_config, params, seq, seq_mask)[:, p - 1:-1]
  logits = parallel.constrain(models.logits_from_hidden(model_config, params, h_ntd),
                              ("batch", "length", "vocab"))
  logp_ntv = jax.nn.log_softmax(logits / max(temperature, 1e-6), axis=-1)
  logp = jnp.take_along_axis(logp_ntv, completion_ids[..., None], axis=-1)[..., 0]
  entropy = -jnp.sum(jnp.exp(logp_ntv) * logp_ntv, axis=-1)
  return logp, entropy


def completion_values(model_config: models.ModelConfig, value_params: models.Params,
                      prompt_ids: jax.Array, prompt_mask: jax.Array, completion_ids: jax.Array,
                      completion_mask: jax.Array) -> jax.Array:
  """Critic values V(s_t) [n, t]: the state before completion token t is read at the position
  of the token preceding it, as the policy's logits for token t are. Prompt rows as in
  `completion_logprobs` (one per completion, or one per group)."""
  g = completion_ids.shape[0] // prompt_ids.shape[0]
  prompt_ids, prompt_mask = _repeat(prompt_ids, g), _repeat(prompt_mask, g)
  p = prompt_ids.shape[1]
  seq, seq_mask = models.join_prompt(prompt_ids, prompt_mask, completion_ids, completion_mask)
  return models.scalar_head(model_config, value_params, seq, seq_mask)[:, p - 1:-1]


def _repeat(x: jax.Array, g: int) -> jax.Array:
  return jnp.repeat(x, g, axis=0)


def implicit_prm_loss(prime_params: models.Params, mb: dict[str, jax.Array], normalizer, *,
                      model_config: models.ModelConfig, beta: float, temperature: float):
  """PRIME's PRM loss on one micro-batch, Σ_n CE(σ(R_φ), r_o) / normalizer, and (aux) the token
  rewards r_φ [n, t] it was computed from, i.e. those of the parameters before the update.
  `mb`: prompt rows (one per completion or per group), tokens, mask, ref_logp [n, t] and the
  outcome labels [n]. Log-probs at the sampling temperature, like the reference's."""
  logp, _ = completion_logprobs(model_config, prime_params, mb["prompt_ids"], mb["prompt_mask"],
                                mb["tokens"], mb["mask"], temperature)
  r_nt = implicit_prm.token_rewards(logp, mb["ref_logp"], mb["mask"], beta)
  return jnp.sum(implicit_prm.ce_loss(r_nt.sum(-1), mb["labels"])) / normalizer, r_nt


def make_rl_step(config: ml_collections.ConfigDict, model_config: models.ModelConfig,
                 reward_fn: RewardFn, optimizer: optax.GradientTransformation, *,
                 eos_id: int, pad_id: int,
                 value_optimizer: optax.GradientTransformation | None = None,
                 step_end_table: Any = None,
                 prime_optimizer: optax.GradientTransformation | None = None
                 ) -> Callable[..., tuple[TrainState, dict[str, Any]]]:
  """Builds `rl_step(state, batch, rng) -> (state, metrics)` (not yet jitted); its phases are
  also available as `rl_step.phases` (an `RLPhases`).

  Args:
    config: the full run config (reads `rl` and `algorithm`).
    model_config: policy architecture.
    reward_fn: jittable (completion_ids [N, n], completion_mask [N, n], answer_ids [N, a],
      meta [N, m]) -> float32 rewards [N].
    optimizer: the policy optimizer.
    eos_id, pad_id: token ids of the tokenizer.
    value_optimizer: the critic optimizer when the state carries a value model (PPO / GAE).
    step_end_table: `prm.step_end_table`, the matcher that finds reasoning-step ends;
      needed when the state carries a PRM (PURE estimators).
    prime_optimizer: the implicit PRM's optimizer when the state carries one (PRIME).
  """
  rl, alg = config.rl, config.algorithm
  g = rl.group_size
  advantage_fn = registry.ADVANTAGES[alg.advantage]
  loss_fn = registry.POLICY_LOSSES[alg.policy_loss]
  agg = registry.check_aggregation(alg.loss_agg)
  kl_coef = float(alg.get("kl_coef", 0.0))
  entropy_coef = float(alg.get("entropy_coef", 0.0))
  top_entropy_frac = alg.get("high_entropy_frac", None)
  dynamic_sampling = alg.get("dynamic_sampling", "none")
  overlong_filter = bool(alg.get("overlong_filter", False))
  use_chord = bool(alg.get("chord", False))
  ref_reset_every = int(alg.get("ref_reset_every", 0))
  # One optimizer update per rollout: the policy being updated is the one that sampled, so the
  # behaviour log-probs equal the loss's own forward (stop-gradient; ratio == 1, the gradient is
  # the same) and the separate teacher-forced forward that would compute them is skipped.
  on_policy = rl.get("ppo_epochs", 1) * rl.get("minibatches", 1) == 1
  sample_kw = dict(max_new_tokens=rl.max_new_tokens, temperature=rl.temperature,
                   top_k=rl.get("top_k", 0), top_p=rl.get("top_p", 1.0),
                   eos_id=None if rl.get("ignore_eos", False) else eos_id,
                   pad_id=pad_id)

  def token_loss(params, mb, normalizer, policy_weight):
    """Loss of one micro-batch; `normalizer` comes from the whole mini-batch (exact accum.);
    the policy loss (not KL / entropy) is scaled by `policy_weight` (CHORD's 1 − μ)."""
    logp, entropy = completion_logprobs(model_config, params, mb["prompt_ids"],
                                        mb["prompt_mask"], mb["tokens"], mb["mask"],
                                        rl.temperature)
    mask = mb["loss_mask"]
    if top_entropy_frac is not None:
      mask = mask * losses.high_entropy_mask(jax.lax.stop_gradient(entropy), mask,
                                             top_frac=float(top_entropy_frac),
                                             invert=bool(alg.get("high_entropy_invert", False)))
      normalizer = None  # the selected tokens of this micro-batch define its own mean
    old_logp = jax.lax.stop_gradient(logp) if on_policy else mb["old_logp"]
    if "stale" in mb:  # APRIL: tokens of an earlier policy keep their behaviour log-probs
      old_logp = jnp.where(mb["stale"] > 0, mb["old_logp"], old_logp)
    loss, metrics = loss_fn(logp, old_logp, mb["advantages"], mask, alg, normalizer=normalizer)
    loss = policy_weight * loss
    if kl_coef:
      kl_t = losses.kl(logp, mb["ref_logp"], alg.get("kl_kind", "k3"))
      kl_term = losses.aggregate(kl_t, mask, agg, alg.get("max_len", None), normalizer)
      loss = loss + kl_coef * kl_term
      metrics["kl_ref"] = kl_term
    if entropy_coef:
      loss = loss - entropy_coef * losses.aggregate(entropy, mask, agg, alg.get("max_len", None),
                                                    normalizer)
    metrics["policy_entropy"] = jnp.sum(entropy * mb["mask"]) / jnp.maximum(mb["mask"].sum(), 1)
    return loss, metrics

  def value_loss(value_params, mb, normalizer):
    values = completion_values(model_config, value_params, mb["prompt_ids"], mb["prompt_mask"],
                               mb["tokens"], mb["mask"])
    return losses.value_loss(values, mb["old_values"], mb["returns"], mb["mask"],
                             clip=float(alg.get("value_clip", 0.2)), agg=agg,
                             max_len=alg.get("max_len", None), normalizer=normalizer)

  def sft_loss(params, demo, normalizer):
    """CHORD's SFT loss of one micro-batch of expert demonstrations (see `chord.sft_loss`)."""
    logp, _ = completion_logprobs(model_config, params, demo["prompt_ids"], demo["prompt_mask"],
                                  demo["tokens"], demo["mask"], rl.temperature)
    return chord.sft_loss(logp, demo["mask"], use_phi=bool(alg.get("chord_phi", False)),
                          normalizer=normalizer)

  def accumulated_grads(loss_fn, params, mb, normalizer, *args):
    """Sum of micro-batch gradients; with the mini-batch normaliser it is the full gradient."""
    n_micro = rl.get("microbatches", 1)
    micro = jax.tree.map(lambda x: x.reshape((n_micro, -1) + x.shape[1:]), mb)

    def accumulate(grads, m):
      (loss, metrics), grad = jax.value_and_grad(loss_fn, has_aux=True)(params, m, normalizer,
                                                                        *args)
      return jax.tree.map(jnp.add, grads, grad), (loss, metrics)

    zeros = jax.tree.map(jnp.zeros_like, params)
    return jax.lax.scan(accumulate, zeros, micro)

  def minibatch_update(carry, xs, mu):
    """One optimizer update on a minibatch of rollouts `mb` (and, with CHORD, its share of the
    expert demonstrations `demo`, mixed in with weight `mu`)."""
    params, opt_state, value_params, value_opt_state = carry
    mb, demo = xs
    normalizer = losses.aggregate_normalizer(mb["loss_mask"], agg)
    policy_weight = 1.0 if mu is None else 1.0 - mu
    grads, (loss, metrics) = accumulated_grads(token_loss, params, mb, normalizer, policy_weight)
    loss = loss.sum()
    if top_entropy_frac is not None:  # each micro-batch loss is a mean: average them
      n_micro = rl.get("microbatches", 1)
      grads = jax.tree.map(lambda x: x / n_micro, grads)
    metrics = jax.tree.map(jnp.mean, metrics)
    if demo is not None:  # CHORD: grad of (1 − μ) L_RL + μ L_SFT
      sft_normalizer = losses.aggregate_normalizer(demo["mask"], "token-mean")
      sft_grads, (sft, sft_metrics) = accumulated_grads(sft_loss, params, demo, sft_normalizer)
      grads = jax.tree.map(lambda g, s: g + mu * s, grads, sft_grads)
      loss = loss + mu * sft.sum()
      metrics.update(jax.tree.map(jnp.sum, sft_metrics), chord_mu=mu)  # micro-batch partial sums
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics.update(loss=loss, grad_norm=optax.tree.norm(grads))
    if value_params is not None:
      v_normalizer = losses.aggregate_normalizer(mb["mask"], agg)
      v_grads, (v_loss, v_metrics) = accumulated_grads(value_loss, value_params, mb, v_normalizer)
      v_updates, value_opt_state = value_optimizer.update(v_grads, value_opt_state, value_params)
      value_params = optax.apply_updates(value_params, v_updates)
      metrics.update(jax.tree.map(jnp.mean, v_metrics), value_loss=v_loss.sum(),
                     value_grad_norm=optax.tree.norm(v_grads))
    return (params, opt_state, value_params, value_opt_state), metrics

  def update_implicit_prm(state: TrainState, rows, ref_logp, rewards):
    """PRIME: the implicit PRM's token rewards on the rollouts [n, t] (stop-gradient), then one
    optimizer step of it on the outcome labels; the rewards are those from before that step."""
    if prime_optimizer is None or ref_logp is None:
      raise ValueError("the state carries PRIME's implicit PRM: make_rl_step needs "
                       "prime_optimizer and the state a reference policy (ref_params)")
    n = rows["tokens"].shape[0]
    loss_fn = functools.partial(implicit_prm_loss, model_config=model_config,
                                beta=float(config.prime.beta), temperature=rl.temperature)
    mb = dict(rows, ref_logp=ref_logp, labels=rewards.reshape(n))
    grads, (loss, r_nt) = accumulated_grads(loss_fn, state.prime_params, mb, n)
    updates, opt_state = prime_optimizer.update(grads, state.prime_opt_state, state.prime_params)
    params = optax.apply_updates(state.prime_params, updates)
    r_nt = jax.lax.stop_gradient(r_nt.reshape(n, -1))
    scores = r_nt.sum(-1)
    metrics = dict(prime_loss=loss.sum(), prime_grad_norm=optax.tree.norm(grads),
                   prime_accuracy=implicit_prm.outcome_accuracy(scores, mb["labels"]),
                   prime_score_mean=scores.mean())
    return params, opt_state, r_nt, metrics

  def sample(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    """Phase 1: G completions per prompt (and the greedy one for ReMax's baseline)."""
    comp = sampling.generate(model_config, state.params, batch["prompt_ids"],
                             batch["prompt_mask"], rng, num_samples=g, **sample_kw)
    greedy = None
    if alg.advantage == "remax":
      greedy = sampling.generate(model_config, state.params, batch["prompt_ids"],
                                 batch["prompt_mask"], rng, **(sample_kw | dict(temperature=0.0)))
    return comp, greedy

  def score(batch: dict[str, jax.Array], comp, greedy):
    """Phase 2: rewards [b, g] (and [b] for the greedy completions)."""
    b = batch["prompt_ids"].shape[0]
    rewards = reward_fn(comp.tokens, comp.mask, _repeat(batch["answer_ids"], g),
                        _repeat(batch["meta"], g)).reshape(b, g)
    greedy_rewards = None
    if greedy is not None:
      greedy_rewards = reward_fn(greedy.tokens, greedy.mask, batch["answer_ids"], batch["meta"])
    return rewards, greedy_rewards

  def learn(state: TrainState, batch: dict[str, jax.Array], comp, rewards, greedy_rewards,
            rng: jax.Array, stale: jax.Array | None = None):
    """Phase 3: log-probs, advantages and the PPO epochs x minibatches update. `comp` must have
    been sampled from `state.params` (on-policy), except where `stale` [b * g, n] is 1: tokens
    an earlier policy sampled (APRIL), whose behaviour log-probs are `comp.logprobs`."""
    b = batch["prompt_ids"].shape[0]
    # Forward passes over whole groups run each prompt once (see completion_logprobs).
    group_prompts = batch["prompt_ids"], batch["prompt_mask"]
    prompt_ids, prompt_mask = _repeat(batch["prompt_ids"], g), _repeat(batch["prompt_mask"], g)
    n = comp.tokens.shape[1]
    if on_policy:  # estimators that read logp (a KL reward penalty) get the sampler's
      old_logp = comp.logprobs * comp.mask
    else:
      old_logp, _ = completion_logprobs(model_config, state.params, *group_prompts,
                                        comp.tokens, comp.mask, rl.temperature)
      old_logp = jax.lax.stop_gradient(old_logp) * comp.mask
    if stale is not None:
      old_logp = jnp.where(stale > 0, comp.logprobs, old_logp) * comp.mask
    ref_logp = None
    if state.ref_params is not None:
      ref_logp, _ = completion_logprobs(model_config, state.ref_params, *group_prompts,
                                        comp.tokens, comp.mask, rl.temperature)
      ref_logp = jax.lax.stop_gradient(ref_logp) * comp.mask
    values = None
    if state.value_params is not None:
      values = completion_values(model_config, state.value_params, *group_prompts,
                                 comp.tokens, comp.mask)
      values = jax.lax.stop_gradient(values) * comp.mask

    step_end = step_r = None
    if state.prm_params is not None:
      if step_end_table is None:
        raise ValueError("the state carries a PRM but make_rl_step got no step_end_table")
      step_end = prm.step_ends(comp.tokens, comp.mask, step_end_table)
      step_r = jax.lax.stop_gradient(prm.step_rewards(
          model_config, state.prm_params, prompt_ids, prompt_mask, comp.tokens, comp.mask,
          step_end))

    n_mb = rl.get("minibatches", 1)
    if n_mb == 1 and b % rl.get("microbatches", 1) == 0 and parallel.batch_shards() == 1:
      # Whole groups stay together in every micro-batch: the loss forward shares prompts too.
      # Not with a sharded batch: there XLA:CPU's schedule of the two streams raised the
      # per-device peak (tests/test_memory.py, 25.1 vs 22.6 MB); unmeasured on accelerators.
      rollout = dict(prompt_ids=batch["prompt_ids"], prompt_mask=batch["prompt_mask"])
    else:  # minibatches draw rows at random across groups: one prompt row per completion
      rollout = dict(prompt_ids=prompt_ids, prompt_mask=prompt_mask)
    rollout.update(tokens=comp.tokens, mask=comp.mask)

    prime_params, prime_opt_state, process_r, prime_metrics = (
        state.prime_params, state.prime_opt_state, None, {})
    if state.prime_params is not None:
      prime_params, prime_opt_state, process_r, prime_metrics = update_implicit_prm(
          state, rollout, ref_logp, rewards)

    bgn = lambda x: None if x is None else x.reshape(b, g, n)
    inputs = registry.AdvantageInputs(
        rewards=rewards, tokens=bgn(comp.tokens), mask=bgn(comp.mask), logp=bgn(old_logp),
        ref_logp=bgn(ref_logp), values=bgn(values), greedy_rewards=greedy_rewards,
        step_rewards=bgn(step_r), step_end=bgn(step_end), process_rewards=bgn(process_r))
    adv = advantage_fn(inputs, alg).reshape(b * g, n)
    returns = None
    if values is not None:  # critic targets: GAE advantages + values; the policy sees them whitened
      returns = (adv + values) * comp.mask
      adv = adv_lib.whiten(adv, comp.mask)
    loss_mask, filter_metrics = comp.mask, {}
    if dynamic_sampling != "none":  # zero-variance groups (with "fill": the shortfall) leave
      keep_bg = adv_lib.dynamic_sampling_mask(rewards)  # the loss and its normaliser
      loss_mask = loss_mask * keep_bg.reshape(b * g, 1)
      if dynamic_sampling == "mask":
        filter_metrics["dynamic_sampling_kept_frac"] = keep_bg[:, 0].mean()
    if overlong_filter:  # DAPO §3.4: truncated samples leave the loss, advantages unchanged
      finished_n = filters.finished(comp.tokens, comp.mask, eos_id)
      loss_mask = loss_mask * finished_n[:, None]
      filter_metrics["overlong_filtered_frac"] = 1.0 - finished_n.mean()

    rollout.update(loss_mask=loss_mask, advantages=adv)
    if not on_policy or stale is not None:
      rollout["old_logp"] = old_logp
    if stale is not None:
      rollout["stale"] = stale
    if ref_logp is not None:
      rollout["ref_logp"] = ref_logp
    if values is not None:
      rollout.update(old_values=values, returns=returns)

    demos = mu = None
    if use_chord:
      demos = demo_minibatches(batch, n_mb)
      mu = chord.mu_schedule(state.step, start=alg.chord_mu_start, end=alg.chord_mu_end,
                             decay_steps=alg.chord_mu_decay_steps,
                             warmup_steps=alg.chord_mu_warmup_steps)
    update = functools.partial(minibatch_update, mu=mu)

    def epoch(carry, key):
      if n_mb == 1:  # one minibatch holds every row: the order does not matter
        minibatches = jax.tree.map(lambda x: x[None], rollout)
      else:
        perm = jax.random.permutation(key, b * g).reshape(n_mb, -1)
        minibatches = jax.tree.map(lambda x: x[perm], rollout)
      return jax.lax.scan(update, carry, (minibatches, demos))

    keys = jax.random.split(rng, rl.get("ppo_epochs", 1))
    carry = (state.params, state.opt_state, state.value_params, state.value_opt_state)
    (params, opt_state, value_params, value_opt_state), update_metrics = jax.lax.scan(
        epoch, carry, keys)
    lengths = comp.mask.sum(-1)
    metrics = jax.tree.map(jnp.mean, update_metrics)
    metrics.update(
        **outcome_metrics(rewards), **filter_metrics,
        completion_tokens=lengths.mean(), completion_tokens_max=lengths.max(),
        sample_entropy=jnp.sum(comp.entropies) / jnp.maximum(comp.mask.sum(), 1),
        adv_abs_mean=jnp.sum(jnp.abs(adv)) / jnp.maximum(comp.mask.sum(), 1),
        loss_tokens_frac=loss_mask.sum() / jnp.maximum(comp.mask.sum(), 1),
        **length_by_outcome(lengths, rewards.reshape(-1)), **prime_metrics)
    if "index" in batch:  # data.record_example_accuracy (1-shot RLVR's historical variance)
      metrics.update(example_index=batch["index"], example_accuracy=jnp.mean(rewards > 0, -1))
    if step_r is not None:
      n_steps = step_end.sum(-1)
      metrics.update(
          steps_per_completion=n_steps.mean(),
          prm_step_reward_mean=step_r.sum() / jnp.maximum(step_end.sum(), 1),
          prm_min_step_reward_mean=jnp.min(jnp.where(step_end > 0, step_r, 1.0), -1).mean())
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              value_params=value_params, value_opt_state=value_opt_state,
                              prime_params=prime_params, prime_opt_state=prime_opt_state)
    if ref_reset_every:
      new_state, metrics["ref_reset"] = prorl.scheduled_reset(new_state, optimizer,
                                                              ref_reset_every)
    return new_state, metrics

  def select(batch: dict[str, jax.Array], comp, rewards, greedy_rewards):
    """Phase 2b: with dynamic_sampling "fill", the rl.batch_size groups to learn on."""
    if dynamic_sampling != "fill":
      return batch, comp, rewards, greedy_rewards, {}
    return select_groups(batch, comp, rewards, greedy_rewards, rl.batch_size)

  def rl_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    """sample -> score -> select -> learn, one program."""
    rng_sample, rng_learn = jax.random.split(rng)
    comp, greedy = sample(state, batch, rng_sample)
    rewards, greedy_rewards = score(batch, comp, greedy)
    # the sampler's loop runs until its longest row ends (with "fill": of all k·B groups)
    decode_steps = comp.mask.sum(-1).max()
    *kept, select_metrics = select(batch, comp, rewards, greedy_rewards)
    state, metrics = learn(state, *kept, rng_learn)
    return state, {**metrics, **select_metrics, "decode_steps": decode_steps}

  def april_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    """APRIL rollout (resume the buffer + fresh groups until b are done) -> score -> learn."""
    rng_sample, rng_learn = jax.random.split(rng)
    train, buffer, stale, decode_steps = april.rollout(
        model_config, state.params, state.rollouts, batch, rng_sample, state.step, group_size=g,
        sample_kw=sample_kw)
    train_batch = train.batch()
    comp = sampling.Completions(tokens=train.part.tokens, logprobs=train.part.logprobs,
                                entropies=train.part.entropies, mask=train.part.mask)
    rewards, _ = score(train_batch, comp, None)
    new_state, metrics = learn(state.replace(rollouts=buffer), train_batch, comp, rewards, None,
                               rng_learn, stale=stale)
    return new_state, metrics | april.metrics(train, buffer, stale, state.step, decode_steps)

  step_fn = april_step if rl.get("partial_rollouts", False) else rl_step
  step_fn.phases = RLPhases(sample=sample, score=score, learn=learn, select=select)
  return step_fn


def select_groups(batch: dict[str, jax.Array], comp: sampling.Completions, rewards: jax.Array,
                  greedy_rewards: jax.Array | None, num_groups: int):
  """DAPO dynamic sampling, fill mode: of the N = k·B groups sampled, the B = `num_groups` the
  update learns on (`filters.fill_groups`: kept groups first, in sampling order; a shortfall is
  filled with dropped groups, which `learn` masks as it masks every zero-variance group).

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
  return (jax.tree.map(take, batch), jax.tree.map(take_groups, comp), take(rewards),
          None if greedy_rewards is None else take(greedy_rewards), metrics)


def outcome_metrics(rewards_bg: jax.Array) -> dict[str, jax.Array]:
  """Mean / std of the outcome rewards [b, g] and the share of groups solved by all / none."""
  return dict(reward_mean=rewards_bg.mean(), reward_std=rewards_bg.std(),
              solve_all_frac=jnp.mean(jnp.all(rewards_bg > 0, -1)),
              solve_none_frac=jnp.mean(jnp.all(rewards_bg <= 0, -1)))


def demo_minibatches(batch: dict[str, jax.Array], n_mb: int) -> dict[str, jax.Array]:
  """The batch's expert demonstrations (CHORD) in `n_mb` consecutive shares, one per minibatch
  update: prompt_ids / prompt_mask [n_mb, b / n_mb, p], tokens / mask [n_mb, b / n_mb, n]."""
  demos = dict(prompt_ids=batch["prompt_ids"], prompt_mask=batch["prompt_mask"],
               tokens=batch["demo_ids"], mask=batch["demo_mask"])
  return jax.tree.map(lambda x: x.reshape((n_mb, -1) + x.shape[1:]), demos)


def length_by_outcome(lengths_n: jax.Array, rewards_n: jax.Array) -> dict[str, jax.Array]:
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
