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

from absl import app, flags, logging

from rlvr_jax import cli, plotting

_WORKDIR = flags.DEFINE_multi_string("workdir", None, "A run's directory, or a glob pattern "
                                     "whose matches are the run's seeds; repeat for each run.")
_OUT = flags.DEFINE_string("out", "curves.png", "Image to write (its extension picks the format).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  runs = list(dict.fromkeys(_WORKDIR.value))  # a run given twice is drawn once
  try:
    records = plotting.load_runs(runs)
    drawn = plotting.plot_runs(records, runs, _OUT.value)
  except (ValueError, OSError) as e:
    cli.fail(e)
  missing = [label for (label, _), key in zip(plotting.PANELS, drawn) if not key]
  if missing:
    logging.warning("no run has %s", ", ".join(missing))
  print(f"wrote {_OUT.value}: {len(runs)} runs, {len(records)} workdirs")


def run():
  """The `rlvr-plot` console script."""
  flags.mark_flags_as_required(["workdir"])
  cli.run(main, __doc__, _WORKDIR)


if __name__ == "__main__":
  run()
