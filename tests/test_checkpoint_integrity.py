"""Checkpoint manifests, quarantine, declined saves, state signatures and metrics set-aside
(in-process, tiny trees: seconds)."""

import json
import os

import flax.struct
import jax
import numpy as np
import pytest

from rlvr_jax.checkpoints import integrity
from rlvr_jax.checkpoints.manager import Checkpointer, StateMismatchError
from rlvr_jax.training import metrics as metrics_lib
from rlvr_jax.training import resume

ABSTRACT = {"w": jax.ShapeDtypeStruct((4096,), np.float32)}  # data: the largest file
RNG_META = {"rng_key_data": [0, 0]}
CHECK = resume.checkpoint_check({"next_index": 0}, RNG_META)


def _state(step):
  return {"w": np.arange(4096, dtype=np.float32) + step}


def _saved(tmp_path, steps, *, use_async=False):
  ckpt = Checkpointer(str(tmp_path / "checkpoints"), keep=10, use_async=use_async)
  for step in steps:
    ckpt.save(step, _state(step), {"next_index": step}, dict(RNG_META))
  ckpt.wait()
  return ckpt


def _biggest_file(step_dir):
  """The largest checkpoint file (the manifest aside): the array data here."""
  files = [os.path.join(step_dir, f) for f in integrity._files(str(step_dir))]
  return max(files, key=os.path.getsize)


def _flip(path):
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0xFF
  open(path, "wb").write(bytes(data))


