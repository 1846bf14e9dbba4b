"""Pure-functional decoder-only transformer (RMSNorm, RoPE, GQA, SwiGLU).

Parameters are a plain dict pytree; per-layer weights are stacked on a leading `layers` axis and
the trunk runs as one `lax.scan`, so compile time does not grow with depth. `param_axes` returns a
pytree of logical axis names with the same structure, which `rlvr_jax.parallel` maps onto a mesh.

Shapes: b batch, t query length, s key/cache length, d model, h query heads, k kv heads,
g = h // k query heads per kv head, e head dim, f feed-forward, v vocab, l layers.

Activations are pinned with `parallel.constrain` to logical axes (batch on `data` x `fsdp`,
heads / mlp / vocab on `tensor`); the residual stream [b, t, d] stays whole along d, so FSDP
gathers weights rather than splitting activations. Outside a mesh context the pins are no-ops.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from rlvr_jax.models.config import ModelConfig
from rlvr_jax.parallel import constrain

Params = dict[str, Any]
_RESIDUAL = ("batch", "length", None)  # [b, t, d]: d replicated, see the module docstring
_MASKED = -1e30  # finite, so a fully masked (padding) row gives a uniform softmax, never NaN


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------
def _layer_shapes(c: ModelConfig) -> dict[str, tuple[tuple[int, ...], tuple[str | None, ...]]]:
  """(shape, logical axes) of each per-layer weight, without the leading layers axis."""
  d, h, k, e, f = c.d_model, c.n_heads, c.n_kv_heads, c.resolved_head_dim, c.d_ff
  shapes = {
      "attn_norm": ((d,), ("embed",)),
      "wq": ((d, h, e), ("embed", "heads", "kv")),
      "wk": ((d, k, e), ("embed", "kv_heads", "kv")),
      "wv": ((d, k, e), ("embed", "kv_heads", "kv")),
      "wo": ((h, e, d), ("heads", "kv", "embed")),
      "mlp_norm": ((d,), ("embed",)),
      "w_gate": ((d, f), ("embed", "mlp")),
      "w_up": ((d, f), ("embed", "mlp")),
      "w_down": ((f, d), ("mlp", "embed")),
  }
  if c.qkv_bias:
    shapes |= {"bq": ((h, e), ("heads", "kv")), "bk": ((k, e), ("kv_heads", "kv")),
               "bv": ((k, e), ("kv_heads", "kv"))}
  if c.qk_norm:
    shapes |= {"q_norm": ((e,), ("kv",)), "k_norm": ((e,), ("kv",))}
  return shapes


def param_axes(c: ModelConfig, head: str | None = None) -> Params:
  """Logical axis names for every parameter (same tree structure as `init_params`)."""
  axes: Params = {
      "embed": ("vocab", "embed"),
      "layers": {n: ("layers",) + a for n, (_, a) in _layer_shapes(c).items()},
      "final_norm": ("embed",),
  }
  if head is None and not c.tie_embeddings:
    axes["lm_head"] = ("embed", "vocab")
  if head is not None:
    axes["head"] = {"w": ("embed",), "b": ()}
  return axes


def init_params(c: ModelConfig, rng: jax.Array, head: str | None = None) -> Params:
  """Random initial parameters.

  Args:
    c: model configuration.
    rng: PRNG key.
    head: None for a language model (policy); "scalar" for a value / reward model, whose
      language-model head is replaced by a scalar head on the same trunk.
  """
  dtype = jnp.dtype(c.param_dtype)
  std = 0.02
  out_std = std / math.sqrt(2 * c.n_layers)  # GPT-2 style scaled init of residual outputs
  shapes = _layer_shapes(c)
  keys = iter(jax.random.split(rng, len(shapes) + 4))
  layers = {}
  for name, (shape, _) in shapes.items():
    full = (c.n_layers,) + shape
    if name.endswith("norm"):
      layers[name] = jnp.ones(full, dtype)
    elif name.startswith("b"):
      layers[name] = jnp.zeros(full, dtype)
    else:
      scale = out_std if name in ("wo", "w_down") else std
      layers[name] = (scale * jax.random.normal(next(keys), full)).astype(dtype)
  params: Params = {
      "embed": (std * jax.random.normal(next(keys), (c.vocab_size, c.d_model))).astype(dtype),
      "layers": layers,
      "final_norm": jnp.ones((c.d_model,), dtype),
  }
  if head is None and not c.tie_embeddings:
    params["lm_head"] = (std * jax.random.normal(next(keys), (c.d_model, c.vocab_size))
                         ).astype(dtype)
  if head is not None:
    params["head"] = {"w": jnp.zeros((c.d_model,), dtype), "b": jnp.zeros((), dtype)}
  return params


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------
def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
  """x / sqrt(mean(x^2) + eps) * weight, computed in float32 (as HF Llama)."""
  x32 = x.astype(jnp.float32)
  x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
  return (x32 * weight.astype(jnp.float32)).astype(x.dtype)


def rope_inv_freq(c: ModelConfig) -> jax.Array:
  """Inverse RoPE frequencies [e/2], including Llama-3 frequency scaling."""
  e = c.resolved_head_dim
  inv_freq = 1.0 / (c.rope_theta ** (jnp.arange(0, e, 2, dtype=jnp.float32) / e))
  scaling = c.rope_scaling_dict
  if not scaling or scaling.get("rope_type", scaling.get("type")) in (None, "default"):
    return inv_freq
  if scaling.get("rope_type", scaling.get("type")) != "llama3":
    raise ValueError(f"model.rope_scaling type {scaling!r} is not supported (llama3 is)")
  factor = scaling["factor"]
  low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
  old_len = scaling["original_max_position_embeddings"]
  wavelen = 2 * jnp.pi / inv_freq
  scaled = jnp.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
  smooth = (old_len / wavelen - low) / (high - low)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
  return jnp.where(medium, smoothed, scaled)


def apply_rope(x_bthe: jax.Array, positions_bt: jax.Array, inv_freq: jax.Array) -> jax.Array:
  """Rotary embedding in the rotate-half convention of HF checkpoints."""
  angles_bte = positions_bt[..., None].astype(jnp.float32) * inv_freq
  cos = jnp.cos(angles_bte)[:, :, None, :]
  sin = jnp.sin(angles_bte)[:, :, None, :]
  x = x_bthe.astype(jnp.float32)
  x1, x2 = jnp.split(x, 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_bthe.dtype)


def _attention(q_bthe, k_bske, v_bske, mask_bts, n_kv_heads):
  b, t, h, e = q_bthe.shape
  q = q_bthe.reshape(b, t, n_kv_heads, h // n_kv_heads, e)
  scores = jnp.einsum("btkge,bske->bkgts", q, k_bske, preferred_element_type=jnp.float32)
  scores = scores / math.sqrt(e)
  scores = jnp.where(mask_bts[:, None, None], scores, _MASKED)
  probs = jax.nn.softmax(scores, axis=-1).astype(v_bske.dtype)
  out = jnp.einsum("bkgts,bske->btkge", probs, v_bske)
  return out.reshape(b, t, h, e)


def _layer(c: ModelConfig, p: Params, x_btd, positions_bt, mask_bts, kv_cache, cache_index):
  """One pre-norm block. With `kv_cache=(k_bske, v_bske)` the new keys/values are written at
  `cache_index` and attention runs over the whole cache; returns (x, new_cache)."""
  dtype = x_btd.dtype
  inv_freq = rope_inv_freq(c)
  x_btd = constrain(x_btd, _RESIDUAL)
  y = rms_norm(x_btd, p["attn_norm"], c.norm_eps)
  q = constrain(jnp.einsum("btd,dhe->bthe", y, p["wq"].astype(dtype)),
                ("batch", "length", "heads", "kv"))
  k = constrain(jnp.einsum("btd,dke->btke", y, p["wk"].astype(dtype)),
                ("batch", "length", "kv_heads", "kv"))
  v = constrain(jnp.einsum("btd,dke->btke", y, p["wv"].astype(dtype)),
                ("batch", "length", "kv_heads", "kv"))
  if c.qkv_bias:
    q, k, v = q + p["bq"].astype(dtype), k + p["bk"].astype(dtype), v + p["bv"].astype(dtype)
  if c.qk_norm:
    q, k = rms_norm(q, p["q_norm"], c.norm_eps), rms_norm(k, p["k_norm"], c.norm_eps)
  q, k = apply_rope(q, positions_bt, inv_freq), apply_rope(k, positions_bt, inv_freq)
  if kv_cache is not None:
    k_cache, v_cache = kv_cache
    k = jax.lax.dynamic_update_slice_in_dim(k_cache, k.astype(k_cache.dtype), cache_index, 1)
    v = jax.lax.dynamic_update_slice_in_dim(v_cache, v.astype(v_cache.dtype), cache_index, 1)
    kv_cache = (k, v)
  attn = _attention(q, k.astype(dtype), v.astype(dtype), mask_bts, c.n_kv_heads)
  attn = constrain(attn, ("batch", "length", "heads", "kv"))
  x_btd = constrain(x_btd + jnp.einsum("bthe,hed->btd", attn, p["wo"].astype(dtype)), _RESIDUAL)
  y = rms_norm(x_btd, p["mlp_norm"], c.norm_eps)
  gate = constrain(jnp.einsum("btd,df->btf", y, p["w_gate"].astype(dtype)),
                   ("batch", "length", "mlp"))
  up = constrain(jnp.einsum("btd,df->btf", y, p["w_up"].astype(dtype)), ("batch", "length", "mlp"))
  x_btd = x_btd + jnp.einsum("btf,fd->btd", jax.nn.silu(gate) * up, p["w_down"].astype(dtype))
  return constrain(x_btd, _RESIDUAL), kv_cache


def positions_from_mask(mask_bt: jax.Array) -> jax.Array:
  """RoPE positions that count only valid tokens, so left padding does not shift them."""
  return jnp.maximum(jnp.cumsum(mask_bt.astype(jnp.int32), axis=-1) - 1, 0)


# ---------------------------------------------------------------------------------------------
# Trunk, logits and heads
# ---------------------------------------------------------------------------------------------
def hidden_states(c: ModelConfig, params: Params, tokens_bt: jax.Array,
                  mask_bt: jax.Array | None = None) -> jax.Array:
  """Final normalised hidden states [b, t, d] of a full (teacher-forced) sequence.

  Args:
    tokens_bt: int32 token ids.
    mask_bt: 1 on real tokens, 0 on padding (left or right); None means all valid.
  """
  b, t = tokens_bt.shape
  if mask_bt is None:
    mask_bt = jnp.ones((b, t), jnp.int32)
  positions_bt = positions_from_mask(mask_bt)
  causal_tt = jnp.tril(jnp.ones((t, t), bool))
  mask_bts = causal_tt[None] & (mask_bt[:, None, :] > 0)
  x = constrain(params["embed"].astype(jnp.dtype(c.dtype))[tokens_bt], _RESIDUAL)

  def body(x, layer_params):
    x, _ = _layer(c, layer_params, x, positions_bt, mask_bts, None, None)
    return x, None

  x, _ = jax.lax.scan(_remat(c, body), x, params["layers"])
  return constrain(rms_norm(x, params["final_norm"], c.norm_eps), _RESIDUAL)


def _remat(c: ModelConfig, body):
  """The scanned layer body under `c.remat`: "full" keeps only each layer's input for the
  backward pass (activation memory ~ one layer), "dots_saveable" also keeps matmul outputs
  (less recompute, more memory), "none" keeps everything."""
  if c.remat == "none":
    return body
  policy = jax.checkpoint_policies.dots_saveable if c.remat == "dots_saveable" else None
  return jax.checkpoint(body, prevent_cse=False, policy=policy)


def logits_from_hidden(c: ModelConfig, params: Params, h_btd: jax.Array) -> jax.Array:
  """float32 logits [b, t, v]."""
  if c.tie_embeddings:
    return jnp.einsum("btd,vd->btv", h_btd, params["embed"].astype(h_btd.dtype),
                      preferred_element_type=jnp.float32)
  return jnp.einsum("btd,dv->btv", h_btd, params["lm_head"].astype(h_btd.dtype),
                    preferred_element_type=jnp.float32)


def forward(c: ModelConfig, params: Params, tokens_bt: jax.Array,
            mask_bt: jax.Array | None = None) -> jax.Array:
  """float32 next-token logits [b, t, v] for a full sequence (see `hidden_states`)."""
  logits_btv = logits_from_hidden(c, params, hidden_states(c, params, tokens_bt, mask_bt))
  return constrain(logits_btv, ("batch", "length", "vocab"))


def join_prompt(prompt_bp: jax.Array, prompt_mask_bp: jax.Array, completion_bn: jax.Array,
                completion_mask_bn: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(tokens [b, p + n], int32 mask [b, p + n]) of left-padded prompts followed by completions;
  completion token t sits at position p + t, so logits for it are read at p + t - 1."""
  seq = jnp.concatenate([prompt_bp, completion_bn], axis=1)
  mask = jnp.concatenate([prompt_mask_bp.astype(jnp.int32), completion_mask_bn.astype(jnp.int32)],
                         axis=1)
  return seq, mask


