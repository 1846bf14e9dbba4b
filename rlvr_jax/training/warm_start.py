"""The phases before RL: the supervised warm start and, for PURE, the process reward model.

Both take the run's static pieces (`run.Run`) and return parameters plus summary metrics; every
step's loss and gradient norm, and the parameters they return, are checked finite.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from absl import logging

from rlvr_jax import parallel, sampling
from rlvr_jax.checkpoints.manager import Checkpointer, abstract_like
from rlvr_jax.data import pipeline
from rlvr_jax.rewards import prm
from rlvr_jax.training import finite
from rlvr_jax.training import metrics as metrics_lib
from rlvr_jax.training.run import Run
from rlvr_jax.training.state import critic_from_policy, make_optimizer


def load_sft(run: Run, workdir: str) -> tuple[Any, dict[str, Any]]:
  """The policy in checkpoint 0 of the earlier run in `workdir` (`sft.init_from`), instead of an
  SFT phase, with that run's SFT metrics. Only the policy parameters are read, so that run may
  have carried anything else (a reference, critic, PRM, APRIL buffer, another optimizer); a
  policy of another shape is refused, naming the differences."""
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  try:
    params = checkpointer.restore_field(0, "params", run.abstract_params())
  except ValueError as e:
    raise ValueError(f"config.sft.init_from: {e}") from None
  finally:
    checkpointer.close()
  finite.check_tree("sft", 0, params, replicated=parallel.replicated(run.mesh))
  metrics: dict[str, Any] = {}
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      first = json.loads(f.readline() or "{}")
    metrics = {k: v for k, v in first.items() if k.startswith("sft_")}
  return params, {**metrics, "sft_init_from": os.path.abspath(workdir)}


def rl_start(run: Run) -> Any:
  """The policy weights the RL phase starts from when they come from the config alone: the SFT
  policy of `sft.init_from`, else the initial weights. A LoRA run's frozen base, rebuilt the same
  way on every (re)start, since its checkpoints keep only the adapters."""
  if run.config.sft.init_from:
    return load_sft(run, run.config.sft.init_from)[0]
  return run.init_params()


def load_prm(run: Run, workdir: str, policy_params) -> tuple[Any, dict[str, Any]]:
  """The frozen PRM in checkpoint 0 of the earlier PURE run in `workdir` (`prm.init_from`),
  instead of training one, with that run's PRM metrics. Only that run's PRM and policy are read;
  a PRM of another shape is refused, naming the differences. `prm_same_policy` records whether
  that run's starting policy is this run's (ablations share one PRM between the variants of one
  SFT policy); a different one is allowed, with a warning: the PRM then scores samples of a
  policy it was not trained on."""
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  try:
    prm_params = checkpointer.restore_field(
        0, "prm_params", abstract_like(jax.jit(critic_from_policy)(policy_params)))
    source_policy = checkpointer.restore_field(0, "params", abstract_like(policy_params))
  except ValueError as e:
    raise ValueError(f"config.prm.init_from: {e}") from None
  finally:
    checkpointer.close()
  replicated = parallel.replicated(run.mesh)
  finite.check_tree("prm", 0, prm_params, replicated=replicated)
  same = bool(jax.jit(_trees_equal, out_shardings=replicated)(source_policy, policy_params))
  if not same:
    logging.warning("prm.init_from: the PRM in %s was trained on the samples of a different "
                    "policy than this run's starting policy", workdir)
  metrics: dict[str, Any] = {}
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      first = json.loads(f.readline() or "{}")
    metrics = {k: v for k, v in first.items()
               if k.startswith("prm_") and k not in ("prm_time_s", "prm_init_from")}
  return prm_params, {**metrics, "prm_init_from": os.path.abspath(workdir),
                      "prm_same_policy": same}


def _trees_equal(a, b) -> jax.Array:
  return jnp.all(jnp.stack([jnp.array_equal(x, y) for x, y in
                            zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)]))


def sft(run: Run, params, progress: bool) -> tuple[Any, dict[str, Any]]:
  """Supervised warm start; with `sft.target_accuracy` > 0 it stops at the first evaluation
  (every `sft.eval_every` steps) whose held-out greedy accuracy reaches the target, so every
  seed hands RL a policy of the same competence."""
  config = run.config
  if config.sft.steps == 0:  # nothing to train: the weights as they are
    return params, {"sft_steps": 0}
  state = run.make_state(params, run.sft_optimizer, with_reference=False)
  sft_step = run.compile_step(run._sft_step, state, with_rng=False)
  ds = run.dataset("train", config.sft.batch_size, seed=config.seed + 1, shuffle=True,
                   size=config.data.train_size, with_demo=True)
  it = iter(ds)
  target, every = config.sft.target_accuracy, config.sft.eval_every
  last: dict[str, Any] = {}
  # each step's metrics are checked after the next step is dispatched
  lagged = metrics_lib.Lagged(functools.partial(finite.fetch_checked, "sft"))
  steps_run = 0
  for step in tqdm.trange(1, config.sft.steps + 1, desc="sft", disable=not progress,
                          mininterval=2):
    state, m_dev = sft_step(state, run.device_batch(next(it)))
    if (done := lagged.push(step, m_dev)) is not None:
      last = done[1]
    steps_run = step
    if target > 0 and step % every == 0:
      last = lagged.flush()[1]
      acc = run.evaluate(state.params)
      logging.info("SFT step %d: held-out greedy accuracy %.3f (target %.2f)", step, acc, target)
      if acc >= target:
        break
  if (done := lagged.flush()) is not None:
    last = done[1]
  finite.check_tree("sft", steps_run, state.params, replicated=parallel.replicated(run.mesh),
                    hint=finite.hint("sft"))
  return state.params, {**last, "sft_steps": steps_run}


def train_prm(run: Run, policy_params, progress: bool) -> tuple[Any, dict[str, Any]]:
  """Trains the PURE process reward model on the warm-started policy's own samples.

  Each step samples `prm.group_size` completions for `prm.batch_size` training prompts (one
  jitted call), labels their steps on the host (`prm.label_batch`: the task's `step_labels`, or
  agreement with the gold demonstration), and takes one jitted AdamW step on the step-level
  cross-entropy. Held-out step accuracy is measured on `prm.eval_prompts` test prompts before and
  after. The PRM starts from the policy trunk with a zero head and is frozen for RL.
  """
  config, pc = run.config, run.config.prm
  g, delimiter = pc.group_size, pc.step_delimiter
  table = run.step_end_table
  params = jax.jit(critic_from_policy)(policy_params)
  optimizer = make_optimizer(pc.optimizer, pc.steps)
  carry = (params, jax.jit(optimizer.init)(params))
  update = jax.jit(prm.make_prm_step(run.model_config, optimizer), donate_argnums=0)
  evaluate = jax.jit(lambda p, batch: prm.prm_loss(run.model_config, p, batch)[1])

  @jax.jit
  def rollout(policy_params, prompt_ids, prompt_mask, rng):
    comp = sampling.generate(run.model_config, policy_params, prompt_ids, prompt_mask, rng,
                             max_new_tokens=config.rl.max_new_tokens, temperature=pc.temperature,
                             eos_id=run.tokenizer.eos_id, pad_id=run.tokenizer.pad_id,
                             num_samples=g)  # each prompt prefilled once for its g samples
    prompt_ids, prompt_mask = jnp.repeat(prompt_ids, g, 0), jnp.repeat(prompt_mask, g, 0)
    return (dict(prompt_ids=prompt_ids, prompt_mask=prompt_mask, tokens=comp.tokens,
                 mask=comp.mask), prm.step_ends(comp.tokens, comp.mask, table))

  def labelled_batch(source, start: int, size: int, rng):
    first, stop = parallel.process_rows(run.mesh, size)  # this process's prompts
    examples = [source[i] for i in range(start + first, start + stop)]
    enc = [pipeline.encode_example(e, run.tokenizer, run.shapes, with_demo=False)
           for e in examples]
    prompts = run.device_batch({k: np.stack([x[k] for x in enc])
                                for k in ("prompt_ids", "prompt_mask")})
    batch, step_end = rollout(policy_params, prompts["prompt_ids"], prompts["prompt_mask"], rng)
    # Only labelling needs the host: fetch this process's completions, send back the labels.
    tokens, mask, ends = (parallel.local_rows(run.mesh, x)
                          for x in (batch["tokens"], batch["mask"], step_end))
    labels = prm.label_batch(run.task, run.tokenizer, [e for e in examples for _ in range(g)],
                             tokens, mask, ends, delimiter)
    return dict(batch, step_end=step_end, **run.device_batch({"labels": labels}))

  rng = jax.random.fold_in(run.base_rng, 3)
  train = pipeline.TaskSource(run.task, "train", config.seed + 3, config.data.train_size)
  test = pipeline.TaskSource(run.task, "test", config.data.eval_seed, pc.eval_prompts)
  held_out = labelled_batch(test, 0, pc.eval_prompts, jax.random.fold_in(rng, 0))
  before = metrics_lib.to_python(jax.device_get(evaluate(carry[0], held_out)))
  last: dict[str, Any] = {}
  # each step's metrics are checked after the next batch is sampled and its step dispatched
  lagged = metrics_lib.Lagged(functools.partial(finite.fetch_checked, "prm"))
  for step in tqdm.trange(1, pc.steps + 1, desc="prm", disable=not progress, mininterval=2):
    batch = labelled_batch(train, (step - 1) * pc.batch_size, pc.batch_size,
                           jax.random.fold_in(rng, step))
    carry, m_dev = update(carry, batch)
    if (done := lagged.push(step, m_dev)) is not None:
      last = done[1]
  if (done := lagged.flush()) is not None:
    last = done[1]
  finite.check_tree("prm", pc.steps, carry[0], replicated=parallel.replicated(run.mesh),
                    hint=finite.hint("prm"))
  after = metrics_lib.to_python(jax.device_get(evaluate(carry[0], held_out)))
  logging.info("PRM after %d steps: held-out step accuracy %.3f (%.3f before), balanced "
               "%.3f (%.3f before), correct steps %.2f", pc.steps, after["prm_step_accuracy"],
               before["prm_step_accuracy"], after["prm_balanced_accuracy"],
               before["prm_balanced_accuracy"], after["prm_positive_frac"])
  return carry[0], {"prm_steps": pc.steps, "prm_train_loss": last.get("prm_loss"),
                    "prm_eval_loss": after["prm_loss"],
                    "prm_eval_step_accuracy": after["prm_step_accuracy"],
                    "prm_eval_step_accuracy_before": before["prm_step_accuracy"],
                    "prm_eval_balanced_accuracy": after["prm_balanced_accuracy"],
                    "prm_eval_balanced_accuracy_before": before["prm_balanced_accuracy"],
                    "prm_eval_positive_frac": after["prm_positive_frac"]}
