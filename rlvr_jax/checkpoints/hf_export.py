"""A trained policy as a Hugging Face model directory that `transformers` loads with no code of
ours: `config.json` + `model.safetensors` (`hf.save`), `generation_config.json`, and the
tokenizer files (`tokenizers.hf_files.save`). Only the conversion lives here: a run's checkpoint
is exported by `rlvr_jax.export.export_run` (`rlvr-export`), which rebuilds the run.

A vocabulary padded past the tokenizer (`model.vocab_multiple`, or a larger `model.vocab_size`)
is cut back to the tokenizer's ids: our forward pass masks the padding ids out of the logits,
which HF's cannot, so the HF model gets only the rows of real tokens; its logits are then ours
on every id, and it samples and decodes exactly what ours can.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from rlvr_jax.checkpoints import hf
from rlvr_jax.models import ModelConfig, Params
from rlvr_jax.tokenizers import Tokenizer, hf_files


def unpadded(model_config: ModelConfig, params: Params) -> tuple[ModelConfig, Params]:
  """(config, params) without the padding rows of the vocabulary (ids >= valid_vocab_size):
  embed [v, d] -> [valid, d], lm_head [d, v] -> [d, valid]; unchanged when nothing is masked."""
  if not model_config.masks_vocab:
    return model_config, params
  valid = model_config.valid_vocab_size
  params = dict(params, embed=params["embed"][:valid])
  if "lm_head" in params:
    params["lm_head"] = params["lm_head"][:, :valid]
  return dataclasses.replace(model_config, vocab_size=valid, valid_vocab_size=None), params


def export(path: str | pathlib.Path, model_config: ModelConfig, params: Params,
           tokenizer: Tokenizer) -> None:
  """Writes the HF directory `path` (created if missing) for the policy `params` and the
  `tokenizer` it was trained with.

  Raises:
    ValueError: the architecture has no HF equivalent (e.g. q/k norm with a q/k/v bias), the
      params carry a value / reward head, or the tokenizer cannot be expressed in HF files.
  """
  if tokenizer.vocab_size > model_config.vocab_size:
    raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids, more than the model's "
                     f"{model_config.vocab_size} embeddings")
  model_config, params = unpadded(model_config, params)
  hf.config_to_hf(model_config)  # an architecture HF cannot express fails before any write
  ids = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
         "pad_token_id": tokenizer.pad_id}
  path = pathlib.Path(path)
  hf_files.save(tokenizer, path)
  hf.save(path, model_config, params, extra_config=ids)
  (path / "generation_config.json").write_text(json.dumps(ids, indent=2) + "\n")

