"""Chunked log-probs (`models.token_logprobs` under its custom VJP) against full logits and
`jax.nn.log_softmax`: values and gradients to 1e-5 in float32, tied and untied heads, a padded
vocabulary, temperatures, masked completion positions, chunks that do not divide t, chunk 1,
micro-batch accumulation; and the automatic chunk size."""

import dataclasses
import functools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import models
from rlvr_jax.configs_base import validate
from rlvr_jax.models import logprobs as logprobs_lib
from rlvr_jax.training.forward import completion_logprobs
from tests.helpers import load_config

V, PADDED_V, D, N, P, T = 29, 40, 64, 3, 4, 7
ATOL = 1e-5


def _reference(c, params, h_ntd, y_nt, temperature):
  """log p(y) and H of softmax(h W / T) over the real ids only (the padding ids cut off)."""
  w_dv = params["embed"].T if c.tie_embeddings else params["lm_head"]
  logits = jnp.einsum("ntd,dv->ntv", h_ntd, w_dv, precision="highest")
  logp = jax.nn.log_softmax(logits[..., :c.valid_vocab_size or c.vocab_size] / temperature, -1)
  return (jnp.take_along_axis(logp, y_nt[..., None], -1)[..., 0],
          -jnp.sum(jnp.exp(logp) * logp, -1))


def _terms(loss_fn, *args):
  """(log p, H, gradients) of a loss returning (sum, (log p, H)): the summed loss (~50) is
  compared through its terms to 1e-5, not itself."""
  grad_fn = jax.value_and_grad(loss_fn, tuple(range(len(args))), has_aux=True)
  (_, aux), grads = jax.jit(grad_fn)(*args)
  return aux, grads


def _config(tied, padded, **kw):
  return models.tiny(PADDED_V if padded else V, tie_embeddings=tied,
                     valid_vocab_size=V if padded else None, d_model=D, **kw)


def _inputs(n=N, t=T, seed=0):
  keys = jax.random.split(jax.random.key(seed), 4)
  h = jax.random.normal(keys[0], (n, t, D))
  y = jax.random.randint(keys[1], (n, t), 0, V)
  # cotangents of log p and H: random weights, zero on masked completion positions
  mask = (jnp.arange(t)[None] < jax.random.randint(keys[2], (n, 1), 1, t + 1)).astype(jnp.float32)
  a, b = jax.random.normal(keys[3], (2, n, t)) * mask
  return h, y, a, b


def _max_diff(x, y):
  """Largest elementwise difference of two pytrees."""
  return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(x),
                                                            jax.tree.leaves(y)))


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
@pytest.mark.parametrize("chunk", [1, 3, T])  # 3 does not divide t = 7; T: the plain path
def test_values_and_gradients_match_full_logits(tied, padded, temperature, chunk):
  c = _config(tied, padded)
  params = models.init_params(c, jax.random.key(0))
  h, y, a, b = _inputs()

  def loss(fn, params, h):
    logp, entropy = fn(params, h)
    return jnp.sum(a * logp + b * entropy), (logp, entropy)

  chunked = lambda p, h: models.token_logprobs(c, p, h, y, temperature=temperature, chunk=chunk)
  reference = lambda p, h: _reference(c, p, h, y, temperature)
  got = _terms(lambda *x: loss(chunked, *x), params, h)
  want = _terms(lambda *x: loss(reference, *x), params, h)
  assert _max_diff(got, want) <= ATOL, _max_diff(got, want)


def test_padding_ids_hold_no_probability_and_get_no_gradient():
  c = _config(tied=False, padded=True)
  params = models.init_params(c, jax.random.key(0))
  h, y, a, b = _inputs()

  def loss(params):
    logp, entropy = models.token_logprobs(c, params, h, y, chunk=2)
    return jnp.sum(a * logp + b * entropy)

  g_dv = jax.grad(loss)(params)["lm_head"]
  assert float(jnp.max(jnp.abs(g_dv[:, V:]))) == 0.0
  assert float(jnp.max(jnp.abs(g_dv[:, :V]))) > 0.0


