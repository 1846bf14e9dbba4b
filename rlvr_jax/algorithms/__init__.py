"""Advantage estimators, policy/value losses and the name -> function registries."""

from rlvr_jax.algorithms import advantages
from rlvr_jax.algorithms import losses
from rlvr_jax.algorithms.losses import AGGREGATIONS
from rlvr_jax.algorithms.losses import aggregate
from rlvr_jax.algorithms.losses import aggregate_normalizer
from rlvr_jax.algorithms.losses import policy_loss
from rlvr_jax.algorithms.registry import ADVANTAGES
from rlvr_jax.algorithms.registry import POLICY_LOSSES
from rlvr_jax.algorithms.registry import AdvantageInputs
from rlvr_jax.algorithms.registry import check_aggregation
from rlvr_jax.algorithms.registry import register_advantage
from rlvr_jax.algorithms.registry import register_policy_loss
