"""Training curves from metrics.jsonl: mean ± standard error over seeds, as lines with shaded
bands. Shared by `rlvr-plot` (rlvr_jax/plot.py: `load_runs`, `plot_runs`) and the ablations
(experiments/common.py).

A record is one run of one seed: {"variant": name, "seed": seed, "rows": metrics.jsonl rows};
the records of a variant are its seeds.
"""

from __future__ import annotations

import glob
import json
import math
import os
from typing import Any

import numpy as np


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The rows of `workdir/metrics.jsonl` (strict JSON, one object a line; NaN/inf were written
  as null). A last line without its newline is a row still being written by a running job and
  is left out; any other line that is not a JSON object raises ValueError naming file and line.
  Rows moved aside on resume (`metrics.jsonl.after_step_*`) are not read."""
  path = os.path.join(workdir, "metrics.jsonl")
  with open(path, encoding="utf-8") as f:
    lines = f.readlines()
  rows = []
  for i, line in enumerate(lines, start=1):
    if i == len(lines) and not line.endswith("\n"):
      break
    try:
      row = json.loads(line, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, ValueError) as e:
      raise ValueError(f"{path}:{i}: not a strict JSON line ({e})") from None
    if not isinstance(row, dict) or not isinstance(row.get("step"), int):
      raise ValueError(f"{path}:{i}: not a metrics row (a JSON object with an int step)")
    rows.append(row)
  return rows


def _refuse_constant(name: str):
  raise ValueError(f"{name} is not strict JSON")


def mean_se(values) -> tuple[float, float, int]:
  """(mean, standard error of the mean, n) of the finite values; se is nan for n < 2."""
  x = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
  if x.size == 0:
    return math.nan, math.nan, 0
  se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan
  return float(x.mean()), se, int(x.size)


def curve(records: list[dict], variant: str, key: str, phase: str = "rl"
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(steps, mean, se) of metric `key` over the seeds of `variant`, at the steps all seeds have
  (step 0, the shared SFT policy, included when the rows hold `key` there)."""
  per_seed = []
  for r in records:
    if r["variant"] != variant:
      continue
    per_seed.append({row["step"]: row[key] for row in r["rows"]
                     if key in row and row[key] is not None
                     and (row.get("phase") == phase or row["step"] == 0)})
  if not per_seed:
    return np.zeros(0), np.zeros(0), np.zeros(0)
  steps = sorted(set.intersection(*(set(s) for s in per_seed)))
  stats = [mean_se([s[t] for s in per_seed]) for t in steps]
  return (np.asarray(steps), np.asarray([m for m, _, _ in stats]),
          np.asarray([0.0 if math.isnan(se) else se for _, se, _ in stats]))


def wall_clock(record: dict, *, exclude_compile: bool = False) -> dict[int, float]:
  """Seconds of RL since the run started, at each RL step (sum of step_time_s). With
  `exclude_compile` the first RL step, which also traces and compiles the step (and is much
  faster when the XLA cache holds the program), counts the run's median step time instead."""
  rl = [row for row in record["rows"] if row.get("phase") == "rl"]
  median = float(np.median([row.get("step_time_s") or 0.0 for row in rl])) if rl else 0.0
  out, total = {}, 0.0
  for i, row in enumerate(rl):
    total += median if exclude_compile and i == 0 else (row.get("step_time_s") or 0.0)
    out[row["step"]] = total
  return out


def plot_bands(ax, records: list[dict], variants, key: str, *, label_fmt: str = "{}",
               wall: bool = False, colour_index: dict[str, int] | None = None) -> None:
  """Mean over seeds as a line, ± one standard error as a shaded band, one colour a variant
  (the variant's place in `variants`, or `colour_index[variant]` to keep colours across
  panels); against RL steps, or with `wall` against RL wall-clock seconds (`wall_curve`,
  compilation included)."""
  import matplotlib.pyplot as plt
  colours = plt.get_cmap("tab10").colors
  for i, v in enumerate(variants):
    i = colour_index[v] if colour_index else i
    steps, mean, se = (wall_curve(records, v, key, exclude_compile=False) if wall
                       else curve(records, v, key))
    if steps.size == 0:
      continue
    n = len({r["seed"] for r in records if r["variant"] == v})
    ax.plot(steps, mean, color=colours[i % 10], marker=".", label=label_fmt.format(v) + f" (n={n})")
    ax.fill_between(steps, mean - se, mean + se, color=colours[i % 10], alpha=0.2, linewidth=0)


