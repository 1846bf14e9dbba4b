"""The eval loop: pass@k, maj@k and mean@k of a run's checkpoint from n sampled completions per
prompt (the command line is rlvr_jax/evaluation/main.py, `rlvr-eval`).

`checkpoint` picks the policy: `latest` (default) or a step number restores DIR/checkpoints
(step 0 is the policy after the SFT warm start); `none` evaluates the initial weights (the
pretrained checkpoint for config.init.kind hf/gguf, the random init for scratch). Each prompt of
a batch is prefilled once and sampled n times (the n samples share its cache), and scored by the
task's reward, in one jitted program; the host then decodes the completions and extracts final
answers for the majority vote (`task.final_answer` where a task has one, e.g. the canonical math
answer; else the decoded completion).

Nothing sampled is lost: the k values and the output directory are checked before sampling;
each prompt's results are appended to DIR/eval_<step>_n<n>_t<T>_<digest>.prompts.jsonl as its
batch finishes, so a rerun with the same settings resumes (done prompts are not sampled again);
the table is then written atomically to DIR/eval_<step>_n<n>_t<T>_<digest>.json (`none` for
step with --checkpoint=none). The digest covers every setting that changes the samples
(`settings` in both files), so evaluations with other settings never overwrite each other; the
k values only change the table, which a rerun recomputes from the saved samples.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging

from rlvr_jax import evaluation, sampling
from rlvr_jax.checkpoints.manager import Checkpointer, abstract_like
from rlvr_jax.data import pipeline
from rlvr_jax.data.tasks.base import decode_completion
from rlvr_jax.evaluation import results
from rlvr_jax.training import state as state_lib
from rlvr_jax.training import warm_start
from rlvr_jax.training.run import Run


# ---------------------------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------------------------
def restore_params(run: Run, workdir: str, checkpoint: str) -> tuple[Any, int | None]:
  """(params, step) of `checkpoint` ("latest", "none" or a step); step is None for "none".

  "latest" is the newest readable checkpoint (one whose files match its manifest; newer ones are
  skipped with a warning, never moved: a training run may still be writing them). A requested
  step that is missing or unreadable raises ValueError.
  """
  if checkpoint == "none":
    return run.init_params(), None
  if checkpoint != "latest" and not checkpoint.isdigit():
    raise ValueError(f"--checkpoint must be latest, none or a step number, got {checkpoint!r}")
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    raise ValueError(f"--checkpoint={checkpoint}: no checkpoints in {ckpt_dir}")
  checkpointer = Checkpointer(ckpt_dir, read_only=True)
  try:
    if not checkpointer.all_steps():
      raise ValueError(f"--checkpoint={checkpoint}: no checkpoints in {ckpt_dir}")
    template = run.make_rl_state(warm_start.rl_start(run) if run.lora else run.init_params())
    abstract = abstract_like(state_lib.checkpointed(template))
    if checkpoint == "latest":
      restored = checkpointer.restore_latest(abstract)
      if restored is None:
        raise ValueError(f"--checkpoint=latest: no readable checkpoint in {ckpt_dir} (saved "
                         f"steps {checkpointer.all_steps()} all failed their checks; see the "
                         "warnings above)")
      step, state = restored[:2]
    else:
      step = int(checkpoint)
      state, _, _ = checkpointer.restore(step, abstract)
  finally:
    checkpointer.close()
  return state_lib.restored(template, state).params, step


# ---------------------------------------------------------------------------------------------
# Sampling and scoring
# ---------------------------------------------------------------------------------------------
def _examples(run: Run, num_prompts: int) -> list:
  """The first `num_prompts` held-out prompts, always the same for a config."""
  source = pipeline.TaskSource(run.task, "test", run.config.data.eval_seed, num_prompts)
  return [source[i] for i in range(num_prompts)]


def _stack(encoded: list[dict[str, np.ndarray]], rows: int) -> dict[str, np.ndarray]:
  """Pads to `rows` prompts (repeating the last, so every call has one shape)."""
  encoded = encoded + [encoded[-1]] * (rows - len(encoded))
  keys = ("prompt_ids", "prompt_mask", "answer_ids", "meta")
  return {k: np.stack([e[k] for e in encoded]) for k in keys}


def make_sample_score(run: Run, n: int, temperature: float):
  """jitted `(params, batch, rng) -> (tokens [b·n, t], mask [b·n, t], rewards [b·n])`: n samples
  of each of the batch's b prompts (rows p·n .. p·n + n − 1; each prompt is prefilled once and its
  cache shared by its n samples), rl.max_new_tokens at most, scored by the task's reward."""
  tokenizer = run.tokenizer

  @jax.jit
  def sample_score(params, batch, rng):
    comp = sampling.generate(run.model_config, params, batch["prompt_ids"],
                             batch["prompt_mask"], rng,
                             max_new_tokens=run.config.rl.max_new_tokens,
                             temperature=temperature, eos_id=tokenizer.eos_id,
                             pad_id=tokenizer.pad_id, num_samples=n)
    repeat = lambda x: jnp.repeat(x, n, axis=0)
    rewards = run.reward_fn(comp.tokens, comp.mask, repeat(batch["answer_ids"]),
                            repeat(batch["meta"]))
    return comp.tokens, comp.mask, rewards

  return sample_score


