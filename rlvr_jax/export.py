"""Export a run's policy as a Hugging Face model directory.

    rlvr-export --workdir=DIR [--checkpoint=latest|STEP|none] [--lora=merged|adapter] --out=OUT

(`python -m rlvr_jax.export` is the same command.) Reads the run's config from DIR/config.json
(written when the run started), restores the checkpoint as `rlvr-eval` does, and writes OUT:
config.json, model.safetensors, generation_config.json, tokenizer.json and tokenizer_config.json,
which `transformers.AutoModelForCausalLM` / `AutoTokenizer.from_pretrained(OUT)` load with no
code of ours. OUT must be empty or new. A LoRA run (lora.rank > 0) exports merged weights
(W + (α/r)·A B) that way, or with --lora=adapter a PEFT adapter directory (adapter_config.json,
adapter_model.safetensors) for `peft.PeftModel.from_pretrained(<the HF base model>, OUT)`.
"""

from __future__ import annotations

import os

from absl import app, flags

from rlvr_jax import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (its config.json and checkpoints).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "latest, a step number, or none (the "
                                  "initial weights).")
_OUT = flags.DEFINE_string("out", None, "Directory to write the HF model into (empty or new).")
_LORA = flags.DEFINE_enum("lora", "merged", ["merged", "adapter"], "A LoRA run: a merged HF model, "
                          "or the PEFT adapter directory alone.")


def export_run(workdir: str, out: str, checkpoint: str = "latest", lora: str = "merged"):
  """Writes the HF directory `out` for `checkpoint` ("latest", a step or "none") of the run in
  `workdir` (with `lora="adapter"`, the PEFT adapter directory of a LoRA run); returns (the
  `run.Run` rebuilt from its config.json, the exported params, their step; None for "none").
  Raises ValueError (one line) for a bad argument or an unexportable run.
  """
  # local: `--help` stays fast (no jax import)
  from rlvr_jax.checkpoints import hf_export
  from rlvr_jax.evaluation import evaluate
  from rlvr_jax.training import workdir as workdir_lib
  from rlvr_jax.training.run import Run
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise ValueError(f"--out={out}: exists and is not an empty directory")
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    raise ValueError(f"--out={out}: cannot be created ({e.strerror})") from None
  run = Run(workdir_lib.run_config(workdir))
  if lora == "adapter" and run.lora is None:
    raise ValueError(f"--lora=adapter: the run in {workdir} has no LoRA adapters (lora.rank = 0)")
  params, step = evaluate.restore_params(run, workdir, checkpoint)
  try:
    if lora == "adapter":
      init = run.config.init
      hf_export.export_peft(out, params,
                            base_model_name_or_path=init.path if init.kind == "hf" else None)
    else:
      hf_export.export(out, run.model_config, params, run.tokenizer)
  except ValueError as e:
    raise ValueError(f"cannot export {workdir}: {e}") from None
  return run, params, step


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    _, _, step = export_run(_WORKDIR.value, _OUT.value, _CHECKPOINT.value, _LORA.value)
  except ValueError as e:
    cli.fail(e)
  print(f"wrote {_OUT.value} (checkpoint {'none' if step is None else step})")


def run():
  """The `rlvr-export` console script."""
  flags.mark_flags_as_required(["workdir", "out"])
  cli.run(main, __doc__, _WORKDIR)


if __name__ == "__main__":
  run()
