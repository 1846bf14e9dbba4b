"""Jittable token-ids -> character-codes conversion shared by the synthetic-task rewards.

Characters are Unicode code points (int32); -1 marks "no character". Each id's text is
`tokenizer.decode([id])`, so the conversion equals `tokenizer.decode` whenever decoding is
concatenative over ids (decode(ids) == ''.join(decode([i]) for i in ids)); that holds for the
char-level `SentencePieceTokenizer` from `build_tokenizer` and is what the reward/verify
agreement tests check.
"""

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from rlvr_jax.data.tasks.base import INVALID_CHAR, Example, sample_in_split
from rlvr_jax.tokenizers import Tokenizer

NO_CHAR = -1

# rule(chars_nl, length_n, answer_nl, answer_length_n, meta_nm) -> correct_n bool.
Rule = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]


def token_char_table(tokenizer: Tokenizer) -> np.ndarray:
  """int32 [V + 1, K]: code points of decode([id]) padded with -1; row V is for invalid ids.

  K is the longest token text (1 for char-level vocabularies). Pad/EOS/BOS decode to nothing.
  """
  texts = [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)] + [INVALID_CHAR]
  table_vk = np.full((len(texts), max(1, *map(len, texts))), NO_CHAR, np.int32)
  for i, text in enumerate(texts):
    table_vk[i, : len(text)] = [ord(c) for c in text]
  return table_vk


def text_chars(
    table_vk: np.ndarray, ids_nt: jnp.ndarray, keep_nt: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Concatenated characters of the kept tokens, left-aligned.

  Args:
    table_vk: from `token_char_table`.
    ids_nt: int32 [..., T]; ids outside [0, V) read as INVALID_CHAR.
    keep_nt: bool [..., T].

  Returns:
    chars_nl int32 [..., T * K] (-1 after the text) and length_n int32 [...].
  """
  vocab_size, k = table_vk.shape[0] - 1, table_vk.shape[1]
  ids_nt = jnp.where((ids_nt >= 0) & (ids_nt < vocab_size), ids_nt, vocab_size)
  codes_ntk = jnp.asarray(table_vk)[ids_nt]
  codes_nl = codes_ntk.reshape(*ids_nt.shape[:-1], ids_nt.shape[-1] * k)
  keep_nl = (codes_nl != NO_CHAR) & jnp.repeat(keep_nt, k, axis=-1)
  order_nl = jnp.argsort(~keep_nl, axis=-1, stable=True)  # kept positions first, in order
  length_n = keep_nl.sum(-1, dtype=jnp.int32)
  chars_nl = jnp.take_along_axis(codes_nl, order_nl, axis=-1)
  chars_nl = jnp.where(jnp.arange(codes_nl.shape[-1]) < length_n[..., None], chars_nl, NO_CHAR)
  return chars_nl, length_n


def segment_equals(
    chars_nl: jnp.ndarray,
    start_n: jnp.ndarray,
    length_n: jnp.ndarray,
    target_na: jnp.ndarray,
    target_length_n: jnp.ndarray,
) -> jnp.ndarray:
  """bool [...]: chars[start:length] == target[:target_length] (0 <= start <= length)."""
  j_a = jnp.arange(target_na.shape[-1])
  index_na = jnp.clip(start_n[..., None] + j_a, 0, chars_nl.shape[-1] - 1)
  got_na = jnp.take_along_axis(chars_nl, index_na, axis=-1)
  same_na = (got_na == target_na) | (j_a >= target_length_n[..., None])
  return (length_n - start_n == target_length_n) & same_na.all(-1)


def make_reward_fn(tokenizer: Tokenizer, rule: Rule) -> Callable:
  """Wraps a character-level rule into the task reward signature.

  The returned function is jittable and maps
    completion_ids_nt int32 [N, T], completion_mask_nt float32 [N, T] (1 up to and incl. EOS),
    answer_ids_na int32 [N, A] (pad-filled encode(answer)), meta_nm int32 [N, M]
  to rewards_n float32 [N] in {0, 1}: 1 iff an unmasked EOS exists and `rule` accepts the
  characters of the unmasked tokens before the first one (`decode_completion` on the host).
  """
  table_vk = token_char_table(tokenizer)
  eos_id = tokenizer.eos_id

  def reward_fn(completion_ids_nt, completion_mask_nt, answer_ids_na, meta_nm):
    live_nt = completion_mask_nt > 0
    eos_nt = live_nt & (completion_ids_nt == eos_id)
    before_eos_nt = jnp.cumsum(eos_nt, axis=-1) == 0
    chars_nl, length_n = text_chars(table_vk, completion_ids_nt, live_nt & before_eos_nt)
    answer_nl, answer_length_n = text_chars(
        table_vk, answer_ids_na, jnp.ones(answer_ids_na.shape, bool))
    correct_n = rule(chars_nl, length_n, answer_nl, answer_length_n, meta_nm)
    return (eos_nt.any(-1) & correct_n).astype(jnp.float32)

  return reward_fn


def exact_answer_reward_fn(tokenizer: Tokenizer) -> Callable:
  """Jittable reward (signature in `make_reward_fn`): 1 iff the whole completion, EOS aside, is
  the answer string, character for character."""

  def rule(chars_nl, length_n, answer_nl, answer_length_n, meta_nm):
    del meta_nm
    return segment_equals(chars_nl, jnp.zeros_like(length_n), length_n, answer_nl,
                          answer_length_n)

  return make_reward_fn(tokenizer, rule)


class ExactAnswer:
  """The `Task` methods of a sampled task whose completion must equal its answer exactly: a
  subclass gives `name` and `_draw(rng) -> Example`; `example` draws the index-th example of a
  split with `sample_in_split`, and `verify` / `reward_fn` compare the whole completion with the
  answer (a completion without EOS gets reward 0)."""

  def example(self, index: int, *, split: str, seed: int) -> Example:
    return sample_in_split(self.name, self._draw, index, split, seed)

  def verify(self, completion: str, example: Example) -> bool:
    return completion == example.answer

  def reward_fn(self, tokenizer: Tokenizer) -> Callable:
    """Jittable reward: the completion is exactly the answer (`exact_answer_reward_fn`)."""
    return exact_answer_reward_fn(tokenizer)
