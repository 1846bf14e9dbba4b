"""`rlvr-prepare-dph` / `python -m rlvr_jax.prepare_dph`: DPH-RL's data split as a command (the
work is `rlvr_jax.evaluation.dph_split.split`; its docstring describes the flags and the file).

    rlvr-prepare-dph --config=configs/recipes/dph.py:cpu --out=FILE
        [--samples=8] [--min_pass_rate=1.0] [--stored_samples=1] [--batch_size=0]
        [--checkpoint=start | --workdir=DIR --checkpoint=none|latest|STEP] [--config.a.b=v]

The flags live here, not in the library module, so that importing the library (tests, notebooks)
defines no absl flags that could clash with another command's.
"""

from absl import app, flags
from ml_collections import config_flags

from rlvr_jax import cli
from rlvr_jax.evaluation.dph_split import split

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file.",
                                          lock_config=False, accept_new_attributes=True)
_OUT = flags.DEFINE_string("out", None, "The stored-samples file to write (.npz).")
_SAMPLES = flags.DEFINE_integer("samples", 8, "Samples of each training prompt for its pass rate.")
_MIN_PASS_RATE = flags.DEFINE_float("min_pass_rate", 1.0, "A prompt is in D_pef (always solved) "
                                    "when its pass rate is at least this.")
_STORED = flags.DEFINE_integer("stored_samples", 1, "Fresh samples of each D_pef prompt; the "
                               "correct ones are stored.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Prompts per sampling call; 0 = max(1, "
                                   "config.eval.batch_size // samples).")
_WORKDIR = flags.DEFINE_string("workdir", None, "A run directory whose checkpoint is π₀ "
                               "(with --checkpoint other than start).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "start", "start (the config's RL starting "
                                  "policy), none, latest or a step of --workdir.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    summary = split(_CONFIG.value, _OUT.value, samples=_SAMPLES.value,
                    min_pass_rate=_MIN_PASS_RATE.value, stored=_STORED.value,
                    batch_size=_BATCH_SIZE.value, workdir=_WORKDIR.value,
                    checkpoint=_CHECKPOINT.value, progress=_PROGRESS.value)
  except ValueError as e:
    cli.fail(e)
  print(f"{summary['prompts']} prompts: {summary['perfect']} always solved "
        f"({summary['stored_rows']} stored rows), {summary['explore']} to explore "
        f"(mean pass rate {summary['mean_pass_rate']:.3f}); wrote {summary['path']}")


def run():
  """The `rlvr-prepare-dph` console script."""
  flags.mark_flags_as_required(["config", "out"])
  cli.run(main, __doc__, _OUT)


if __name__ == "__main__":
  run()