def plot_training_curves(records: list[dict], variants, path: str,
                         panels=(("eval_accuracy", "held-out greedy accuracy"),
                                 ("reward_mean", "train reward (T=1 samples)"),
                                 ("sample_entropy", "sample entropy (nats/token)"))) -> None:
  """One panel a metric over RL steps (`plot_bands`: mean ± SE over seeds), saved to `path`."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
  for ax, (key, label) in zip(np.atleast_1d(axes), panels):
    plot_bands(ax, records, variants, key)
    ax.set_xlabel("RL step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
  np.atleast_1d(axes)[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def wall_curve(records: list[dict], variant: str, key: str = "eval_accuracy", *,
               exclude_compile: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(seconds, mean, se) of RL metric `key` over the seeds of `variant` against RL wall clock:
  at each step all seeds have, the seeds' mean `wall_clock` seconds (step 0, the SFT policy,
  at 0 s; compilation excluded unless `exclude_compile` is False)."""
  steps, mean, se = curve(records, variant, key)
  clocks = [wall_clock(r, exclude_compile=exclude_compile) for r in records
            if r["variant"] == variant]
  seconds = np.asarray([np.mean([c.get(int(t), 0.0) for c in clocks]) for t in steps])
  return seconds, mean, se


# (label, metric keys; the first key a run's rows hold is plotted)
PANELS = (
    ("train reward", ("reward_mean",)),
    ("held-out greedy accuracy", ("eval_accuracy",)),
    ("sample entropy (nats/token)", ("sample_entropy",)),
    ("completion length (tokens)", ("completion_tokens",)),
    ("KL", ("kl_ref", "approx_kl")),
    ("step time (s)", ("step_time_s",)),
)


def load_runs(patterns: list[str]) -> list[dict]:
  """`plotting` records, one per (run, seed): variant = the `--workdir` value as given, seed = the
  matched directory. Raises ValueError for a pattern that matches no directory with a
  metrics.jsonl, or a file that is not strict JSON."""
  records = []
  for pattern in patterns:
    dirs = sorted(d for d in glob.glob(pattern) if os.path.isfile(os.path.join(d, "metrics.jsonl")))
    if not dirs:
      raise ValueError(f"--workdir={pattern}: no directory with a metrics.jsonl")
    records += [{"variant": pattern, "seed": d, "rows": read_metrics(d)} for d in dirs]
  return records


def plot_runs(records: list[dict], runs: list[str], path: str) -> list[str]:
  """Draws `PANELS` for `runs` (variants of `records`) against steps and wall clock into `path`;
  returns the metric key drawn in each panel ('' where no run has one)."""
  try:
    import matplotlib  # local: only plotting needs it
  except ImportError:
    raise ValueError("rlvr-plot needs matplotlib: pip install matplotlib") from None
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(2, len(PANELS), figsize=(4 * len(PANELS), 7), squeeze=False)
  drawn = []
  for col, (label, keys) in enumerate(PANELS):
    key = next((k for k in keys if any(k in row for r in records for row in r["rows"])), "")
    drawn.append(key)
    for row, wall in enumerate((False, True)):
      ax = axes[row, col]
      if key:
        plot_bands(ax, records, runs, key, wall=wall)
      ax.set_title(f"{label}" + (f" [{key}]" if key and len(keys) > 1 else ""), fontsize=9)
      ax.set_xlabel("RL wall clock (s)" if wall else "RL step")
      ax.grid(alpha=0.3)
  handles, labels = next((ax.get_legend_handles_labels() for ax in axes.flat if ax.lines),
                         ([], []))
  fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 3) or 1, fontsize=8)
  fig.tight_layout(rect=(0, 0, 1, 0.92))
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return drawn
