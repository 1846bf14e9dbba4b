"""Multi-process runs: initialisation, which batch rows a process loads, and its host view.

With several processes (hosts) every process runs the same program on a global mesh, but only
touches its own devices. Each process loads just the rows of a global batch that its devices
hold (`process_rows`), and `global_batch` stitches those local rows into one global array, so
a step's union of local batches is exactly the single-process batch, in the same order.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh

from rlvr_jax.parallel.mesh import batch_divisor, batch_sharding


def maybe_initialize_distributed(enabled: bool) -> None:
  """`jax.distributed.initialize()` when `enabled` (config.distributed) and not done already.

  Explicit settings come from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (and
  JAX_LOCAL_DEVICE_IDS, which jax reads itself); whatever is unset is auto-detected by jax on
  SLURM, Open MPI and Cloud TPU. Must run before anything touches a device: asking for
  `jax.process_count()` first would start a single-process backend that initialize rejects.
  """
  if not enabled or jax.distributed.is_initialized():
    return
  kwargs = {}
  if os.environ.get("JAX_COORDINATOR_ADDRESS"):
    kwargs["coordinator_address"] = os.environ["JAX_COORDINATOR_ADDRESS"]
  for name, key in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
    if os.environ.get(key):
      try:
        kwargs[name] = int(os.environ[key])
      except ValueError:
        raise ValueError(f"environment variable {key}={os.environ[key]!r} is not an integer"
                         ) from None
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())


def is_primary() -> bool:
  """Process 0 alone writes files meant for people and tools (metrics, config, tokenizer)."""
  return jax.process_index() == 0


def process_rows(mesh: Mesh, global_rows: int) -> tuple[int, int]:
  """[start, stop) of the leading (batch) axis held by this process's devices.

  Raises when those rows are not one contiguous block (a mesh whose device order interleaves
  processes along `data` x `fsdp`), since a process then could not load a plain slice.
  """
  index_map = batch_sharding(mesh, 1).addressable_devices_indices_map((global_rows,))
  blocks = sorted({(s.start or 0, global_rows if s.stop is None else s.stop)
                   for (s,) in index_map.values()})
  for (_, stop), (start, _) in zip(blocks, blocks[1:]):
    if stop != start:
      raise ValueError(f"process {jax.process_index()} holds batch rows {blocks} of "
                       f"{global_rows}, not one contiguous block; order the mesh devices by "
                       "process")
  return blocks[0][0], blocks[-1][1]


def global_rows(mesh: Mesh, num_local: int) -> int:
  """The global batch size whose per-process slice (`process_rows`) has `num_local` rows."""
  start, stop = process_rows(mesh, batch_divisor(mesh))
  return num_local * batch_divisor(mesh) // (stop - start)


def global_batch(mesh: Mesh, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
  """This process's rows of a batch -> global arrays sharded on the batch axis (arrays may
  differ in rows, e.g. stored samples beside the prompts)."""
  return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, v.ndim), v,
                                                    (global_rows(mesh, len(v)),) + v.shape[1:])
          for k, v in batch.items()}


def local_rows(mesh: Mesh, x: jax.Array) -> np.ndarray:
  """This process's rows (`process_rows`) of a global array, on the host; no collective."""
  start, stop = process_rows(mesh, x.shape[0])
  rows = np.empty((stop - start,) + x.shape[1:], x.dtype)
  filled = np.zeros(stop - start, bool)
  for shard in x.addressable_shards:
    lo, hi, _ = shard.index[0].indices(x.shape[0]) if shard.index else (0, x.shape[0], 1)
    a, b = max(lo, start), min(hi, stop)
    if a < b:
      rows[a - start:b - start] = np.asarray(shard.data)[a - lo:b - lo]
      filled[a - start:b - start] = True
  if not filled.all():
    raise ValueError(f"process {jax.process_index()} does not hold rows [{start}, {stop}) of an "
                     f"array sharded as {x.sharding}")
  return rows


def max_across_processes(value: int) -> int:
  """The largest of every process's `value` (a collective: all processes must call it)."""
  from jax.experimental import multihost_utils  # local: only multi-process runs need it
  return int(np.max(multihost_utils.process_allgather(np.int32(value))))

