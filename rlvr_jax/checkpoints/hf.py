"""Hugging Face safetensors checkpoints: Llama, Qwen2/2.5 and Qwen3 causal LMs, in and out.

A checkpoint is a directory with `config.json` and either `model.safetensors` or shards
`model-*.safetensors` listed by `model.safetensors.index.json`. Tensors are read with
`safetensors`' numpy backend, so loading needs neither torch nor transformers.

Layout conventions (HF `nn.Linear` weights are [out, in]; ours put the input axis first and split
heads out; l layers, d model, h query heads, k kv heads, e head dim, f feed-forward, v vocab):

  HF (per layer i, under `model.layers.{i}.`)      ours (stacked on a leading l axis)
  self_attn.q_proj.weight      [h*e, d]            wq       [l, d, h, e]
  self_attn.k_proj/v_proj      [k*e, d]            wk, wv   [l, d, k, e]
  self_attn.o_proj.weight      [d, h*e]            wo       [l, h, e, d]
  self_attn.{q,k,v}_proj.bias  [h*e] / [k*e]       bq [l, h, e], bk/bv [l, k, e]   (Qwen2)
  self_attn.{q,k}_norm.weight  [e]                 q_norm, k_norm [l, e]           (Qwen3)
  mlp.gate_proj/up_proj        [f, d]              w_gate, w_up [l, d, f]
  mlp.down_proj.weight         [d, f]              w_down   [l, f, d]
  input_layernorm / post_attention_layernorm [d]   attn_norm / mlp_norm [l, d]
  model.embed_tokens.weight    [v, d]              embed    [v, d]
  model.norm.weight            [d]                 final_norm [d]
  lm_head.weight               [v, d]              lm_head  [d, v]   (untied only)

Q/K projections keep HF's rotate-half RoPE row order, which is what `rlvr_jax.models` uses.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
import contextlib
import json
import math
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open
import safetensors.numpy

from rlvr_jax.models import ModelConfig, Params, init_params

_FAMILIES = {  # architectures[0] -> model_type
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}
_ARCHITECTURE_OF = {family: arch for arch, family in _FAMILIES.items()}

_LAYER_NAMES = {  # our per-layer weight -> HF name under `model.layers.{i}.`
    "attn_norm": "input_layernorm.weight",
    "wq": "self_attn.q_proj.weight",
    "wk": "self_attn.k_proj.weight",
    "wv": "self_attn.v_proj.weight",
    "wo": "self_attn.o_proj.weight",
    "bq": "self_attn.q_proj.bias",
    "bk": "self_attn.k_proj.bias",
    "bv": "self_attn.v_proj.bias",
    "q_norm": "self_attn.q_norm.weight",
    "k_norm": "self_attn.k_norm.weight",
    "mlp_norm": "post_attention_layernorm.weight",
    "w_gate": "mlp.gate_proj.weight",
    "w_up": "mlp.up_proj.weight",
    "w_down": "mlp.down_proj.weight",
}
_TOP_NAMES = {"embed": "model.embed_tokens.weight", "final_norm": "model.norm.weight",
              "lm_head": "lm_head.weight"}
# Linear weights: how many leading axes of ours make up the HF input dimension (the rest are the
# output dimension); HF stores the transpose, [out, in].
_LINEAR_IN_AXES = {"wq": 1, "wk": 1, "wv": 1, "wo": 2, "w_gate": 1, "w_up": 1, "w_down": 1,
                   "lm_head": 1}
# Non-persistent buffers that older transformers versions wrote into checkpoints.
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


# ---------------------------------------------------------------------------------------------
# Tensor sources
# ---------------------------------------------------------------------------------------------
class TensorSource(Mapping):
  """HF-named tensors read lazily, one at a time, so loading peaks at the model plus one
  stacked weight.

  Subclasses implement the Mapping interface (`__getitem__` returns the HF-layout array;
  `__contains__` must not read the tensor, as Mapping's default does) and `where`.
  """

  @abc.abstractmethod
  def where(self, name: str) -> str:
    """The file (and source tensor) holding `name`, for error messages."""


class _SafetensorsDir(TensorSource):
  """The tensors of a local HF checkpoint directory, single-file or sharded."""

  def __init__(self, path: pathlib.Path, stack: contextlib.ExitStack):
    index = path / "model.safetensors.index.json"
    if index.exists():
      weight_map = json.loads(index.read_text())["weight_map"]
      files = {name: path / shard for name, shard in weight_map.items()}
      shards = sorted(set(files.values()))
      for shard in shards:
        if not shard.exists():
          raise ValueError(f"{index}: lists shard {shard.name}, which does not exist")
    else:
      single = path / "model.safetensors"
      shards = [single] if single.exists() else sorted(path.glob("model-*.safetensors"))
      if not shards:
        raise ValueError(f"{path}: no model.safetensors, model.safetensors.index.json or "
                                f"model-*.safetensors")
      files = None
    self._handles = {s: stack.enter_context(safe_open(str(s), framework="numpy")) for s in shards}
    self._files = files or {name: s for s, h in self._handles.items() for name in h.keys()}
    # A missing tensor is "in" the index (or the single file) that should have listed it.
    self._missing_where = str(index if index.exists() else shards[0] if len(shards) == 1 else path)

  def __getitem__(self, name: str) -> np.ndarray:
    return self._handles[self._files[name]].get_tensor(name)

  def __contains__(self, name: object) -> bool:  # Mapping's default would read the tensor
    return name in self._files

  def __iter__(self) -> Iterator[str]:
    return iter(self._files)

  def __len__(self) -> int:
    return len(self._files)

  def where(self, name: str) -> str:
    return str(self._files[name]) if name in self._files else self._missing_where


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------
def _rope_from_hf(hf: dict[str, Any], source: str) -> tuple[float, dict[str, Any] | None]:
  """(rope_theta, rope_scaling) from transformers>=5 `rope_parameters` or the older
  `rope_theta` + `rope_scaling` keys."""
  params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
  if params and not ("rope_type" in params or "type" in params or "rope_theta" in params):
    raise ValueError(f"{source}: per-layer-type rope_parameters {params!r} are not supported")
  theta = float(params.get("rope_theta", hf.get("rope_theta", 10_000.0)))
  if hf.get("partial_rotary_factor", params.get("partial_rotary_factor", 1.0)) != 1.0:
    raise ValueError(f"{source}: partial_rotary_factor != 1 is not supported")
  rope_type = params.get("rope_type", params.get("type", "default"))
  if rope_type == "default":
    return theta, None
  if rope_type != "llama3":
    raise ValueError(f"{source}: rope type {rope_type!r} is not supported (default and llama3 are)")
  keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
  missing = [k for k in keys if k not in params]
  if missing:
    raise ValueError(f"{source}: llama3 rope scaling lacks {missing}")
  return theta, {"rope_type": "llama3", **{k: params[k] for k in keys}}


# The architecture numbers `config_from_hf` cannot default.
_REQUIRED_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size")


def config_from_hf(hf: dict[str, Any], *, dtype: str = "float32",
                   source: str = "config.json") -> ModelConfig:
  """`ModelConfig` from a parsed HF `config.json`; `source` names the file in errors.

  `dtype` becomes both the parameter and the compute dtype.
  """
  if not isinstance(hf, dict):
    raise ValueError(f"{source}: expected a JSON object, got {type(hf).__name__}")
  missing = [k for k in _REQUIRED_KEYS if k not in hf]
  if missing:
    raise ValueError(f"{source}: incomplete, lacks {', '.join(missing)}")
  arch = (hf.get("architectures") or [None])[0]
  family = _FAMILIES.get(arch) if arch else hf.get("model_type")
  if family not in _ARCHITECTURE_OF:
    raise ValueError(f"{source}: unsupported architecture {arch!r} (model_type "
                     f"{hf.get('model_type')!r}); supported: {sorted(_FAMILIES)}")
  if hf.get("hidden_act", "silu") != "silu":
    raise ValueError(f"{source}: hidden_act {hf['hidden_act']!r} is not supported (silu is)")
  # Llama's and Qwen3's attention_bias also adds an o_proj bias, which the model does not have.
  if family in ("llama", "qwen3") and hf.get("attention_bias"):
    raise ValueError(f"{source}: attention_bias=true is not supported for {arch}")
  if hf.get("mlp_bias"):
    raise ValueError(f"{source}: mlp_bias=true is not supported")
  layer_types = hf.get("layer_types") or ()
  if hf.get("use_sliding_window") or any(t != "full_attention" for t in layer_types):
    raise ValueError(f"{source}: sliding-window attention is not supported")
  rope_theta, rope_scaling = _rope_from_hf(hf, source)
  n_heads = hf["num_attention_heads"]
  head_dim = hf.get("head_dim")
  return ModelConfig(
      vocab_size=hf["vocab_size"],
      d_model=hf["hidden_size"],
      n_layers=hf["num_hidden_layers"],
      n_heads=n_heads,
      n_kv_heads=hf.get("num_key_value_heads") or n_heads,
      d_ff=hf["intermediate_size"],
      head_dim=None if head_dim in (None, hf["hidden_size"] // n_heads) else head_dim,
      rope_theta=rope_theta,
      rope_scaling=rope_scaling,
      norm_eps=hf.get("rms_norm_eps", 1e-6),
      qk_norm=family == "qwen3",
      qkv_bias=family == "qwen2",
      tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
      dtype=dtype,
      param_dtype=dtype,
  )


def config_to_hf(c: ModelConfig, *, max_position_embeddings: int = 32_768) -> dict[str, Any]:
  """The `config.json` dict for `c`: Qwen3 if it has q/k norm, Qwen2 if it has a q/k/v bias,
  else Llama.

  RoPE is written both as transformers>=5 `rope_parameters` and as the older `rope_theta` +
  `rope_scaling`, so either major version reads the same frequencies.
  """
  if c.qk_norm and c.qkv_bias:
    raise ValueError("no HF architecture has q/k norm with a q/k/v bias alone (Qwen3's "
                     "attention_bias also biases o_proj, which this model lacks)")
  family = "qwen3" if c.qk_norm else "qwen2" if c.qkv_bias else "llama"
  scaling = c.rope_scaling_dict
  hf = {
      "architectures": [_ARCHITECTURE_OF[family]],
      "model_type": family,
      "vocab_size": c.vocab_size,
      "hidden_size": c.d_model,
      "intermediate_size": c.d_ff,
      "num_hidden_layers": c.n_layers,
      "num_attention_heads": c.n_heads,
      "num_key_value_heads": c.n_kv_heads,
      "head_dim": c.resolved_head_dim,
      "hidden_act": "silu",
      "max_position_embeddings": max_position_embeddings,
      "rms_norm_eps": c.norm_eps,
      "rope_theta": c.rope_theta,
      "rope_scaling": scaling,
      "rope_parameters": {"rope_type": "default", **(scaling or {}), "rope_theta": c.rope_theta},
      "tie_word_embeddings": c.tie_embeddings,
      "torch_dtype": c.param_dtype,
  }
  if family in ("llama", "qwen3"):
    hf["attention_bias"] = False
  if family == "llama":
    hf["mlp_bias"] = False
  else:
    hf["use_sliding_window"] = False
  return hf


# ---------------------------------------------------------------------------------------------
# Tensors
# ---------------------------------------------------------------------------------------------
def module_name(name: str) -> str:
  """The HF module under `model.layers.{i}.` that holds our linear weight `name` (e.g.
  "self_attn.q_proj" for "wq"), as PEFT's adapters name it."""
  if name not in _LINEAR_IN_AXES or name == "lm_head":
    raise ValueError(f"{name!r} is not a per-layer linear weight")
  return _LAYER_NAMES[name].rsplit(".", 1)[0]


def _hf_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """HF shape of our weight `name` (without the layers axis) of shape `shape`."""
  if name in _LINEAR_IN_AXES:
    n_in = _LINEAR_IN_AXES[name]
    return (math.prod(shape[n_in:]), math.prod(shape[:n_in]))
  if name in ("bq", "bk", "bv"):
    return (math.prod(shape),)
  return shape


def _to_hf(name: str, x: np.ndarray) -> np.ndarray:
  """Our weight (without the layers axis) -> HF layout."""
  if name in _LINEAR_IN_AXES:
    n_in = _LINEAR_IN_AXES[name]
    return np.ascontiguousarray(x.reshape(math.prod(x.shape[:n_in]), -1).T)
  return np.ascontiguousarray(x.reshape(_hf_shape(name, x.shape)))


def _from_hf(name: str, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """HF tensor -> our weight of shape `shape` (without the layers axis)."""
  return (x.T if name in _LINEAR_IN_AXES else x).reshape(shape)


def _read(tensors: TensorSource, hf_name: str, name: str, shape: tuple[int, ...]) -> np.ndarray:
  if hf_name not in tensors:
    raise ValueError(f"{tensors.where(hf_name)}: missing tensor {hf_name!r}")
  x = tensors[hf_name]
  want = _hf_shape(name, shape)
  if tuple(x.shape) != want:
    raise ValueError(f"{tensors.where(hf_name)}: tensor {hf_name!r} has shape {tuple(x.shape)}, "
                     f"the config implies {want}")
  return _from_hf(name, x, shape)


def params_from_tensors(c: ModelConfig, tensors: TensorSource) -> Params:
  """Our parameter pytree (dtype `c.param_dtype`) from HF-named, HF-layout tensors.

  Raises ValueError naming the file and tensor for a missing or misshapen tensor, and for tensors
  the config does not use (a silently dropped weight would give a wrong model).
  """
  dtype = np.dtype(jnp.dtype(c.param_dtype))
  shapes = jax.eval_shape(lambda: init_params(c, jax.random.key(0)))
  used = set()
  params: Params = {"layers": {}}
  for name, spec in shapes["layers"].items():
    stacked = np.empty(spec.shape, dtype)  # filled layer by layer to keep one copy in memory
    for i in range(c.n_layers):
      hf_name = f"model.layers.{i}.{_LAYER_NAMES[name]}"
      stacked[i] = _read(tensors, hf_name, name, spec.shape[1:])
      used.add(hf_name)
    params["layers"][name] = jnp.asarray(stacked)
  for name in ("embed", "final_norm", "lm_head"):
    if name in shapes:
      params[name] = jnp.asarray(
          _read(tensors, _TOP_NAMES[name], name, shapes[name].shape).astype(dtype))
      used.add(_TOP_NAMES[name])
  if c.tie_embeddings:  # some tied checkpoints also store the (identical) head
    used.add(_TOP_NAMES["lm_head"])
  unexpected = sorted(n for n in tensors if n not in used and not n.endswith(_IGNORED_SUFFIXES))
  if unexpected:
    raise ValueError(f"{tensors.where(unexpected[0])}: tensors the config does not use: "
                     f"{unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
  return params


def params_to_tensors(c: ModelConfig, params: Params) -> dict[str, np.ndarray]:
  """HF-named, HF-layout numpy tensors of our parameters (dtype kept)."""
  if "head" in params:
    raise ValueError("params carry a scalar head (value / reward model); only language-model "
                     "params export to a *ForCausalLM checkpoint")
  out = {}
  for name, stacked in params["layers"].items():
    stacked = np.asarray(stacked)
    for i in range(c.n_layers):
      out[f"model.layers.{i}.{_LAYER_NAMES[name]}"] = _to_hf(name, stacked[i])
  for name in ("embed", "final_norm", "lm_head"):
    if name in params:
      out[_TOP_NAMES[name]] = _to_hf(name, np.asarray(params[name]))
  return out


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------
def load(path: str | pathlib.Path, dtype: str = "float32") -> tuple[ModelConfig, Params]:
  """Reads a local HF checkpoint directory.

  Args:
    path: directory with config.json and model.safetensors (or sharded model-*.safetensors with
      model.safetensors.index.json) of a LlamaForCausalLM, Qwen2ForCausalLM or Qwen3ForCausalLM.
    dtype: parameter and compute dtype of the returned model ("float32", "bfloat16", "float16").

  Returns:
    (model_config, params) for `rlvr_jax.models.forward`; params are jax arrays.
  """
  path = pathlib.Path(path)
  config_file = path / "config.json"
  if not config_file.is_file():
    raise ValueError(f"{config_file}: missing; an HF checkpoint directory needs config.json")
  try:
    hf_config = json.loads(config_file.read_text(encoding="utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{config_file}: not valid UTF-8 JSON ({e})") from None
  c = config_from_hf(hf_config, dtype=dtype, source=str(config_file))
  with contextlib.ExitStack() as stack:
    params = params_from_tensors(c, _SafetensorsDir(path, stack))
  return c, params


def save(path: str | pathlib.Path, model_config: ModelConfig, params: Params, *,
         max_position_embeddings: int = 32_768,
         extra_config: dict[str, Any] | None = None) -> None:
  """Writes `path/config.json` and `path/model.safetensors` that
  `transformers.AutoModelForCausalLM.from_pretrained(path)` loads.

  Tensors keep the dtype of `params`. `max_position_embeddings` is metadata only (RoPE has no
  learned table), which `ModelConfig` does not carry; `extra_config` adds keys to config.json
  (e.g. `eos_token_id`).
  """
  path = pathlib.Path(path)
  path.mkdir(parents=True, exist_ok=True)
  hf = config_to_hf(model_config, max_position_embeddings=max_position_embeddings)
  hf.update(extra_config or {})
  (path / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
  # transformers refuses safetensors files whose metadata does not name a known format.
  safetensors.numpy.save_file(params_to_tensors(model_config, params),
                              str(path / "model.safetensors"), metadata={"format": "pt"})
