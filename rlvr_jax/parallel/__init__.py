"""Mesh from config, logical-axis rules, multi-process initialisation."""

from rlvr_jax.parallel.mesh import (
    LOGICAL_RULES,
    MESH_AXES,
    batch_divisor,
    batch_sharding,
    constrain,
    logical_to_spec,
    make_mesh,
    maybe_initialize_distributed,
    replicated,
    traced_under_mesh,
    tree_shardings,
)

__all__ = ["LOGICAL_RULES", "MESH_AXES", "batch_divisor", "batch_sharding", "constrain",
           "logical_to_spec", "make_mesh", "maybe_initialize_distributed", "replicated",
           "traced_under_mesh", "tree_shardings"]