def sample_batches(run: Run, params, *, n: int, temperature: float, num_prompts: int,
                   batch_size: int, seed: int, skip: frozenset[int] = frozenset(),
                   progress: bool = True) -> Iterator[list[dict[str, Any]]]:
  """Samples n completions for each held-out prompt, one batch of prompts at a time, and yields
  per batch the records of its prompts not in `skip` (a batch all in `skip` is not sampled).

  Batch i holds prompts [i*batch_size, (i+1)*batch_size) and is sampled with
  fold_in(key(seed), i), so a resumed evaluation draws what an uninterrupted one would. A record
  is JSON-able: `index`, `prompt`, `answer`, and per sample (lists of n) `completions` (decoded,
  None if truncated), `answers` (final answers for maj@k), `correct`, `lengths` (completion
  tokens, EOS included) and `truncated`.
  """
  tokenizer, task = run.tokenizer, run.task
  sample_score = make_sample_score(run, n, temperature)
  final_answer = getattr(task, "final_answer", lambda text: text)
  examples = _examples(run, num_prompts)
  todo = [i for i, start in enumerate(range(0, num_prompts, batch_size))
          if not set(range(start, min(start + batch_size, num_prompts))) <= skip]
  rng = jax.random.key(seed)
  for i in tqdm.tqdm(todo, desc="eval", disable=not progress, mininterval=2):
    first = i * batch_size
    chunk = examples[first:first + batch_size]
    encoded = [pipeline.encode_example(e, tokenizer, run.shapes, with_demo=False) for e in chunk]
    batch = _stack(encoded, batch_size)
    tokens, mask, rewards = jax.device_get(sample_score(params, batch, jax.random.fold_in(rng, i)))
    records = []
    for p, example in enumerate(chunk):
      if first + p in skip:
        continue
      rows = range(p * n, (p + 1) * n)
      texts = [decode_completion(tokenizer, tokens[r], mask[r]) for r in rows]
      records.append({
          "index": first + p, "prompt": example.prompt, "answer": example.answer,
          "completions": texts,
          "answers": [final_answer(t) if t is not None else None for t in texts],
          "correct": [bool(rewards[r] > 0.5) for r in rows],
          "lengths": [int(mask[r].sum()) for r in rows],
          "truncated": [t is None for t in texts]})
    yield records


def sample_and_score(run: Run, params, *, n: int, temperature: float, num_prompts: int,
                     batch_size: int, seed: int, progress: bool = True) -> dict[str, Any]:
  """All of `sample_batches` at once: `correct` bool [P, n], `answers` [P][n], `lengths` int
  [P, n], `truncated` bool [P, n], `examples` (the P `Example`s), `completions` [P][n]."""
  records = [r for batch in sample_batches(run, params, n=n, temperature=temperature,
                                           num_prompts=num_prompts, batch_size=batch_size,
                                           seed=seed, progress=progress) for r in batch]
  out = {k: [r[k] for r in records] for k in ("answers", "completions")}
  out.update({k: np.asarray([r[k] for r in records]) for k in ("correct", "lengths",
                                                               "truncated")})
  out["examples"] = _examples(run, num_prompts)
  return out


def metrics_table(correct: np.ndarray, answers: list[list[Any]], ks: list[int]
                  ) -> list[dict[str, float]]:
  """One row per k: pass@k (unbiased), maj@k and mean@k, each averaged over prompts."""
  n = correct.shape[1]
  counts = correct.sum(-1)
  return [{"k": k,
           "pass@k": float(np.mean(evaluation.pass_at_k(n, counts, k))),
           "maj@k": float(np.mean(evaluation.maj_at_k(answers, correct, k))),
           "mean@k": float(np.mean(evaluation.mean_at_k(correct, k)))} for k in ks]


