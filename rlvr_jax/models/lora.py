"""LoRA adapters on the transformer's linear layers, as plain pytree leaves of the policy params.

Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models" (arXiv 2106.09685), §4.1:
a frozen weight W [in, out] gains a trainable low-rank update,

    y = x W + ((x A) B) · α / r,      A [in, r], B [r, out],

with A random and B zero at the start, so the adapted model starts as the base model exactly.
Conventions as PEFT's (huggingface/peft 0.22.0, src/peft/tuners/lora/layer.py `LoraLayer`:
`scaling = lora_alpha / r`, `reset_lora_parameters`: lora_A kaiming-uniform with a = √5, i.e.
U(−1/√in, 1/√in), lora_B zeros; forward `lora_B(lora_A(dropout(x))) * scaling`); the same math
as qwix's LoRA provider (google/qwix qwix/_src/providers/lora.py), which needs Flax modules and
so cannot wrap these dict params.

Layout: an adapter of the per-layer weight `w` (stacked [l, in..., out...]) is an `Adapter` at
`params["layers"][w + "_lora"]`, stacked on the same layers axis, A [l, in..., r] and
B [l, r, out...]; its logical axes are W's input axes for A and W's output axes for B (`axes`),
so under FSDP / tensor meshes the adapters split as their weights do. The layer scan slices them
with the weights, and `transformer._proj` adds the low-rank path wherever an adapter sits beside
its weight; params without adapters give the program they always gave. The scale α / r is static
pytree metadata of each `Adapter`, so params carry everything needed to run, merge or export
them.

Training splits the policy params into `trainable` (the adapters, the optimizer's and the
checkpoint's whole world) and the frozen rest (`base`): the reference policy of a KL term is the
base, adapters off, with no second copy. The sampler runs on the adapters as they are, or on
merged weights (`for_sampling`, `LoraConfig.sampler`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from rlvr_jax.models.config import ModelConfig
from rlvr_jax.models.transformer import Params, _layer_shapes, param_axes

# The linear weights an adapter can sit on, with the number of leading (input) axes of each.
LINEAR_IN_AXES = {"wq": 1, "wk": 1, "wv": 1, "wo": 2, "w_gate": 1, "w_up": 1, "w_down": 1}
SUFFIX = "_lora"
ALL_LINEAR = "wq|wk|wv|wo|w_gate|w_up|w_down"


@flax.struct.dataclass
class Adapter:
  """The low-rank update of one stacked linear weight: A [l, in..., r], B [l, r, out...] (without
  the l axis inside the layer scan), the static scale α / r, and whether the sampler merges it
  into its weight (`for_sampling`)."""
  a: jax.Array
  b: jax.Array
  scale: float = flax.struct.field(pytree_node=False)
  merged_sampling: bool = flax.struct.field(pytree_node=False, default=False)


@dataclasses.dataclass(frozen=True)
class LoraConfig:
  """rank r, alpha α (scale α / r), dropout on the adapters' input (training forward only), the
  regular expression that picks the adapted weights among LINEAR_IN_AXES (full match), and
  whether the sampler runs on "merged" or "unmerged" weights (`for_sampling`)."""
  rank: int
  alpha: float
  dropout: float = 0.0
  targets: str = ALL_LINEAR
  sampler: str = "unmerged"

  @property
  def scale(self) -> float:
    return self.alpha / self.rank

  def target_names(self) -> tuple[str, ...]:
    """The adapted weights, in LINEAR_IN_AXES order; ValueError when the pattern picks none."""
    try:
      pattern = re.compile(self.targets)
    except re.error as e:
      raise ValueError(f"config.lora.targets: {self.targets!r} is not a regular expression "
                       f"({e})") from None
    names = tuple(n for n in LINEAR_IN_AXES if pattern.fullmatch(n))
    if not names:
      raise ValueError(f"config.lora.targets: {self.targets!r} matches none of the linear "
                       f"weights {list(LINEAR_IN_AXES)}")
    return names

  @classmethod
  def from_config(cls, cfg) -> "LoraConfig | None":
    """From the run config's `lora` block; None when rank is 0 (LoRA off)."""
    if not cfg.rank:
      return None
    return cls(rank=int(cfg.rank), alpha=float(cfg.alpha), dropout=float(cfg.dropout),
               targets=str(cfg.targets), sampler=str(cfg.get("sampler", "unmerged")))


# ---------------------------------------------------------------------------------------------
# Creation and layout
# ---------------------------------------------------------------------------------------------
def init(c: ModelConfig, lora: LoraConfig, rng: jax.Array) -> Params:
  """Fresh float32 adapters `{"layers": {w + "_lora": Adapter}}` for the targeted weights:
  A ~ U(−1/√in, 1/√in) (PEFT's kaiming-uniform, a = √5), B = 0, so the model is the base one."""
  shapes = _layer_shapes(c)
  names = lora.target_names()
  keys = jax.random.split(rng, len(names))
  layers = {}
  for key, name in zip(keys, names):
    shape, _ = shapes[name]
    n_in = LINEAR_IN_AXES[name]
    fan_in = math.prod(shape[:n_in])
    bound = 1.0 / math.sqrt(fan_in)
    a = jax.random.uniform(key, (c.n_layers, *shape[:n_in], lora.rank), jnp.float32,
                           -bound, bound)
    b = jnp.zeros((c.n_layers, lora.rank, *shape[n_in:]), jnp.float32)
    layers[name + SUFFIX] = Adapter(a=a, b=b, scale=lora.scale,
                                    merged_sampling=lora.sampler == "merged")
  return {"layers": layers}


