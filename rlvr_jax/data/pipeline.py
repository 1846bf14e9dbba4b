"""grain input pipelines: task examples -> fixed-shape token batches for the compiled steps.

A batch is a dict of numpy arrays (b = batch, p = prompt length, n = completion length,
a = answer length, m = meta size):
  prompt_ids [b, p] int32 (left-padded), prompt_mask [b, p] int32,
  answer_ids [b, a] int32 (pad-filled), meta [b, m] int32,
  demo_ids [b, n] int32 (demonstration + EOS, right-padded), demo_mask [b, n] float32 (only
  with `with_demo=True`: the SFT phase), index [b] int32 (only with `with_index=True`: each
  example's row in the source, for per-example training accuracy).
The iterator's state (`get_state()`) is a small dict saved with every checkpoint, so a resumed
run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grain
import numpy as np

from rlvr_jax.data.tasks.base import Example, Task
from rlvr_jax.tokenizers import Tokenizer


@dataclasses.dataclass(frozen=True)
class Shapes:
  """Token buffer lengths shared by the pipeline, the sampler and the steps."""

  prompt_len: int
  completion_len: int
  answer_len: int
  meta_size: int


class TaskSource:
  """Random-access grain source of a synthetic task split (deterministic per index)."""

  def __init__(self, task: Task, split: str, seed: int, size: int):
    self.task, self.split, self.seed, self.size = task, split, seed, size

  def __len__(self) -> int:
    return self.size

  def __getitem__(self, index: int) -> Example:
    return self.task.example(int(index), split=self.split, seed=self.seed)

  def __repr__(self) -> str:
    return f"TaskSource({self.task.name}, split={self.split}, seed={self.seed}, size={self.size})"


def rl_stream_seed(seed: int) -> int:
  """The seed of a run's RL training stream (its shuffle and its examples), from config.seed."""
  return seed + 2


def _fit(ids: list[int], length: int, field: str, text: str) -> list[int]:
  if len(ids) > length:
    raise ValueError(f"{field} has {len(ids)} tokens, more than the configured {length}: "
                     f"{text[:80]!r}; raise the matching data length in the config")
  return ids


def encode_example(example: Example, tokenizer: Tokenizer, shapes: Shapes, *,
                   with_demo: bool = True) -> dict[str, Any]:
  """Tokenizes one example into fixed-shape arrays (see the module docstring).

  `with_demo=False` leaves out demo_ids / demo_mask (RL and evaluation never read them), so
  completion_len only has to hold what the policy generates, not the longest demonstration.
  """
  prompt = _fit(tokenizer.encode(example.prompt), shapes.prompt_len, "prompt", example.prompt)
  answer = _fit(tokenizer.encode(example.answer), shapes.answer_len, "answer", example.answer)
  if len(example.meta) != shapes.meta_size:
    raise ValueError(f"example meta has {len(example.meta)} values, task.meta_size is "
                     f"{shapes.meta_size}: {example}")
  pad = tokenizer.pad_id
  p, n, a = shapes.prompt_len, shapes.completion_len, shapes.answer_len
  out = {
      "prompt_ids": np.full(p, pad, np.int32), "prompt_mask": np.zeros(p, np.int32),
      "answer_ids": np.full(a, pad, np.int32), "meta": np.asarray(example.meta, np.int32),
  }
  if prompt:
    out["prompt_ids"][p - len(prompt):] = prompt
    out["prompt_mask"][p - len(prompt):] = 1
  out["answer_ids"][:len(answer)] = answer
  if with_demo:
    demo = _fit(tokenizer.encode(example.demo) + [tokenizer.eos_id], n, "demonstration + EOS",
                example.demo)
    out["demo_ids"] = np.full(n, pad, np.int32)
    out["demo_mask"] = np.zeros(n, np.float32)
    out["demo_ids"][:len(demo)] = demo
    out["demo_mask"][:len(demo)] = 1
  return out


def make_dataset(source, tokenizer: Tokenizer, shapes: Shapes, batch_size: int, *,
                 seed: int, shuffle: bool = True, repeat: bool = True,
                 with_demo: bool = True, with_index: bool = False,
                 rows: tuple[int, int] | None = None) -> grain.MapDataset:
  """source -> (shuffled, repeated) -> encoded -> batched grain MapDataset.

  `rows=(start, stop)` keeps only those rows of every global batch of `batch_size` (one
  process's share in a multi-process run): the examples are picked before encoding, so a
  process reads and tokenizes only its own rows, and the batches of all processes, stacked in
  row order, are the single-process batches.
  """
  ds = grain.MapDataset.source(source)
  if with_index:  # the row in `source` (later datasets index past its end: it wraps around)
    ds = ds.map_with_index(lambda i, ex: (i % len(source), ex))
  if shuffle:
    ds = ds.shuffle(seed=seed)
  if repeat:
    ds = ds.repeat()
  if rows is not None and rows != (0, batch_size):
    ds = _rows_of_each_batch(ds, batch_size, *rows)
    batch_size = rows[1] - rows[0]

  def encode(element) -> dict[str, Any]:
    if not with_index:
      return encode_example(element, tokenizer, shapes, with_demo=with_demo)
    index, example = element
    return dict(encode_example(example, tokenizer, shapes, with_demo=with_demo),
                index=np.int32(index))

  ds = ds.map(encode)
  return ds.batch(batch_size, drop_remainder=True)


def _rows_of_each_batch(ds: grain.MapDataset, batch_size: int, start: int,
                        stop: int) -> grain.MapDataset:
  """Elements [k * batch_size + start, k * batch_size + stop) for every full batch k."""
  if not 0 <= start < stop <= batch_size:
    raise ValueError(f"rows [{start}, {stop}) are not inside a batch of {batch_size}")
  per = stop - start
  return grain.MapDataset.range(len(ds) // batch_size * per).map(
      lambda i: ds[i // per * batch_size + start + i % per])


def task_shapes(task: Task, tokenizer: Tokenizer) -> Shapes:
  """Buffer lengths for a char-level synthetic task (one token per character at most)."""
  del tokenizer
  return Shapes(prompt_len=task.max_prompt_chars, completion_len=task.max_completion_chars + 1,
                answer_len=task.max_completion_chars, meta_size=task.meta_size)


def prompt_width(prompt_mask: np.ndarray, multiple: int) -> int:
  """The bucketed prompt width of a batch: its longest prompt rounded up to a multiple of
  `multiple`, at most the buffer width (and at least `multiple` where the buffer allows)."""
  longest = int(prompt_mask.sum(-1).max(initial=0))
  return min(prompt_mask.shape[-1], max(-(-longest // multiple), 1) * multiple)


def trim_prompts(batch: dict[str, np.ndarray], width: int) -> dict[str, np.ndarray]:
  """Keeps the last `width` columns of the left-padded prompts: dropping all-padding columns
  changes no token's position or attention, only the work (and the compiled shape)."""
  if "prompt_ids" not in batch or batch["prompt_ids"].shape[-1] == width:
    return batch
  if batch["prompt_mask"][..., :-width].any():
    raise ValueError(f"trim_prompts: a prompt is longer than the width {width}")
  return dict(batch, prompt_ids=batch["prompt_ids"][..., -width:],
              prompt_mask=batch["prompt_mask"][..., -width:])

