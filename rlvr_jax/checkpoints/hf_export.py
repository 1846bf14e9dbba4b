"""A trained policy as a Hugging Face model directory that `transformers` loads with no code of
ours: `config.json` + `model.safetensors` (`hf.save`), `generation_config.json`, and the
tokenizer files (`tokenizers.hf_files.save`). Only the conversion lives here: a run's checkpoint
is exported by `rlvr_jax.export.export_run` (`rlvr-export`), which rebuilds the run.

A vocabulary padded past the tokenizer (`model.vocab_multiple`, or a larger `model.vocab_size`)
is cut back to the tokenizer's ids: our forward pass masks the padding ids out of the logits,
which HF's cannot, so the HF model gets only the rows of real tokens; its logits are then ours
on every id, and it samples and decodes exactly what ours can.

A policy with LoRA adapters (`models.lora`) exports either merged (`export`: W + (α/r)·A B, a
plain model) or as a PEFT adapter directory (`export_peft`: adapter_config.json +
adapter_model.safetensors) that `peft.PeftModel.from_pretrained(base_model, path)` loads onto the
HF base model.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import safetensors.numpy

from rlvr_jax.checkpoints import hf
from rlvr_jax.models import ModelConfig, Params, lora
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
  model_config, params = unpadded(model_config, lora.merge(params))  # LoRA: W + (α/r)·A B
  hf.config_to_hf(model_config)  # an architecture HF cannot express fails before any write
  ids = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
         "pad_token_id": tokenizer.pad_id}
  path = pathlib.Path(path)
  hf_files.save(tokenizer, path)
  hf.save(path, model_config, params, extra_config=ids)
  (path / "generation_config.json").write_text(json.dumps(ids, indent=2) + "\n")



def peft_tensors(params: Params) -> dict[str, np.ndarray]:
  """PEFT-named float32 tensors of the adapters in `params`: for our weight w of layer i,
  `base_model.model.model.layers.{i}.<HF module>.lora_A.weight` [r, in] and `.lora_B.weight`
  [out, r] (torch `nn.Linear` layout, PEFT's names without the adapter name), so that
  ΔW_hf = B_hf A_hf · α/r is the transpose of ours, (A B)ᵀ · α/r."""
  out = {}
  for key, adapter in lora.trainable(params)["layers"].items():
    name = key[:-len(lora.SUFFIX)]
    module = hf.module_name(name)
    a, b = np.asarray(adapter.a, np.float32), np.asarray(adapter.b, np.float32)
    l, r = a.shape[0], a.shape[-1]
    for i in range(l):
      prefix = f"base_model.model.model.layers.{i}.{module}"
      out[f"{prefix}.lora_A.weight"] = np.ascontiguousarray(a[i].reshape(-1, r).T)
      out[f"{prefix}.lora_B.weight"] = np.ascontiguousarray(b[i].reshape(r, -1).T)
  return out


def export_peft(path: str | pathlib.Path, params: Params, *,
                base_model_name_or_path: str | None = None) -> None:
  """Writes the PEFT adapter directory `path` (created if missing) for the LoRA adapters in
  `params`: adapter_config.json (LORA, r, lora_alpha = scale · r, target_modules the HF module
  names, no dropout, no bias) and adapter_model.safetensors (`peft_tensors`).

  Raises:
    ValueError: `params` carries no adapters, or adapters of different ranks or scales.
  """
  if not lora.has_adapters(params):
    raise ValueError("the params carry no LoRA adapters (lora.rank = 0): export the model "
                     "itself (`export`)")
  adapters = lora.trainable(params)["layers"]
  ranks = {a.a.shape[-1] for a in adapters.values()}
  scales = {a.scale for a in adapters.values()}
  if len(ranks) != 1 or len(scales) != 1:
    raise ValueError(f"PEFT's config holds one rank and alpha; the adapters have ranks "
                     f"{sorted(ranks)} and scales {sorted(scales)}")
  (rank,), (scale,) = ranks, scales
  modules = sorted(hf.module_name(k[:-len(lora.SUFFIX)]).rsplit(".", 1)[1] for k in adapters)
  config = {
      "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path":
      base_model_name_or_path, "r": rank, "lora_alpha": scale * rank, "lora_dropout": 0.0,
      "target_modules": modules, "bias": "none", "fan_in_fan_out": False,
      "use_rslora": False, "use_dora": False, "init_lora_weights": True,
      "modules_to_save": None, "inference_mode": True,
  }
  path = pathlib.Path(path)
  path.mkdir(parents=True, exist_ok=True)
  (path / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
  safetensors.numpy.save_file(peft_tensors(params), str(path / "adapter_model.safetensors"),
                              metadata={"format": "pt"})
