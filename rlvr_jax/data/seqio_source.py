"""seqio tasks as grain sources and as a trainable math task (the optional `[seqio]` extra).

A registered seqio Task (any data source: TFDS, files, `seqio.FunctionDataSource`) becomes:
  - `SeqioSource(task, split)`: a grain random-access source of records
    ``{"question", "answer", "solution"}``, the records of `math_datasets` (GSM8K, MATH-500);
  - `SeqioTask` (`config.task.name = "seqio"`): prompts rendered like GSM8K's, rewards from the
    math verifier inside the compiled step, so a run trains on it like on `gsm8k`:

        c.task.name = "seqio"
        c.task.kwargs = dict(task="my_math_task", module="my_project.tasks",
                             question_key="inputs", answer_key="targets")

The split is read once, in order (`shuffle=False`, one epoch), when the source is built; grain
then shuffles and repeats it like every other source. A feature is read as text: its
``<key>_pretokenized`` copy when the task's `seqio.preprocessors.tokenize` kept one, else the
string itself, else token ids decoded with the task's output-feature vocabulary.

seqio (and tensorflow) is imported only here, when a seqio source is built: the core package
never needs it (`pip install -e ".[seqio]"`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any, ClassVar

import numpy as np

from rlvr_jax.data.math_datasets import Record
from rlvr_jax.data.tasks.base import SPLITS
from rlvr_jax.data.tasks.math_task import RowTask


def _seqio():
  try:
    import seqio  # local: seqio brings tensorflow, heavy and optional
  except ImportError as e:
    raise ValueError(f"seqio sources need the [seqio] extra: pip install 'rlvr_jax[seqio]' "
                     f"({e})") from None
  return seqio


def _text(example: dict[str, Any], key: str, task, where: str) -> str:
  """Feature `key` of a seqio example as text (see the module docstring)."""
  if f"{key}_pretokenized" in example:
    value = example[f"{key}_pretokenized"]
  elif key in example:
    value = example[key]
  else:
    raise ValueError(f"{where}: no feature {key!r}; the task's examples have {sorted(example)}")
  if isinstance(value, bytes):
    return value.decode("utf-8")
  array = np.asarray(value)
  if array.ndim == 1 and np.issubdtype(array.dtype, np.integer) and key in task.output_features:
    return task.output_features[key].vocabulary.decode(array.tolist())
  raise ValueError(f"{where}: feature {key!r} is {array.dtype} of shape {array.shape}, neither "
                   "text nor token ids of an output feature")


def read_records(task: str | Any, split: str, *, question_key: str = "inputs",
                 answer_key: str = "targets", solution_key: str = "",
                 max_examples: int = 0) -> tuple[Record, ...]:
  """Every example of a seqio task's `split` as a record, in the task's order.

  Args:
    task: a registered task's name (or a `seqio.Task`).
    split: the seqio split, e.g. "train" or "validation".
    question_key / answer_key: features holding the question and the gold final answer (what
      `rewards.math.verify` compares against).
    solution_key: a feature with a worked solution (the SFT demonstration); "" uses the answer.
    max_examples: read at most this many (0: all).
  """
  seqio = _seqio()
  task = seqio.get_mixture_or_task(task) if isinstance(task, str) else task
  ds = task.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1,
                        use_cached=False)
  if max_examples:
    ds = ds.take(max_examples)
  records = []
  for i, example in enumerate(ds.as_numpy_iterator()):
    where = f"seqio task {task.name!r}, split {split!r}, example {i}"
    record = {}
    for field, key in (("question", question_key), ("answer", answer_key)):
      record[field] = _text(example, key, task, where).strip()
      if not record[field]:
        raise ValueError(f"{where}: feature {key!r} (the {field}) is empty")
    record["solution"] = (_text(example, solution_key, task, where) if solution_key
                          else record["answer"])
    records.append(record)
  if not records:
    raise ValueError(f"seqio task {task.name!r}, split {split!r}: no examples")
  return tuple(records)


class SeqioSource:
  """A seqio task's split as a grain random-access source of records (see `read_records`)."""

  def __init__(self, task: str | Any, split: str, **kwargs):
    self._name = task if isinstance(task, str) else task.name
    self._split = split
    self._records = read_records(task, split, **kwargs)

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> Record:
    return dict(self._records[index])  # a copy: callers may mutate it

  def __repr__(self) -> str:
    return f"SeqioSource({self._name!r}, split={self._split!r}, rows={len(self)})"


@functools.cache
def _source(module: str, task: str, split: str, question_key: str, answer_key: str,
            solution_key: str, max_examples: int) -> SeqioSource:
  if module:
    importlib.import_module(module)  # registers the task with seqio.TaskRegistry
  return SeqioSource(task, split, question_key=question_key, answer_key=answer_key,
                     solution_key=solution_key, max_examples=max_examples)


@dataclasses.dataclass(frozen=True)
class SeqioTask(RowTask):
  """A seqio task of math questions with gold answers, trained and scored like GSM8K.

  `example(i, split, seed)` is row ``i mod len(split)`` of the seqio split named by
  `train_split` / `test_split` (the seed is unused: the input pipeline shuffles). `module` is
  imported first when set (the Python module that registers `task` with seqio).
  """

  task: str = ""
  module: str = ""
  train_split: str = "train"
  test_split: str = "validation"
  question_key: str = "inputs"
  answer_key: str = "targets"
  solution_key: str = ""
  max_examples: int = 0

  name: ClassVar[str] = "seqio"

  def _source(self, split: str) -> SeqioSource:
    if not self.task:
      raise ValueError("task 'seqio' needs config.task.kwargs.task: the seqio task's name")
    if split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return _source(self.module, self.task, self.train_split if split == "train" else
                   self.test_split, self.question_key, self.answer_key, self.solution_key,
                   self.max_examples)

  def _demo(self, row: dict[str, str]) -> str:
    return (row["solution"] if self.solution_key
            else f"The final answer is \\boxed{{{row['answer']}}}.")
