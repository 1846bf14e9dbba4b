"""Decoder-only LM family (Llama-3 / Qwen2 / Qwen2.5 / Qwen3 / SmolLM2 by config) and heads."""

from rlvr_jax.models.config import ModelConfig, tiny
from rlvr_jax.models.decode import (decode_step, extend_cache, grow_cache, init_cache,
                                    load_prompt_rows, prefill, repeat_cache, unstack_layers)
from rlvr_jax.models.logprobs import logprob_chunk_size, min_p_logprobs, token_logprobs
from rlvr_jax.models.transformer import (
    Params,
    completion_hidden_states,
    forward,
    hidden_states,
    init_params,
    join_prompt,
    logits_from_hidden,
    param_axes,
    positions_from_mask,
    scalar_head,
)
from rlvr_jax.models.presets import PRESETS, preset
from rlvr_jax.models import lora

__all__ = [
    "ModelConfig", "tiny", "Params", "completion_hidden_states", "decode_step", "extend_cache",
    "forward", "grow_cache", "hidden_states", "init_cache", "init_params", "join_prompt",
    "load_prompt_rows", "logits_from_hidden", "param_axes", "positions_from_mask", "prefill",
    "repeat_cache", "scalar_head", "unstack_layers", "PRESETS", "preset", "logprob_chunk_size",
    "token_logprobs", "min_p_logprobs", "lora",
]
