"""Sorting a short list of small numbers."""

import dataclasses
import random
from typing import ClassVar

from rlvr_jax.data.tasks import chars
from rlvr_jax.data.tasks.base import Example


@dataclasses.dataclass(frozen=True)
class SortTask(chars.ExactAnswer):
  """Sorting: "sort 3,10,2=" -> "2,3,10" (ascending, comma-separated, duplicates kept).

  Lists have a uniform length in [min_length, max_length] and uniform values in [0, max_value]
  (max_value=9: lists of digits).

  Reward rule (verify and reward_fn): the whole completion equals the answer exactly. A
  completion without EOS gets 0.
  """

  min_length: int = 3
  max_length: int = 6
  max_value: int = 9

  name: ClassVar[str] = "sort"
  meta_size: ClassVar[int] = 0

  def __post_init__(self):
    if not 1 <= self.min_length <= self.max_length:
      raise ValueError(f"sort.min_length and sort.max_length must satisfy "
                       f"1 <= min_length <= max_length, got {self.min_length}, {self.max_length}")
    if self.max_value < 1:
      raise ValueError(f"sort.max_value must be >= 1, got {self.max_value}")

  @property
  def max_completion_chars(self) -> int:
    return self.max_length * (len(str(self.max_value)) + 1) - 1

  @property
  def max_prompt_chars(self) -> int:
    return len("sort =") + self.max_completion_chars

  def alphabet(self) -> str:
    return "0123456789,= sort"

  def _draw(self, rng: random.Random) -> Example:
    values = [rng.randint(0, self.max_value)
              for _ in range(rng.randint(self.min_length, self.max_length))]
    answer = ",".join(map(str, sorted(values)))
    return Example(prompt=f"sort {','.join(map(str, values))}=", answer=answer, demo=answer,
                   meta=())
