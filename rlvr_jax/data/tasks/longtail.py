"""Reversing digit strings whose lengths are heavy-tailed: most answers are short, a few long."""

import dataclasses
import random
from typing import ClassVar

from rlvr_jax.data.tasks import chars
from rlvr_jax.data.tasks.base import Example


@dataclasses.dataclass(frozen=True)
class LongTailReverseTask(chars.ExactAnswer):
  """Reversal with a heavy-tailed answer length: "rev 3051=" -> "1503".

  The string length L follows a truncated power law, P(L) ∝ L^-alpha on [1, max_length]
  (alpha=1.2, max_length=24: 58% of the answers have at most 3 digits, about one in twelve 16 or
  more), then each digit is uniform. The long tail is what APRIL (active partial rollouts)
  targets: a batch's decode loop runs as long as its longest completion.

  Reward rule (verify and reward_fn): the whole completion equals the reversed string exactly.
  A completion without EOS gets 0.
  """

  max_length: int = 24
  alpha: float = 1.2

  name: ClassVar[str] = "longtail_reverse"
  meta_size: ClassVar[int] = 0

  def __post_init__(self):
    if self.max_length < 2:
      raise ValueError(f"longtail_reverse.max_length must be >= 2, got {self.max_length}")
    if self.alpha <= 0:
      raise ValueError(f"longtail_reverse.alpha must be > 0, got {self.alpha}")

  @property
  def max_completion_chars(self) -> int:
    return self.max_length

  @property
  def max_prompt_chars(self) -> int:
    return len("rev =") + self.max_length

  def alphabet(self) -> str:
    return "0123456789= rev"

  def length_probs(self) -> list[float]:
    """P(L) for L = 1 .. max_length."""
    weights = [length ** -self.alpha for length in range(1, self.max_length + 1)]
    return [w / sum(weights) for w in weights]

  def _draw(self, rng: random.Random) -> Example:
    length = rng.choices(range(1, self.max_length + 1), weights=self.length_probs())[0]
    digits = "".join(rng.choice("0123456789") for _ in range(length))
    return Example(prompt=f"rev {digits}=", answer=digits[::-1], demo=digits[::-1], meta=())
