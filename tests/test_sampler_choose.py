"""The sampler's per-position helpers (`_choose`, `first_argmax`, `inverse_cdf`): their fast
forms must pick exactly the tokens of the plain expressions they replace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.sampling import sampler


@pytest.mark.parametrize("b,v", [(3, 7), (32, 2048), (4, 49152)])
def test_first_argmax_is_argmax_with_ties_nan_and_inf(b, v):
  rng = np.random.default_rng(v)
  x = rng.normal(size=(b, v)).astype(np.float32)
  x[0, [1, v - 1]] = 50.0  # a tie: the first index wins
  x[1] = -np.inf  # all -inf: index 0
  if b > 2:
    x[2, [2, v // 2]] = np.nan  # NaN: the first NaN
  got = jax.jit(sampler.first_argmax)(x)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(jnp.argmax(x, -1)))
  assert got.dtype == jnp.int32


def test_greedy_choice_is_argmax_and_its_logprob():
  logits = jax.random.normal(jax.random.key(0), (16, 2048)) * 4
  token, logprob, entropy = jax.jit(sampler._choose, static_argnums=(2, 3, 4))(
      jnp.zeros(16), logits, 0.0, 0, 1.0)
  np.testing.assert_array_equal(np.asarray(token), np.asarray(jnp.argmax(logits, -1)))
  logp = jax.nn.log_softmax(logits)
  np.testing.assert_allclose(np.asarray(logprob), np.asarray(logp[jnp.arange(16), token]),
                             rtol=1e-6)
  assert np.all(np.isfinite(np.asarray(entropy)))
