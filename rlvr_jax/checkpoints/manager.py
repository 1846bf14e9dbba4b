"""orbax checkpoints of a run: train state, data-iterator state and run metadata, per step.

Saves are asynchronous (the next steps run while arrays are written). Restoring walks the steps
newest first and skips, with a warning, any that cannot be read, so a checkpoint torn by a crash
or a full disk never stops a resume.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) describing `tree`, the target of a restore."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      tree)


class Checkpointer:
  """Keeps the last `keep` checkpoints under `directory`, and always step 0 (the policy the RL
  phase started from: the SFT warm start, or the pretrained model), for evaluation and
  ablations."""

  def __init__(self, directory: str, *, keep: int = 3, use_async: bool = True):
    self.directory = os.path.abspath(directory)
    policy = ocp.checkpoint_managers.AnyPreservationPolicy([
        ocp.checkpoint_managers.LatestN(n=keep), ocp.checkpoint_managers.CustomSteps(steps=[0])])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, enable_async_checkpointing=use_async, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, data_state: dict, meta: dict) -> None:
    """Starts saving `state` (pytree), `data_state` and `meta` (JSON-able dicts) at `step`."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
        meta=ocp.args.JsonSave(meta)))

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict, dict]:
    """(state, data_state, meta) saved at `step`; raises if it is missing or unreadable."""
    if step not in self.all_steps():
      raise ValueError(f"no checkpoint for step {step} in {self.directory}; saved steps: "
                       f"{self.all_steps()}")
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore(),
        meta=ocp.args.JsonRestore()))
    jax.block_until_ready(restored["state"])
    return restored["state"], dict(restored["data"]), dict(restored["meta"])

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict, dict] | None:
    """(step, state, data_state, meta) of the newest readable checkpoint, or None."""
    for step in reversed(self.all_steps()):
      try:
        state, data_state, meta = self.restore(step, abstract_state)
      except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped, not fatal
        logging.warning("Skipping unreadable checkpoint %s/%d: %s: %s", self.directory, step,
                        type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        continue
      return step, state, data_state, meta
    return None

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
