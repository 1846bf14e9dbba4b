"""Export a run's policy as a Hugging Face model directory.

    rlvr-export --workdir=DIR [--checkpoint=latest|STEP|none] --out=OUT

(`python -m rlvr_jax.export` is the same command.) Reads the run's config from DIR/config.json
(written when the run started), restores the checkpoint as `rlvr-eval` does, and writes OUT:
config.json, model.safetensors, generation_config.json, tokenizer.json and tokenizer_config.json,
which `transformers.AutoModelForCausalLM` / `AutoTokenizer.from_pretrained(OUT)` load with no
code of ours. OUT must be empty or new.
"""

from __future__ import annotations

from absl import app, flags

from rlvr_jax import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (its config.json and checkpoints).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "latest, a step number, or none (the "
                                  "initial weights).")
_OUT = flags.DEFINE_string("out", None, "Directory to write the HF model into (empty or new).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from rlvr_jax.checkpoints import hf_export  # local: `--help` stays fast (no jax import)
  try:
    _, _, step = hf_export.export_run(_WORKDIR.value, _OUT.value, _CHECKPOINT.value)
  except ValueError as e:
    cli.fail(e)
  print(f"wrote {_OUT.value} (checkpoint {'none' if step is None else step})")


def run():
  """The `rlvr-export` console script."""
  flags.mark_flags_as_required(["workdir", "out"])
  cli.run(main, __doc__, _WORKDIR)


if __name__ == "__main__":
  run()
