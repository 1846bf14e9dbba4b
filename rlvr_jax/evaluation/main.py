"""Held-out evaluation of a run: pass@k, maj@k and mean@k from n sampled completions per prompt.

    rlvr-eval --config=configs/X.py --workdir=DIR [--checkpoint=latest|STEP|none] [--n=8]
        [--k=1,4,8] [--temperature=1.0] [--num_prompts=N] [--config.a.b=v]

(`python -m rlvr_jax.evaluate` is the same command.) Writes DIR/eval_<step>_n<n>_t<T>_<digest>.json
and resumes an interrupted evaluation from its .prompts.jsonl; see rlvr_jax/evaluation/evaluate.py.
"""

from absl import app, flags
from ml_collections import config_flags

from rlvr_jax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a configs/*.py file.",
                                          lock_config=False, accept_new_attributes=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, results).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "latest, a step number, or none.")
_N = flags.DEFINE_integer("n", 8, "Samples per prompt.")
_K = flags.DEFINE_list("k", ["1", "4", "8"], "k values of the table; those > n are dropped "
                       "with a warning, and an error if none is left.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature (0 = greedy).")
_NUM_PROMPTS = flags.DEFINE_integer("num_prompts", 0,
                                    "Held-out prompts; 0 = config.eval.num_prompts.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Prompts per sampling call; 0 = "
                                   "max(1, config.eval.batch_size // n).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from rlvr_jax.evaluation import evaluate  # local: `--help` stays fast (no jax import)
  try:
    ks = [int(k) for k in _K.value]
    result = evaluate.run_eval(_CONFIG.value, _WORKDIR.value, checkpoint=_CHECKPOINT.value,
                               n=_N.value, ks=ks, temperature=_TEMPERATURE.value,
                               num_prompts=_NUM_PROMPTS.value, batch_size=_BATCH_SIZE.value,
                               progress=_PROGRESS.value)
  except ValueError as e:
    cli.fail(e)
  print(f"checkpoint {result['checkpoint']}: {result['num_prompts']} {result['task']} prompts, "
        f"n={result['n']}, temperature={result['temperature']}")
  print(evaluate.format_table(result["table"]))
  print(f"wrote {result['path']}")


def run():
  """The `rlvr-eval` console script."""
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main, __doc__, _WORKDIR)


if __name__ == "__main__":
  run()
