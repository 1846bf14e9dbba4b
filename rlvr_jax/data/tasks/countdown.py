"""Countdown: reach a target by combining the given numbers with + - *, left to right."""

from collections.abc import Callable
import dataclasses
import random
import re
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax.data.tasks import chars
from rlvr_jax.data.tasks.base import Example, sample_in_split
from rlvr_jax.tokenizers import Tokenizer

OPS = "+-*"
_EXPRESSION = re.compile(r"[1-9][0-9]*(?:[-+*][1-9][0-9]*)*")
_NUMBER = re.compile(r"[0-9]+")
_SET = len(OPS)  # pending-op code of the first number: acc = number


def _apply(op, acc, x):
  """int32 arrays: acc op x for op codes 0:'+', 1:'-', 2:'*', and x for code 3 (first number)."""
  return jnp.where(op == 0, acc + x, jnp.where(op == 1, acc - x, jnp.where(op == 2, acc * x, x)))


def evaluate_left_to_right(numbers: list[int], ops: str) -> int:
  """numbers[0] ops[0] numbers[1] ... evaluated strictly left to right, no precedence."""
  value = numbers[0]
  for op, x in zip(ops, numbers[1:]):
    value = value + x if op == "+" else value - x if op == "-" else value * x
  return value


@dataclasses.dataclass(frozen=True)
class CountdownTask:
  """Countdown: "3,5,2 to 16:" -> "3+5*2", every given number used exactly once.

  Numbers (num_numbers of them, uniform in [1, max_number]) are listed in random order; the
  target is the value of a random ordering joined by random operators, kept if >= 0. The
  operators are + - * and an expression is evaluated STRICTLY LEFT TO RIGHT, with no operator
  precedence and no parentheses: "3+5*2" = (3+5)*2 = 16. Meta is (*numbers, target); `answer`
  is the demo's solution, one of possibly many (rewards read meta, not answer).

  Reward rule (verify and reward_fn): the whole completion matches
  NUMBER (OP NUMBER)* with NUMBER = [1-9][0-9]* (no leading zeros, no spaces) and OP in + - *;
  the multiset of its numbers equals the given multiset; its left-to-right value equals the
  target. A completion without EOS gets 0.
  """

  num_numbers: int = 3
  max_number: int = 9

  name: ClassVar[str] = "countdown"

  def __post_init__(self):
    if self.num_numbers < 2:
      raise ValueError(f"countdown.num_numbers must be >= 2, got {self.num_numbers}")
    if self.max_number < 1:
      raise ValueError(f"countdown.max_number must be >= 1, got {self.max_number}")
    if (self.max_number + 1) ** self.num_numbers >= 2**31:
      raise ValueError(
          "countdown.max_number and countdown.num_numbers must keep (max_number + 1) ** "
          f"num_numbers < 2**31 so int32 evaluation is exact, got {self.max_number}, "
          f"{self.num_numbers}")

  @property
  def meta_size(self) -> int:
    return self.num_numbers + 1

  @property
  def max_completion_chars(self) -> int:
    return self.num_numbers * (len(str(self.max_number)) + 1) - 1

  @property
  def max_prompt_chars(self) -> int:
    target_chars = len(str((self.max_number + 1)**self.num_numbers))
    return self.max_completion_chars + len(" to :") + target_chars

  def alphabet(self) -> str:
    return "0123456789," + OPS + " to:"

  def _draw(self, rng: random.Random) -> Example | None:
    numbers = [rng.randint(1, self.max_number) for _ in range(self.num_numbers)]
    ordered = rng.sample(numbers, len(numbers))
    ops = "".join(rng.choice(OPS) for _ in range(self.num_numbers - 1))
    target = evaluate_left_to_right(ordered, ops)
    if target < 0:
      return None
    demo = "".join(f"{x}{op}" for x, op in zip(ordered, ops)) + str(ordered[-1])
    return Example(prompt=f"{','.join(map(str, numbers))} to {target}:", answer=demo, demo=demo,
                   meta=(*numbers, target))

  def example(self, index: int, *, split: str, seed: int) -> Example:
    return sample_in_split(self.name, self._draw, index, split, seed)

  def verify(self, completion: str, example: Example) -> bool:
    if not _EXPRESSION.fullmatch(completion):
      return False
    numbers = [int(x) for x in _NUMBER.findall(completion)]
    ops = "".join(c for c in completion if c in OPS)
    *given, target = example.meta
    return sorted(numbers) == sorted(given) and evaluate_left_to_right(numbers, ops) == target

  def reward_fn(self, tokenizer: Tokenizer) -> Callable:
    """Jittable reward: signature in `chars.make_reward_fn`, rule in the class doc.

    The expression is parsed by a `lax.scan` state machine over characters; number literals are
    capped at max_number + 1 (already not a given number) so int32 arithmetic stays bounded.
    """
    n, cap = self.num_numbers, self.max_number + 1
    op_codes = np.array([ord(c) for c in OPS], np.int32)

    def step(carry, c_n):
      ok_n, in_number_n, current_n, acc_n, op_n, count_n, numbers_nk = carry
      is_digit_n = (c_n >= ord("0")) & (c_n <= ord("9"))
      matches_no = c_n[..., None] == op_codes
      is_op_n = matches_no.any(-1)
      is_pad_n = c_n == chars.NO_CHAR
      # An operator closes the current number: fold it into acc and record it.
      close_n = is_op_n & in_number_n
      record_nk = close_n[..., None] & (jnp.arange(n) == count_n[..., None])
      ok_n &= is_pad_n | (is_digit_n & (in_number_n | (c_n != ord("0")))) | close_n
      carry = (
          ok_n,
          jnp.where(is_pad_n, in_number_n, is_digit_n),
          jnp.where(is_digit_n,
                    jnp.where(in_number_n, jnp.minimum(current_n * 10 + c_n - ord("0"), cap),
                              c_n - ord("0")),
                    current_n),
          jnp.where(close_n, _apply(op_n, acc_n, current_n), acc_n),
          jnp.where(close_n, jnp.argmax(matches_no, -1), op_n),
          count_n + close_n,
          jnp.where(record_nk, current_n[..., None], numbers_nk),
      )
      return carry, None

    def rule(chars_nl, length_n, answer_nl, answer_length_n, meta_nm):
      del length_n, answer_nl, answer_length_n
      batch = chars_nl.shape[:-1]
      zeros_n = jnp.zeros(batch, jnp.int32)
      init = (jnp.ones(batch, bool), jnp.zeros(batch, bool), zeros_n, zeros_n, zeros_n + _SET,
              zeros_n, jnp.zeros((*batch, n), jnp.int32))
      (ok_n, in_number_n, current_n, acc_n, op_n, count_n, numbers_nk), _ = jax.lax.scan(
          step, init, jnp.moveaxis(chars_nl, -1, 0))
      # Close the final number.
      numbers_nk = jnp.where(jnp.arange(n) == count_n[..., None], current_n[..., None],
                             numbers_nk)
      value_n = _apply(op_n, acc_n, current_n)
      same_numbers_n = (jnp.sort(numbers_nk, -1) == jnp.sort(meta_nm[..., :n], -1)).all(-1)
      return (ok_n & in_number_n & (count_n + 1 == n) & same_numbers_n
              & (value_n == meta_nm[..., n]))

    return chars.make_reward_fn(tokenizer, rule)
