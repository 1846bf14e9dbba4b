"""Compare runs: training curves of several runs in one figure, from their metrics.jsonl alone.

    rlvr-plot --workdir=A --workdir='B/seed*' [--out=FILE.png]

(`python -m rlvr_jax.plot` is the same command.) Each `--workdir` is one run, one colour. It may
be a glob pattern: the directories it matches that hold a metrics.jsonl are the seeds of that run
(e.g. `--workdir='exp/seed*/grpo'` for an ablation's layout, `--workdir='runs/grpo_s*'`), drawn
as their mean with a ± one standard error band, at the steps all of them have. Panels: train
reward, held-out accuracy, sample entropy, completion length, KL (to the reference policy where
the run has one, else old-to-new policy) and step time, against RL steps (top row) and against
RL wall-clock seconds, the sum of step times (bottom row). Only metrics.jsonl is read, so it
works on runs still in progress and on copies such as experiments/results/*/.
"""

from __future__ import annotations

import glob
import os

from absl import app, flags, logging

from rlvr_jax import cli, plotting

_WORKDIR = flags.DEFINE_multi_string("workdir", None, "A run's directory, or a glob pattern "
                                     "whose matches are the run's seeds; repeat for each run.")
_OUT = flags.DEFINE_string("out", "curves.png", "Image to write (its extension picks the format).")

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
    records += [{"variant": pattern, "seed": d, "rows": plotting.read_metrics(d)} for d in dirs]
  return records


def plot_runs(records: list[dict], runs: list[str], path: str) -> list[str]:
  """Draws `PANELS` for `runs` (variants of `records`) against steps and wall clock into `path`;
  returns the metric key drawn in each panel ('' where no run has one)."""
  try:
    import matplotlib  # local: `--help` stays fast
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
        plotting.plot_bands(ax, records, runs, key, wall=wall)
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  runs = list(dict.fromkeys(_WORKDIR.value))  # a run given twice is drawn once
  try:
    records = load_runs(runs)
    drawn = plot_runs(records, runs, _OUT.value)
  except (ValueError, OSError) as e:
    cli.fail(e)
  missing = [label for (label, _), key in zip(PANELS, drawn) if not key]
  if missing:
    logging.warning("no run has %s", ", ".join(missing))
  print(f"wrote {_OUT.value}: {len(runs)} runs, {len(records)} workdirs")


def run():
  """The `rlvr-plot` console script."""
  flags.mark_flags_as_required(["workdir"])
  cli.run(main, __doc__, _WORKDIR)


if __name__ == "__main__":
  run()
