"""Prefill + KV-cache decode sampler returning tokens, logprobs, entropies and masks."""

from rlvr_jax.sampling.partial import PartialCompletions, resume
from rlvr_jax.sampling.sampler import (Completions, DecodeStats, auto_slots, categorical,
                                       filter_logits, generate, generate_with_stats,
                                       inverse_cdf, segment_ends)

__all__ = ["Completions", "DecodeStats", "PartialCompletions", "auto_slots", "categorical",
           "filter_logits", "generate", "generate_with_stats", "inverse_cdf", "resume",
           "segment_ends"]
