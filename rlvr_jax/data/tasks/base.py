"""The synthetic-task interface: examples, deterministic train/test sampling, host-side decoding."""

from collections.abc import Callable, Sequence
import dataclasses
import hashlib
import random
from typing import Protocol

from rlvr_jax.tokenizers import Tokenizer

SPLITS = ("train", "test")
# A problem is in the test split iff the stable hash of its prompt is 0 mod this (~10% of them).
_TEST_BUCKETS = 10
_MAX_ATTEMPTS = 10_000
# Out-of-vocabulary ids (e.g. from a model whose embedding is padded past the tokenizer) read as
# this character in both `decode_completion` and the jittable rewards.
INVALID_CHAR = "\ufffd"


@dataclasses.dataclass(frozen=True)
class Example:
  """One problem.

  Attributes:
    prompt: model input, e.g. "37+85=".
    answer: canonical final answer, e.g. "122"; rewards receive it as pad-filled token ids.
    demo: a correct completion for SFT (may include a scratchpad), without EOS.
    meta: fixed-size ints the jittable reward needs, len == task.meta_size.
  """

  prompt: str
  answer: str
  demo: str
  meta: tuple[int, ...]


class Task(Protocol):
  """A family of verifiable problems.

  `verify` (host, plain Python) and `reward_fn(tokenizer)` (jittable) agree exactly: for token
  ids whose text is `decode_completion(...)`, the reward is 1.0 iff that text is not None and
  `verify(text, example)`.

  Optional: `step_labels(step_texts, example) -> list[bool]`, one label per reasoning step of a
  completion, for training a process reward model (`rlvr_jax.rewards.prm`); without it a step
  is correct iff the completion matches `example.demo` through that step.
  """

  name: str
  meta_size: int
  max_prompt_chars: int
  max_completion_chars: int

  def example(self, index: int, *, split: str, seed: int) -> Example:
    """Deterministic in (index, split, seed); no problem is in both splits."""
    ...

  def alphabet(self) -> str:
    """Every character a prompt or a correct completion may contain."""
    ...

  def verify(self, completion: str, example: Example) -> bool:
    """Whether `completion` (decoded text, EOS excluded) solves `example`."""
    ...

  def reward_fn(self, tokenizer: Tokenizer) -> Callable:
    """Jittable (completion_ids_nt, completion_mask_nt, answer_ids_na, meta_nm) -> rewards_n."""
    ...


def split_of(prompt: str) -> str:
  """'test' or 'train', by a stable (process- and seed-independent) hash of the prompt."""
  digest = hashlib.blake2b(prompt.encode("utf-8"), digest_size=8).digest()
  return "test" if int.from_bytes(digest, "little") % _TEST_BUCKETS == 0 else "train"


def sample_in_split(
    task_name: str,
    draw: Callable[[random.Random], Example | None],
    index: int,
    split: str,
    seed: int,
) -> Example:
  """Draws from `draw` until the example's prompt falls in `split` (rejection sampling).

  Args:
    task_name: seeds the stream, so tasks sharing (index, seed) draw independently.
    draw: one random problem from the rng, or None to reject it outright.
    index: example number, >= 0.
    split: 'train' or 'test'.
    seed: dataset seed.
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if index < 0:
    raise ValueError(f"index must be >= 0, got {index}")
  # str seeds are hashed with SHA-512, so the stream is stable across processes.
  rng = random.Random(f"{task_name}/{seed}/{split}/{index}")
  for _ in range(_MAX_ATTEMPTS):
    example = draw(rng)
    if example is not None and split_of(example.prompt) == split:
      return example
  raise RuntimeError(
      f"{task_name}: no {split!r} problem in {_MAX_ATTEMPTS} draws; the task's problem space "
      "is too small for a train/test split, enlarge it (more digits / numbers / length)")


def decode_completion(
    tokenizer: Tokenizer, completion_ids_t: Sequence[int], completion_mask_t: Sequence[float]
) -> str | None:
  """Host-side reference for what the jittable rewards read.

  Args:
    tokenizer: the policy's tokenizer.
    completion_ids_t: int token ids [T].
    completion_mask_t: [T]; positions with mask <= 0 are ignored.

  Returns:
    None if no unmasked EOS (truncated completion); otherwise `tokenizer.decode` of the unmasked
    ids before the first unmasked EOS, with ids outside [0, vocab_size) read as INVALID_CHAR.
  """
  live = [int(i) for i, m in zip(completion_ids_t, completion_mask_t) if m > 0]
  if tokenizer.eos_id not in live:
    return None
  parts, run = [], []
  for i in live[: live.index(tokenizer.eos_id)]:
    if 0 <= i < tokenizer.vocab_size:
      run.append(i)
    else:
      parts += [tokenizer.decode(run), INVALID_CHAR]
      run = []
  return "".join(parts) + tokenizer.decode(run)
