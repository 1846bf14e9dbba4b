"""A stop string matched as text, inside the compiled decode loop.

A subword tokenizer spells the same text with different tokens in different contexts: SmolLM2
writes "</tool>" as `</` `tool` `>` after a digit but as ` </` `tool` `>` after a space, so a
stop matched as one token-id sequence misses it. `StopMatcher` instead runs the string's KMP
automaton over the characters of the sampled tokens. The automaton is folded into two per-token
tables, built once on the host:

    next_state[s, v]: characters of the stop matched after token v, from s matched before;
    hit[s, v]:        whether the stop completes inside token v's text, from state s.

A decode step then costs two gathers per row: `hit = hit[s, token]; s = next_state[s, token]`.
A token's text is what it adds to a decoded string (decode([anchor, v]) minus decode([anchor])),
so a SentencePiece word-start token contributes its leading space. Exact for text whose tokens
decode on their own, which every ASCII stop string's tokens do; a byte-level token holding part
of a multi-byte character decodes to U+FFFD and resets the match.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class StopMatcher:
  """The per-token automaton tables of one stop string (module docstring). States 0..L-1 are the
  characters matched so far (L = len(stop)); a hit ends the turn, so no state L exists."""
  stop: str
  next_state: np.ndarray  # int32 [L, V]
  hit: np.ndarray         # bool [L, V]

  @classmethod
  def build(cls, stop: str, token_texts: Sequence[str]) -> "StopMatcher":
    if not stop:
      raise ValueError("a stop string must not be empty")
    n, v = len(stop), len(token_texts)
    fail = kmp_failure(stop)
    next_state = np.zeros((n, v), np.int32)
    hit = np.zeros((n, v), bool)
    chars = set(stop)
    for token, text in enumerate(token_texts):
      if not text:  # adds nothing (special tokens): the match stands
        next_state[:, token] = np.arange(n)
        continue
      if chars.isdisjoint(text):
        continue  # resets to 0 from every state, never completes
      for state in range(n):
        s, done = state, False
        for ch in text:
          while s and stop[s] != ch:
            s = fail[s - 1]
          if stop[s] == ch:
            s += 1
          if s == n:
            done = True
            break
        next_state[state, token], hit[state, token] = (0 if done else s), done
    return cls(stop=stop, next_state=next_state, hit=hit)

  @classmethod
  def for_tokenizer(cls, stop: str, tokenizer) -> "StopMatcher":
    return cls.build(stop, token_texts(tokenizer))

  def initial(self, batch: int) -> jax.Array:
    """int32 [b] zeros: nothing matched."""
    return jnp.zeros((batch,), jnp.int32)

  def step(self, state_b: jax.Array, token_b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(next state [b], hit [b]) after each row's token (jittable; the tables are constants)."""
    return (jnp.asarray(self.next_state)[state_b, token_b],
            jnp.asarray(self.hit)[state_b, token_b])

  def matches(self, ids: Sequence[int]) -> bool:
    """Host check (tests, replays): whether the stop completes within the tokens `ids`."""
    s = 0
    for i in ids:
      if self.hit[s, i]:
        return True
      s = int(self.next_state[s, i])
    return False


def kmp_failure(stop: str) -> list[int]:
  """KMP failure function: fail[i] = length of the longest proper border of stop[:i + 1] (also
  the PRM's step-delimiter automaton's, `rewards.prm`)."""
  fail, k = [0] * len(stop), 0
  for i in range(1, len(stop)):
    while k and stop[i] != stop[k]:
      k = fail[k - 1]
    if stop[i] == stop[k]:
      k += 1
    fail[i] = k
  return fail


def token_texts(tokenizer) -> list[str]:
  """What each token id adds to decoded text: decode([anchor, v]) without decode([anchor])'s
  prefix, so word-start markers become the space they stand for. The anchor is the first id of
  "a" (any token that decodes to itself)."""
  anchor = tokenizer.encode("a")[-1:]
  base = tokenizer.decode(anchor)
  texts = []
  for v in range(tokenizer.vocab_size):
    text = tokenizer.decode(anchor + [v])
    texts.append(text[len(base):] if text.startswith(base) else tokenizer.decode([v]))
  return texts
