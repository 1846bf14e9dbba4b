"""Any of our tokenizers as the files `transformers.AutoTokenizer.from_pretrained(dir)` reads:
`tokenizer.json` (HF `tokenizers`) and `tokenizer_config.json` (special tokens, chat template).

HF-backed tokenizers (HF checkpoints, GGUF vocabularies) are written as they are. SentencePiece
char models (the synthetic tasks') become a `tokenizers` Unigram over the same pieces and ids:
with single-character pieces the only segmentation is one piece a character, a space is escaped
to '▁' as SentencePiece does, and a run of unknown characters is one unk id in both. The unk id
decodes to '⁇' in both (it is not a special token, which decoding would drop). One difference
remains: text spelling a control piece ("</s>") encodes to its id here and to unk there.
"""

from __future__ import annotations

import json
import pathlib

import tokenizers
from sentencepiece import sentencepiece_model_pb2
from tokenizers import decoders, normalizers

from rlvr_jax.tokenizers.base import Tokenizer
from rlvr_jax.tokenizers.hf import HFTokenizer
from rlvr_jax.tokenizers.sentencepiece import SentencePieceTokenizer

_SPACE = "\u2581"  # SentencePiece's escaped whitespace
_CHAR = sentencepiece_model_pb2.TrainerSpec.CHAR
_CONTROL = sentencepiece_model_pb2.ModelProto.SentencePiece.CONTROL
_UNKNOWN = sentencepiece_model_pb2.ModelProto.SentencePiece.UNKNOWN


def from_sentencepiece(tokenizer: SentencePieceTokenizer) -> tokenizers.Tokenizer:
  """A `tokenizers.Tokenizer` that encodes and decodes like the SentencePiece char model, id for
  id. Raises ValueError for other SentencePiece models (BPE, unigram, word, or a normalization
  other than identity), whose HF equivalents this does not build."""
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(tokenizer.serialized_model())
  spec, norm = proto.trainer_spec, proto.normalizer_spec
  kind = sentencepiece_model_pb2.TrainerSpec.ModelType.Name(spec.model_type)
  if spec.model_type != _CHAR:
    raise ValueError(f"a SentencePiece {kind} model cannot be exported (char models can)")
  if norm.name != "identity" or norm.add_dummy_prefix or norm.remove_extra_whitespaces:
    raise ValueError(f"a SentencePiece model normalizing its input (rule {norm.name!r}, "
                     f"add_dummy_prefix={norm.add_dummy_prefix}, remove_extra_whitespaces="
                     f"{norm.remove_extra_whitespaces}) cannot be exported (identity can)")
  unk = [i for i, p in enumerate(proto.pieces) if p.type == _UNKNOWN]
  tok = tokenizers.Tokenizer(tokenizers.models.Unigram(
      [(p.piece, p.score) for p in proto.pieces], unk_id=unk[0] if unk else None))
  steps = [decoders.Replace(proto.pieces[unk[0]].piece, spec.unk_surface)] if unk else []
  if norm.escape_whitespaces:
    tok.normalizer = normalizers.Replace(" ", _SPACE)
    steps.append(decoders.Replace(_SPACE, " "))
  tok.decoder = decoders.Sequence(steps)
  # Special tokens, so that decoding with skip_special_tokens drops pad, EOS and BOS as ours does.
  tok.add_special_tokens([tokenizers.AddedToken(p.piece, special=True, normalized=False)
                          for p in proto.pieces if p.type == _CONTROL])
  return tok


def save(tokenizer: Tokenizer, path: str | pathlib.Path) -> None:
  """Writes `path/tokenizer.json` and `path/tokenizer_config.json` for `tokenizer` (an
  `HFTokenizer` or a SentencePiece char model). AutoTokenizer then encodes text to our ids
  (`encode(text, add_special_tokens=False)`; with special tokens it adds what the original HF
  tokenizer's post-processor adds, none for SentencePiece) and renders our chat template."""
  if isinstance(tokenizer, HFTokenizer):
    backend, template = tokenizer.backend, tokenizer.chat_template
  elif isinstance(tokenizer, SentencePieceTokenizer):
    backend, template = from_sentencepiece(tokenizer), None
  else:
    raise ValueError(f"cannot export a {type(tokenizer).__name__} tokenizer (HF and "
                     "SentencePiece char tokenizers can)")
  path = pathlib.Path(path)
  path.mkdir(parents=True, exist_ok=True)
  backend.save(str(path / "tokenizer.json"))
  piece = lambda i: None if i is None else backend.id_to_token(i)
  config = {
      "tokenizer_class": "PreTrainedTokenizerFast",
      "eos_token": piece(tokenizer.eos_id),
      "bos_token": piece(tokenizer.bos_id),
      "pad_token": piece(tokenizer.pad_id),
      "clean_up_tokenization_spaces": False,  # decode must not rewrite " ," or " 's"
      "model_max_length": 1_000_000_000,
  }
  if template is not None:
    config["chat_template"] = template
  (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
