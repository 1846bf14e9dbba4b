"""One tokenizer protocol over sentencepiece, HF `tokenizers` and GGUF-embedded vocabularies."""

from rlvr_jax.tokenizers.base import Tokenizer
from rlvr_jax.tokenizers.sentencepiece import SentencePieceTokenizer

__all__ = ["SentencePieceTokenizer", "Tokenizer"]
