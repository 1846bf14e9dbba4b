"""Sample-based accuracy metrics: unbiased pass@k, majority-vote maj@k, mean@k.

Each returns one value per prompt; average over prompts to report a benchmark number.
"""

from collections.abc import Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def pass_at_k(n, c, k):
  """Unbiased pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", eq. 1).

  pass@k = 1 − C(n−c, k) / C(n, k) = 1 − Π_{i=n−c+1}^{n} (1 − k/i), and 1 when n − c < k (and
  c > 0). The product is accumulated as Σ log1p(−k/i) and returned as −expm1(Σ), which is stable
  for any n (no binomials, no cancellation); a while-loop runs max(c) steps.

  Args: n samples, c correct, k (1 ≤ k ≤ n); ints or arrays, broadcast together. Jittable:
  with jax inputs it returns a float32 jax.Array, otherwise a float32 numpy array.
  """
  on_device = any(isinstance(a, jax.Array) for a in (n, c, k))
  out = _pass_at_k(*jnp.broadcast_arrays(*(jnp.asarray(a, jnp.float32) for a in (n, c, k))))
  return out if on_device else np.asarray(out)


@jax.jit
def _pass_at_k(n, c, k):
  certain = (n - c < k) & (c > 0)
  num_factors = jnp.where(n - c < k, 0.0, c)

  def body(j, log_prod):
    active = j < num_factors
    i = jnp.where(active, n - j, 1.0)
    return log_prod + jnp.where(active, jnp.log1p(-k / i), 0.0)

  steps = jnp.max(num_factors, initial=0.0).astype(jnp.int32)
  log_prod = jax.lax.fori_loop(0, steps, body, jnp.zeros_like(n))
  return jnp.where(certain, 1.0, 0.0 - jnp.expm1(log_prod))


def maj_at_k(answers: Sequence[Sequence[Hashable | None]], correct, k: int | None = None):
  """maj@k: is the majority answer among each prompt's first k samples correct?

  answers[p][j] is the answer extracted from sample j of prompt p (None when none could be
  extracted; those do not vote), correct[p][j] whether that sample was verified correct. Answers
  vote by equality, so normalise them first (e.g. canonical math strings). Ties go to the answer
  that appears first. A prompt with no extracted answer scores 0.

  Args: answers [P][n]; correct [P, n] bool; k ≤ n (default n). Returns [P] float32 numpy.
  """
  correct = np.asarray(correct, dtype=bool)
  scores = np.zeros(len(answers), np.float32)
  for p, row in enumerate(answers):
    votes: dict[Hashable, list[int]] = {}  # answer -> [count, first index]
    for j, answer in enumerate(row[:k]):
      if answer is not None:
        votes.setdefault(answer, [0, j])[0] += 1
    if votes:
      _, first = max(votes.values(), key=lambda v: (v[0], -v[1]))
      scores[p] = correct[p, first]
  return scores


def mean_at_k(correct, k: int | None = None):
  """mean@k: average accuracy over each prompt's first k samples. correct [..., n] -> [...]."""
  return np.mean(np.asarray(correct, np.float32)[..., :k], axis=-1)
