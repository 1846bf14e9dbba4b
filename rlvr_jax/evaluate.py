"""Held-out evaluation of a run: pass@k, maj@k and mean@k from n sampled completions per prompt.

    python -m rlvr_jax.evaluate --config=configs/X.py --workdir=DIR [--checkpoint=latest|STEP|none]
        [--n=8] [--k=1,4,8] [--temperature=1.0] [--num_prompts=N] [--config.a.b=v]

`--checkpoint` picks the policy: `latest` (default) or a step number restores DIR/checkpoints
(step 0 is the policy after the SFT warm start); `none` evaluates the initial weights (the
pretrained checkpoint for config.init.kind hf/gguf, the random init for scratch). Each batch of
prompts is repeated n times, sampled and scored by the task's reward in one jitted program; the
host then decodes the completions and extracts final answers for the majority vote
(`task.final_answer` where a task has one, e.g. the canonical math answer; else the decoded
completion). The table is printed and written to DIR/eval_<step>.json (eval_none.json for
`none`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm
from absl import app, flags, logging
from ml_collections import config_flags

from rlvr_jax import evaluation, sampling
from rlvr_jax.checkpoints.manager import Checkpointer, abstract_like
from rlvr_jax.data import pipeline
from rlvr_jax.data.tasks.base import decode_completion
from rlvr_jax.training import loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, results).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "latest, a step number, or none.")
_N = flags.DEFINE_integer("n", 8, "Samples per prompt.")
_K = flags.DEFINE_list("k", ["1", "4", "8"], "k values of the table (those <= n are kept).")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature (0 = greedy).")
_NUM_PROMPTS = flags.DEFINE_integer("num_prompts", 0,
                                    "Held-out prompts; 0 = config.eval.num_prompts.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Prompts per sampling call; 0 = "
                                   "max(1, config.eval.batch_size // n).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")


# ---------------------------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------------------------
def restore_params(run: loop.Run, workdir: str, checkpoint: str) -> tuple[Any, int | None]:
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
    abstract = abstract_like(run.make_rl_state(run.init_params()))
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
  return state.params, step


# ---------------------------------------------------------------------------------------------
# Sampling and scoring
# ---------------------------------------------------------------------------------------------
def _batches(run: loop.Run, num_prompts: int, batch_size: int):
  """Lists of (example, encoded) for the first `num_prompts` held-out prompts."""
  source = pipeline.TaskSource(run.task, "test", run.config.data.eval_seed, num_prompts)
  examples = [source[i] for i in range(num_prompts)]
  for start in range(0, num_prompts, batch_size):
    chunk = examples[start:start + batch_size]
    yield chunk, [pipeline.encode_example(e, run.tokenizer, run.shapes, with_demo=False)
                   for e in chunk]


def _stack(encoded: list[dict[str, np.ndarray]], rows: int, n: int) -> dict[str, np.ndarray]:
  """Pads to `rows` prompts (repeating the last, so every call has one shape), repeats each n x."""
  encoded = encoded + [encoded[-1]] * (rows - len(encoded))
  keys = ("prompt_ids", "prompt_mask", "answer_ids", "meta")
  return {k: np.repeat(np.stack([e[k] for e in encoded]), n, axis=0) for k in keys}


def sample_and_score(run: loop.Run, params, *, n: int, temperature: float, num_prompts: int,
                     batch_size: int, seed: int, progress: bool = True) -> dict[str, Any]:
  """Samples n completions for each held-out prompt and scores them.

  Returns a dict with `correct` bool [P, n], `answers` [P][n] (final answers for maj@k),
  `lengths` int [P, n] (completion tokens, EOS included), `truncated` bool [P, n] and
  `examples` (the P `Example`s) and `completions` [P][n] decoded texts (None if truncated).
  """
  config, tokenizer, task = run.config, run.tokenizer, run.task
  max_new_tokens = config.rl.max_new_tokens

  @jax.jit
  def sample_score(params, batch, rng):
    comp = sampling.generate(run.model_config, params, batch["prompt_ids"],
                             batch["prompt_mask"], rng, max_new_tokens=max_new_tokens,
                             temperature=temperature, eos_id=tokenizer.eos_id,
                             pad_id=tokenizer.pad_id)
    rewards = run.reward_fn(comp.tokens, comp.mask, batch["answer_ids"], batch["meta"])
    return comp.tokens, comp.mask, rewards

  final_answer = getattr(task, "final_answer", lambda text: text)
  out: dict[str, list] = {k: [] for k in ("correct", "answers", "lengths", "truncated",
                                          "examples", "completions")}
  rng = jax.random.key(seed)
  batches = _batches(run, num_prompts, batch_size)
  total = math.ceil(num_prompts / batch_size)
  for i, (examples, encoded) in enumerate(tqdm.tqdm(batches, total=total, desc="eval",
                                                    disable=not progress, mininterval=2)):
    batch = _stack(encoded, batch_size, n)
    tokens, mask, rewards = jax.device_get(sample_score(params, batch, jax.random.fold_in(rng, i)))
    for p, example in enumerate(examples):
      rows = range(p * n, (p + 1) * n)
      texts = [decode_completion(tokenizer, tokens[r], mask[r]) for r in rows]
      out["examples"].append(example)
      out["completions"].append(texts)
      out["answers"].append([final_answer(t) if t is not None else None for t in texts])
      out["correct"].append([bool(rewards[r] > 0.5) for r in rows])
      out["lengths"].append([int(mask[r].sum()) for r in rows])
      out["truncated"].append([t is None for t in texts])
  for k in ("correct", "lengths", "truncated"):
    out[k] = np.asarray(out[k])
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
  """Evaluates one checkpoint of the run in `workdir`; writes and returns the result dict."""
  if n < 1:
    raise ValueError(f"--n must be >= 1, got {n}")
  dropped = [k for k in ks if not 1 <= k <= n]
  if dropped:
    logging.warning("dropping k=%s: need 1 <= k <= n=%d", dropped, n)
  ks = sorted({k for k in ks if 1 <= k <= n})
  run = loop.Run(config)
  num_prompts = num_prompts or config.eval.num_prompts
  if hasattr(run.task, "num_examples"):  # a fixed dataset: never repeat a held-out prompt
    num_prompts = min(num_prompts, run.task.num_examples("test"))
  batch_size = min(batch_size or max(1, config.eval.batch_size // n), num_prompts)
  params, step = restore_params(run, workdir, checkpoint)
  label = "none" if step is None else str(step)
  logging.info("evaluating checkpoint %s on %d held-out %s prompts, n=%d, T=%g", label,
               num_prompts, config.task.name, n, temperature)
  s = sample_and_score(run, params, n=n, temperature=temperature, num_prompts=num_prompts,
                       batch_size=batch_size, seed=config.seed, progress=progress)
  rows = metrics_table(s["correct"], s["answers"], ks)
  result = {
      "checkpoint": label, "step": step, "task": config.task.name, "num_prompts": num_prompts,
      "n": n, "temperature": temperature, "max_new_tokens": config.rl.max_new_tokens,
      "table": rows,
      "mean_completion_tokens": float(s["lengths"].mean()),
      "truncated_frac": float(s["truncated"].mean()),
      "samples": [{"prompt": e.prompt, "answer": e.answer, "completion": c[0],
                   "correct": bool(ok[0])}
                  for e, c, ok in list(zip(s["examples"], s["completions"], s["correct"]))[:8]],
  }
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, f"eval_{label}.json")
  with open(path, "w") as f:
    json.dump(result, f, indent=2)
  result["path"] = path
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    ks = [int(k) for k in _K.value]
    result = run_eval(_CONFIG.value, _WORKDIR.value, checkpoint=_CHECKPOINT.value, n=_N.value,
                      ks=ks, temperature=_TEMPERATURE.value, num_prompts=_NUM_PROMPTS.value,
                      batch_size=_BATCH_SIZE.value, progress=_PROGRESS.value)
  except ValueError as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(f"checkpoint {result['checkpoint']}: {result['num_prompts']} {result['task']} prompts, "
        f"n={result['n']}, temperature={result['temperature']}")
  print(format_table(result["table"]))
  print(f"wrote {result['path']}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
