"""DPH-RL's data split (Li et al. 2025, arXiv 2509.07430): which training prompts the initial policy
π₀ always solves (D_pef), and π₀'s correct samples of them with π₀'s token log-probs, written as a
`data.stored_samples` file (rlvr_jax/data/stored_samples.py) that the `dph` term reads.
(The command: `rlvr-prepare-dph`, or `python -m rlvr_jax.prepare_dph`, in rlvr_jax/prepare_dph.py.)

    rlvr-prepare-dph --config=configs/recipes/dph.py:cpu --out=FILE
        [--samples=8] [--min_pass_rate=1.0] [--stored_samples=1] [--batch_size=0]
        [--checkpoint=start | --workdir=DIR --checkpoint=none|latest|STEP] [--config.a.b=v]

1. π₀ (`--checkpoint`): `start` (default) is the policy this config's RL phase starts from: the
   initial weights after the config's SFT warm start, run here as training runs it (or read from
   sft.init_from); otherwise a checkpoint of `--workdir`, as `rlvr-eval` picks it.
2. Every one of the data.rl_train_size prompts of the RL training source is sampled `--samples`
   times at rl.temperature and scored by the task's reward (the evaluation's sampler,
   `evaluate.make_sample_score`). Its pass rate is the unbiased pass@1 = c/n
   (`evaluation.pass_at_k`); D_pef holds the prompts with pass rate >= `--min_pass_rate` (1.0: all
   n correct), D_exp the rest, which the file's train_index makes the RL prompts.
3. Each D_pef prompt is sampled `--stored_samples` more times; the correct completions are kept
   with π₀'s log-probs from the teacher-forced forward the RL loss uses for π_θ (at
   rl.temperature), so at the first update π_θ/π₀ = 1 on them.

Reference (seamoke/DPH-RL@486d2e0b): `data/sql/process_data/exact_correct_id.py` puts a prompt in
D_pef when its first 4 sampled attempts are all correct (here: `--samples=4
--min_pass_rate=1.0`; its README says 8); `verl/trainer/ppo/ray_trainer.py` `fit`
(generate_sft) then samples the D_pef prompts again (`rollout.n=1` in
scripts/llama/get_correct_data_tensor.sh), keeps score == 1 (here: reward > 0.5, the evaluation's
"correct"), and stores the actor's `old_log_probs` of them. It then triples the stored rows and
cuts them to 256-row chunks; here `data.stored_samples_per_step` rows are drawn each step from
the reshuffled file.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging

from rlvr_jax import evaluation
from rlvr_jax.algorithms.registry import TERMS
from rlvr_jax.data import pipeline, stored_samples
from rlvr_jax.evaluation import evaluate, results
from rlvr_jax.training import warm_start
from rlvr_jax.training.forward import completion_logprobs
from rlvr_jax.training.run import Run


def _without_stored_samples(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config with its stored-samples users turned off: π₀ and the full training source are
  what the split reads (the file does not exist yet)."""
  config = copy.deepcopy(config)
  with config.unlocked():
    terms = config.algorithm.terms.to_dict() if config.algorithm.terms else {}
    config.algorithm.terms = {n: kw for n, kw in terms.items()
                              if kw is None or "stored_samples" not in TERMS[n].needs}
    config.data.stored_samples = ""
  return config


def initial_policy(run: Run, workdir: str | None, checkpoint: str, progress: bool):
  """(params, label) of π₀: the RL phase's starting policy, or a checkpoint of `workdir`."""
  if checkpoint == "start":
    if run.config.sft.init_from:
      params, _ = warm_start.load_sft(run, run.config.sft.init_from)
    else:
      params, _ = warm_start.sft(run, run.init_params(), progress)
    return params, "start"
  if not workdir and checkpoint != "none":
    raise ValueError(f"--checkpoint={checkpoint} reads a checkpoint of --workdir; give it")
  params, step = evaluate.restore_params(run, workdir or "", checkpoint)
  return params, "none" if step is None else str(step)


