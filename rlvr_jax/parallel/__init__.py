"""Mesh from config, logical-axis rules, multi-process initialisation and data placement."""

from rlvr_jax.parallel.distributed import (
    global_batch,
    global_rows,
    is_primary,
    local_rows,
    max_across_processes,
    maybe_initialize_distributed,
    process_rows,
)
from rlvr_jax.parallel.mesh import (
    LOGICAL_RULES,
    MESH_AXES,
    batch_divisor,
    batch_shards,
    batch_sharding,
    constrain,
    logical_to_spec,
    make_mesh,
    replicated,
    traced_under_mesh,
    tree_shardings,
)

__all__ = ["LOGICAL_RULES", "MESH_AXES", "batch_divisor", "batch_sharding", "batch_shards",
           "constrain", "global_batch", "global_rows", "is_primary", "local_rows",
           "logical_to_spec", "make_mesh", "max_across_processes", "maybe_initialize_distributed",
           "process_rows", "replicated", "traced_under_mesh", "tree_shardings"]
