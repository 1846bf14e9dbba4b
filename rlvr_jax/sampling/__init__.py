"""Prefill + KV-cache decode sampler returning tokens, logprobs, entropies and masks."""

from rlvr_jax.sampling.sampler import Completions, categorical, filter_logits, generate, inverse_cdf

__all__ = ["Completions", "categorical", "filter_logits", "generate", "inverse_cdf"]
