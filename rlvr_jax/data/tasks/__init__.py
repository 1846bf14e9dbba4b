"""Synthetic verifiable tasks: one module per task, shared sampling and reward machinery."""

from rlvr_jax.data.tasks.addition import AdditionTask
from rlvr_jax.data.tasks.base import Example, Task, decode_completion, split_of
from rlvr_jax.data.tasks.countdown import CountdownTask
from rlvr_jax.data.tasks.longtail import LongTailReverseTask
from rlvr_jax.data.tasks.sort import SortTask

__all__ = ["AdditionTask", "CountdownTask", "Example", "LongTailReverseTask", "SortTask", "Task", "decode_completion",
           "split_of"]
