"""Advantage estimators, policy losses and loss terms: pure functions, and the registries a
config picks them from (`register_advantage`, `register_policy_loss`, `register_term`)."""

from rlvr_jax.algorithms import advantages
from rlvr_jax.algorithms import losses
from rlvr_jax.algorithms import estimators  # noqa: F401 (registers the built-in estimators)
from rlvr_jax.algorithms import policy_losses  # noqa: F401 (registers the built-in losses)
from rlvr_jax.algorithms import rollout_correction  # noqa: F401 (registers the corrections)
from rlvr_jax.algorithms import terms  # noqa: F401 (registers the built-in terms)
from rlvr_jax.algorithms import cov  # noqa: F401 (registers clip_cov and kl_cov)
from rlvr_jax.algorithms import lp_reg  # noqa: F401 (registers Lp-Reg's policy loss)
from rlvr_jax.algorithms import dph  # noqa: F401 (registers the DPH-RL term)
from rlvr_jax.algorithms.losses import AGGREGATIONS
from rlvr_jax.algorithms.losses import aggregate
from rlvr_jax.algorithms.losses import aggregate_normalizer
from rlvr_jax.algorithms.losses import check_aggregation
from rlvr_jax.algorithms.losses import policy_loss
from rlvr_jax.algorithms.registry import ADVANTAGES
from rlvr_jax.algorithms.registry import NEEDS
from rlvr_jax.algorithms.registry import POLICY_LOSSES
from rlvr_jax.algorithms.registry import TERMS
from rlvr_jax.algorithms.registry import AdvantageInputs
from rlvr_jax.algorithms.registry import Component
from rlvr_jax.algorithms.registry import TermContext
from rlvr_jax.algorithms.registry import bounds
from rlvr_jax.algorithms.registry import register_advantage
from rlvr_jax.algorithms.registry import register_policy_loss
from rlvr_jax.algorithms.registry import register_term
