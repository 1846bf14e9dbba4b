"""The tokenizer protocol every backend (sentencepiece, HF `tokenizers`, GGUF) implements."""

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Tokenizer(Protocol):
  """Text <-> token ids.

  `encode` never adds BOS/EOS; callers add them explicitly. `decode` drops the pad, EOS and BOS
  ids wherever they occur (it does not stop at EOS) and decodes everything else.
  """

  @property
  def vocab_size(self) -> int:
    """Number of ids; valid ids are `range(vocab_size)`."""
    ...

  @property
  def eos_id(self) -> int:
    ...

  @property
  def pad_id(self) -> int:
    ...

  @property
  def bos_id(self) -> int | None:
    """None when the vocabulary has no BOS token."""
    ...

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without BOS or EOS."""
    ...

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids`, skipping pad/EOS/BOS ids."""
    ...

  def id_to_piece(self, i: int) -> str:
    """The vocabulary entry of id `i`, in the backend's own spelling (e.g. '▁' for space)."""
    ...

  def chat(self, messages: list[dict]) -> str:
    """Applies the chat template to [{'role': ..., 'content': ...}, ...].

    Raises:
      NotImplementedError: the tokenizer has no chat template.
    """
    ...
