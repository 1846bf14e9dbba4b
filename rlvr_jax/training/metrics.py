"""Metrics for machines: `metrics.jsonl` (one JSON object a line), TensorBoard events, and with
`config.logging.wandb` a Weights & Biases run; and `Lagged`, the one-step-late fetch of a step's
device metrics that the training loops (SFT, PRM, RL) share."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable
import uuid

import numpy as np
from absl import logging
from tensorboardX import SummaryWriter


def to_python(metrics: dict[str, Any]) -> dict[str, Any]:
  """Host scalars as plain floats/ints (JSON-able)."""
  out = {}
  for k, v in metrics.items():
    v = np.asarray(v)
    out[k] = v.item() if v.ndim == 0 else v.tolist()
  return out


class Lagged:
  """A pipelined loop's delayed metrics fetch: step k's device metrics are held while step k+1 is
  dispatched, and only then fetched, so the host never waits on step k before the devices have
  step k+1 queued.

  Contract:
    fetch(step, metrics_dev, **kwargs) -> host metrics: reads one step's metrics to the host and
      checks them (it may raise, e.g. NonFiniteError). It is called once per pushed step, in step
      order, never twice for a step, and only from `push` and `flush`.
    push(step, metrics_dev): call right after dispatching `step`. First fetches the step held
      before (if any), then holds `step`; returns the earlier step's (step, host metrics), or None
      if nothing was held.
    flush(**kwargs): fetches the held step now (before an evaluation, a save, or after the last
      step), passing `kwargs` on to `fetch`; returns its (step, host metrics), or None if nothing
      is held. A step pushed and never flushed or followed by another push is never fetched.
  """

  def __init__(self, fetch: Callable[..., dict[str, Any]]):
    self._fetch = fetch
    self._held: tuple[int, Any] | None = None  # (step, device metrics) not yet fetched

  def push(self, step: int, metrics_dev: Any) -> tuple[int, dict[str, Any]] | None:
    done = self.flush()
    self._held = (step, metrics_dev)
    return done

  def flush(self, **kwargs) -> tuple[int, dict[str, Any]] | None:
    if self._held is None:
      return None
    step, metrics_dev = self._held
    self._held = None
    return step, self._fetch(step, metrics_dev, **kwargs)


def strict_json_row(row: dict[str, Any]) -> dict[str, Any]:
  """`row` with every NaN/inf float (also inside lists) replaced by null, and the keys that held
  one listed under "non_finite", so the line is strict JSON (json.dumps(allow_nan=False))."""

  def clean(v):
    if isinstance(v, float) and not math.isfinite(v):
      return None, True
    if isinstance(v, (list, tuple)):
      items = [clean(x) for x in v]
      return [x for x, _ in items], any(bad for _, bad in items)
    return v, False

  out, bad_keys = {}, []
  for k, v in row.items():
    out[k], bad = clean(v)
    if bad:
      bad_keys.append(k)
  return {**out, "non_finite": bad_keys} if bad_keys else out


def _row_step(line: bytes) -> int | None:
  """The step of a metrics line, or None for a line torn by a kill mid-write (or garbled)."""
  try:
    row = json.loads(line)
  except (json.JSONDecodeError, UnicodeDecodeError):
    return None
  step = row.get("step") if isinstance(row, dict) else None
  return step if isinstance(step, int) and line.endswith(b"\n") else None


def _free_path(base: str) -> str:
  path, n = base, 1
  while os.path.exists(path):
    path, n = f"{base}.{n}", n + 1
  return path


def set_aside_after(path: str, resume_step: int | None) -> str | None:
  """Keeps the rows of `path` with step <= `resume_step` (none for a fresh start) and moves the
  others, torn lines included, to `<path>.after_step_<k>.<time>` (`.fresh_start.<time>`), never
  deleting a row.

  The moved rows are written first and the kept ones replace `path` atomically, so a kill at
  any point loses nothing (at worst a row is in both files). Returns the new file, if any.
  """
  if not os.path.exists(path):
    return None
  with open(path, "rb") as f:  # bytes: a garbled line is moved as it is
    lines = f.readlines()
  limit = -1 if resume_step is None else resume_step
  keep, aside = [], []
  for line in lines:
    step = _row_step(line)
    (keep if step is not None and step <= limit else aside).append(line)
  if not aside:
    return None
  label = "fresh_start" if resume_step is None else f"after_step_{resume_step}"
  aside_path = _free_path(f"{path}.{label}.{time.strftime('%Y%m%d-%H%M%S')}")
  for target, rows in ((aside_path, aside), (path, keep)):
    tmp = f"{target}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
      f.writelines(rows)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, target)
  return aside_path


def _scalars(metrics: dict[str, Any]) -> dict[str, float | int]:
  """The numeric entries (not bools); NaN/inf kept, which TensorBoard and wandb plot as such."""
  return {k: v for k, v in metrics.items()
          if isinstance(v, (int, float)) and not isinstance(v, bool)}


class WandbWriter:
  """Metric rows to a Weights & Biases run, the run's config logged once when it starts.

  The run id is kept in `workdir/wandb_run_id`, so a resumed run continues the same wandb run
  (rows of steps it already has are then dropped by wandb, with its warning). wandb is imported
  here only, so a run without `config.logging.wandb` never loads it or reaches its servers.
  """

  def __init__(self, workdir: str, config):
    import wandb  # local: the optional [wandb] extra, only with config.logging.wandb
    id_path = os.path.join(workdir, "wandb_run_id")
    if os.path.exists(id_path):
      with open(id_path, encoding="utf-8") as f:
        run_id = f.read().strip()
    else:
      run_id = uuid.uuid4().hex[:16]
      with open(id_path, "w", encoding="utf-8") as f:
        f.write(run_id + "\n")
    lg = config.logging
    self._run = wandb.init(project=lg.wandb_project,
                           name=lg.wandb_name or os.path.basename(os.path.abspath(workdir)),
                           entity=lg.wandb_entity or None, id=run_id, resume="allow",
                           config=json.loads(config.to_json_best_effort()))

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    self._run.log(_scalars(metrics), step=int(step))

  def close(self) -> None:
    self._run.finish()


class MetricsWriter:
  """Appends metric lines; on resume from step k, rows after k move to a file next to it. Every
  row also goes to TensorBoard, and with `config.logging.wandb` to a `WandbWriter`."""

  def __init__(self, workdir: str, *, resume_step: int | None, config=None):
    self.path = os.path.join(workdir, "metrics.jsonl")
    aside = set_aside_after(self.path, resume_step)
    if aside is not None:
      logging.warning("metrics.jsonl rows after step %s (newer than the checkpoint this run "
                      "starts from) moved to %s", resume_step, aside)
    self._file = open(self.path, "a", encoding="utf-8")
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    self._wandb = (WandbWriter(workdir, config)
                   if config is not None and config.logging.wandb else None)

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    row = strict_json_row({"step": int(step), **metrics})
    self._file.write(json.dumps(row, sort_keys=True, allow_nan=False) + "\n")
    self._file.flush()
    for k, v in _scalars(metrics).items():
      self._tb.add_scalar(k, v, step)
    if self._wandb is not None:
      self._wandb.write(step, metrics)

  def close(self) -> None:
    self._file.close()
    self._tb.close()
    if self._wandb is not None:
      self._wandb.close()


class NullWriter:
  """What processes other than 0 get in a multi-process run: they write no files."""

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    del step, metrics

  def close(self) -> None:
    pass


def make_writer(workdir: str, *, resume_step: int | None, active: bool = True,
                config=None) -> MetricsWriter | NullWriter:
  """A MetricsWriter where `active` (process 0), else a NullWriter; `config` (the run's) turns
  on the wandb writer where `config.logging.wandb`."""
  return (MetricsWriter(workdir, resume_step=resume_step, config=config) if active
          else NullWriter())
