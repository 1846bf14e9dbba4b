"""Sampler tests: KV-cache decoding agrees with full-sequence forward passes."""

import dataclasses
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


def test_inverse_cdf_categorical_matches_probabilities_and_skips_zero_mass():
  # Mass 0 on ids 0, 3 and the last id (filtered to -inf, as top-k / padding ids are).
  logits = jnp.log(jnp.array([0.0, 0.1, 0.6, 0.0, 0.3, 0.0]))
  u = jax.random.uniform(jax.random.key(0), (20000,))
  draws = sampling.categorical(u, jnp.tile(logits, (20000, 1)), block=4)  # 2 blocks, 1 padded
  freq = np.bincount(np.asarray(draws), minlength=6) / 20000
  assert freq[[0, 3, 5]].sum() == 0
  # binomial standard error at p = 0.6, n = 20000 is 0.0035: 5 sigma
  np.testing.assert_allclose(freq, [0.0, 0.1, 0.6, 0.0, 0.3, 0.0], atol=0.0175)
  one_hot = jnp.log(jnp.eye(5))[:, ::-1]
  for u in (0.0, 0.5, 1.0 - 2**-24):  # the ends of [0, 1) included
    draws = sampling.categorical(jnp.full((5,), u), one_hot, block=2)
    np.testing.assert_array_equal(np.asarray(draws), [4, 3, 2, 1, 0])


def test_blocked_inverse_cdf_draws_the_same_id_as_a_plain_cdf():
  logits = jax.random.normal(jax.random.key(2), (64, 1000)) * 3
  u = jax.random.uniform(jax.random.key(3), (64,))
  cdf = np.cumsum(np.asarray(jax.nn.softmax(logits.astype(jnp.float64)
                                            if jax.config.x64_enabled else logits)), -1)
  plain = (cdf <= (np.asarray(u) * cdf[:, -1])[:, None]).sum(-1)
  for block in (7, 128, 256, 2048):
    drawn = np.asarray(sampling.categorical(u, logits, block=block))
    # float32 sums in another order can move a draw only where u sits on a CDF step
    assert (drawn == plain).mean() >= 0.98, block


def test_group_samples_share_one_prefill_and_match_repeated_prompts():
  c, params, prompts, mask = _setup()
  for temperature in (0.0, 1.0):
    grouped = sampling.generate(c, params, prompts, mask, jax.random.key(5), max_new_tokens=6,
                                temperature=temperature, num_samples=3)
    repeated = sampling.generate(c, params, prompts.repeat(3, 0), mask.repeat(3, 0),
                                 jax.random.key(5), max_new_tokens=6, temperature=temperature)
    np.testing.assert_array_equal(np.asarray(grouped.tokens), np.asarray(repeated.tokens))
    np.testing.assert_allclose(np.asarray(grouped.logprobs), np.asarray(repeated.logprobs),
                               atol=1e-5)
  # the group's samples differ (they are not copies of one sample)
  rows = np.asarray(grouped.tokens).reshape(4, 3, -1)
  assert any(len({tuple(r) for r in group}) > 1 for group in rows)


def test_scanned_decode_layers_sample_what_unrolled_layers_sample():
  """decode_weight_gather="per_layer" scans the stacked layers and cache (the FSDP memory
  floor); the samples, log-probs and entropies are those of the unrolled decode step."""
  c, params, prompts, mask = _setup()
  out = {}
  for gather in ("once", "per_layer"):
    cg = dataclasses.replace(c, decode_weight_gather=gather)
    out[gather] = sampling.generate(cg, params, prompts, mask, jax.random.key(5),
                                    max_new_tokens=6, temperature=1.0, num_samples=3)
  assert isinstance(models.init_cache(dataclasses.replace(c, decode_weight_gather="per_layer"),
                                      2, 4), dict)  # stacked [l, ...] buffers
  np.testing.assert_array_equal(np.asarray(out["once"].tokens),
                                np.asarray(out["per_layer"].tokens))
  for field in ("logprobs", "entropies", "mask"):
    np.testing.assert_allclose(np.asarray(getattr(out["once"], field)),
                               np.asarray(getattr(out["per_layer"], field)), atol=1e-5)
  with pytest.raises(ValueError, match="decode_weight_gather"):
    dataclasses.replace(c, decode_weight_gather="sometimes")


def test_padded_vocabulary_ids_are_never_sampled_and_hold_no_mass():
  c = models.tiny(V + 27, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64, valid_vocab_size=V)
  _, params, prompts, mask = _setup(c)
  out = sampling.generate(c, params, prompts.repeat(50, 0), mask.repeat(50, 0),
                          jax.random.key(0), max_new_tokens=8, temperature=2.0)
  assert int(np.asarray(out.tokens).max()) < V
  probs = jax.nn.softmax(models.forward(c, params, prompts, mask), axis=-1)
  assert float(probs[..., V:].sum()) == 0.0


