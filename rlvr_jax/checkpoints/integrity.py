"""What makes a checkpoint trustworthy: a content manifest, quarantine, and a state signature.

Every finished checkpoint step directory gets `rlvr_manifest.json`: the sha256 and size of each
of its files (sorted relative paths). A step whose files do not match it byte for byte, or that
has none (the process died before orbax finished, or between orbax finishing and the manifest
write), is not read: the run's owner moves it under `<checkpoints>/quarantine/`, so the step can
be trained and saved again, and nothing is ever deleted.

The state signature (tree path -> shape and dtype of every leaf) is saved in each checkpoint's
metadata, so a config that changes the state's structure is refused before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import jax

MANIFEST = "rlvr_manifest.json"
QUARANTINE = "quarantine"
SIGNATURE_KEY = "state_signature"  # in each checkpoint's meta item
_CHUNK = 1 << 22


def _files(step_dir: str) -> list[str]:
  """Sorted relative paths of the regular files under `step_dir`, the manifest excluded."""
  out = []
  for root, _, names in os.walk(step_dir):
    for name in names:
      rel = os.path.relpath(os.path.join(root, name), step_dir)
      if rel != MANIFEST:
        out.append(rel)
  return sorted(out)


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      h.update(chunk)
  return h.hexdigest()


def write_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` so that a reader (or a kill) sees the old file or the new one."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_manifest(step_dir: str) -> None:
  """Records size and sha256 of every file of a finished checkpoint step."""
  files = {rel: {"size": os.path.getsize(os.path.join(step_dir, rel)),
                 "sha256": _sha256(os.path.join(step_dir, rel))} for rel in _files(step_dir)}
  write_atomic(os.path.join(step_dir, MANIFEST),
               json.dumps({"version": 1, "files": files}, indent=1, sort_keys=True))


def manifest_problem(step_dir: str) -> str | None:
  """Why the files of `step_dir` cannot be trusted, or None when they match its manifest."""
  path = os.path.join(step_dir, MANIFEST)
  if not os.path.isfile(path):
    return f"no {MANIFEST} (the save did not finish)"
  try:
    with open(path, encoding="utf-8") as f:
      files = json.load(f)["files"]
  except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
    return f"{MANIFEST} is unreadable ({type(e).__name__})"
  if not isinstance(files, dict):
    return f"{MANIFEST} is unreadable (files is a {type(files).__name__})"
  on_disk = set(_files(step_dir))
  missing, extra = sorted(files.keys() - on_disk), sorted(on_disk - files.keys())
  if missing or extra:
    return f"files missing {missing} / not in the manifest {extra}"
  for rel in sorted(files):
    path = os.path.join(step_dir, rel)
    expected = files[rel]
    if not isinstance(expected, dict) or os.path.getsize(path) != expected.get("size"):
      return f"{rel}: size differs from the manifest"
    if _sha256(path) != expected.get("sha256"):
      return f"{rel}: sha256 differs from the manifest"
  return None


def predates_manifests(step_dir: str) -> bool:
  """Whether `step_dir` was written by code that wrote no manifests: it has none, and its meta
  (orbax's JSON file, readable) has no state signature, which every newer save carries."""
  if os.path.exists(os.path.join(step_dir, MANIFEST)):
    return False
  try:
    with open(os.path.join(step_dir, "meta", "metadata"), encoding="utf-8") as f:
      meta = json.load(f)
  except (OSError, json.JSONDecodeError, UnicodeDecodeError):
    return False  # torn: an ordinary unreadable step
  return isinstance(meta, dict) and SIGNATURE_KEY not in meta


def quarantine(directory: str, step: int) -> str:
  """Moves step `step` of `directory` to `directory/quarantine/<step>-<time>`; returns the path."""
  base = os.path.join(directory, QUARANTINE, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
  dest, n = base, 1
  while os.path.exists(dest):
    dest, n = f"{base}.{n}", n + 1
  os.makedirs(os.path.dirname(dest), exist_ok=True)
  os.replace(os.path.join(directory, str(step)), dest)
  return dest


def signature(tree: Any) -> dict[str, list]:
  """{tree path: [shape, dtype]} of every leaf of `tree` (arrays or ShapeDtypeStructs)."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(path): [list(x.shape), str(x.dtype)] for path, x in leaves}


def signature_diff(saved: dict[str, list], expected: dict[str, list]) -> list[str]:
  """Human-readable differences between two signatures; empty when they are equal."""
  out = [f"{k} only in the checkpoint" for k in sorted(saved.keys() - expected.keys())]
  out += [f"{k} only in the config's state" for k in sorted(expected.keys() - saved.keys())]
  out += [f"{k}: checkpoint {saved[k][0]} {saved[k][1]}, config {expected[k][0]} {expected[k][1]}"
          for k in sorted(saved.keys() & expected.keys()) if saved[k] != expected[k]]
  return out
