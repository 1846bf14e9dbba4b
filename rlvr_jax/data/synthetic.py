"""Registry of verifiable tasks (synthetic and math) and the char-level tokenizer for them."""

from collections.abc import Callable, Iterable
import dataclasses

from rlvr_jax.data.tasks import (AdditionTask, CountdownTask, Example, LongTailReverseTask,
                                 SortTask, Task, decode_completion, split_of)
from rlvr_jax.data.seqio_source import SeqioTask
from rlvr_jax.data.tasks.code_task import HumanEvalTask
from rlvr_jax.data.tasks.math_task import Gsm8kTask, GsmArithTask, Math500Task
from rlvr_jax.tokenizers import SentencePieceTokenizer

__all__ = ["TASKS", "AdditionTask", "CountdownTask", "Example", "Gsm8kTask", "GsmArithTask",
           "HumanEvalTask", "LongTailReverseTask", "Math500Task", "SeqioTask", "SortTask", "Task",
           "build_tokenizer", "decode_completion", "make_task", "register_task", "split_of"]

TASKS: dict[str, Callable[..., Task]] = {
    AdditionTask.name: AdditionTask,
    CountdownTask.name: CountdownTask,
    SortTask.name: SortTask,
    Gsm8kTask.name: Gsm8kTask,
    Math500Task.name: Math500Task,
    GsmArithTask.name: GsmArithTask,
    HumanEvalTask.name: HumanEvalTask,  # reads its data from the [code] extra's package
    LongTailReverseTask.name: LongTailReverseTask,
    SeqioTask.name: SeqioTask,  # imports seqio only when its data is read ([seqio] extra)
}


def register_task(constructor: Callable[..., Task]) -> Callable[..., Task]:
  """Adds a task class to TASKS under its `name`, so `config.task.name` selects it.

  Usable as a class decorator (`@synthetic.register_task`). A name taken by another task raises
  ValueError, except by a class of the same module and qualified name: a notebook cell that
  defines and registers the task, run again, replaces its earlier definition.
  """
  name = constructor.name
  known = TASKS.get(name)
  same_definition = known is not None and (
      (known.__module__, known.__qualname__) == (constructor.__module__, constructor.__qualname__))
  if known is not None and not same_definition:
    raise ValueError(f"task {name!r} is already registered ({known.__module__}."
                     f"{known.__qualname__}); pick another `name`")
  TASKS[name] = constructor
  return constructor


def make_task(name: str, **kwargs) -> Task:
  """TASKS[name](**kwargs), with errors naming an unknown task or argument."""
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
  constructor = TASKS[name]
  if dataclasses.is_dataclass(constructor):
    known = {f.name for f in dataclasses.fields(constructor)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
      raise ValueError(f"task {name!r} has no argument(s) {unknown}; it takes {sorted(known)}")
  return constructor(**kwargs)


def build_tokenizer(tasks: Iterable[Task]) -> SentencePieceTokenizer:
  """Char-level tokenizer with one id per character of the tasks' alphabets.

  Ids: pad=0, eos=1, bos=2, unk=3, then the characters in sorted order, so the same set of
  characters always gives the same (byte-identical) model.
  """
  characters = sorted(set("".join(task.alphabet() for task in tasks)))
  return SentencePieceTokenizer.train(["".join(characters)])
