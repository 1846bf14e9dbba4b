"""Multi-digit addition, optionally with a per-column carry scratchpad."""

from collections.abc import Callable
import dataclasses
import random
from typing import ClassVar

import jax.numpy as jnp

from rlvr_jax.data.tasks import chars
from rlvr_jax.data.tasks.base import Example, sample_in_split
from rlvr_jax.tokenizers import Tokenizer

DELIMITER = "#"


@dataclasses.dataclass(frozen=True)
class AdditionTask:
  """Addition of two decimal numbers: "37+85=" -> "122".

  Each operand has a uniform number of digits in [1, digits], then a uniform value with that
  many digits (so short operands are as common as long ones); no leading zeros.

  With `scratchpad`, demos show one column per digit, least significant first, as
  "x+y+carry=sum", comma-separated, then '#', then the answer:
  "37+85=" -> "7+5+0=12,3+8+1=12#122".

  Reward rule (verify and reward_fn): the text after the last '#' (the whole completion if it
  has no '#') equals the canonical answer exactly (no leading zeros, no spaces); whatever
  precedes the last '#' is not checked. A completion without EOS gets 0.
  """

  digits: int = 3
  scratchpad: bool = False

  name: ClassVar[str] = "addition"
  meta_size: ClassVar[int] = 0

  def __post_init__(self):
    if self.digits < 1:
      raise ValueError(f"addition.digits must be >= 1, got {self.digits}")

  @property
  def max_prompt_chars(self) -> int:
    return 2 * self.digits + 2

  @property
  def max_completion_chars(self) -> int:
    # Per column "x+y+c=ss" and a separator (',' or '#'), then the answer.
    scratch = 9 * self.digits if self.scratchpad else 0
    return scratch + self.digits + 1

  def alphabet(self) -> str:
    return "0123456789+=," + DELIMITER

  def _operand(self, rng: random.Random) -> int:
    n = rng.randint(1, self.digits)
    return rng.randint(0 if n == 1 else 10 ** (n - 1), 10**n - 1)

  def _draw(self, rng: random.Random) -> Example:
    a, b = self._operand(rng), self._operand(rng)
    answer = str(a + b)
    demo = answer
    if self.scratchpad:
      columns, carry = [], 0
      xs, ys = str(a)[::-1], str(b)[::-1]
      for i in range(max(len(xs), len(ys))):
        x, y = int(xs[i]) if i < len(xs) else 0, int(ys[i]) if i < len(ys) else 0
        columns.append(f"{x}+{y}+{carry}={x + y + carry}")
        carry = (x + y + carry) // 10
      demo = ",".join(columns) + DELIMITER + answer
    return Example(prompt=f"{a}+{b}=", answer=answer, demo=demo, meta=())

  def example(self, index: int, *, split: str, seed: int) -> Example:
    return sample_in_split(self.name, self._draw, index, split, seed)

  def verify(self, completion: str, example: Example) -> bool:
    return completion.rsplit(DELIMITER, 1)[-1] == example.answer

  def reward_fn(self, tokenizer: Tokenizer) -> Callable:
    """Jittable reward: signature in `chars.make_reward_fn`, rule in the class doc."""

    def rule(chars_nl, length_n, answer_nl, answer_length_n, meta_nm):
      del meta_nm
      position_nl = jnp.arange(chars_nl.shape[-1])
      last_n = jnp.where(chars_nl == ord(DELIMITER), position_nl, -1).max(-1)
      return chars.segment_equals(chars_nl, last_n + 1, length_n, answer_nl, answer_length_n)

    return chars.make_reward_fn(tokenizer, rule)
