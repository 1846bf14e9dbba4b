"""pass@k / maj@k / mean@k against exact combinatorics and obvious references."""

import math
from fractions import Fraction

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax.evaluation import maj_at_k, mean_at_k, pass_at_k

FAST = hypothesis.settings(max_examples=25, deadline=None, derandomize=True)


def exact(n, c, k):
  """Chen et al. 2021 definition with exact rationals: 1 − C(n−c, k)/C(n, k)."""
  if c == 0:
    return 0.0
  if n - c < k:
    return 1.0
  return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


@st.composite
def nck(draw, max_n=1024):
  n = draw(st.integers(1, max_n))
  return n, draw(st.integers(0, n)), draw(st.integers(1, n))


@FAST
@hypothesis.given(nck(max_n=40))
def test_matches_exact_binomials_small_n(args):
  np.testing.assert_allclose(pass_at_k(*args), exact(*args), rtol=2e-6, atol=1e-7)


def test_matches_exact_binomials_large_n_vectorized():
  rng = np.random.default_rng(0)
  n = np.full(300, 1024)
  c = rng.integers(0, 1025, 300)
  k = rng.integers(1, 1025, 300)
  got = pass_at_k(n, c, k)
  assert isinstance(got, np.ndarray) and got.shape == (300,) and got.dtype == np.float32
  want = [exact(1024, int(ci), int(ki)) for ci, ki in zip(c, k)]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@FAST
@hypothesis.given(nck(max_n=256))
def test_monotone_in_k_and_c(args):
  n, c, k = args
  grid = np.arange(257)  # one shape for every example: one compilation
  by_k = pass_at_k(n, c, np.clip(grid, 1, n))
  assert np.all(np.diff(by_k) >= -1e-6)
  by_c = pass_at_k(n, np.minimum(grid, n), k)
  assert np.all(np.diff(by_c) >= -1e-6)
  assert by_c[0] == 0.0 and by_c[-1] == 1.0 and by_k[-1] == (1.0 if c else 0.0)


def test_jit_and_vmap_with_jax_arrays():
  n = jnp.array([10, 1024, 5, 16])
  c = jnp.array([3, 2, 0, 16])
  k = jnp.array([2, 100, 1, 4])
  got = jax.jit(pass_at_k)(n, c, k)
  assert isinstance(got, jax.Array)
  want = [exact(10, 3, 2), exact(1024, 2, 100), 0.0, 1.0]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(jax.vmap(pass_at_k, in_axes=(None, 0, None))(1024, c, 8),
                             [exact(1024, int(ci), 8) for ci in c], rtol=1e-5)


def ref_majority(answers, correct, k):
  scores = []
  for row, flags in zip(answers, correct):
    row = row[:k]
    counts = {a: row.count(a) for a in row if a is not None}
    if not counts:
      scores.append(0.0)
      continue
    best = max(counts.values())
    winner = next(a for a in row if a is not None and counts[a] == best)
    scores.append(float(flags[row.index(winner)]))
  return scores


def test_maj_at_k():
  answers = [["1", "2", "2", "1", None, "3"], [None, None, "7", "8", "8", "8"],
             [None] * 6, ["5", "4", "4", "5", "5", "5"]]
  correct = np.array([[1, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0], [0] * 6, [0, 1, 1, 0, 0, 0]],
                     bool)
  np.testing.assert_array_equal(maj_at_k(answers, correct), [1.0, 0.0, 0.0, 0.0])
  np.testing.assert_array_equal(maj_at_k(answers, correct, k=3), [0.0, 1.0, 0.0, 1.0])
  rng = np.random.default_rng(1)
  answers = [[None if x == 0 else str(x) for x in rng.integers(0, 4, 9)] for _ in range(50)]
  correct = np.array([[a == "2" for a in row] for row in answers])
  for k in (1, 4, 9):
    np.testing.assert_array_equal(maj_at_k(answers, correct, k),
                                  ref_majority(answers, correct, k))


def test_mean_at_k():
  correct = np.array([[1, 0, 1, 1], [0, 0, 0, 1]], bool)
  np.testing.assert_allclose(mean_at_k(correct), [0.75, 0.25])
  np.testing.assert_allclose(mean_at_k(correct, 2), [0.5, 0.0])