def axes(c: ModelConfig, params: Params) -> Any:
  """Logical axis names for `params` (`transformer.param_axes`), adapters included: A takes its
  weight's input axes, B its output axes, the rank axis is replicated."""
  out = param_axes(c)
  weight_axes = {n: ("layers",) + a for n, (_, a) in _layer_shapes(c).items()}
  for key, adapter in params["layers"].items():
    if isinstance(adapter, Adapter):
      w = weight_axes[key[:-len(SUFFIX)]]
      n_in = LINEAR_IN_AXES[key[:-len(SUFFIX)]]
      out["layers"][key] = adapter.replace(a=w[:1 + n_in] + (None,),
                                           b=("layers", None) + w[1 + n_in:])
  return out


def has_adapters(params: Params) -> bool:
  layers = params.get("layers") if isinstance(params, dict) else None
  return isinstance(layers, dict) and any(isinstance(v, Adapter) for v in layers.values())


def base(params: Params) -> Params:
  """The frozen weights alone: the model with its adapters off (`params` itself if none)."""
  if not has_adapters(params):
    return params
  layers = {k: v for k, v in params["layers"].items() if not isinstance(v, Adapter)}
  return dict(params, layers=layers)


def attach(params: Params, adapters: Params) -> Params:
  """`params` with `adapters` (`init`'s layout) beside their weights."""
  return dict(params, layers={**params["layers"], **adapters["layers"]})


def trainable(params: Params) -> Params:
  """What the optimizer updates and a checkpoint keeps: the adapters when `params` has any,
  else all of `params`."""
  if not has_adapters(params):
    return params
  return {"layers": {k: v for k, v in params["layers"].items() if isinstance(v, Adapter)}}


def with_trainable(params: Params, new: Params) -> Params:
  """`params` with its `trainable` part replaced by `new` (`new` itself without adapters)."""
  if not has_adapters(params):
    return new
  return attach(base(params), new)


# ---------------------------------------------------------------------------------------------
# Math
# ---------------------------------------------------------------------------------------------
def for_sampling(params: Params) -> Params:
  """What the sampler runs on: `params` with every adapter whose `merged_sampling` is set merged
  into its weight (`merge`); the others stay beside their weights (the unmerged path, x W +
  ((x A) B)·α/r, the default: `lora.sampler="unmerged"`).

  Why unmerged by default. Speed: on CPU the two were equally fast (benchmarks/lora_sampler.py,
  d 512 x 8 layers, rank 16, 32 rows x 64 tokens, four runs: unmerged / merged time 0.94, 1.00,
  0.98, 1.24 under varying load); the decode step is bound by reading W, and A, B add ~2r/d of
  reads. On accelerators merged may win (two fewer small matmuls per adapted weight, layer and
  token; unmeasured here). Memory: merged weights are a second copy of the adapted ones while
  sampling (Qwen2.5-7B on one device peaks at 92.7 GiB merged, 68.6 unmerged: benchmarks/
  MEMORY.md). Exactness: unmerged is the training forward's own arithmetic, so the sampler's
  log-probs are the loss's π_old; merged bfloat16 weights are W + (α/r)·A B rounded once more.
  Either way the float32 logits agree to rounding (tests/test_lora.py).
  """
  return merge(params, only_sampling=True)


def merge(params: Params, *, only_sampling: bool = False) -> Params:
  """Plain weights W + (α/r)·A B (float32 product, stored in W's dtype) in place of the adapters
  (with `only_sampling`, of those marked `merged_sampling`); with bfloat16 weights the merged
  weights are rounded to bfloat16 once."""
  if not has_adapters(params):
    return params
  layers = dict(params["layers"])
  for key in [k for k, v in layers.items()
              if isinstance(v, Adapter) and (v.merged_sampling or not only_sampling)]:
    adapter, name = layers.pop(key), key[:-len(SUFFIX)]
    w = layers[name]
    l, r = adapter.a.shape[0], adapter.a.shape[-1]
    a = adapter.a.astype(jnp.float32).reshape(l, -1, r)
    b = adapter.b.astype(jnp.float32).reshape(l, r, -1)
    dw = jnp.einsum("lir,lro->lio", a, b, precision=jax.lax.Precision.HIGHEST)
    layers[name] = (w.astype(jnp.float32) + adapter.scale * dw.reshape(w.shape)).astype(w.dtype)
  return dict(params, layers=layers)


def size(params: Params) -> int:
  """Number of adapter parameters in `params`."""
  return sum(x.size for x in jax.tree.leaves(trainable(params))) if has_adapters(params) else 0
