"""One decoder-only model configuration that covers Llama-3, Qwen2/2.5, Qwen3 and SmolLM2."""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

# Activation rematerialisation of the scanned layers (see transformer._remat).
REMAT_POLICIES = ("none", "full", "dots_saveable")
# When the sampler gathers sharded weights (see ModelConfig.decode_weight_gather).
DECODE_WEIGHT_GATHER = ("once", "per_layer")
# Automatic model.attention_chunk: up to this many queries attend in one block, today's exact
# path ([t, s] scores), so every shipped short config keeps its recorded numbers bit for bit;
# above it, blocks of ATTENTION_BLOCK queries keep attention memory linear in length.
ATTENTION_ONE_BLOCK_MAX = 1024
ATTENTION_BLOCK = 512


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of the decoder-only transformer.

  The family members differ only in these fields: Qwen2/2.5 set `qkv_bias`, Qwen3 sets
  `qk_norm`, Llama-3 may carry `rope_scaling={"rope_type": "llama3", ...}`, SmolLM2 and small
  Qwen models tie the embeddings.
  """

  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  d_ff: int
  head_dim: int | None = None  # defaults to d_model // n_heads
  rope_theta: float = 10_000.0
  rope_scaling: tuple[tuple[str, Any], ...] | None = None  # frozen dict items, e.g. llama3
  norm_eps: float = 1e-6
  qk_norm: bool = False
  qkv_bias: bool = False
  tie_embeddings: bool = True
  dtype: str = "float32"  # activation / compute dtype; logits are always float32
  param_dtype: str = "float32"
  remat: str = "none"  # one of REMAT_POLICIES; the old bools mean False -> none, True -> full
  # The trunk is one lax.scan over stacked layers (compile time independent of depth); True
  # unrolls it, which on CPU saves the backward pass the stacked residual buffers (memset, slice
  # copies) at the cost of compile time growing with depth.
  unroll_layers: bool = False
  # Training attention (full sequences, prefill) runs its queries in blocks of this many, each
  # block's [chunk, s] scores computed and, in the backward, recomputed on their own, so the
  # temporaries grow linearly in length instead of as [t, s]. Same numbers to float rounding.
  # 0: automatic, one block up to ATTENTION_ONE_BLOCK_MAX queries, else ATTENTION_BLOCK.
  attention_chunk: int = 0
  # Sampling with sharded weights (FSDP/tensor meshes): "once" gathers every layer's weights
  # before the decode loop (one device-local copy of the weights while sampling, the fewest
  # collectives); "per_layer" gathers each layer's weights when the decode step reaches it, every
  # token (the memory floor: one layer's weights at a time, n_layers gathers a token). Same
  # numbers either way; no effect on one device.
  decode_weight_gather: str = "once"
  cache_dtype: str | None = None  # KV-cache dtype of the sampler; None: the compute dtype
  # The sampler's decode loop runs in this many segments, each its own while_loop over a KV
  # cache that ends where the segment ends: segment j of S attends to p + (j+1)n/S slots instead
  # of all p + n. Decode attention is bound by reading the cache, so this cuts its time by up to
  # half. Each segment costs one copy of the cache (when it grows) and one more compiled decode
  # loop (~0.3 s of compile time on CPU). 0: automatic, one segment per 32 new tokens, at most 8,
  # on unsharded weights; one segment when the weights are sharded (`for_weight_shards`), where
  # each segment's loop would gather its own copy of the weights (benchmarks/MEMORY.md). The
  # sampled tokens are the same for every value.
  decode_cache_segments: int = 0
  # Completion log-probs and entropies (`models.token_logprobs`) are computed this many positions
  # at a time, under a custom VJP that recomputes each chunk's logits in the backward pass, so a
  # micro-batch's float32 logits [n, t, v] never exist whole. 0: automatic, all positions at once
  # (plain autodiff) while one device's n t v float32 logits fit 256 MiB, else chunks whose
  # logits do. The numbers agree to float32 rounding for every value.
  logprob_chunk: int = 0
  # Ids at or above this are padding rows of an enlarged embedding table (a vocabulary padded to
  # a multiple of 128, or a benchmark's fixed size): their logits are masked, so they are never
  # sampled and hold no probability. None: every id is a real token.
  valid_vocab_size: int | None = None

  def __post_init__(self):
    for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff"):
      if getattr(self, name) <= 0:
        raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
    if self.n_heads % self.n_kv_heads:
      raise ValueError(
          f"model.n_heads ({self.n_heads}) must be a multiple of model.n_kv_heads "
          f"({self.n_kv_heads}) for grouped-query attention")
    if self.head_dim is None and self.d_model % self.n_heads:
      raise ValueError(f"model.d_model ({self.d_model}) is not divisible by model.n_heads "
                       f"({self.n_heads}); set model.head_dim explicitly")
    if self.valid_vocab_size is not None and not 0 < self.valid_vocab_size <= self.vocab_size:
      raise ValueError(f"model.valid_vocab_size ({self.valid_vocab_size}) must be in "
                       f"[1, vocab_size={self.vocab_size}]")
    if self.resolved_head_dim % 2:
      raise ValueError(f"model.head_dim must be even for RoPE, got {self.resolved_head_dim}")
    for name in ("dtype", "param_dtype", "cache_dtype"):
      if name == "cache_dtype" and self.cache_dtype is None:
        continue
      if getattr(self, name) not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"model.{name} must be float32, bfloat16 or float16, "
                         f"got {getattr(self, name)!r}")
    if isinstance(self.remat, bool):
      object.__setattr__(self, "remat", "full" if self.remat else "none")
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"model.remat must be one of {REMAT_POLICIES} (or a bool), "
                       f"got {self.remat!r}")
    if self.decode_weight_gather not in DECODE_WEIGHT_GATHER:
      raise ValueError(f"model.decode_weight_gather must be one of {DECODE_WEIGHT_GATHER}, "
                       f"got {self.decode_weight_gather!r}")
    if self.attention_chunk < 0:
      raise ValueError(f"model.attention_chunk must be >= 0 (0: automatic), "
                       f"got {self.attention_chunk}")
    if self.decode_cache_segments < 0:
      raise ValueError(f"model.decode_cache_segments must be >= 0 (0: automatic), "
                       f"got {self.decode_cache_segments}")
    if self.logprob_chunk < 0:
      raise ValueError(f"model.logprob_chunk must be >= 0 (positions per chunk; 0: automatic), "
                       f"got {self.logprob_chunk}")
    if isinstance(self.rope_scaling, dict):  # accept a plain dict, store it hashable
      object.__setattr__(self, "rope_scaling", tuple(sorted(self.rope_scaling.items())))

  @property
  def resolved_head_dim(self) -> int:
    return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

  @property
  def scan_unroll(self) -> int:
    return self.n_layers if self.unroll_layers else 1

  @property
  def resolved_cache_dtype(self) -> str:
    return self.cache_dtype or self.dtype

  def for_weight_shards(self, shards: int) -> "ModelConfig":
    """This config for weights split over `shards` devices (fsdp x tensor): an automatic
    `decode_cache_segments` becomes 1 when shards > 1. XLA hoists the all-gather of the
    weights out of each decode loop, so S segments held S gathered copies (7B over 8 devices:
    a 46.7 GiB peak became 230 GiB with 8 segments, benchmarks/MEMORY.md)."""
    if self.decode_cache_segments or shards <= 1:
      return self
    return dataclasses.replace(self, decode_cache_segments=1)

  def attention_block(self, queries: int) -> int:
    """Queries per attention block for `queries` query tokens (see `attention_chunk`); a block
    of all of them is the one-block path."""
    if self.attention_chunk:
      return min(self.attention_chunk, queries)
    return queries if queries <= ATTENTION_ONE_BLOCK_MAX else ATTENTION_BLOCK

  def cache_segments(self, max_new_tokens: int) -> int:
    """How many segments the sampler's decode loop runs in (see `decode_cache_segments`)."""
    if self.decode_cache_segments:
      return self.decode_cache_segments
    return max(1, min(8, max_new_tokens // 32))

  @property
  def masks_vocab(self) -> bool:
    return self.valid_vocab_size is not None and self.valid_vocab_size < self.vocab_size

  @property
  def rope_scaling_dict(self) -> dict[str, Any] | None:
    return dict(self.rope_scaling) if self.rope_scaling else None

  @classmethod
  def from_config(cls, cfg: ml_collections.ConfigDict | dict) -> "ModelConfig":
    """Builds from a ConfigDict, naming any unknown field."""
    items = dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(items) - known)
    if unknown:
      raise ValueError(f"unknown model config field(s) {unknown}; known fields: {sorted(known)}")
    if items.get("rope_scaling") is not None:
      items["rope_scaling"] = tuple(sorted(dict(items["rope_scaling"]).items()))
    return cls(**items)

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["rope_scaling"] = self.rope_scaling_dict
    return d


def tiny(vocab_size: int, **overrides) -> ModelConfig:
  """A small Llama-style model for tests and CPU runs."""
  kw = dict(vocab_size=vocab_size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128)
  kw.update(overrides)
  return ModelConfig(**kw)