@pytest.mark.parametrize("tied,padded", [(True, False), (False, True)])
def test_completion_logprobs_gradients_through_the_trunk(tied, padded):
  """`model.logprob_chunk` set: every parameter's gradient as with full logits (the automatic
  chunk at this size) and as the obvious reference over `models.forward`'s logits."""
  c = _config(tied, padded, n_layers=1)
  params = models.init_params(c, jax.random.key(0))
  prompts = jax.random.randint(jax.random.key(1), (N, P), 0, V)
  prompt_mask = (jnp.arange(P)[None] >= jnp.array([0, 1, 3])[:, None]).astype(jnp.int32)
  _, comp, a, b = _inputs()
  comp_mask = (a != 0).astype(jnp.float32)

  def loss(c, params):
    logp, entropy = completion_logprobs(c, params, prompts, prompt_mask, comp, comp_mask, 0.6)
    return jnp.sum(a * logp + b * entropy), (logp, entropy)

  def reference(params):
    seq, seq_mask = models.join_prompt(prompts, prompt_mask, comp, comp_mask)
    logits = models.forward(c, params, seq, seq_mask)[:, P - 1:-1, :V]
    logp = jax.nn.log_softmax(logits / 0.6, -1)
    logp_y = jnp.take_along_axis(logp, comp[..., None], -1)[..., 0]
    entropy = -jnp.sum(jnp.exp(logp) * logp, -1)
    return jnp.sum(a * logp_y + b * entropy), (logp_y, entropy)

  want = _terms(reference, params)
  plain = _terms(functools.partial(loss, c), params)
  assert _max_diff(plain, want) <= ATOL, _max_diff(plain, want)
  got = _terms(functools.partial(loss, dataclasses.replace(c, logprob_chunk=3)), params)
  assert _max_diff(got, want) <= ATOL, _max_diff(got, want)
  assert _max_diff(got, plain) <= ATOL, _max_diff(got, plain)


def test_micro_batch_gradients_sum_to_the_full_batch_gradient():
  c = _config(tied=True, padded=True)
  params = models.init_params(c, jax.random.key(0))
  h, y, a, b = _inputs(n=4)

  def loss(params, start, stop):
    rows = slice(start, stop)
    logp, entropy = models.token_logprobs(c, params, h[rows], y[rows], temperature=0.6, chunk=3)
    return jnp.sum(a[rows] * logp + b[rows] * entropy)

  grad = jax.jit(jax.grad(loss), static_argnums=(1, 2))
  full = grad(params, 0, 4)
  accumulated = jax.tree.map(jnp.add, grad(params, 0, 2), grad(params, 2, 4))
  assert _max_diff(accumulated, full) <= ATOL


@functools.cache
def _params(tied, padded):
  return models.init_params(_config(tied, padded), jax.random.key(0))


@hypothesis.settings(max_examples=6, deadline=None, derandomize=True)
@hypothesis.given(n=st.integers(1, 3), t=st.integers(1, 9), chunk=st.integers(1, 10),
                  temperature=st.floats(0.3, 2.0), tied=st.booleans(), padded=st.booleans(),
                  seed=st.integers(0, 2**16))
def test_property_any_chunk_matches_full_logits(n, t, chunk, temperature, tied, padded, seed):
  c, params = _config(tied, padded), _params(tied, padded)
  h, y, a, b = _inputs(n, t, seed)

  def loss(fn, params):
    logp, entropy = fn(params)
    return jnp.sum(a * logp + b * entropy), (logp, entropy)

  chunked = lambda p: models.token_logprobs(c, p, h, y, temperature=temperature, chunk=chunk)
  got = _terms(lambda p: loss(chunked, p), params)
  want = _terms(lambda p: loss(lambda q: _reference(c, q, h, y, temperature), p), params)
  # logits and their gradients scale with 1 / T
  assert _max_diff(got, want) <= ATOL / min(temperature, 1.0), _max_diff(got, want)


def test_automatic_chunk_is_everything_while_the_logits_fit_the_budget():
  c = models.tiny(152_064)
  row_bytes = 152_064 * 4  # one position's float32 logits
  fits = logprobs_lib.LOGITS_BUDGET_BYTES // row_bytes
  assert models.logprob_chunk_size(c, 1, fits) == fits  # one chunk: the plain path
  assert models.logprob_chunk_size(c, 1, fits + 1) == fits
  assert models.logprob_chunk_size(c, 4, 16_384) == fits // 4
  assert models.logprob_chunk_size(c, 4 * fits, 16) == 1  # never below one position
  assert models.logprob_chunk_size(dataclasses.replace(c, logprob_chunk=512), 4, 16_384) == 512
  assert models.logprob_chunk_size(dataclasses.replace(c, logprob_chunk=512), 4, 100) == 100


def test_negative_chunk_is_refused_naming_the_field():
  with pytest.raises(ValueError, match="chunk must be >= 1"):
    models.token_logprobs(_config(True, False), {}, jnp.zeros((1, 4, D)), jnp.zeros((1, 4), int),
                          chunk=0)
  with pytest.raises(ValueError, match=r"model\.logprob_chunk"):
    models.tiny(V, logprob_chunk=-1)
  config = load_config()
  config.model.logprob_chunk = -1
  with pytest.raises(ValueError, match=r"model\.logprob_chunk"):
    validate(config)
