"""Prefill + KV-cache decode sampler returning tokens, logprobs, entropies and masks."""

from rlvr_jax.sampling.partial import PartialCompletions, resume
from rlvr_jax.sampling.sampler import (Completions, categorical, filter_logits, generate,
                                       inverse_cdf, segment_ends)

__all__ = ["Completions", "PartialCompletions", "categorical", "filter_logits", "generate",
           "inverse_cdf", "resume", "segment_ends"]