def _truncate(path):
  os.truncate(path, os.path.getsize(path) // 2)


def test_manifest_catches_truncation_flipped_bytes_and_missing_or_extra_files(tmp_path):
  ckpt = _saved(tmp_path, [0])
  ckpt.close()
  step_dir = str(tmp_path / "checkpoints" / "0")
  assert integrity.manifest_problem(step_dir) is None
  snapshot = {f: open(os.path.join(step_dir, f), "rb").read() for f in integrity._files(step_dir)}
  corruptions = {
      "sha256 differs": lambda: _flip(_biggest_file(step_dir)),
      "size differs": lambda: _truncate(_biggest_file(step_dir)),
      "files missing ['state/_METADATA']": lambda: os.remove(os.path.join(step_dir, "state",
                                                                        "_METADATA")),
      "not in the manifest ['stray']": lambda: open(os.path.join(step_dir, "stray"), "w").close(),
      f"no {integrity.MANIFEST}": lambda: os.remove(os.path.join(step_dir, integrity.MANIFEST)),
  }
  for expected, corrupt in corruptions.items():
    corrupt()
    assert expected in integrity.manifest_problem(step_dir)
    # restore the pristine bytes for the next corruption
    for f in set(integrity._files(step_dir)) - set(snapshot):
      os.remove(os.path.join(step_dir, f))
    for f, data in snapshot.items():
      open(os.path.join(step_dir, f), "wb").write(data)
    integrity.write_manifest(step_dir)
    assert integrity.manifest_problem(step_dir) is None


def test_async_save_writes_its_manifest_once_finished(tmp_path):
  ckpt = _saved(tmp_path, [0, 1, 2], use_async=True)
  ckpt.close()
  for step in (0, 1, 2):
    assert integrity.manifest_problem(str(tmp_path / "checkpoints" / str(step))) is None


def test_a_save_that_does_not_happen_raises(tmp_path):
  ckpt = _saved(tmp_path, [0, 1, 2])
  try:
    for step in (2, 1):  # the step exists / is older than the newest: orbax declines
      with pytest.raises(RuntimeError, match=f"checkpoint step {step} was not saved"):
        ckpt.save(step, _state(step), {"next_index": step}, dict(RNG_META))
  finally:
    ckpt.close()


@pytest.mark.parametrize("corrupt", [_flip, _truncate, os.remove])
def test_corrupt_newest_is_quarantined_and_the_previous_restored_exactly(tmp_path, corrupt):
  ckpt = _saved(tmp_path, [0, 1, 2])
  step_dir = tmp_path / "checkpoints" / "2"
  corrupt(_biggest_file(step_dir))
  kept = sorted(integrity._files(str(step_dir)))
  try:
    step, state, data, meta = ckpt.restore_latest(ABSTRACT, check=CHECK)
    assert step == 1 and data == {"next_index": 1} and meta["rng_key_data"] == [0, 0]
    np.testing.assert_array_equal(state["w"], _state(1)["w"])
    assert ckpt.all_steps() == [0, 1]
    (moved,) = os.listdir(tmp_path / "checkpoints" / integrity.QUARANTINE)
    assert moved.startswith("2-")
    assert sorted(integrity._files(str(tmp_path / "checkpoints" / "quarantine" / moved))) == kept
    # The step can be saved again now, and it verifies.
    ckpt.save(2, _state(2), {"next_index": 2}, dict(RNG_META))
    ckpt.wait()
    assert integrity.manifest_problem(str(step_dir)) is None
  finally:
    ckpt.close()


def test_valid_but_wrong_iterator_json_is_quarantined_not_a_key_error(tmp_path):
  ckpt = _saved(tmp_path, [0, 1])
  step_dir = str(tmp_path / "checkpoints" / "1")
  with open(os.path.join(step_dir, "data", "metadata"), "w") as f:
    json.dump({"unexpected": [1]}, f)
  integrity.write_manifest(step_dir)  # well-formed bytes: only the content check can tell
  try:
    step, state, data, _ = ckpt.restore_latest(ABSTRACT, check=CHECK)
    assert step == 0 and data == {"next_index": 0}
    np.testing.assert_array_equal(state["w"], _state(0)["w"])
    assert len(os.listdir(tmp_path / "checkpoints" / integrity.QUARANTINE)) == 1
  finally:
    ckpt.close()


def test_readers_skip_unreadable_steps_without_moving_them(tmp_path):
  _saved(tmp_path, [0, 1]).close()
  step_dir = tmp_path / "checkpoints" / "1"
  _flip(_biggest_file(step_dir))
  reader = Checkpointer(str(tmp_path / "checkpoints"), read_only=True)
  try:
    step, state, _, _ = reader.restore_latest(ABSTRACT)
    assert step == 0
    with pytest.raises(ValueError, match="checkpoint .*/1 is unreadable: .*sha256 differs"):
      reader.restore(1, ABSTRACT)
  finally:
    reader.close()
  assert os.path.isdir(step_dir) and not os.path.exists(tmp_path / "checkpoints" / "quarantine")


def test_a_differently_shaped_state_is_refused_and_nothing_moves(tmp_path):
  ckpt = _saved(tmp_path, [0, 1])
  try:
    with pytest.raises(StateMismatchError, match=r"\['w'\]: checkpoint \[4096\] float32, config "
                                                 r"\[32\] float32"):
      ckpt.restore_latest({"w": jax.ShapeDtypeStruct((32,), np.float32)}, check=CHECK)
    assert ckpt.all_steps() == [0, 1]
    assert not os.path.exists(tmp_path / "checkpoints" / "quarantine")
  finally:
    ckpt.close()


@flax.struct.dataclass
class _OldState:
  step: jax.Array
  params: dict
  extra: dict | None = None


@flax.struct.dataclass
class _NewState:  # a field added since _OldState's checkpoints were written
  step: jax.Array
  params: dict
  extra: dict | None = None
  added: dict | None = None


def test_a_checkpoint_from_before_a_new_none_field_restores_it_as_none(tmp_path):
  old = _OldState(step=np.int32(3), params={"w": np.arange(8, dtype=np.float32)})
  ckpt = Checkpointer(str(tmp_path / "checkpoints"), use_async=False)
  try:
    ckpt.save(3, old, {"next_index": 3}, dict(RNG_META))
    ckpt.wait()
    abstract = _NewState(step=jax.ShapeDtypeStruct((), np.int32),
                         params={"w": jax.ShapeDtypeStruct((8,), np.float32)})
    step, state, _, _ = ckpt.restore_latest(abstract, check=CHECK)
    assert step == 3 and isinstance(state, _NewState)
    assert state.added is None and state.extra is None and int(state.step) == 3
    np.testing.assert_array_equal(state.params["w"], old.params["w"])
    # the added field is restored as None only while it holds no arrays: one that does is a
    # differently shaped state, refused by the signature check
    with pytest.raises(StateMismatchError):
      ckpt.restore_latest(abstract.replace(added={"v": jax.ShapeDtypeStruct((2,), np.float32)}),
                          check=CHECK)
  finally:
    ckpt.close()


def test_metrics_rows_after_the_resume_step_are_moved_aside_never_lost(tmp_path):
  path = tmp_path / "metrics.jsonl"
  rows = [json.dumps({"step": s, "x": s / 2}) + "\n" for s in range(6)]
  torn = '{"step": 6, "x"'
  path.write_text("".join(rows) + torn)
  aside = metrics_lib.set_aside_after(str(path), 3)
  assert os.path.basename(aside).startswith("metrics.jsonl.after_step_3.")
  assert path.read_text() == "".join(rows[:4])
  assert open(aside).read() == "".join(rows[4:]) + torn
  assert metrics_lib.set_aside_after(str(path), 3) is None  # nothing newer left: untouched
  fresh = metrics_lib.set_aside_after(str(path), None)  # a fresh start keeps no row
  assert path.read_text() == "" and open(fresh).read() == "".join(rows[:4])
  assert fresh != aside and os.path.exists(aside)


def test_checkpoints_from_before_manifests_stop_the_owner_and_are_never_moved(tmp_path):
  _saved(tmp_path, [0, 1]).close()
  for step in (0, 1):  # what the previous code left: no manifest, no signature in meta
    step_dir = tmp_path / "checkpoints" / str(step)
    os.remove(step_dir / integrity.MANIFEST)
    (step_dir / "meta" / "metadata").write_text(json.dumps(RNG_META))
  ckpt = Checkpointer(str(tmp_path / "checkpoints"), use_async=False)
  try:
    with pytest.raises(ValueError, match="written before checkpoints carried content manifests"):
      ckpt.restore_latest(ABSTRACT, check=CHECK)
  finally:
    ckpt.close()
  reader = Checkpointer(str(tmp_path / "checkpoints"), read_only=True)
  try:
    assert reader.restore_latest(ABSTRACT) is None
  finally:
    reader.close()
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["0", "1"]
