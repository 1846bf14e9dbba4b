"""SentencePieceTokenizer: determinism, round trips, special ids, serialization."""

import pytest

from rlvr_jax.data import synthetic
from rlvr_jax.tokenizers import SentencePieceTokenizer, Tokenizer
from rlvr_jax.tokenizers import sentencepiece as sp_lib


def _task_strings(count_per_task: int) -> list[str]:
  tasks = [synthetic.make_task("addition", scratchpad=True), synthetic.make_task("countdown"),
           synthetic.make_task("sort", max_value=30)]
  strings = []
  for task in tasks:
    for i in range(count_per_task):
      example = task.example(i, split="train" if i % 2 else "test", seed=1)
      strings += [example.prompt, example.demo, example.prompt + example.demo]
  return strings


@pytest.fixture(scope="module")
def tokenizer():
  return synthetic.build_tokenizer(synthetic.make_task(name) for name in synthetic.TASKS)


def test_training_is_deterministic():
  texts = _task_strings(50)
  assert (SentencePieceTokenizer.train(texts).serialized_model()
          == SentencePieceTokenizer.train(texts).serialized_model())
  bpe = [SentencePieceTokenizer.train(texts, vocab_size=60, model_type="bpe") for _ in range(2)]
  assert bpe[0].serialized_model() == bpe[1].serialized_model()
  tasks = [synthetic.make_task(name) for name in synthetic.TASKS]
  assert (synthetic.build_tokenizer(tasks).serialized_model()
          == synthetic.build_tokenizer(tasks[::-1]).serialized_model())


def test_special_ids(tokenizer):
  assert isinstance(tokenizer, Tokenizer)
  assert (tokenizer.pad_id, tokenizer.eos_id, tokenizer.bos_id) == (0, 1, 2)
  assert tokenizer.encode("\u00e9") == [sp_lib.UNK_ID]
  assert [tokenizer.id_to_piece(i) for i in range(4)] == ["<pad>", "</s>", "<s>", "<unk>"]
  ids = tokenizer.encode("1+2")
  assert len(ids) == 3 and min(ids) >= 4  # no BOS/EOS added, one id per character
  assert tokenizer.decode([2, ids[0], 0, ids[1], 1, ids[2], 0]) == "1+2"  # specials skipped
  assert tokenizer.decode(tokenizer.encode("\u00e9")) == "\u2047"


def test_round_trip_on_task_strings(tokenizer):
  strings = _task_strings(1000) + [" ", "  sort  1,2 ", "to ", " to"]
  for s in strings:
    assert tokenizer.decode(tokenizer.encode(s)) == s, s
  assert len(tokenizer.encode("  sort  1,2 ")) == len("  sort  1,2 ")


def test_bpe_splits_digits_and_round_trips():
  texts = _task_strings(200)
  tokenizer = SentencePieceTokenizer.train(texts, vocab_size=80, model_type="bpe")
  assert max(len(tokenizer.id_to_piece(i)) for i in range(tokenizer.vocab_size)) > 1
  for s in texts:
    ids = tokenizer.encode(s)
    assert tokenizer.decode(ids) == s
    for i in ids:
      piece = tokenizer.id_to_piece(i)
      assert not any(c.isdigit() for c in piece) or len(piece) == 1, piece


def test_non_char_model_needs_vocab_size():
  with pytest.raises(ValueError, match="vocab_size"):
    SentencePieceTokenizer.train(["abc"], model_type="bpe")


def test_serialization(tokenizer, tmp_path):
  model = tokenizer.serialized_model()
  path = tmp_path / "tokenizer.model"
  path.write_bytes(model)
  restored_both = [SentencePieceTokenizer.from_serialized(model),
                   SentencePieceTokenizer.from_file(path)]
  for restored in restored_both:
    assert restored.serialized_model() == model
    assert restored.vocab_size == tokenizer.vocab_size
    assert restored.encode("sort 3,1=1,3") == tokenizer.encode("sort 3,1=1,3")


def test_chat_is_not_available(tokenizer):
  with pytest.raises(NotImplementedError, match="chat template"):
    tokenizer.chat([{"role": "user", "content": "1+1="}])