def test_bfloat16_kv_cache_stays_close_to_float32():
  c, _, prompts, mask = _setup()
  params = models.init_params(c, jax.random.key(0))  # default scale: attention scores O(1)
  f32 = sampling.generate(c, params, prompts, mask, jax.random.key(0), max_new_tokens=6,
                          temperature=0.0)
  c16 = models.tiny(V, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64, cache_dtype="bfloat16")
  assert models.init_cache(c16, 1, 4)[0]["k"].dtype == jnp.bfloat16
  b16 = sampling.generate(c16, params, prompts, mask, jax.random.key(0), max_new_tokens=6,
                          temperature=0.0)
  # bf16 keeps 8 bits of mantissa (relative error 2^-9 per cached entry); with O(1) scores the
  # log-probs of the same greedy tokens agree to 1e-2
  agree = np.asarray(f32.tokens) == np.asarray(b16.tokens)
  assert agree[:, 0].all() and agree.mean() >= 0.9
  first = agree.cumprod(axis=1).astype(bool)  # positions before any divergence
  np.testing.assert_allclose(np.asarray(b16.logprobs)[first], np.asarray(f32.logprobs)[first],
                             atol=1e-2)


def test_bfloat16_kv_cache_halves_the_cache_in_compiled_memory():
  def temp_bytes(c):
    params = jax.eval_shape(functools.partial(models.init_params, c), jax.random.key(0))
    prompts = jax.ShapeDtypeStruct((16, 8), jnp.int32)
    fn = jax.jit(functools.partial(sampling.generate, c, max_new_tokens=248, temperature=1.0))
    compiled = fn.lower(params, prompts, prompts, jax.random.key(0)).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  kw = dict(d_model=64, n_heads=4, n_kv_heads=4, d_ff=64)
  f32, b16 = (temp_bytes(models.tiny(V, **kw, cache_dtype=dt)) for dt in ("float32", "bfloat16"))
  # 2 layers x {k, v} x 16 rows x 4 heads x 256 slots x 16 dims: 2 MiB in f32, 1 MiB in bf16
  cache_f32 = 2 * 2 * 16 * 4 * 256 * 16 * 4
  assert f32 - b16 >= 0.9 * cache_f32 / 2, (f32, b16)


@pytest.mark.parametrize("gather", ["once", "per_layer"])
def test_cache_segments_sample_what_one_segment_samples(gather):
  """decode_cache_segments splits the decode loop into while_loops over a growing cache; the
  samples, log-probs, entropies and masks are those of one loop over the full cache, with rows
  stopping inside every segment, and each loop's cache ends where its segment ends."""
  c, params, prompts, mask = _setup()
  first = sampling.generate(c, params, prompts, mask, jax.random.key(3), max_new_tokens=10,
                            temperature=1.0, num_samples=2)
  stop = int(first.tokens[0, 4])  # some row stops mid-way, others run to the end
  out, loops = {}, {}
  for segments in (1, 3, 10):
    cs = dataclasses.replace(c, decode_weight_gather=gather, decode_cache_segments=segments)
    gen = functools.partial(sampling.generate, cs, max_new_tokens=10, temperature=1.0,
                            num_samples=2, eos_id=stop)
    out[segments] = jax.jit(gen)(params, prompts, mask, jax.random.key(3))
    jaxpr = jax.make_jaxpr(gen)(params, prompts, mask, jax.random.key(3))
    loops[segments] = [e for e in jaxpr.eqns if e.primitive.name == "while"]
  lengths = np.asarray(out[1].mask.sum(-1))
  assert lengths.min() < 4 and lengths.max() == 10  # rows end in different segments
  for segments in (3, 10):
    np.testing.assert_array_equal(np.asarray(out[1].tokens), np.asarray(out[segments].tokens))
    for field in ("logprobs", "entropies", "mask"):
      np.testing.assert_allclose(np.asarray(getattr(out[1], field)),
                                 np.asarray(getattr(out[segments], field)), atol=1e-5)
  p = prompts.shape[1]
  n_cache = 2 if gather == "per_layer" else 2 * c.n_layers  # the carry's leading leaves
  for segments, found in loops.items():
    ends = sampling.segment_ends(10, segments)
    assert len(found) == segments
    for loop, end in zip(found, ends):
      shapes = [v.aval.shape for v in loop.outvars[:n_cache]]  # k [.., s], v [.., s, e] per layer
      slots = {shape[-1] if i % 2 == 0 else shape[-2] for i, shape in enumerate(shapes)}
      assert slots == {p + end}, (segments, shapes, p + end)


def test_segment_ends_split_the_steps_evenly():
  for n in range(1, 40):
    for segments in range(1, 12):
      ends = sampling.segment_ends(n, segments)
      assert ends[-1] == n and len(ends) == min(segments, n)
      sizes = np.diff([0] + ends)
      assert sizes.min() >= 1 and sizes.max() - sizes.min() <= 1
  auto = lambda n: models.tiny(V).cache_segments(n)
  assert [auto(n) for n in (8, 31, 32, 64, 128, 255, 256, 4096)] == [1, 1, 1, 2, 4, 7, 8, 8]
  with pytest.raises(ValueError, match="decode_cache_segments"):
    models.tiny(V, decode_cache_segments=-1)


def test_sharded_weights_decode_in_one_segment_unless_asked():
  """An automatic segment count is 1 over sharded weights (each segment's decode loop would
  hold its own gathered copy of them); an explicit one is kept; one device is unchanged."""
  auto = models.tiny(V)
  assert auto.cache_segments(256) == 8
  assert auto.for_weight_shards(1) is auto
  assert auto.for_weight_shards(8).cache_segments(256) == 1
  explicit = dataclasses.replace(auto, decode_cache_segments=4)
  assert explicit.for_weight_shards(8).cache_segments(256) == 4