def scalar_head(c: ModelConfig, params: Params, tokens_bt: jax.Array,
                mask_bt: jax.Array | None = None) -> jax.Array:
  """Per-position float32 scalars [b, t] from a value / reward model (`init_params(head=...)`).

  A value model reads every position; an outcome reward model reads the last valid one; a
  process reward model reads step-end positions.
  """
  h = hidden_states(c, params, tokens_bt, mask_bt).astype(jnp.float32)
  return h @ params["head"]["w"].astype(jnp.float32) + params["head"]["b"].astype(jnp.float32)


# ---------------------------------------------------------------------------------------------
# KV cache (used by the sampler)
# ---------------------------------------------------------------------------------------------
def init_cache(c: ModelConfig, batch: int, length: int) -> dict[str, jax.Array]:
  """Zeroed KV cache: k, v [l, b, s, k, e] in the compute dtype."""
  shape = (c.n_layers, batch, length, c.n_kv_heads, c.resolved_head_dim)
  return {"k": jnp.zeros(shape, jnp.dtype(c.dtype)), "v": jnp.zeros(shape, jnp.dtype(c.dtype))}


def forward_cached(c: ModelConfig, params: Params, tokens_bt: jax.Array,
                   positions_bt: jax.Array, cache: dict[str, jax.Array],
                   cache_index: jax.Array, valid_bs: jax.Array):
  """Runs t new tokens that occupy cache slots [cache_index, cache_index + t).

  Args:
    positions_bt: RoPE positions of the new tokens.
    cache: from `init_cache`; s is its length.
    cache_index: int32 scalar slot of the first new token.
    valid_bs: 1 for cache slots holding real tokens (after this call's writes).

  Returns:
    (float32 logits [b, t, v], updated cache).
  """
  t = tokens_bt.shape[1]
  s = cache["k"].shape[2]
  query_slot_t = cache_index + jnp.arange(t)
  mask_bts = (jnp.arange(s)[None, :] <= query_slot_t[:, None])[None] & (valid_bs[:, None, :] > 0)
  x = params["embed"].astype(jnp.dtype(c.dtype))[tokens_bt]

  def body(x, scanned):
    layer_params, k_cache, v_cache = scanned
    x, (k_cache, v_cache) = _layer(c, layer_params, x, positions_bt, mask_bts,
                                   (k_cache, v_cache), cache_index)
    return x, (k_cache, v_cache)

  x, (k, v) = jax.lax.scan(body, x, (params["layers"], cache["k"], cache["v"]))
  h = rms_norm(x, params["final_norm"], c.norm_eps)
  return logits_from_hidden(c, params, h), {"k": k, "v": v}
