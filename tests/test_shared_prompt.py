"""The training forward runs each prompt once per GRPO group: same hidden states, log-probs and
gradients as running every completion with its own copy of the prompt."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import models
from rlvr_jax.training.rl_step import completion_logprobs

V, B, G, P, T = 37, 3, 4, 6, 5


def _data():
  prompts = jax.random.randint(jax.random.key(1), (B, P), 3, V)
  prompt_mask = (jnp.arange(P)[None] >= jnp.array([0, 2, 5])[:, None]).astype(jnp.int32)
  comp = jax.random.randint(jax.random.key(2), (B * G, T), 3, V)
  lengths = jax.random.randint(jax.random.key(3), (B * G, 1), 1, T + 1)
  comp_mask = (jnp.arange(T)[None] < lengths).astype(jnp.float32)
  return prompts, prompt_mask, comp, comp_mask


@pytest.mark.parametrize("extra", [{}, dict(qkv_bias=True),
                                   dict(qk_norm=True, tie_embeddings=False)])
def test_grouped_prompts_match_repeated_prompts(extra):
  c = models.tiny(V, **extra)
  params = models.init_params(c, jax.random.key(0))
  prompts, prompt_mask, comp, comp_mask = _data()
  rep = lambda x: jnp.repeat(x, G, axis=0)

  def loss(params, shared):
    p_ids, p_mask = (prompts, prompt_mask) if shared else (rep(prompts), rep(prompt_mask))
    logp, entropy = completion_logprobs(c, params, p_ids, p_mask, comp, comp_mask)
    return jnp.sum(logp * comp_mask) + 0.1 * jnp.sum(entropy * comp_mask), (logp, entropy)

  (l1, (logp1, ent1)), g1 = jax.value_and_grad(loss, has_aux=True)(params, True)
  (l2, (logp2, ent2)), g2 = jax.value_and_grad(loss, has_aux=True)(params, False)
  m = np.asarray(comp_mask) > 0
  np.testing.assert_allclose(np.asarray(logp1)[m], np.asarray(logp2)[m], atol=2e-5)
  np.testing.assert_allclose(np.asarray(ent1)[m], np.asarray(ent2)[m], atol=2e-5)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-4)
  assert max(float(jnp.abs(a).max()) for a in jax.tree.leaves(g1)) > 1e-3  # not vacuous


def test_rows_must_be_whole_groups():
  c = models.tiny(V)
  params = models.init_params(c, jax.random.key(0))
  prompts, prompt_mask, comp, comp_mask = _data()
  with pytest.raises(ValueError, match="whole number of groups"):
    models.completion_hidden_states(c, params, prompts[:2], prompt_mask[:2], comp[:-1],
                                    comp_mask[:-1])
