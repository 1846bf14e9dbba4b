"""Evaluation metrics: pass@k, maj@k, mean@k."""

from rlvr_jax.evaluation.pass_at_k import maj_at_k
from rlvr_jax.evaluation.pass_at_k import mean_at_k
from rlvr_jax.evaluation.pass_at_k import pass_at_k
