"""Sampler tests: KV-cache decoding agrees with full-sequence forward passes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import models, sampling

V = 37


def _setup(config=None, seed=0):
  c = config or models.tiny(V, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64)
  # Larger init than the default makes argmax decisions far from ties.
  params = jax.tree.map(lambda x: x * 8 if x.ndim > 1 else x,
                        models.init_params(c, jax.random.key(seed)))
  lengths = np.array([5, 3, 1, 4])
  p = lengths.max()
  rng = np.random.default_rng(seed)
  prompts = np.zeros((len(lengths), p), np.int32)
  mask = np.zeros((len(lengths), p), np.int32)
  for b, length in enumerate(lengths):
    prompts[b, p - length:] = rng.integers(3, V, length)
    mask[b, p - length:] = 1
  return c, params, jnp.asarray(prompts), jnp.asarray(mask)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_greedy_cache_decode_matches_full_forward_argmax(arch):
  extra = {"qwen2": dict(qkv_bias=True), "qwen3": dict(qk_norm=True, tie_embeddings=False),
           "llama": {}}[arch]
  c = models.tiny(V, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64, **extra)
  c, params, prompts, mask = _setup(c)
  n = 6
  out = jax.jit(functools.partial(sampling.generate, c, max_new_tokens=n, temperature=0.0))(
      params, prompts, mask, jax.random.key(0))
  # Reference: grow each sequence one token at a time with the full forward pass.
  seq, seq_mask = np.asarray(prompts), np.asarray(mask)
  for i in range(n):
    logits = models.forward(c, params, jnp.asarray(seq), jnp.asarray(seq_mask))
    nxt = np.asarray(jnp.argmax(logits[:, -1], -1))
    np.testing.assert_array_equal(np.asarray(out.tokens[:, i]), nxt, err_msg=f"step {i}")
    ref_logp = jax.nn.log_softmax(logits[:, -1])[np.arange(len(nxt)), nxt]
    np.testing.assert_allclose(out.logprobs[:, i], ref_logp, atol=1e-4)
    seq = np.concatenate([seq, nxt[:, None]], 1)
    seq_mask = np.concatenate([seq_mask, np.ones_like(nxt)[:, None]], 1)
  assert float(out.mask.min()) == 1.0


def test_eos_masks_and_pads_and_exits_early():
  c, params, prompts, mask = _setup()
  greedy = sampling.generate(c, params, prompts, mask, jax.random.key(0), max_new_tokens=5,
                             temperature=0.0)
  eos = int(greedy.tokens[0, 1])  # row 0 emits this token at step 1
  out = sampling.generate(c, params, prompts, mask, jax.random.key(0), max_new_tokens=5,
                          temperature=0.0, eos_id=eos, pad_id=0)
  tokens, m = np.asarray(out.tokens), np.asarray(out.mask)
  for b in range(tokens.shape[0]):
    hits = np.flatnonzero(np.asarray(greedy.tokens[b]) == eos)
    end = hits[0] + 1 if hits.size else tokens.shape[1]
    np.testing.assert_array_equal(m[b, :end], 1)
    np.testing.assert_array_equal(m[b, end:], 0)
    np.testing.assert_array_equal(tokens[b, end:], 0)
    np.testing.assert_array_equal(tokens[b, :end], np.asarray(greedy.tokens[b, :end]))
    assert np.all(np.asarray(out.logprobs)[b, end:] == 0)


def test_early_exit_runs_fewer_iterations():
  c, params, prompts, mask = _setup()
  first = sampling.generate(c, params, prompts, mask, jax.random.key(0), max_new_tokens=1,
                            temperature=0.0)
  # Make every row stop at step 0 by declaring each row's first greedy token a stop token.
  out = sampling.generate(c, params, prompts, mask, jax.random.key(0), max_new_tokens=50,
                          temperature=0.0, stop_ids=tuple(int(t) for t in first.tokens[:, 0]))
  np.testing.assert_array_equal(np.asarray(out.mask[:, 0]), 1)
  np.testing.assert_array_equal(np.asarray(out.mask[:, 1:]), 0)


def test_sampling_statistics_and_logprobs():
  c, params, prompts, mask = _setup()
  prompts, mask = prompts[:1].repeat(2000, 0), mask[:1].repeat(2000, 0)
  out = jax.jit(functools.partial(sampling.generate, c, max_new_tokens=1, temperature=1.3))(
      params, prompts, mask, jax.random.key(3))
  logits = models.forward(c, params, prompts[:1], mask[:1])[0, -1] / 1.3
  probs = np.asarray(jax.nn.softmax(logits))
  freq = np.bincount(np.asarray(out.tokens[:, 0]), minlength=V) / 2000
  assert np.abs(freq - probs).max() < 0.05
  np.testing.assert_allclose(np.asarray(out.logprobs[:, 0]),
                             np.log(probs[np.asarray(out.tokens[:, 0])]), atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.entropies[0, 0]), -(probs * np.log(probs)).sum(),
                             atol=1e-5)


def test_top_k_and_top_p_restrict_support():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  assert np.isfinite(np.asarray(sampling.filter_logits(logits, top_k=2))).sum() == 2
  kept = np.isfinite(np.asarray(sampling.filter_logits(logits, top_p=0.7)))
  np.testing.assert_array_equal(kept[0], [True, True, False, False])
  kept = np.isfinite(np.asarray(sampling.filter_logits(logits, top_p=0.1)))
  np.testing.assert_array_equal(kept[0], [True, False, False, False])
