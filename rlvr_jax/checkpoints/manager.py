"""orbax checkpoints of a run: train state, data-iterator state and run metadata, per step.

Saves are asynchronous: the arrays are written while the next steps run, and a background
thread then writes the step's content manifest (`integrity.py`). Readers take the newest step
whose files match its manifest and whose data/meta are well-formed; the run's owner moves every
newer (torn, corrupted or unfinished) step into `quarantine/`, naming it in a warning, so that
step is trained and saved again. A save that orbax declines is an error.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from etils import epath
from absl import logging

from rlvr_jax.checkpoints import integrity

# (data_state, meta) -> why a checkpoint's JSON items are unusable, or None.
Check = Callable[[dict, dict], "str | None"]
SIGNATURE_KEY = integrity.SIGNATURE_KEY


class StateMismatchError(ValueError):
  """The checkpoint's state has another tree structure, shapes or dtypes than requested."""

  def __init__(self, step_dir: str, differences: list[str]):
    self.step_dir, self.differences = step_dir, differences
    shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
    super().__init__(f"checkpoint {step_dir} holds a differently shaped state "
                     f"({len(differences)} differences: {shown})")


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) describing `tree`, the target of a restore."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      tree)


def _sync(name: str) -> None:
  """Barrier across processes, so none reads a step while process 0 moves it."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # local: only multi-process runs need it
    multihost_utils.sync_global_devices(name)


def _meta_problem(data_state: Any, meta: Any) -> str | None:
  if not isinstance(data_state, dict) or not isinstance(meta, dict):
    return "data or meta is not a JSON object"
  if not isinstance(meta.get(SIGNATURE_KEY), dict):
    return f"meta has no {SIGNATURE_KEY}"
  return None


class Checkpointer:
  """Keeps the last `keep` checkpoints under `directory`, and always step 0 (the policy the RL
  phase started from: the SFT warm start, or the pretrained model), for evaluation and
  ablations.

  Only the owner (`read_only=False`: the training run) saves and quarantines; other readers
  (evaluation, possibly while the run is writing) skip unreadable steps without moving them.
  In a multi-process run every process checks the same files and so picks the same step;
  process 0 alone writes manifests and moves steps, between barriers.

  `before_manifest(step)` runs just before a step's manifest is written (fault injection).
  """

  def __init__(self, directory: str, *, keep: int = 3, use_async: bool = True,
               read_only: bool = False, before_manifest: Callable[[int], None] | None = None):
    self.directory = os.path.abspath(directory)
    self.read_only = read_only
    self._use_async = use_async and not read_only
    self._before_manifest = before_manifest
    self._finisher: threading.Thread | None = None
    self._finisher_error: BaseException | None = None
    policy = ocp.checkpoint_managers.AnyPreservationPolicy([
        ocp.checkpoint_managers.LatestN(n=keep), ocp.checkpoint_managers.CustomSteps(steps=[0])])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, enable_async_checkpointing=self._use_async,
        create=not read_only)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  # -- saving -----------------------------------------------------------------------------------
  def save(self, step: int, state: Any, data_state: dict, meta: dict) -> None:
    """Starts saving `state` (pytree), `data_state` and `meta` (JSON-able dicts) at `step`;
    raises if orbax declines (e.g. the step exists). The manifest follows when it finishes."""
    if self.read_only:
      raise ValueError(f"{self.directory} was opened read-only; cannot save step {step}")
    self._join_finisher()
    meta = {**meta, SIGNATURE_KEY: integrity.signature(state)}
    saved = self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
        meta=ocp.args.JsonSave(meta)))
    if not saved:
      raise RuntimeError(f"checkpoint step {step} was not saved in {self.directory}: orbax "
                         f"declined it (saved steps: {self.all_steps()})")
    if self._use_async:  # the next steps run while the arrays are written
      self._finisher = threading.Thread(target=self._finish_in_background, args=(step,),
                                        name=f"manifest-{step}", daemon=True)
      self._finisher.start()
    else:
      self._finish(step)

  def _finish(self, step: int) -> None:
    self._manager.wait_until_finished()
    if jax.process_index() == 0:
      if self._before_manifest is not None:
        self._before_manifest(step)
      integrity.write_manifest(self.step_dir(step))

  def _finish_in_background(self, step: int) -> None:
    try:
      self._finish(step)
    except BaseException as e:  # noqa: BLE001 - re-raised in the main thread by _join_finisher
      self._finisher_error = e

  def _join_finisher(self) -> None:
    if self._finisher is not None:
      self._finisher.join()
      self._finisher = None
    if self._finisher_error is not None:
      error, self._finisher_error = self._finisher_error, None
      raise RuntimeError(f"saving a checkpoint in {self.directory} failed") from error

  # -- reading ----------------------------------------------------------------------------------
  def _problem(self, step: int, check: Check | None) -> str | None:
    """Why `step` cannot be restored (files vs manifest, then its JSON items), or None."""
    problem = integrity.manifest_problem(self.step_dir(step))
    if problem is not None:
      return problem
    items = self._manager.restore(step, args=ocp.args.Composite(
        data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
    data_state, meta = items["data"], items["meta"]
    problem = _meta_problem(data_state, meta)
    if problem is None and check is not None:
      problem = check(dict(data_state), dict(meta))
    return problem

  def _restore_state(self, step: int, abstract_state: Any) -> tuple[Any, dict, dict]:
    """(state, data_state, meta) of a verified step; raises StateMismatchError before reading
    any array when its saved signature differs from `abstract_state`'s."""
    items = self._manager.restore(step, args=ocp.args.Composite(
        data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
    data_state, meta = dict(items["data"]), dict(items["meta"])
    differences = integrity.signature_diff(meta[SIGNATURE_KEY],
                                           integrity.signature(abstract_state))
    if differences:
      raise StateMismatchError(self.step_dir(step), differences)
    target, rebuild = self._restore_target(step, abstract_state)
    state = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))["state"]
    jax.block_until_ready(state)
    return rebuild(state), data_state, meta

  def _restore_target(self, step: int, abstract_state: Any) -> tuple[Any, Callable[[Any], Any]]:
    """(target, rebuild): the orbax restore target for `abstract_state` and the function that
    turns what orbax returns back into its type.

    orbax requires the target's tree structure to equal the saved one. A state field added
    after a checkpoint was written (e.g. TrainState.rollouts) is absent from it, so when the
    state is a dataclass whose fields the checkpoint lacks, the target is a dict of the saved
    fields and the missing ones come back as None. They can only be None here: the signature
    check before this has matched every array of `abstract_state` to the checkpoint's.
    """
    if not dataclasses.is_dataclass(abstract_state):
      return abstract_state, lambda state: state
    saved = ocp.StandardCheckpointHandler().metadata(epath.Path(self.step_dir(step), "state"))
    saved_keys = set(getattr(saved, "tree", saved))
    fields = {f.name: getattr(abstract_state, f.name)
              for f in dataclasses.fields(abstract_state)}
    if set(fields) <= saved_keys:
      return abstract_state, lambda state: state
    missing = set(fields) - saved_keys
    return ({k: v for k, v in fields.items() if k not in missing},
            lambda state: type(abstract_state)(**state, **dict.fromkeys(missing)))

  def restore(self, step: int, abstract_state: Any, *, check: Check | None = None
              ) -> tuple[Any, dict, dict]:
    """(state, data_state, meta) saved at `step`; ValueError if it is missing or unreadable."""
    self._require_readable(step, check)
    return self._restore_state(step, abstract_state)

  def _require_readable(self, step: int, check: Check | None) -> None:
    """ValueError unless `step` is saved and passes its manifest and `check`."""
    if step not in self.all_steps():
      raise ValueError(f"no checkpoint for step {step} in {self.directory}; saved steps: "
                       f"{self.all_steps()}")
    problem = self._problem(step, check)
    if problem is not None:
      raise ValueError(f"checkpoint {self.step_dir(step)} is unreadable: {problem}")

  def restore_field(self, step: int, field: str, abstract: Any) -> Any:
    """Field `field` of the state saved at `step` (e.g. the policy `params` of a run whose state
    also holds a reference, critic, PRM or APRIL buffer), read alone with orbax's partial
    restore: the rest of the state is neither read nor needed in `abstract`, the field's
    ShapeDtypeStructs (with shardings). Its saved shapes must equal `abstract`'s: otherwise
    StateMismatchError (a ValueError) naming the differences, before any array is read."""
    self._require_readable(step, None)
    meta = self._manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"]
    prefix = "." + field
    saved = {k: v for k, v in meta[SIGNATURE_KEY].items()
             if k == prefix or k.startswith((prefix + "[", prefix + "."))}
    expected = {prefix + k: v for k, v in integrity.signature(abstract).items()}
    differences = integrity.signature_diff(saved, expected)
    if differences:
      raise StateMismatchError(self.step_dir(step), differences)
    restore_args = jax.tree.map(lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding), abstract)
    restored = ocp.PyTreeCheckpointHandler().restore(
        epath.Path(self.step_dir(step), "state"),
        args=ocp.args.PyTreeRestore(item={field: abstract}, restore_args={field: restore_args},
                                    partial_restore=True))[field]
    jax.block_until_ready(restored)
    return restored

  def newest_readable(self, check: Check | None = None) -> int | None:
    """The newest step that passes its manifest and `check`, or None. Newer steps are
    quarantined by the owner, skipped by other readers; each is named in a warning."""
    found, moved = None, False
    for step in reversed(self.all_steps()):
      problem = self._problem(step, check)
      if problem is None:
        found = step
        break
      if integrity.predates_manifests(self.step_dir(step)):
        problem = "written before checkpoints carried content manifests"
        if not self.read_only:  # never move a whole older run aside and start it over
          raise ValueError(f"{self.step_dir(step)} was {problem}, so it cannot be verified; "
                           "finish that run with the rlvr_jax version that started it, or use "
                           "a new --workdir")
      if self.read_only:
        logging.warning("Skipping unreadable checkpoint %s: %s", self.step_dir(step), problem)
        continue
      _sync(f"rlvr_quarantine_{step}")
      if jax.process_index() == 0:
        dest = integrity.quarantine(self.directory, step)
        logging.warning("Quarantined unreadable checkpoint %s (%s): moved to %s",
                        self.step_dir(step), problem, dest)
      moved = True
    if moved:
      _sync("rlvr_quarantine_done")
      self._manager.reload()
    return found

  def restore_latest(self, abstract_state: Any, *, check: Check | None = None
                     ) -> tuple[int, Any, dict, dict] | None:
    """(step, state, data_state, meta) of the newest readable checkpoint, or None."""
    step = self.newest_readable(check)
    if step is None:
      return None
    return (step, *self._restore_state(step, abstract_state))

  # -- lifecycle --------------------------------------------------------------------------------
  def wait(self) -> None:
    """Blocks until the last save, manifest included, is finished."""
    self._manager.wait_until_finished()
    self._join_finisher()

  def close(self) -> None:
    self.wait()
    self._manager.close()
