"""Architecture presets of the supported families (real sizes; tests shrink them)."""

from __future__ import annotations

import dataclasses

from rlvr_jax.models.config import ModelConfig

PRESETS: dict[str, ModelConfig] = {
    "smollm2-135m": ModelConfig(
        vocab_size=49152, d_model=576, n_layers=30, n_heads=9, n_kv_heads=3, d_ff=1536,
        rope_theta=100_000.0, norm_eps=1e-5, tie_embeddings=True),
    "qwen2.5-0.5b": ModelConfig(
        vocab_size=151936, d_model=896, n_layers=24, n_heads=14, n_kv_heads=2, d_ff=4864,
        rope_theta=1_000_000.0, norm_eps=1e-6, qkv_bias=True, tie_embeddings=True),
    "qwen3-0.6b": ModelConfig(
        vocab_size=151936, d_model=1024, n_layers=28, n_heads=16, n_kv_heads=8, head_dim=128,
        d_ff=3072, rope_theta=1_000_000.0, norm_eps=1e-6, qk_norm=True, tie_embeddings=True),
    "llama3.2-1b": ModelConfig(
        vocab_size=128256, d_model=2048, n_layers=16, n_heads=32, n_kv_heads=8, d_ff=8192,
        rope_theta=500_000.0, norm_eps=1e-5, tie_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
}


def preset(name: str, **overrides) -> ModelConfig:
  """A family preset with optional field overrides (e.g. tiny dims for tests)."""
  if name not in PRESETS:
    raise ValueError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
  return dataclasses.replace(PRESETS[name], **overrides)
