"""Process reward model (PRM): reasoning-step segmentation, step labels, scoring and training.

PURE (Cheng et al. 2025) credits each reasoning step with a PRM score. Here:

* **Steps.** A step ends at the completion token after which the completion's decoded text
  ends with the delimiter (`config.prm.step_delimiter`, "\\n\\n" by default as in PURE; ","
  for the addition scratchpad), whether the delimiter is one token, the end of a longer one, or
  split across several; the last valid token (EOS, or the last token of a truncated
  completion) always ends the last step. `step_end_table` precomputes, once per tokenizer, a
  KMP matcher over token ids, so the compiled step finds step ends with a scan of gathers
  (`step_ends`).
* **Model.** The PRM is the policy trunk with a scalar head (`models.scalar_head`), read at each
  step-end token: that position has seen the prompt and the whole step and nothing after it.
  Its logit h gives the step reward r = p(+) - p(-) = 2 sigmoid(h) - 1 = tanh(h / 2) in [-1, 1].
* **Labels.** `gold_prefix_labels`: step k is correct iff steps 0..k equal the gold
  demonstration's steps 0..k (first-error labelling, as PRM800K-style step labels). A task can
  supply its own rule as `task.step_labels(step_texts, example) -> list[bool]`.
* **Training.** `prm_loss` is the binary cross-entropy of the head's logit at step-end tokens
  against the labels, averaged over labelled steps; `make_prm_step` is its jitted AdamW update.
  The loop trains the PRM on the warm-started policy's own samples before RL
  (`training.loop`), then freezes it inside the RL state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlvr_jax import models
from rlvr_jax.algorithms.advantages import last_token_onehot
from rlvr_jax.sampling.stop_strings import kmp_failure
from rlvr_jax.tokenizers import Tokenizer


class StepEndTable(NamedTuple):
  """A delimiter matcher over token ids (`step_end_table`), for `step_ends` inside jit.

  States are KMP states: how many leading characters of the delimiter the completion's text
  ends with (0..L). next_state int32 [L + 1, V]: the state after reading token v's text;
  ends bool [L + 1, V]: token v has text and, after it, the text ends with the delimiter.
  """

  next_state: np.ndarray
  ends: np.ndarray


def step_end_table(tokenizer: Tokenizer, delimiter: str, vocab_size: int | None = None
                   ) -> StepEndTable:
  """The matcher for "the completion's text so far ends with `delimiter`", one row per token.

  A delimiter may be one token ("\n\n" in most BPE vocabularies), end a longer one (".\n\n")
  or span several ("\n" + "\n"): the text is matched, not token ids. `vocab_size` (the
  model's, which may be padded past the tokenizer's) sizes the table; unknown ids and EOS / pad
  have no text. Raises if no token sequence can end a step, which would make every completion
  one step.
  """
  if not delimiter:
    raise ValueError("config.prm.step_delimiter: must be a non-empty string")
  size, n = vocab_size or tokenizer.vocab_size, len(delimiter)
  failure = kmp_failure(delimiter)

  def advance(state: int, ch: str) -> int:
    if state == n:
      state = failure[n - 1]
    while state and delimiter[state] != ch:
      state = failure[state - 1]
    return state + 1 if delimiter[state] == ch else 0

  next_state = np.tile(np.arange(n + 1, dtype=np.int32)[:, None], (1, size))
  ends = np.zeros((n + 1, size), bool)
  special = {tokenizer.eos_id, tokenizer.pad_id}
  for v in range(min(size, tokenizer.vocab_size)):
    text = "" if v in special else tokenizer.decode([v])
    if not text:
      continue
    for state in range(n + 1):
      s = state
      for ch in text:
        s = advance(s, ch)
      next_state[state, v] = s
      ends[state, v] = s == n
  if not ends.any():
    raise ValueError(f"config.prm.step_delimiter: no text of the tokenizer's tokens contains "
                     f"{delimiter!r}, so completions could not be split into steps")
  return StepEndTable(next_state, ends)


def step_ends(tokens: jax.Array, mask: jax.Array, table: StepEndTable) -> jax.Array:
  """float32 [..., T]: 1 at valid tokens after which the completion's text ends with the
  delimiter (a `lax.scan` over T of table lookups), and at the last valid token."""
  mask = mask.astype(jnp.float32)
  next_state, ends = jnp.asarray(table.next_state), jnp.asarray(table.ends)
  ids = jnp.clip(tokens, 0, next_state.shape[1] - 1).reshape(-1, tokens.shape[-1])

  def read(state, ids_n):
    return next_state[state, ids_n], ends[state, ids_n]

  _, ends_tn = jax.lax.scan(read, jnp.zeros(ids.shape[0], jnp.int32), ids.T)
  ends_t = ends_tn.T.reshape(tokens.shape).astype(jnp.float32)
  return jnp.maximum(ends_t * mask, last_token_onehot(mask))


def head_logits(model_config: models.ModelConfig, prm_params: models.Params,
                prompt_ids: jax.Array, prompt_mask: jax.Array, tokens: jax.Array,
                mask: jax.Array) -> jax.Array:
  """float32 [b, n]: the PRM head at each completion token (having read that token)."""
  p = prompt_ids.shape[1]
  seq, seq_mask = models.join_prompt(prompt_ids, prompt_mask, tokens, mask)
  return models.scalar_head(model_config, prm_params, seq, seq_mask)[:, p:]


def step_rewards(model_config: models.ModelConfig, prm_params: models.Params,
                 prompt_ids: jax.Array, prompt_mask: jax.Array, tokens: jax.Array,
                 mask: jax.Array, step_end: jax.Array) -> jax.Array:
  """float32 [b, n]: r = tanh(h / 2) = p(+) - p(-) at step-end tokens, 0 elsewhere."""
  h = head_logits(model_config, prm_params, prompt_ids, prompt_mask, tokens, mask)
  return jnp.tanh(h / 2) * step_end


def prm_loss(model_config: models.ModelConfig, prm_params: models.Params,
             batch: dict[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean binary cross-entropy over labelled steps; `batch` holds prompt_ids, prompt_mask,
  tokens, mask, step_end (1 at labelled step-end tokens) and labels (1 = correct step)."""
  h = head_logits(model_config, prm_params, batch["prompt_ids"], batch["prompt_mask"],
                  batch["tokens"], batch["mask"])
  w, y = batch["step_end"], batch["labels"]
  n = jnp.maximum(w.sum(), 1.0)
  loss = jnp.sum(optax.sigmoid_binary_cross_entropy(h, y) * w) / n
  correct = ((h > 0) == (y > 0.5)) * w
  positives, negatives = jnp.sum(y * w), jnp.sum((1 - y) * w)
  # Balanced accuracy: the mean of the per-class recalls (a constant guess scores 0.5); a class
  # absent from the batch counts as recalled.
  recall_pos = jnp.where(positives > 0, jnp.sum(correct * y) / jnp.maximum(positives, 1), 1.0)
  recall_neg = jnp.where(negatives > 0, jnp.sum(correct * (1 - y)) / jnp.maximum(negatives, 1),
                         1.0)
  return loss, {"prm_loss": loss, "prm_step_accuracy": jnp.sum(correct) / n,
                "prm_balanced_accuracy": (recall_pos + recall_neg) / 2,
                "prm_positive_frac": positives / n}