def split(config: ml_collections.ConfigDict, out: str, *, samples: int = 8,
          min_pass_rate: float = 1.0, stored: int = 1, batch_size: int = 0,
          workdir: str | None = None, checkpoint: str = "start",
          progress: bool = True) -> dict[str, Any]:
  """Writes the split to `out` (a `stored_samples` file) and returns its summary."""
  if samples < 1 or stored < 1:
    raise ValueError(f"--samples ({samples}) and --stored_samples ({stored}) must be >= 1")
  if not 0.0 < min_pass_rate <= 1.0:
    raise ValueError(f"--min_pass_rate must be in (0, 1], got {min_pass_rate}")
  if config.data.rl_train_size < 1:
    raise ValueError("config.data.rl_train_size: the split samples every RL training prompt; "
                     "set it (> 0) to the size of the RL training set")
  if config.data.one_shot_from:
    raise ValueError("config.data.one_shot_from: a 1-shot run has no prompt set to split")
  results.check_writable(os.path.dirname(os.path.abspath(out)))
  run = Run(_without_stored_samples(config))
  params, label = initial_policy(run, workdir, checkpoint, progress)
  c, tok = run.config, run.tokenizer
  source = run.rl_source()
  temperature = float(c.rl.temperature)
  batch_size = batch_size or max(1, c.eval.batch_size // samples)
  rng = jax.random.fold_in(jax.random.key(c.seed), 2509)  # apart from the training run's keys
  encode = lambda i: pipeline.encode_example(source[i], tok, run.shapes, with_demo=False)

  # 2. pass rates of every training prompt
  sample_score = evaluate.make_sample_score(run, samples, temperature)
  correct = np.zeros((len(source), samples), bool)
  starts = range(0, len(source), batch_size)
  for b, start in enumerate(tqdm.tqdm(starts, desc="pi0 pass rates", disable=not progress)):
    index = list(range(start, min(start + batch_size, len(source))))
    batch = evaluate._stack([encode(i) for i in index], batch_size)  # pylint: disable=protected-access
    _, _, rewards = jax.device_get(sample_score(params, batch, jax.random.fold_in(rng, 2 * b)))
    correct[index] = (rewards > 0.5).reshape(batch_size, samples)[:len(index)]
  pass_rate = np.asarray(evaluation.pass_at_k(samples, correct.sum(-1), 1))
  # pass@1 = c/n exactly in reals; the float32 estimator is within a few ulps of it
  in_pef = pass_rate >= min_pass_rate - 1e-6
  perfect, explore = np.flatnonzero(in_pef), np.flatnonzero(~in_pef)

  # 3. fresh correct samples of D_pef with π₀'s teacher-forced log-probs
  sample_stored = evaluate.make_sample_score(run, stored, temperature)
  logprobs = jax.jit(lambda p, pi, pm, t, m: completion_logprobs(
      run.model_config, p, pi, pm, t, m, temperature)[0] * m)
  kept: dict[str, list[np.ndarray]] = {k: [] for k in stored_samples.ROWS + ("source_index",)}
  for b, start in enumerate(tqdm.tqdm(range(0, len(perfect), batch_size), desc="pi0 samples",
                                      disable=not progress)):
    index = perfect[start:start + batch_size]
    batch = evaluate._stack([encode(i) for i in index], batch_size)  # pylint: disable=protected-access
    tokens, mask, rewards = sample_stored(params, batch, jax.random.fold_in(rng, 2 * b + 1))
    prompt_ids, prompt_mask = (jnp.repeat(batch[k], stored, axis=0)
                               for k in ("prompt_ids", "prompt_mask"))
    logp = logprobs(params, prompt_ids, prompt_mask, tokens, mask)
    rows = jax.device_get(dict(prompt_ids=prompt_ids, prompt_mask=prompt_mask, tokens=tokens,
                               mask=mask, logp=logp))
    keep = np.flatnonzero((np.asarray(rewards) > 0.5)[:len(index) * stored])
    for k, v in rows.items():
      kept[k].append(np.asarray(v)[keep])
    kept["source_index"].append(np.repeat(index, stored)[keep])
  rows = {k: (np.concatenate(v) if v else np.zeros((0,) + _width(run, k), np.float32))
          for k, v in kept.items()}

  summary = {"prompts": len(source), "perfect": len(perfect), "explore": len(explore),
             "stored_rows": len(rows["tokens"]),
             "mean_pass_rate": float(pass_rate.mean()) if len(pass_rate) else 0.0}
  meta = {**stored_samples.source_settings(c, run.shapes), "checkpoint": label,
          "weights": results.weights_fingerprint(params), "samples": samples,
          "min_pass_rate": min_pass_rate, "stored_samples": stored, "summary": summary}
  stored_samples.save(out, {k: rows[k] for k in stored_samples.ROWS}, meta, train_index=explore,
                      extra={"pass_rate": pass_rate.astype(np.float32),
                             "perfect_index": perfect.astype(np.int32),
                             "source_index": rows["source_index"].astype(np.int32)})
  logging.info("DPH split of %d prompts: %d solved always (%d stored rows), %d to explore; "
               "wrote %s", len(source), len(perfect), summary["stored_rows"], len(explore), out)
  return {**summary, "path": out}


def _width(run: Run, key: str) -> tuple[int, ...]:
  if key == "source_index":
    return ()
  return (run.shapes.prompt_len,) if key.startswith("prompt") else (run.config.rl.max_new_tokens,)
