"""Evaluation results on disk, laid out so that no sampling is ever lost.

    stem = eval_<checkpoint>_n<n>_t<temperature>_<digest of every sampling setting>
    <stem>.prompts.jsonl   a {"settings": ...} header, then one record per prompt, appended (and
                           fsynced) as each batch finishes: what a rerun resumes from
    <stem>.json            the table, written atomically once every prompt is done

Different settings give different stems, so one evaluation never overwrites another. The
settings include a fingerprint of the weights (`weights_fingerprint`), so a step retrained into
different weights never resumes from the old samples.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, IO

import jax
import jax.numpy as jnp
import numpy as np


def stem(settings: dict[str, Any]) -> str:
  """File name stem for `settings` (must hold checkpoint, n and temperature; all are hashed)."""
  blob = json.dumps(settings, sort_keys=True, allow_nan=False).encode()
  digest = hashlib.sha256(blob).hexdigest()[:10]
  return f"eval_{settings['checkpoint']}_n{settings['n']}_t{settings['temperature']:g}_{digest}"


@jax.jit
def _leaf_moments(params) -> list[jax.Array]:
  return [jnp.stack([jnp.sum(x.astype(jnp.float32)), jnp.sum(jnp.square(x.astype(jnp.float32)))])
          for x in jax.tree.leaves(params)]


def weights_fingerprint(params) -> str:
  """A short digest of the weights (each leaf's sum and sum of squares): one reduction, enough
  to tell a checkpoint retrained under the same step number from the one that was sampled."""
  moments = np.asarray(jax.device_get(_leaf_moments(params)), np.float32)
  return hashlib.sha256(moments.tobytes()).hexdigest()[:12]


def check_writable(directory: str) -> None:
  """Raises ValueError unless a file can be created in `directory` (created if missing)."""
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".write_check_"):
      pass
  except OSError as e:
    raise ValueError(f"cannot write evaluation results to {directory!r}: {e}") from e


def check_target(path: str) -> None:
  """Raises ValueError if `path` cannot be replaced by a file (e.g. a directory holds its name)."""
  if os.path.isdir(path):
    raise ValueError(f"cannot write evaluation results to {path!r}: it is a directory")
  if os.path.exists(path) and not os.access(path, os.W_OK):
    raise ValueError(f"cannot write evaluation results to {path!r}: it is read-only")


class PromptLog:
  """The per-prompt stream of one evaluation: `done` holds the records already on disk (a line
  torn by a kill is dropped), `append` adds a batch's records durably."""

  def __init__(self, path: str, settings: dict[str, Any]):
    check_target(path)
    self.path = path
    self.done: dict[int, dict[str, Any]] = {}
    good = self._read(settings)
    try:
      self._file: IO[str] = open(path, "r+" if os.path.exists(path) else "w", encoding="utf-8")
    except OSError as e:
      raise ValueError(f"cannot write evaluation results to {path!r}: {e}") from e
    self._file.truncate(good)  # drop a torn last line, so appends start on a fresh one
    self._file.seek(good)
    if good == 0:
      self._write([{"settings": settings}])

  def _read(self, settings: dict[str, Any]) -> int:
    """Loads the records of an earlier run; returns the byte length of its intact lines."""
    if not os.path.exists(path := self.path):
      return 0
    good = 0
    with open(path, "rb") as f:
      for number, line in enumerate(f):
        try:
          row = json.loads(line) if line.endswith(b"\n") else None
        except json.JSONDecodeError:
          row = None
        if row is None:
          break  # torn by a kill mid-write; nothing after it was written
        if number == 0 and row.get("settings") != settings:
          raise ValueError(f"{path}: holds results for other settings ({row.get('settings')}), "
                           f"not {settings}; move it aside")
        if number > 0:
          self.done[row["index"]] = row
        good += len(line)
    return good

  def _write(self, rows: list[dict[str, Any]]) -> None:
    self._file.writelines(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in rows)
    self._file.flush()
    os.fsync(self._file.fileno())

  def append(self, records: list[dict[str, Any]]) -> None:
    self._write(records)
    self.done.update((r["index"], r) for r in records)

  def close(self) -> None:
    self._file.close()

  def __enter__(self) -> PromptLog:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes `obj` to `path` through a temporary file and a rename: never half a file."""
  tmp = f"{path}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, allow_nan=False)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
