"""The run builder: everything derived from the config before anything is compiled (task,
tokenizer, shapes, mesh, model, optimizers, the step functions), and the ways the phases build
their states, datasets and compiled steps from it.

`Run` is shared by the training loop (`loop.train`), the warm start (`warm_start`), evaluation
and export; it imports neither of them, so both can import it. `loop.Run` is the same class.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from rlvr_jax import configs_base, models, parallel
from rlvr_jax.algorithms.method import Method
from rlvr_jax.checkpoints import extras
from rlvr_jax.data import one_shot, pipeline, stored_samples, synthetic
from rlvr_jax.models import lora
from rlvr_jax.rewards import prm
from rlvr_jax.training import april, prorl
from rlvr_jax.training.episode_step import EpisodeRollouts
from rlvr_jax.training.rl_step import jit_rl_step, make_eval_step, make_rl_step
from rlvr_jax.training.sft import make_sft_step
from rlvr_jax.training.state import (TrainState, create_state, critic_from_policy, make_optimizer,
                                     state_shardings)


class Run:
  """The static pieces of one run (task, tokenizer, shapes, mesh, model, compiled steps)."""

  def __init__(self, config: ml_collections.ConfigDict, devices: list[jax.Device] | None = None):
    self.config = config
    self.mesh = parallel.make_mesh(config.mesh, devices)
    configs_base.validate(config, parallel.batch_divisor(self.mesh))
    self.task = synthetic.make_task(config.task.name, **config.task.kwargs)
    if hasattr(self.task, "num_examples"):  # file-backed: read and check every row now
      for split in ("train", "test"):
        self.task.num_examples(split)
    self.model_config, self._pretrained, self.tokenizer = _model_and_tokenizer(config, self.task)
    self.model_config = self.model_config.for_weight_shards(
        self.mesh.shape["fsdp"] * self.mesh.shape["tensor"])
    if hasattr(self.task, "bind_tokenizer"):  # e.g. chat templates for real-model prompts
      self.task = self.task.bind_tokenizer(self.tokenizer)
    self.shapes = _shapes(config, self.task, self.tokenizer)
    if not config.rl.max_new_tokens:
      with config.unlocked():
        config.rl.max_new_tokens = self.shapes.completion_len
    self.reward_fn = self.task.reward_fn(self.tokenizer)
    self.sft_optimizer = make_optimizer(config.sft.optimizer, config.sft.steps)
    self.rl_optimizer = make_optimizer(config.rl.optimizer, config.rl.steps)
    # What the method's components need decides what is built: optimizers of the models its
    # terms train, the PRM's step-end matcher, the reference copy (make_rl_state).
    self.method = Method.from_config(config.algorithm)
    self.lora = lora.LoraConfig.from_config(config.lora)  # None: LoRA off
    self.value_optimizer = (make_optimizer(config.value.optimizer, config.rl.steps)
                            if self.method.has_critic else None)
    self.prime_optimizer = (make_optimizer(config.prime.optimizer, config.rl.steps)
                            if self.method.has_implicit_prm else None)
    self.uses_prm = self.method.needs_prm
    # data.stored_samples: read and checked against this config now, before anything compiles
    self.stored = self._stored_samples() if "stored_samples" in self.method.needs else None
    self.step_end_table = (prm.step_end_table(self.tokenizer, config.prm.step_delimiter,
                                              self.model_config.vocab_size)
                           if self.uses_prm else None)
    self.base_rng = jax.random.key(config.seed)
    axes = models.param_axes(self.model_config)
    shapes = jax.eval_shape(functools.partial(models.init_params, self.model_config),
                            self.base_rng)
    self.param_shardings = parallel.tree_shardings(axes, shapes, self.mesh)
    ids = dict(eos_id=self.tokenizer.eos_id, pad_id=self.tokenizer.pad_id)
    self._rl_step = make_rl_step(config, self.model_config, self.reward_fn, self.rl_optimizer,
                                 value_optimizer=self.value_optimizer,
                                 step_end_table=self.step_end_table,
                                 prime_optimizer=self.prime_optimizer, **ids)
    self._sft_step = make_sft_step(self.model_config, self.sft_optimizer)
    self._eval_step = make_eval_step(config, self.model_config, self.reward_fn, **ids)
    # data.env: each RL step is a batch of multi-turn episodes, then the compiled learn phase
    self.episodes = EpisodeRollouts(self) if config.data.env is not None else None

  def _stored_samples(self) -> stored_samples.StoredSamples:
    path = self.config.data.stored_samples
    stored = stored_samples.load(path)
    stored_samples.check(stored, stored_samples.source_settings(self.config, self.shapes), path)
    return stored

  @property
  def rl_prompts_per_step(self) -> int:
    """Prompts each RL step samples: rl.batch_size, times algorithm.oversample_factor with
    dynamic_sampling "fill" (the step then learns on rl.batch_size of those groups)."""
    alg = self.config.algorithm
    return self.config.rl.batch_size * (alg.oversample_factor
                                        if alg.dynamic_sampling == "fill" else 1)

  def init_params(self) -> models.Params:
    """Pretrained weights when config.init names a checkpoint, else a random init; sharded."""
    if self._pretrained is not None:
      return jax.device_put(self._pretrained, self.param_shardings)
    init = jax.jit(functools.partial(models.init_params, self.model_config),
                   out_shardings=self.param_shardings)
    return init(jax.random.fold_in(self.base_rng, 0))

  def abstract_params(self) -> Any:
    """ShapeDtypeStructs of what `init_params` returns, with their shardings (a restore
    target), without initialising or placing any weights."""
    shapes = self._pretrained if self._pretrained is not None else jax.eval_shape(
        functools.partial(models.init_params, self.model_config), self.base_rng)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        shapes, self.param_shardings)

  def device_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """This process's rows of a batch (all of it with one process) -> global sharded arrays.

    With `data.prompt_bucket` > 0 the prompt buffer is cut to the batch's longest prompt
    rounded up to that multiple (agreed across processes), so prompts of varying length cost
    what they hold while the steps compile once per bucket, not once per length.
    """
    bucket = self.config.data.prompt_bucket
    if bucket > 0 and "prompt_mask" in batch:
      width = pipeline.prompt_width(batch["prompt_mask"], bucket)
      if jax.process_count() > 1:
        width = parallel.max_across_processes(width)
      batch = pipeline.trim_prompts(batch, width)
    return parallel.global_batch(self.mesh, batch)

  def dataset(self, split: str, batch_size: int, *, seed: int, shuffle: bool, size: int,
              with_demo: bool = False, with_index: bool = False, source=None):
    """Encoded batches of the task (or of `source`); demonstrations only where `with_demo` (the
    SFT phase, and the RL phase with CHORD), source rows where `with_index`. Each process gets
    only its rows of every batch (`parallel.process_rows`)."""
    if source is None:
      source = pipeline.TaskSource(self.task, split, seed, size)
    return pipeline.make_dataset(source, self.tokenizer, self.shapes, batch_size, seed=seed,
                                 shuffle=shuffle, repeat=shuffle, with_demo=with_demo,
                                 with_index=with_index,
                                 rows=parallel.process_rows(self.mesh, batch_size))

  def rl_dataset(self):
    """The RL training stream: the task's train split, or with `data.one_shot_from` the one
    example ranked `data.one_shot_rank` there by historical variance (1-shot RLVR), repeated to
    fill every batch. Rows carry their source index with `data.record_example_accuracy`."""
    c = self.config
    subset = self.stored is not None and self.stored.train_index is not None
    source = self.rl_source() if c.data.one_shot_from or subset else None
    if c.data.one_shot_from:
      logging.info("1-shot RLVR: training on %r", source.example.prompt)
    ds = self.dataset("train", self.rl_prompts_per_step, seed=pipeline.rl_stream_seed(c.seed),
                      shuffle=True, size=c.data.rl_train_size or c.data.train_size,
                      source=source, with_demo="demos" in self.method.needs,
                      with_index=c.data.record_example_accuracy or self.episodes is not None)
    if self.stored is not None:  # data.stored_samples_per_step stored rows beside every batch
      per_step = c.data.stored_samples_per_step
      ds = stored_samples.attach(ds, stored_samples.batches(
          self.stored, per_step, seed=pipeline.rl_stream_seed(c.seed),
          rows=parallel.process_rows(self.mesh, per_step)))
    return ds

  def rl_source(self):
    """The examples `rl_dataset`'s `index` rows point into (an environment resets on them)."""
    c = self.config
    if c.data.one_shot_from:
      return one_shot.one_shot_source(self.task, c.data.one_shot_from, c.data.one_shot_rank)
    source = pipeline.TaskSource(self.task, "train", pipeline.rl_stream_seed(c.seed),
                                 c.data.rl_train_size or c.data.train_size)
    if self.stored is not None and self.stored.train_index is not None:  # e.g. DPH-RL's D_exp
      return stored_samples.Subset(source, self.stored.train_index)
    return source

  def compile_rl_step(self, state: TrainState):
    """The RL step, `step(state, batch, rng) -> (state, metrics)`: one compiled program, or with
    `data.env` host-run episodes followed by the compiled learn phase (`episode_step`)."""
    if self.episodes is not None:
      return self.episodes.step_fn(state)
    return self.compile_step(self._rl_step, state, with_rng=True)

  def make_state(self, params, optimizer, *, with_reference: bool,
                 with_value: bool = False, prm_params=None, with_prime: bool = False,
                 rollouts=None, with_prime_reference: bool = False, staleness: int = 0
                 ) -> TrainState:
    """A fresh train state, laid out by one jit so its shardings are those the steps keep."""
    value_optimizer = self.value_optimizer if with_value else None
    prime_optimizer = self.prime_optimizer if with_prime else None
    create = functools.partial(create_state, optimizer=optimizer, with_reference=with_reference,
                               value_optimizer=value_optimizer, prime_optimizer=prime_optimizer,
                               with_prime_reference=with_prime_reference, staleness=staleness)
    shardings = state_shardings(
        jax.eval_shape(create, params, prm_params=prm_params, rollouts=rollouts),
        self.model_config, self.mesh, optimizer, value_optimizer, prime_optimizer)
    return jax.jit(create, out_shardings=shardings)(params, prm_params=prm_params,
                                                    rollouts=rollouts)

  def make_rl_state(self, params, prm_params=None) -> TrainState:
    """The RL state; with a PURE estimator it carries the PRM (`prm_params`, or an untrained
    one from the policy trunk, e.g. as the template a checkpoint is restored into); with PRIME
    the implicit PRM and the reference it is measured against, both copies of `params` (the
    reference a copy of its own only when ProRL resets will move the KL anchor: PRIME's stays
    frozen); with rl.partial_rollouts an empty APRIL buffer (`prime_rollouts` fills it); with
    rl.simulated_staleness = k, k copies of `params` to sample with."""
    if self.uses_prm and prm_params is None:
      prm_params = jax.jit(critic_from_policy)(params)
    rollouts = None
    if self.config.rl.partial_rollouts:
      rl, s = self.config.rl, self.shapes
      rollouts = april.empty((rl.partial_rollouts_factor - 1) * rl.batch_size, s.prompt_len,
                             s.answer_len, s.meta_size, group_size=rl.group_size,
                             max_new_tokens=rl.max_new_tokens, pad_id=self.tokenizer.pad_id)
    with_prime = self.prime_optimizer is not None
    alg = self.config.algorithm
    resets = bool(alg.get("ref_reset_every", 0) or alg.get("ref_reset_patience", 0))
    if self.lora is not None and not lora.has_adapters(params):
      params = lora.attach(params, self.fresh_adapters(params))
    return self.make_state(params, self.rl_optimizer,
                           with_reference=self.method.needs_reference,
                           with_value=self.value_optimizer is not None, prm_params=prm_params,
                           with_prime=with_prime, rollouts=rollouts,
                           with_prime_reference=with_prime and resets,
                           staleness=self.config.rl.get("simulated_staleness", 0))

  def fresh_adapters(self, params) -> models.Params:
    """The LoRA adapters a run starts with (`lora.init`, B = 0), laid out like their weights
    in `params`; the same for every start of a run (seeded by config.seed)."""
    init = functools.partial(lora.init, self.model_config, self.lora)
    rng = jax.random.fold_in(self.base_rng, 7)
    shapes = lora.attach(jax.eval_shape(lambda p: p, params), jax.eval_shape(init, rng))
    axes = lora.trainable(lora.axes(self.model_config, shapes))
    shardings = parallel.tree_shardings(axes, lora.trainable(shapes), self.mesh)
    return jax.jit(init, out_shardings=shardings)(rng)

  def prime_rollouts(self, state: TrainState, train_it) -> TrainState:
    """`state` with its APRIL buffer filled by (partial_rollouts_factor - 1) batches of fresh
    prompts from `train_it`, before RL step 1."""
    rl = self.config.rl
    batches = [self.device_batch(next(train_it)) for _ in range(rl.partial_rollouts_factor - 1)]
    batch = {k: jnp.concatenate([b[k] for b in batches]) for k in batches[0]}
    fill = lambda state, batch: state.replace(rollouts=april.fresh_groups(
        batch, jax.random.fold_in(self.base_rng, 4), state.step, group_size=rl.group_size,
        max_new_tokens=rl.max_new_tokens, pad_id=self.tokenizer.pad_id))
    shardings = jax.tree.map(lambda x: x.sharding, state)
    return jax.jit(fill, out_shardings=shardings, donate_argnums=0)(state, batch)

  def compile_step(self, step_fn, state: TrainState, *, with_rng: bool):
    """jit with the state's shardings pinned on input and output, so it is traced once; traced
    under the mesh so the model's activation pins apply; the state is donated (updated in place).
    The same compilation as `rl_step.jit_rl_step` with this run's mesh."""
    return jit_rl_step(step_fn, state, self.mesh, with_rng=with_rng)

  def compile_reset(self, state: TrainState):
    """jit of ProRL's `reset_reference` (a plateau reset between steps), shardings pinned."""
    shardings = jax.tree.map(lambda x: x.sharding, state)
    reset = functools.partial(prorl.reset_reference, optimizer=self.rl_optimizer)
    return jax.jit(reset, in_shardings=(shardings,), out_shardings=shardings, donate_argnums=0)

  @functools.cached_property
  def eval_step(self):
    # Rewards laid out like the batch: a host verifier's callback result would otherwise sit on
    # one device ("maximal" sharding), which the replicated sum below cannot take as input.
    return jax.jit(self._eval_step, out_shardings=parallel.batch_sharding(self.mesh, 1))

  @functools.cached_property
  def eval_batches(self) -> list[dict[str, jax.Array]]:
    ev = self.config.eval
    bs = min(ev.batch_size, ev.num_prompts)
    ds = self.dataset("test", bs, seed=self.config.data.eval_seed, shuffle=False,
                      size=ev.num_prompts)
    return [self.device_batch(b) for b in ds]

  @functools.cached_property
  def _replicated_sum(self):
    # Rewards are sharded over processes; a replicated sum is readable on every one of them.
    return jax.jit(lambda r: jnp.sum(r.astype(jnp.float32)),
                   out_shardings=parallel.replicated(self.mesh))

  def evaluate(self, params) -> float:
    """Greedy accuracy on the held-out prompts (with data.env: the greedy episodes' mean
    reward)."""
    if self.episodes is not None:
      return self.episodes.evaluate(params)
    rewards = [self.eval_step(params, b) for b in self.eval_batches]
    total = sum(float(self._replicated_sum(r)) for r in rewards)
    return total / sum(r.size for r in rewards)

  def evaluate_all(self, params) -> dict[str, float]:
    """{"eval_accuracy": `evaluate`}, and with data.env what the greedy episodes did
    (`EpisodeRollouts.evaluate_all`: tool calls, errors, turns)."""
    if self.episodes is not None:
      return self.episodes.evaluate_all(params)
    return {"eval_accuracy": self.evaluate(params)}


