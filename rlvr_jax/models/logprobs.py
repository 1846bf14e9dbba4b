"""Log-probs and entropies of given tokens under the LM head, a chunk of positions at a time.

The float32 logits of a training micro-batch [n, t, v] can dwarf the rest of the step (4 rows x
16k tokens x 152k vocab = 40 GB). `token_logprobs` computes them c positions at a time in a
`lax.scan`, under a custom VJP whose forward saves only h, the head's weight and two [n, t]
statistics (lse, H); the backward recomputes each chunk's logits. With T the temperature:

  z = h W (padding ids: -1e30),  p = softmax(z / T),  lse = logsumexp(z / T)
  log p_y = z_y / T - lse,   H = -Σ_v p_v log p_v
  ∂ log p_y / ∂z = (onehot(y) - p) / T,   ∂H / ∂z = -p (log p + H) / T
  dh = dz Wᵀ,   dW = Σ_chunks hᵀ dz.

While one device's logits of a micro-batch fit `LOGITS_BUDGET_BYTES` (and `model.logprob_chunk`
is 0) it takes the plain path instead, full logits and `jax.nn.log_softmax`: the program it
compiled before chunking existed, so recorded runs stay bit-for-bit.

With `proxy_min_p` κ either path also returns each target's log-prob under the min-p proxy of
the same logits (`min_p_logprobs`, Lp-Reg's π_proxy), one more masked LSE over each chunk; it is
a constant to autodiff (the backward above ignores its cotangent).

Shapes: n rows, t positions, d model, v vocab, k chunks, c positions per chunk.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlvr_jax.models.config import ModelConfig
from rlvr_jax.models.transformer import _MASKED, Params, logits_from_hidden
from rlvr_jax.parallel import batch_shards, constrain

# One device's float32 logits for one chunk. Small next to the weights and Adam moments of the
# models that need chunking (the backward holds ~3 such buffers: p, the one-hot, dz), large
# enough that every test and tiny config keeps the plain path and its recorded goldens.
LOGITS_BUDGET_BYTES = 256 * 2**20
_LOGITS_AXES = ("batch", "length", "vocab")
# The logit a min-p proxy gives the ids it filters out, before the temperature (Lp-Reg's
# `apply_min_p` writes -1e4: a finite floor, so k3 terms and their gradients stay finite).
MIN_P_FILTERED_LOGIT = -1e4


def min_p_logprobs(zt_xv: jax.Array, targets_x: jax.Array, *, min_p: float,
                   temperature: float = 1.0) -> jax.Array:
  """float32 [...]: log π_proxy(target) of the min-p proxy of p = softmax(z / T).

  Given tempered logits zt = z / T [..., v]. The filter reads the RAW distribution softmax(z),
  as Lp-Reg's reference does (verl `dp_actor.apply_min_p` filters `output.logits`, then divides
  by the temperature): id v is kept iff softmax(z)_v >= κ max softmax(z), i.e.
  z_v >= z_max + log κ, i.e. zt_v >= zt_max + log(κ) / T. Kept logits are renormalised at the
  temperature, filtered ones set to `MIN_P_FILTERED_LOGIT`:

    log π_proxy(y) = zt_y − LSE_{v kept} zt_v               (y kept)
                   = −1e4 / T − LSE_{v kept} zt_v           (y filtered; exp(−1e4 / T) is 0)

  which is the reference's log_softmax of its filtered logits to float rounding. κ is static;
  the argmax is always kept. `targets_x` [...] int ids.
  """
  zt_xv = zt_xv.astype(jnp.float32)
  max_x1 = jnp.max(zt_xv, axis=-1, keepdims=True)
  shifted_xv = zt_xv - max_x1
  keep_xv = shifted_xv >= math.log(min_p) / temperature
  lse_x = jnp.log(jnp.sum(jnp.where(keep_xv, jnp.exp(shifted_xv), 0.0), axis=-1))
  y = targets_x[..., None]
  kept_x = jnp.take_along_axis(keep_xv, y, axis=-1)[..., 0]
  shifted_x = jnp.take_along_axis(shifted_xv, y, axis=-1)[..., 0]
  floor_x = MIN_P_FILTERED_LOGIT / temperature - max_x1[..., 0]
  return jnp.where(kept_x, shifted_x, floor_x) - lse_x


def logprob_chunk_size(c: ModelConfig, n: int, t: int) -> int:
  """Positions per chunk for n rows of t positions: `c.logprob_chunk` (at most t) when set; else
  all t while one device's n t v float32 logits fit `LOGITS_BUDGET_BYTES`, else the most
  positions whose logits do (at least 1). Rows per device: n over the mesh's batch shards."""
  if c.logprob_chunk:
    return min(c.logprob_chunk, t)
  rows = -(-n // batch_shards())
  return max(1, min(t, LOGITS_BUDGET_BYTES // (rows * c.vocab_size * 4)))


def token_logprobs(c: ModelConfig, params: Params, h_ntd: jax.Array, targets_nt: jax.Array, *,
                   temperature: float = 1.0, chunk: int | None = None,
                   proxy_min_p: float | None = None) -> tuple[jax.Array, ...]:
  """float32 (log p(targets) [n, t], entropy H [n, t]) of p = softmax(logits(h) / temperature);
  with `proxy_min_p` κ a third [n, t]: the targets' `min_p_logprobs` (no gradient).

  Args:
    h_ntd: final hidden states, the position before each target.
    targets_nt: int token ids.
    chunk: positions per chunk along t; None: `logprob_chunk_size(c, n, t)`. chunk >= t computes the
      full logits at once (plain autodiff); smaller chunks run under the custom VJP above, t
      padded up to a multiple of chunk. Padding ids (>= `c.valid_vocab_size`) have probability
      exactly 0 and get no gradient either way.
    proxy_min_p: static κ of the min-p proxy; None (every caller but one that needs the proxy)
      computes what it computed before.
  """
  n, t, _ = h_ntd.shape
  chunk = logprob_chunk_size(c, n, t) if chunk is None else chunk
  if chunk < 1:
    raise ValueError(f"token_logprobs: chunk must be >= 1 position, got {chunk}")
  if chunk >= t:
    logits_ntv = constrain(logits_from_hidden(c, params, h_ntd), _LOGITS_AXES)
    logp_ntv = jax.nn.log_softmax(logits_ntv / max(temperature, 1e-6), axis=-1)
    logp_nt = jnp.take_along_axis(logp_ntv, targets_nt[..., None], axis=-1)[..., 0]
    out = logp_nt, -jnp.sum(jnp.exp(logp_ntv) * logp_ntv, axis=-1)
    if proxy_min_p is None:
      return out
    zt_ntv = jax.lax.stop_gradient(logits_ntv) / max(temperature, 1e-6)
    return out + (min_p_logprobs(zt_ntv, targets_nt, min_p=proxy_min_p,
                                 temperature=max(temperature, 1e-6)),)
  w = (params["embed"] if c.tie_embeddings else params["lm_head"]).astype(h_ntd.dtype)
  valid = c.valid_vocab_size if c.masks_vocab else None
  head = _Head(c.tie_embeddings, valid, max(temperature, 1e-6), chunk, proxy_min_p)
  return _chunked(h_ntd, w, targets_nt.astype(jnp.int32), head)


class _Head(NamedTuple):
  """Static description of the head (hashable: a nondiff argument of the custom VJP)."""
  tied: bool  # w is the [v, d] embedding table, else the [d, v] lm_head
  valid: int | None  # ids >= valid are masked; None: none are
  temperature: float
  chunk: int
  proxy_min_p: float | None = None  # also the targets' min-p proxy log-probs (a third output)


def _tempered_logits(h_ncd: jax.Array, w: jax.Array, head: _Head) -> jax.Array:
  """z / T [n, c, v] float32 for one chunk, padding ids at -1e30 / T (as `logits_from_hidden`)."""
  spec = "ncd,vd->ncv" if head.tied else "ncd,dv->ncv"
  z_ncv = constrain(jnp.einsum(spec, h_ncd, w, preferred_element_type=jnp.float32), _LOGITS_AXES)
  if head.valid is not None:
    z_ncv = jnp.where(jnp.arange(z_ncv.shape[-1]) < head.valid, z_ncv, _MASKED)
  return z_ncv / head.temperature


def _to_chunks(x_nt: jax.Array, chunk: int) -> jax.Array:
  """[n, t, ...] -> [k, n, c, ...], t zero-padded to k c: the scan runs over k, rows stay whole
  (their ('data', 'fsdp') sharding untouched)."""
  n, t = x_nt.shape[:2]
  k = -(-t // chunk)
  pad = [(0, 0), (0, k * chunk - t)] + [(0, 0)] * (x_nt.ndim - 2)
  x = jnp.pad(x_nt, pad).reshape((n, k, chunk) + x_nt.shape[2:])
  return jnp.moveaxis(x, 1, 0)


def _from_chunks(x_knc: jax.Array, t: int) -> jax.Array:
  """[k, n, c, ...] -> [n, t, ...], dropping the padding."""
  x = jnp.moveaxis(x_knc, 0, 1)
  return x.reshape((x.shape[0], -1) + x.shape[3:])[:, :t]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _chunked(h_ntd, w, targets_nt, head):
  return _chunked_fwd(h_ntd, w, targets_nt, head)[0]


def _chunked_fwd(h_ntd, w, targets_nt, head):
  t = h_ntd.shape[1]

  def body(_, xs):
    h_ncd, y_nc = xs
    zt_ncv = _tempered_logits(h_ncd, w, head)
    lse_nc = jax.nn.logsumexp(zt_ncv, axis=-1)
    logp_ncv = zt_ncv - lse_nc[..., None]
    entropy_nc = -jnp.sum(jnp.exp(logp_ncv) * logp_ncv, axis=-1)
    logp_nc = jnp.take_along_axis(logp_ncv, y_nc[..., None], axis=-1)[..., 0]
    if head.proxy_min_p is None:
      return None, (logp_nc, lse_nc, entropy_nc)
    proxy_nc = min_p_logprobs(zt_ncv, y_nc, min_p=head.proxy_min_p, temperature=head.temperature)
    return None, (logp_nc, lse_nc, entropy_nc, proxy_nc)

  xs = (_to_chunks(h_ntd, head.chunk), _to_chunks(targets_nt, head.chunk))
  _, (logp, lse, entropy, *proxy) = jax.lax.scan(body, None, xs)
  out = tuple(_from_chunks(x, t) for x in [logp, entropy] + proxy)
  return out, (h_ntd, w, targets_nt, _from_chunks(lse, t), out[1])


def _chunked_bwd(head, residuals, cotangents):
  h_ntd, w, targets_nt, lse_nt, entropy_nt = residuals
  g_logp_nt, g_entropy_nt = cotangents[:2]  # a min-p proxy output is a constant
  t = h_ntd.shape[1]
  w32 = w.astype(jnp.float32)
  # the dW accumulator laid out as its weight: else FSDP could hold a whole f32 copy a device
  w_axes = ("vocab", "embed") if head.tied else ("embed", "vocab")

  def body(dw, xs):
    h_ncd, y_nc, lse_nc, ent_nc, g_logp_nc, g_ent_nc = xs
    logp_ncv = _tempered_logits(h_ncd, w, head) - lse_nc[..., None]
    p_ncv = jnp.exp(logp_ncv)  # exactly 0 on padding ids
    onehot_ncv = jnp.arange(p_ncv.shape[-1]) == y_nc[..., None]
    dz_ncv = (g_logp_nc[..., None] * (onehot_ncv - p_ncv)
              - g_ent_nc[..., None] * p_ncv * (logp_ncv + ent_nc[..., None])) / head.temperature
    if head.valid is not None:  # a padding target's one-hot must not reach the weight
      dz_ncv = jnp.where(jnp.arange(p_ncv.shape[-1]) < head.valid, dz_ncv, 0.0)
    dz_ncv = constrain(dz_ncv, _LOGITS_AXES)
    h32 = h_ncd.astype(jnp.float32)
    if head.tied:
      dh_ncd = jnp.einsum("ncv,vd->ncd", dz_ncv, w32)
      dw = constrain(dw + jnp.einsum("ncv,ncd->vd", dz_ncv, h32), w_axes)
    else:
      dh_ncd = jnp.einsum("ncv,dv->ncd", dz_ncv, w32)
      dw = constrain(dw + jnp.einsum("ncd,ncv->dv", h32, dz_ncv), w_axes)
    return dw, dh_ncd.astype(h_ncd.dtype)

  xs = tuple(_to_chunks(x, head.chunk) for x in (h_ntd, targets_nt, lse_nt, entropy_nt,
                                                 g_logp_nt, g_entropy_nt))
  dw, dh = jax.lax.scan(body, constrain(jnp.zeros(w.shape, jnp.float32), w_axes), xs)
  return _from_chunks(dh, t), dw.astype(w.dtype), None


_chunked.defvjp(_chunked_fwd, _chunked_bwd)