def make_prm_step(model_config: models.ModelConfig, optimizer: optax.GradientTransformation
                  ) -> Callable:
  """`prm_step((params, opt_state), batch) -> ((params, opt_state), metrics)`, not jitted."""

  def prm_step(carry, batch):
    params, opt_state = carry
    grad_fn = jax.value_and_grad(lambda p: prm_loss(model_config, p, batch), has_aux=True)
    (_, metrics), grads = grad_fn(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    metrics["prm_grad_norm"] = optax.tree.norm(grads)
    return (optax.apply_updates(params, updates), opt_state), metrics

  return prm_step


# ---------------------------------------------------------------------------------------------
# Host side: step texts and labels
# ---------------------------------------------------------------------------------------------
def split_steps(text: str, delimiter: str) -> list[str]:
  """Text cut after every delimiter; the remainder (if any) is the last step.

  "7+5+0=12,3+8+1=12#122" with "," -> ["7+5+0=12,", "3+8+1=12#122"].
  """
  steps, start = [], 0
  while (i := text.find(delimiter, start)) >= 0:
    steps.append(text[start:i + len(delimiter)])
    start = i + len(delimiter)
  if start < len(text) or not steps:
    steps.append(text[start:])
  return steps


def completion_steps(tokenizer: Tokenizer, ids: np.ndarray, mask: np.ndarray,
                     step_end: np.ndarray) -> list[str]:
  """Decoded text of each step of one completion (EOS dropped), as `step_ends` cut it."""
  steps, current = [], []
  for token, valid, end in zip(ids.tolist(), mask.tolist(), step_end.tolist()):
    if not valid:
      break
    if token != tokenizer.eos_id:
      current.append(token)
    if end:
      steps.append(tokenizer.decode(current))
      current = []
  return steps


def gold_prefix_labels(step_texts: Sequence[str], demo: str, delimiter: str) -> list[bool]:
  """Step k is correct iff steps 0..k equal the gold demonstration's steps 0..k."""
  gold = split_steps(demo, delimiter)
  labels, ok = [], True
  for k, text in enumerate(step_texts):
    ok = ok and k < len(gold) and text == gold[k]
    labels.append(ok)
  return labels


def label_batch(task: Any, tokenizer: Tokenizer, examples: Sequence[Any], tokens: np.ndarray,
                mask: np.ndarray, step_end: np.ndarray, delimiter: str) -> np.ndarray:
  """float32 [N, T] step labels at step-end tokens (0 elsewhere) for completions of
  `examples` (one example per row); uses `task.step_labels` when the task defines it."""
  labels = np.zeros(tokens.shape, np.float32)
  rule = getattr(task, "step_labels", None)
  for i, example in enumerate(examples):
    steps = completion_steps(tokenizer, tokens[i], mask[i], step_end[i])
    ok = (rule(steps, example) if rule is not None
          else gold_prefix_labels(steps, example.demo, delimiter))
    if len(ok) != len(steps):
      raise ValueError(f"task {getattr(task, 'name', task)!r}.step_labels returned {len(ok)} "
                       f"labels for {len(steps)} steps")
    positions = np.flatnonzero(step_end[i] * mask[i])
    labels[i, positions] = np.asarray(ok, np.float32)
  return labels
