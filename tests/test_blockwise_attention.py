"""Blockwise training attention (`model.attention_chunk`): queries in blocks, the causal and
padding masks built per block from [b, s] key validity. Values and gradients equal the one-block
path and an obvious full-scores reference to 1e-5 (float32)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import models
from rlvr_jax.models import decode, transformer

V = 29
TOL = dict(atol=1e-5, rtol=0)


def _reference_attention(q_bthe, k_bske, v_bske, valid_bs):
  """Full [b, h, t, s] scores, the mask written out entry by entry: query i (the last t of s
  key positions) sees key j iff the key is valid and j <= i + s - t."""
  b, t, h, e = q_bthe.shape
  s, kv = k_bske.shape[1], k_bske.shape[2]
  valid = np.asarray(valid_bs)
  mask = np.zeros((b, t, s), bool)
  for r in range(b):
    for i in range(t):
      for j in range(s):
        mask[r, i, j] = valid[r, j] and j <= i + s - t
  k_bshe = jnp.repeat(k_bske, h // kv, axis=2)  # query head n uses kv head n // (h // kv)
  v_bshe = jnp.repeat(v_bske, h // kv, axis=2)
  scores = jnp.einsum("bthe,bshe->bhts", q_bthe, k_bshe) / np.sqrt(e)
  scores = jnp.where(jnp.asarray(mask)[:, None], scores, -1e30)
  return jnp.einsum("bhts,bshe->bthe", jax.nn.softmax(scores, axis=-1), v_bshe)


def _qkv_valid(t, s, h, kv, padding):
  keys = jax.random.split(jax.random.key(0), 3)
  q = jax.random.normal(keys[0], (2, t, h, 8))
  k = jax.random.normal(keys[1], (2, s, kv, 8))
  v = jax.random.normal(keys[2], (2, s, kv, 8))
  j = np.arange(s)[None]
  if padding == "left":  # row 0 fully valid; row 1's first 3 keys padding: query 0 sees none
    valid = j >= np.array([[0], [3]])
  else:  # right-padded: the tail of row 1 is padding
    valid = j < np.array([[s], [s - 4]])
  return q, k, v, jnp.asarray(valid)


@pytest.mark.parametrize("chunk", [1, 3, 10])  # 3 does not divide t; 10 is one block
@pytest.mark.parametrize("s", [10, 16])  # s == t: self-attention; s > t: a prompt's keys first
@pytest.mark.parametrize("h,kv,padding", [(4, 2, "left"), (4, 1, "right")])
def test_attention_matches_reference(chunk, s, h, kv, padding):
  t = 10
  q, k, v, valid = _qkv_valid(t, s, h, kv, padding)
  cot = jax.random.normal(jax.random.key(7), q.shape)
  blockwise = lambda q, k, v: transformer._attention(q, k, v, valid, kv, chunk)
  reference = lambda q, k, v: _reference_attention(q, k, v, valid)
  out, vjp = jax.vjp(jax.jit(blockwise), q, k, v)
  ref, ref_vjp = jax.vjp(reference, q, k, v)
  assert np.isfinite(np.asarray(out)).all()
  np.testing.assert_allclose(out, ref, **TOL)
  for got, want in zip(vjp(cot), ref_vjp(cot)):
    np.testing.assert_allclose(got, want, **TOL)


def test_fully_masked_row_is_uniform_not_nan():
  """A query with no valid key at or before it (left padding) averages every value, as the
  one-block path's finite mask value gives."""
  q, k, v, valid = _qkv_valid(10, 10, 4, 2, "left")
  out = transformer._attention(q, k, v, valid, 2, 3)
  np.testing.assert_allclose(out[1, 0], jnp.repeat(v[1].mean(0), 2, axis=0), atol=1e-6)


def _loss_and_grad(fn):
  """Value and parameter gradient of a weighted mean of the hidden states (weights fixed; a mean,
  so gradients are O(0.1) and 1e-5 is well above float32 rounding)."""
  def loss(params):
    h = fn(params)
    w = jax.random.normal(jax.random.key(5), h.shape)
    return jnp.mean(h * w), h
  return jax.jit(jax.value_and_grad(loss, has_aux=True))