def _model_and_tokenizer(config, task):
  """(model config, pretrained params or None, tokenizer) from `config.init`."""
  kind, path = config.init.kind, config.init.path
  if kind == "scratch":
    tokenizer = synthetic.build_tokenizer([task])
    fields = config.model.to_dict()
    vocab, multiple = fields.pop("vocab_size") or tokenizer.vocab_size, fields.pop("vocab_multiple")
    if vocab < tokenizer.vocab_size:
      raise ValueError(f"config.model.vocab_size: {vocab} is smaller than the tokenizer's "
                       f"{tokenizer.vocab_size} ids")
    vocab = -(-vocab // multiple) * multiple
    model_config = models.ModelConfig.from_config(
        dict(fields, vocab_size=vocab, valid_vocab_size=tokenizer.vocab_size))
    return model_config, None, tokenizer
  if not path or not os.path.exists(path):
    raise ValueError(f"config.init.path: {path!r} does not exist (config.init.kind={kind!r})")
  extras.require(kind)
  if kind == "hf":
    from rlvr_jax.checkpoints import hf  # local: pulls in safetensors only when used
    from rlvr_jax.tokenizers.hf import HFTokenizer
    model_config, params = hf.load(path, dtype=config.init.dtype)
    tokenizer = HFTokenizer.from_dir(path)
  elif kind == "gguf":
    from rlvr_jax.checkpoints import gguf  # local: the [gguf] extra is optional
    model_config, params, tokenizer = gguf.load(path, dtype=config.init.dtype)
  else:
    raise ValueError(f"config.init.kind must be scratch, hf or gguf, got {kind!r}")
  model_config = dataclasses.replace(model_config, remat=config.model.remat,
                                     dtype=config.model.dtype,
                                     unroll_layers=config.model.unroll_layers,
                                     attention_chunk=config.model.attention_chunk,
                                     cache_dtype=config.model.cache_dtype,
                                     decode_weight_gather=config.model.decode_weight_gather,
                                     decode_cache_segments=config.model.decode_cache_segments,
                                     logprob_chunk=config.model.logprob_chunk)
  return model_config, params, tokenizer


def _shapes(config, task, tokenizer) -> pipeline.Shapes:
  d = config.data
  if config.init.kind == "scratch" and not d.prompt_len:
    return pipeline.task_shapes(task, tokenizer)  # char-level: one token per character
  for field in ("prompt_len", "completion_len", "answer_len"):
    if d[field] <= 0:
      raise ValueError(f"config.data.{field} must be set (> 0) for a subword tokenizer")
  return pipeline.Shapes(d.prompt_len, d.completion_len, d.answer_len, task.meta_size)
