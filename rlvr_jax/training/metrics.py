"""Metrics for machines: `metrics.jsonl` (one JSON object a line) and TensorBoard events."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
from tensorboardX import SummaryWriter


def to_python(metrics: dict[str, Any]) -> dict[str, Any]:
  """Host scalars as plain floats/ints (JSON-able)."""
  out = {}
  for k, v in metrics.items():
    v = np.asarray(v)
    out[k] = v.item() if v.ndim == 0 else v.tolist()
  return out


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


class MetricsWriter:
  """Appends metric lines; on resume, drops lines written after the restored step."""

  def __init__(self, workdir: str, *, resume_step: int | None):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._truncate(resume_step)
    self._file = open(self.path, "a", encoding="utf-8")
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def _truncate(self, resume_step: int | None) -> None:
    if not os.path.exists(self.path):
      return
    kept = []
    if resume_step is not None:
      with open(self.path, encoding="utf-8") as f:
        for line in f:
          try:
            row = json.loads(line)
          except json.JSONDecodeError:  # a line torn by a kill mid-write
            continue
          if row.get("step", math.inf) <= resume_step:
            kept.append(line if line.endswith("\n") else line + "\n")
    with open(self.path, "w", encoding="utf-8") as f:
      f.writelines(kept)

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    row = strict_json_row({"step": int(step), **metrics})
    self._file.write(json.dumps(row, sort_keys=True, allow_nan=False) + "\n")
    self._file.flush()
    for k, v in metrics.items():  # TensorBoard plots NaN/inf as such: written unchanged
      if isinstance(v, (int, float)) and not isinstance(v, bool):
        self._tb.add_scalar(k, v, step)

  def close(self) -> None:
    self._file.close()
    self._tb.close()


class NullWriter:
  """What processes other than 0 get in a multi-process run: they write no files."""

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    del step, metrics

  def close(self) -> None:
    pass


def make_writer(workdir: str, *, resume_step: int | None,
                active: bool = True) -> MetricsWriter | NullWriter:
  """A MetricsWriter where `active` (process 0), else a NullWriter."""
  return MetricsWriter(workdir, resume_step=resume_step) if active else NullWriter()
