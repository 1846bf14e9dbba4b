"""The outer loop: config -> SFT warm start -> compiled RL steps, with eval, metrics and resume.

Python here only orchestrates: it feeds batches, calls the jitted steps, writes metrics and
checkpoints. Everything per step (sampling, reward, advantage, update) is one compiled program.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging

from rlvr_jax import parallel
from rlvr_jax.checkpoints.manager import Checkpointer, StateMismatchError, abstract_like
from rlvr_jax.training import finite
from rlvr_jax.training import metrics as metrics_lib
from rlvr_jax.training.finite import NonFiniteError  # noqa: F401 (main catches loop.NonFiniteError)
from rlvr_jax.training import prorl, resume, warm_start
from rlvr_jax.training import workdir as workdir_lib
from rlvr_jax.training.run import Run  # also `loop.Run`, as users and old code name it
from rlvr_jax.training.state import TrainState, checkpointed, tree_size
from rlvr_jax.training.state import restored as restored_state


# ---------------------------------------------------------------------------------------------
# The RL phase
# ---------------------------------------------------------------------------------------------
def _check_finite(step: int, m: dict[str, Any], checkpointer: Checkpointer, state=None,
                  mesh=None) -> None:
  """RL step `step`: its metrics, and with `state` (to be evaluated and saved) every leaf of it,
  are finite; else the last good checkpoint is let finish writing and this state is never saved."""
  try:
    finite.check_metrics("rl", step, m)
    if state is not None:
      finite.check_tree("rl", step, state, name="train state",
                        replicated=parallel.replicated(mesh))
  except NonFiniteError as e:
    checkpointer.wait()
    raise NonFiniteError(f"{e} The last good checkpoint in {checkpointer.directory} is intact; "
                         f"a rerun resumes from it.{finite.hint('rl')}") from None


def train(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True
          ) -> dict[str, Any]:
  """Runs (or resumes) a full experiment in `workdir`; returns the final summary dict.

  With several processes (config.distributed) every process calls this with the same config and
  workdir; process 0 alone writes files and shows progress, and only it returns the summary
  (the others return {}).
  """
  config.lock()
  parallel.maybe_initialize_distributed(config.distributed)  # before anything touches a device
  primary = parallel.is_primary()
  progress = progress and primary
  workdir_lib.check_writable(workdir)
  run = Run(config)
  os.makedirs(workdir, exist_ok=True)
  config_path = os.path.join(workdir, "config.json")
  changes = resume.config_changes(config_path, config)  # before config.json is rewritten
  logging.info("model %s: %.2fM parameters", run.model_config,
               tree_size(jax.eval_shape(run.init_params)) / 1e6)

  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.checkpoint.keep,
                              use_async=config.checkpoint.use_async,
                              before_manifest=_sigkill_at(config.debug.sigkill_before_manifest))
  # A LoRA run's frozen base is rebuilt from the config: its checkpoints hold the adapters alone.
  template = run.make_rl_state(warm_start.rl_start(run) if run.lora else run.init_params())
  rl_step = run.compile_rl_step(template)
  train_ds = run.rl_dataset()
  train_it = iter(train_ds)
  summary: dict[str, Any] = {}
  # Step rngs are fold_in(base, step): the base key, saved with every checkpoint, is all the
  # rng state there is.
  rng_meta = {"rng_key_data": np.asarray(jax.random.key_data(run.base_rng)).tolist()}
  try:
    restored = checkpointer.restore_latest(
        abstract_like(checkpointed(template)),
        check=resume.checkpoint_check(train_it.get_state(), rng_meta))
  except StateMismatchError as e:  # refused before anything ran or was written
    checkpointer.close()
    raise resume.mismatch_error(e, workdir, changes) from None
  if restored is not None and restored[3]["rng_key_data"] != rng_meta["rng_key_data"]:
    checkpointer.close()
    raise ValueError(f"config.seed: {config.seed} gives a different rng than the checkpoints "
                     f"in {checkpointer.directory} were made with; use a new --workdir")
  if primary:
    resume.warn_on_config_change(workdir, changes)
    with open(config_path, "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    if hasattr(run.tokenizer, "serialized_model"):  # sentencepiece; HF ones come from init.path
      with open(os.path.join(workdir, "tokenizer.model"), "wb") as f:
        f.write(run.tokenizer.serialized_model())

  if restored is None:
    writer = metrics_lib.make_writer(workdir, resume_step=None, active=primary,
                                    config=config)
    t0 = time.time()
    if config.sft.init_from:  # the warm start of an earlier run (e.g. one SFT per ablation seed)
      params, sft_metrics = warm_start.load_sft(run, config.sft.init_from)
    else:
      params, sft_metrics = warm_start.sft(run, template.params, progress)
    del template
    sft_metrics["sft_time_s"] = time.time() - t0
    prm_params = None
    if run.uses_prm:
      t0 = time.time()
      if config.prm.init_from:  # one PRM shared by the runs of one SFT policy (ablations)
        prm_params, prm_metrics = warm_start.load_prm(run, config.prm.init_from, params)
      else:
        prm_params, prm_metrics = warm_start.train_prm(run, params, progress)
      sft_metrics.update(prm_metrics, prm_time_s=time.time() - t0)
    state = run.make_rl_state(params, prm_params)
    if config.rl.partial_rollouts:
      state = run.prime_rollouts(state, train_it)
    evaluated = run.evaluate_all(state.params)
    acc = evaluated["eval_accuracy"]
    writer.write(0, {"phase": "sft", **evaluated, **sft_metrics})
    logging.info("after SFT (%d steps): held-out greedy accuracy %.3f",
                 sft_metrics.get("sft_steps", 0), acc)
    plateau = prorl.PlateauTracker.from_config(config.algorithm)
    if plateau is not None:  # the starting accuracy is the first best
      plateau.observe(acc)
    checkpointer.save(0, checkpointed(state), train_it.get_state(),
                      {"eval_accuracy": acc, **rng_meta, **_plateau_meta(plateau)})
    start = 0
  else:
    start, state, data_state, meta = restored
    state = restored_state(template, state)
    plateau = prorl.PlateauTracker.from_config(config.algorithm, meta)
    train_it.set_state(data_state)
    writer = metrics_lib.make_writer(workdir, resume_step=start, active=primary,
                                    config=config)
    logging.info("resumed from %s at RL step %d", checkpointer.directory, start)

  bar = tqdm.tqdm(total=config.rl.steps, initial=start, desc="rl", disable=not progress,
                  mininterval=2)
  try:
    _rl_phase(run, rl_step, state, start, train_it, writer, checkpointer, bar, rng_meta, plateau)
    summary = _summary(os.path.join(workdir, "metrics.jsonl")) if primary else {}
  finally:
    bar.close()
    checkpointer.close()
    writer.close()
  return summary


def _plateau_meta(plateau: prorl.PlateauTracker | None) -> dict:
  return {} if plateau is None else plateau.to_meta()


def _rl_phase(run: Run, rl_step, state: TrainState, start: int, train_it, writer, checkpointer,
              bar, rng_meta: dict, plateau: prorl.PlateauTracker | None) -> None:
  """RL steps start+1 .. rl.steps, pipelined: step k+1 is dispatched (its batch built and put on
  the devices while step k runs) before step k's metrics are fetched, so the host never leaves
  the devices idle. Steps that evaluate, save or end the run fetch their metrics first: a
  checkpoint is only written after every earlier step's metrics and the state itself (one
  reduction) were checked finite, and the state is read before the next step takes (donates) it.
  With a ProRL plateau tracker, each evaluation may reset the reference before the save."""
  config = run.config
  rl_rng = jax.random.fold_in(run.base_rng, 1)
  last_done = time.time()
  reset = run.compile_reset(state) if plateau is not None else None

  def fetch(step, m_dev, saving: TrainState | None = None) -> dict[str, Any]:
    nonlocal last_done
    m = metrics_lib.to_python(jax.device_get(m_dev))
    now = time.time()
    m["step_time_s"] = now - last_done  # completion to completion: the step's share of wall time
    last_done = now
    _check_finite(step, m, checkpointer, saving, run.mesh)
    return m

  def record(step, m) -> None:
    if m.get("ref_reset"):
      logging.info("ProRL: step %d reset the reference policy and the optimizer moments to the "
                   "current policy (%s)", step, "plateau" if m.get("ref_reset_plateau") else
                   f"every {config.algorithm.ref_reset_every} steps")
    writer.write(step, {"phase": "rl", **m})
    bar.set_postfix(reward=f"{m['reward_mean']:.3f}", acc=m.get("eval_accuracy", "-"))
    bar.update()

  lagged = metrics_lib.Lagged(fetch)  # a step dispatched but not yet fetched
  for step in range(start + 1, config.rl.steps + 1):
    batch = run.device_batch(next(train_it))
    state, m_dev = rl_step(state, batch, jax.random.fold_in(rl_rng, step))
    if (done := lagged.push(step, m_dev)) is not None:
      record(*done)
    evaluate = step % config.eval.every == 0 or step == config.rl.steps
    save = step % config.checkpoint.every == 0 or step == config.rl.steps
    kill = step == config.debug.sigkill_after_step  # fault injection for the resume tests
    if not (evaluate or save or kill):
      continue  # fetched after the next step is dispatched (the last step always saves)
    _, m = lagged.flush(saving=state if save else None)
    if evaluate:
      m.update(run.evaluate_all(state.params))
      if plateau is not None:
        m["ref_reset_plateau"] = float(plateau.observe(m["eval_accuracy"]))
        if m["ref_reset_plateau"]:
          state = reset(state)
          m["ref_reset"] = 1.0
    record(step, m)
    if save:
      checkpointer.save(step, checkpointed(state), train_it.get_state(),
                        {"eval_accuracy": m.get("eval_accuracy"), **rng_meta,
                         **_plateau_meta(plateau)})
    if kill:
      os.kill(os.getpid(), signal.SIGKILL)


def _sigkill_at(step_to_kill: int):
  """Fault injection: a Checkpointer `before_manifest` hook that SIGKILLs the process once
  orbax has finished `step_to_kill`, before its manifest is written (-1: never)."""
  if step_to_kill < 0:
    return None

  def hook(step: int) -> None:
    if step == step_to_kill:
      os.kill(os.getpid(), signal.SIGKILL)

  return hook


def _summary(path: str) -> dict[str, Any]:
  with open(path) as f:
    rows = [json.loads(line) for line in f]
  evals = [r for r in rows if "eval_accuracy" in r]
  rl = [r for r in rows if r.get("phase") == "rl"]
  return {
      "sft_eval_accuracy": evals[0]["eval_accuracy"] if evals else None,
      "final_eval_accuracy": evals[-1]["eval_accuracy"] if evals else None,
      "best_eval_accuracy": max((r["eval_accuracy"] for r in evals), default=None),
      "final_reward_mean": float(np.mean([r["reward_mean"] for r in rl[-10:]])) if rl else None,
      "rl_steps": rl[-1]["step"] if rl else 0,
      # median: the first step after a start or resume also pays for compilation
      "median_step_time_s": float(np.median([r["step_time_s"] for r in rl])) if rl else None,
  }
