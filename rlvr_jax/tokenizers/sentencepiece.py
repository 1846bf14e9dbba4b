"""SentencePiece backend, including deterministic in-process training for synthetic tasks."""

from collections.abc import Iterable, Sequence
import io
import os

import sentencepiece as spm

PAD_ID, EOS_ID, BOS_ID, UNK_ID = 0, 1, 2, 3
_NUM_SPECIAL = 4
# A single character, so every id decodes to at most one character in char models.
_UNK_SURFACE = "\u2047"


class SentencePieceTokenizer:
  """`Tokenizer` over a `sentencepiece.SentencePieceProcessor`.

  Models from `train` use pad=0, eos=1, bos=2, unk=3, keep whitespace verbatim (no dummy prefix,
  no whitespace collapsing, identity normalization) so decode(encode(s)) == s for any `s` over the
  training characters, and split digits into single pieces. Unknown characters encode to unk,
  which decodes to '⁇'.
  """

  def __init__(self, processor: spm.SentencePieceProcessor):
    self._sp = processor

  @classmethod
  def train(
      cls,
      texts: Iterable[str],
      *,
      vocab_size: int | None = None,
      model_type: str = "char",
      user_defined_symbols: Sequence[str] = (),
  ) -> "SentencePieceTokenizer":
    """Trains a model in memory (no files) in milliseconds; same inputs -> byte-identical model.

    Args:
      texts: training sentences; each must be under 4192 bytes (longer ones are skipped by
        sentencepiece).
      vocab_size: upper bound on the vocabulary size, including the 4 special ids and
        `user_defined_symbols` (small corpora may yield fewer pieces). Optional for
        model_type='char', where it defaults to room for every distinct character; required
        otherwise.
      model_type: 'char', 'bpe', 'unigram' or 'word'.
      user_defined_symbols: strings that always encode to a single id.
    """
    texts = list(texts)
    user_defined_symbols = list(user_defined_symbols)
    if vocab_size is None:
      if model_type != "char":
        raise ValueError(f"vocab_size is required for model_type={model_type!r}")
      vocab_size = _NUM_SPECIAL + len(user_defined_symbols) + len(set("".join(texts)))
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=writer,
        model_type=model_type,
        vocab_size=vocab_size,
        user_defined_symbols=user_defined_symbols,
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        bos_id=BOS_ID,
        unk_id=UNK_ID,
        unk_surface=_UNK_SURFACE,
        character_coverage=1.0,
        split_digits=True,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        byte_fallback=False,
        hard_vocab_limit=False,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return cls.from_serialized(writer.getvalue())

  @classmethod
  def from_serialized(cls, model: bytes) -> "SentencePieceTokenizer":
    """Inverse of `serialized_model`."""
    return cls(spm.SentencePieceProcessor(model_proto=model))

  @classmethod
  def from_file(cls, path: str | os.PathLike) -> "SentencePieceTokenizer":
    """Loads a `.model` file, e.g. one written from `serialized_model()`."""
    with open(path, "rb") as f:
      return cls.from_serialized(f.read())

  def serialized_model(self) -> bytes:
    """The model proto; write it next to checkpoints to restore the exact tokenizer."""
    return self._sp.serialized_model_proto()

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  @property
  def eos_id(self) -> int:
    return self._sp.eos_id()

  @property
  def pad_id(self) -> int:
    return self._sp.pad_id()

  @property
  def bos_id(self) -> int | None:
    bos = self._sp.bos_id()
    return None if bos < 0 else bos

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without BOS or EOS."""
    return self._sp.encode(text)

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids`, skipping pad/EOS/BOS ids wherever they occur."""
    skip = {self.pad_id, self.eos_id, self.bos_id}
    return self._sp.decode([int(i) for i in ids if int(i) not in skip])

  def id_to_piece(self, i: int) -> str:
    return self._sp.id_to_piece(int(i))

  def chat(self, messages: list[dict]) -> str:
    raise NotImplementedError(
        "SentencePieceTokenizer has no chat template; format prompts as plain text "
        "(synthetic tasks do) or use a tokenizer that ships one (HF tokenizer_config.json, GGUF)."
    )
