"""Device mesh from config and logical-axis sharding rules (multi-process helpers: distributed.py).

Parameters and activations are annotated with logical axis names (`batch`, `embed`, `mlp`,
`heads`, `kv_heads`, `kv`, `vocab`, `layers`, `length`); `LOGICAL_RULES` maps them onto the mesh
axes `data`, `fsdp`, `tensor`. A dimension that a mesh axis does not divide is replicated, so one
config runs on 1 or 8 devices unchanged.

Activations are pinned with `constrain` while a step is traced under `traced_under_mesh`;
without a mesh in context `constrain` does nothing, so the model code runs unchanged outside it.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_RULES: dict[str, tuple[str, ...] | str | None] = {
    "batch": ("data", "fsdp"),
    "embed": "fsdp",
    "mlp": "tensor",
    "heads": "tensor",
    "kv_heads": "tensor",
    "vocab": "tensor",
    "kv": None,
    "layers": None,
    "length": None,
}


def make_mesh(mesh_config: ml_collections.ConfigDict | dict,
              devices: list[jax.Device] | None = None) -> Mesh:
  """Builds a ('data', 'fsdp', 'tensor') mesh; one axis may be -1 to take the rest."""
  devices = list(devices if devices is not None else jax.devices())
  sizes = {a: int(dict(mesh_config).get(a, 1)) for a in MESH_AXES}
  unknown = set(dict(mesh_config)) - set(MESH_AXES)
  if unknown:
    raise ValueError(f"config.mesh has unknown axes {sorted(unknown)}; valid: {MESH_AXES}")
  fill = [a for a, s in sizes.items() if s == -1]
  if len(fill) > 1:
    raise ValueError(f"config.mesh: at most one axis may be -1, got {fill}")
  fixed = math.prod(s for s in sizes.values() if s != -1)
  if any(s == 0 or s < -1 for s in sizes.values()):
    raise ValueError(f"config.mesh sizes must be positive or -1, got {sizes}")
  if fill:
    if len(devices) % fixed:
      raise ValueError(f"config.mesh: {len(devices)} devices are not divisible by the fixed "
                       f"axes {sizes}")
    sizes[fill[0]] = len(devices) // fixed
  if math.prod(sizes.values()) != len(devices):
    raise ValueError(f"config.mesh {sizes} needs {math.prod(sizes.values())} devices, "
                     f"{len(devices)} are available")
  grid = np.asarray(devices).reshape([sizes[a] for a in MESH_AXES])
  return Mesh(grid, MESH_AXES)


def logical_to_spec(axes: tuple[str | None, ...], shape: tuple[int, ...],
                    mesh: Mesh | jax.sharding.AbstractMesh,
                    rules: dict[str, Any] = LOGICAL_RULES) -> PartitionSpec:
  """PartitionSpec for an array with logical `axes`; undivisible dims are replicated."""
  used: set[str] = set()
  spec = []
  for name, dim in zip(axes, shape):
    mesh_axes = rules.get(name) if name is not None else None
    if mesh_axes is None:
      spec.append(None)
      continue
    mesh_axes = (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)
    mesh_axes = tuple(a for a in mesh_axes if a not in used and mesh.shape[a] > 1)
    size = math.prod(mesh.shape[a] for a in mesh_axes)
    if not mesh_axes or dim % size:
      if mesh_axes:
        logging.log_first_n(logging.INFO, "replicating logical axis %s (dim %d, mesh %s)", 8,
                            name, dim, mesh_axes)
      spec.append(None)
      continue
    used.update(mesh_axes)
    spec.append(mesh_axes[0] if len(mesh_axes) == 1 else mesh_axes)
  return PartitionSpec(*spec)


def tree_shardings(axes_tree: Any, shapes_tree: Any, mesh: Mesh) -> Any:
  """NamedShardings for a pytree given a matching tree of logical-axis tuples."""
  is_axes = lambda x: isinstance(x, tuple) and all(isinstance(a, (str, type(None))) for a in x)
  return jax.tree.map(
      lambda axes, leaf: NamedSharding(mesh, logical_to_spec(axes, leaf.shape, mesh)),
      axes_tree, shapes_tree, is_leaf=is_axes)


def constrain(x: jax.Array, axes: tuple[str | None, ...]) -> jax.Array:
  """`x` pinned to the layout of its logical `axes` on the mesh in context (none: unchanged).

  Without these pins XLA propagates shardings from the parameters alone and may, e.g., keep
  activations split along `embed` and replicated over the batch, which costs memory on every
  device. Undivisible dims are replicated, as in `logical_to_spec`.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  return jax.lax.with_sharding_constraint(x, logical_to_spec(axes, x.shape, mesh))


def batch_shards() -> int:
  """How many ways the batch axis is split on the mesh in context (1 without one)."""
  mesh = jax.sharding.get_abstract_mesh()
  return 1 if mesh.empty else mesh.shape["data"] * mesh.shape["fsdp"]


def traced_under_mesh(fn: Callable, mesh: Mesh) -> Callable:
  """`fn` traced with `mesh` in context, so the `constrain` calls inside it take effect.

  The abstract mesh is entered inside the function (where `jax.set_mesh` may not be used), so
  the result can be passed to `jax.jit` and its `.lower` like `fn` itself.
  """

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return fn(*args, **kwargs)

  return wrapped


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """Shards the leading (batch) axis over `data` x `fsdp`."""
  return NamedSharding(mesh, PartitionSpec(("data", "fsdp"), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_divisor(mesh: Mesh) -> int:
  """The number of shards of the batch axis: batch sizes must be multiples of it."""
  return mesh.shape["data"] * mesh.shape["fsdp"]

