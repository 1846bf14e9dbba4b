"""Training: rlvr-train --config=configs/X.py[:variant] --workdir=DIR [--config.a.b=v]

Runs the SFT warm start and the RL phase, writes DIR/metrics.jsonl, TensorBoard events and
checkpoints under DIR/checkpoints, and resumes from them when rerun with the same workdir.
(`python -m rlvr_jax.main` is the same command.)
"""

import json
import logging as std_logging

from absl import app, flags, logging
from ml_collections import config_flags

from rlvr_jax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file.",
                                          lock_config=False, accept_new_attributes=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for metrics and checkpoints.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.")


def _quiet_libraries(record) -> bool:
  """Keeps orbax's per-save INFO chatter out of the console; warnings still show."""
  return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from rlvr_jax.training import loop  # local: `--help` stays fast (no jax import)
  logging.get_absl_logger().addFilter(_quiet_libraries)
  try:
    summary = loop.train(_CONFIG.value, _WORKDIR.value, progress=_PROGRESS.value)
  except (ValueError, loop.NonFiniteError) as e:
    cli.fail(e)
  print("summary: " + json.dumps(summary, sort_keys=True))


def run():
  """The `rlvr-train` console script."""
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main, __doc__, _WORKDIR)


if __name__ == "__main__":
  run()