def _assert_trees_close(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, **TOL)


@pytest.mark.parametrize("chunk,remat", [(1, "none"), (5, "full")])
def test_hidden_states_blockwise_matches_one_block(chunk, remat):
  """Left-padded prompts joined with right-padded completions (t = 13, not a multiple of 4 or
  5), GQA (4 query heads over 2 kv heads); with remat "full" the query blocks' checkpoint nests
  in the layer's."""
  one = models.tiny(V, remat=remat)
  params = models.init_params(one, jax.random.key(0))
  prompt = jax.random.randint(jax.random.key(1), (2, 6), 3, V)
  prompt_mask = (jnp.arange(6)[None] >= jnp.array([[0], [2]])).astype(jnp.int32)
  comp = jax.random.randint(jax.random.key(2), (2, 7), 3, V)
  comp_mask = (jnp.arange(7)[None] < jnp.array([[7], [4]])).astype(jnp.int32)
  tokens, mask = models.join_prompt(prompt, prompt_mask, comp, comp_mask)
  run = lambda c: _loss_and_grad(lambda p: models.hidden_states(c, p, tokens, mask))(params)
  (l0, h0), g0 = run(one)
  (l1, h1), g1 = run(dataclasses.replace(one, attention_chunk=chunk))
  np.testing.assert_allclose(h1, h0, **TOL)
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  _assert_trees_close(g1, g0)


@pytest.mark.parametrize("chunk", [4])
def test_grouped_prompt_blockwise_matches_one_block(chunk):
  """completion_hidden_states, group 3: the prompts (p = 6) and the completions (t = 7, over
  p + t keys) both run in blocks; left-padded prompts, right-padded completions."""
  b, g, p, t = 2, 3, 6, 7
  one = models.tiny(V, remat="full")
  params = models.init_params(one, jax.random.key(0))
  prompt = jax.random.randint(jax.random.key(1), (b, p), 3, V)
  prompt_mask = (jnp.arange(p)[None] >= jnp.array([[0], [3]])).astype(jnp.int32)
  comp = jax.random.randint(jax.random.key(2), (b * g, t), 3, V)
  lengths = jnp.array([[7], [1], [4], [7], [2], [5]])
  comp_mask = (jnp.arange(t)[None] < lengths).astype(jnp.float32)
  run = lambda c: _loss_and_grad(lambda params: models.completion_hidden_states(
      c, params, prompt, prompt_mask, comp, comp_mask))(params)
  (_, h0), g0 = run(one)
  (_, h1), g1 = run(dataclasses.replace(one, attention_chunk=chunk))
  np.testing.assert_allclose(h1, h0, **TOL)
  _assert_trees_close(g1, g0)


def test_prefill_blockwise_matches_one_block():
  one = models.tiny(V)
  params = models.init_params(one, jax.random.key(0))
  prompt = jax.random.randint(jax.random.key(1), (2, 9), 3, V)
  mask = (jnp.arange(9)[None] >= jnp.array([[0], [4]])).astype(jnp.int32)
  run = lambda c: jax.jit(lambda p: decode.prefill(c, p, prompt, mask, 12))(params)
  logits0, cache0 = run(one)
  logits1, cache1 = run(dataclasses.replace(one, attention_chunk=2))
  np.testing.assert_allclose(logits1, logits0, **TOL)
  _assert_trees_close(cache1, cache0)


def test_attention_block_sizes():
  auto = models.tiny(V)
  assert auto.attention_block(16) == 16
  assert auto.attention_block(1024) == 1024  # one block: today's exact path
  assert auto.attention_block(1025) == 512
  explicit = models.tiny(V, attention_chunk=3)
  assert explicit.attention_block(10) == 3
  assert explicit.attention_block(2) == 2
  with pytest.raises(ValueError, match="model.attention_chunk"):
    models.tiny(V, attention_chunk=-1)
