"""Stored samples: completions sampled before RL, kept with their sampling log-probs, that every RL
step sees beside its rollout (the `stored_samples` need; DPH-RL's π₀ rows).

A file (`.npz`, written by `save`; `python -m rlvr_jax.prepare_dph` makes one) holds
  prompt_ids [S, p] int32 (left-padded), prompt_mask [S, p] int32,
  tokens [S, n] int32, mask [S, n] float32 (completion + EOS), logp [S, n] float32 (the sampling
  policy's log-probs of the tokens at the sampling temperature, 0 off the mask);
  train_index [E] int32 (optional): the rows of the RL training source the run trains on
  (DPH-RL's D_exp; absent: all of them);
  meta: a JSON object: the settings the rows depend on (`source_settings`) and how they were made.
The run checks the settings against its config before anything compiles (`check`), trains on
`train_index`'s prompts, and adds `data.stored_samples_per_step` rows (reshuffled each pass over
the file) to every batch as stored_prompt_ids, stored_prompt_mask, stored_ids, stored_mask,
stored_logp (`attach`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import grain
import numpy as np

from rlvr_jax.data import pipeline

ROWS = ("prompt_ids", "prompt_mask", "tokens", "mask", "logp")
BATCH_KEYS = {"prompt_ids": "stored_prompt_ids", "prompt_mask": "stored_prompt_mask",
              "tokens": "stored_ids", "mask": "stored_mask", "logp": "stored_logp"}
_DTYPES = {"prompt_ids": np.int32, "prompt_mask": np.int32, "tokens": np.int32,
           "mask": np.float32, "logp": np.float32}


@dataclasses.dataclass(frozen=True)
class StoredSamples:
  rows: dict[str, np.ndarray]
  train_index: np.ndarray | None
  meta: dict[str, Any]

  def __len__(self) -> int:
    return len(self.rows["tokens"])


def source_settings(config, shapes: pipeline.Shapes) -> dict[str, Any]:
  """What stored rows and a train index depend on: the task, the RL training source (its seed and
  size: `pipeline.rl_stream_seed`), the buffer widths and the sampling temperature (of logp)."""
  return {"task": config.task.name,
          "task_kwargs": json.loads(config.task.to_json_best_effort())["kwargs"],
          "source_seed": pipeline.rl_stream_seed(config.seed),
          "source_size": config.data.rl_train_size or config.data.train_size,
          "prompt_len": shapes.prompt_len, "completion_len": config.rl.max_new_tokens,
          "temperature": float(config.rl.temperature)}


def save(path: str, rows: dict[str, np.ndarray], meta: dict[str, Any],
         train_index: np.ndarray | None = None,
         extra: dict[str, np.ndarray] | None = None) -> None:
  """Writes the file atomically (a temporary file, then a rename); `extra` arrays are kept for
  the reader's analysis and ignored by `load`."""
  arrays = {**(extra or {}), **{k: np.asarray(rows[k], _DTYPES[k]) for k in ROWS}}
  if train_index is not None:
    arrays["train_index"] = np.asarray(train_index, np.int32)
  arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def load(path: str, field: str = "data.stored_samples") -> StoredSamples:
  """Reads a file written by `save`; a missing or malformed one raises ValueError naming `field`."""
  if not os.path.isfile(path):
    raise ValueError(f"config.{field}: {path!r} is not a file (write one with python -m "
                     "rlvr_jax.prepare_dph)")
  with np.load(path, allow_pickle=False) as f:
    missing = [k for k in ROWS + ("meta",) if k not in f.files]
    if missing:
      raise ValueError(f"config.{field}: {path!r} has no {missing[0]!r} array")
    rows = {k: f[k] for k in ROWS}
    train_index = f["train_index"] if "train_index" in f.files else None
    meta = json.loads(str(f["meta"]))
  n, (s, p), t = len(rows["tokens"]), rows["prompt_ids"].shape, rows["tokens"].shape[-1]
  for k in ROWS:
    want = (s, p) if k.startswith("prompt") else (n, t)
    if rows[k].shape != want or n != s:
      raise ValueError(f"config.{field}: {path!r}: {k} has shape {rows[k].shape}, expected "
                       f"{want}")
  return StoredSamples(rows, train_index, meta)


def check(stored: StoredSamples, settings: dict[str, Any], path: str,
          field: str = "data.stored_samples") -> None:
  """Raises ValueError naming `field` when the file was made for other settings
  (`source_settings`), holds no rows, or indexes past the training source."""
  for key, want in settings.items():
    got = stored.meta.get(key)
    if got != want:
      raise ValueError(f"config.{field}: {path!r} was made with {key}={got!r}, this config has "
                       f"{want!r}; make the file again for this config")
  if len(stored) == 0:
    raise ValueError(f"config.{field}: {path!r} holds no stored rows (no prompt passed the "
                     f"split: {stored.meta.get('summary', {})})")
  index = stored.train_index
  if index is not None and (len(index) == 0 or index.min() < 0
                            or index.max() >= settings["source_size"]):
    raise ValueError(f"config.{field}: {path!r}: its train_index is empty or points outside "
                     f"the {settings['source_size']} training examples")


class Subset:
  """The rows `index` of a random-access source, in that order."""

  def __init__(self, source, index: np.ndarray):
    self.source, self.index = source, np.asarray(index)

  def __len__(self) -> int:
    return len(self.index)

  def __getitem__(self, i: int):
    return self.source[int(self.index[i])]

  def __repr__(self) -> str:
    return f"Subset({self.source!r}, {len(self.index)} rows)"


class _RowSource:
  def __init__(self, rows: dict[str, np.ndarray]):
    self.rows = rows

  def __len__(self) -> int:
    return len(self.rows["tokens"])

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    return {BATCH_KEYS[k]: v[int(i)] for k, v in self.rows.items()}


def batches(stored: StoredSamples, per_step: int, *, seed: int,
            rows: tuple[int, int] | None = None) -> grain.MapDataset:
  """Endless batches of `per_step` stored rows (shuffled with `seed`, repeated); `rows=(start,
  stop)` keeps only those rows of each (one process's share, `parallel.process_rows`)."""
  ds = grain.MapDataset.source(_RowSource(stored.rows)).shuffle(seed=seed).repeat()
  if rows is not None and rows != (0, per_step):
    ds = pipeline._rows_of_each_batch(ds, per_step, *rows)  # pylint: disable=protected-access
    per_step = rows[1] - rows[0]
  return ds.batch(per_step, drop_remainder=True)


def attach(ds: grain.MapDataset, stored: grain.MapDataset) -> grain.MapDataset:
  """Batch i of `ds` with batch i of `stored`'s keys added."""
  return ds.map_with_index(lambda i, batch: {**batch, **stored[i]})