def format_table(rows: list[dict[str, float]]) -> str:
  lines = [f"{'k':>4}  {'pass@k':>8}  {'maj@k':>8}  {'mean@k':>8}"]
  lines += [f"{r['k']:>4}  {r['pass@k']:>8.4f}  {r['maj@k']:>8.4f}  {r['mean@k']:>8.4f}"
            for r in rows]
  return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def run_eval(config: ml_collections.ConfigDict, workdir: str, *, checkpoint: str = "latest",
             n: int = 8, ks: list[int] | tuple[int, ...] = (1, 4, 8), temperature: float = 1.0,
             num_prompts: int = 0, batch_size: int = 0, progress: bool = True
             ) -> dict[str, Any]:
  """Evaluates one checkpoint of the run in `workdir`; writes and returns the result dict.

  Checks n, k, temperature and that `workdir` is writable before building anything; streams
  per-prompt records to `<stem>.prompts.jsonl` and resumes from them (`evaluation.results`).
  """
  if n < 1:
    raise ValueError(f"--n must be >= 1, got {n}")
  if temperature < 0:
    raise ValueError(f"--temperature must be >= 0, got {temperature}")
  temperature = float(temperature)  # 0 and 0.0 are one setting (and one file name)
  kept = sorted({k for k in ks if 1 <= k <= n})
  if not kept:
    raise ValueError(f"--k={','.join(map(str, ks))}: no k in 1..n={n}, the table would be "
                     f"empty; raise --n or lower --k")
  if dropped := sorted(set(ks) - set(kept)):
    logging.warning("dropping k=%s: need 1 <= k <= n=%d", dropped, n)
  results.check_writable(workdir)  # a real write, before sampling
  run = Run(config)
  num_prompts = num_prompts or config.eval.num_prompts
  if hasattr(run.task, "num_examples"):  # a fixed dataset: never repeat a held-out prompt
    num_prompts = min(num_prompts, run.task.num_examples("test"))
  if num_prompts < 1 or batch_size < 0:
    raise ValueError(f"--num_prompts ({num_prompts}) must be >= 1 and --batch_size "
                     f"({batch_size}) >= 0")
  batch_size = min(batch_size or max(1, config.eval.batch_size // n), num_prompts)
  params, step = restore_params(run, workdir, checkpoint)
  label = "none" if step is None else str(step)
  # Everything that changes what is sampled; ks only change the table.
  settings = {"checkpoint": label, "task": config.task.name,
              "task_kwargs": json.loads(config.task.to_json_best_effort())["kwargs"],
              "init": config.init.path if config.init.kind != "scratch" else "scratch",
              "eval_seed": config.data.eval_seed, "seed": config.seed,
              "num_prompts": num_prompts, "n": n, "temperature": temperature,
              "max_new_tokens": config.rl.max_new_tokens, "batch_size": batch_size,
              "weights": results.weights_fingerprint(params)}
  base = os.path.join(workdir, results.stem(settings))
  path = base + ".json"
  results.check_target(path)
  with results.PromptLog(base + ".prompts.jsonl", settings) as log:
    resumed = len(log.done)
    logging.info("evaluating checkpoint %s on %d held-out %s prompts, n=%d, T=%g%s", label,
                 num_prompts, config.task.name, n, temperature,
                 f" ({resumed} done earlier, in {log.path})" if resumed else "")
    for records in sample_batches(run, params, n=n, temperature=temperature,
                                  num_prompts=num_prompts, batch_size=batch_size,
                                  seed=config.seed, skip=frozenset(log.done),
                                  progress=progress):
      log.append(records)
    records = [log.done[i] for i in range(num_prompts)]
  correct = np.asarray([r["correct"] for r in records])
  result = {
      "checkpoint": label, "step": step, "task": config.task.name, "num_prompts": num_prompts,
      "n": n, "temperature": temperature, "max_new_tokens": config.rl.max_new_tokens,
      "settings": settings, "resumed_prompts": resumed,
      "table": metrics_table(correct, [r["answers"] for r in records], kept),
      "mean_completion_tokens": float(np.mean([r["lengths"] for r in records])),
      "truncated_frac": float(np.mean([r["truncated"] for r in records])),
      "samples": [{"prompt": r["prompt"], "answer": r["answer"], "completion": r["completions"][0],
                   "correct": r["correct"][0]} for r in records[:8]],
      "prompts_path": log.path,
  }
  results.write_json_atomic(path, result)
  result["path"] = path
  return result
