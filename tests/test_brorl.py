"""BroRL (Hu et al. 2025, arXiv 2510.01180): hundreds of samples a prompt.

BroRL is a setting, not a new estimator (docs/ALGORITHMS.md, "Many samples a prompt"): the
step must sample G = 256-512 completions a prompt without a B·G-row KV cache (in-flight refill,
`rl.decode_refill` / `rl.decode_slots`), run its gradient-free passes in row chunks
(`rl.frozen_pass_chunks`), learn in micro-batches, and keep the group statistics accurate at that G.
Checked here: chunked sampling samples the fixed batch's tokens at a large G; chunked frozen
passes give the one-pass log-probs and values; the group estimators at G = 512 against a float64
numpy reference written from docs/ALGORITHMS.md's formulas (not from the JAX code); the real
compiled step gives the same metrics and parameters with every chunking on; the recipe
validates, refuses bad chunk sizes naming the field, and trains a tiny run.

No reference code exists for BroRL in the stored corpora (ALGORITHMS.md §4 is from the paper's
abstract and NVIDIA's blog). The group estimators' formulas are docs/ALGORITHMS.md's (`grpo`:
unbiased std, reference code verl `verl/trainer/ppo/core_algos.py`, not re-read here).
"""

import functools
import json
import os

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from rlvr_jax import configs_base, models, sampling
from rlvr_jax.algorithms import advantages as adv_lib
from rlvr_jax.configs_base import base_config
from rlvr_jax.training import loop, row_chunks
from rlvr_jax.training.forward import completion_logprobs, completion_values
from rlvr_jax.training.rl_step import make_rl_step, outcome_metrics
from rlvr_jax.training.state import create_state, critic_from_policy, make_optimizer
from tests.helpers import ROOT

V = 37
STOPS = (3, 5, 7, 11, 13, 17, 19, 23)  # lengths spread from 1 to the budget: slots refill often
RECIPE = os.path.join(ROOT, "configs", "recipes", "brorl.py")


def _model(seed=0):
  c = models.tiny(V, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64)
  return c, models.init_params(c, jax.random.key(seed))


def _prompts(b, p=6, seed=0):
  rng = np.random.default_rng(seed)
  prompts, mask = np.zeros((b, p), np.int32), np.zeros((b, p), np.int32)
  for row, length in enumerate(rng.integers(1, p + 1, b)):
    prompts[row, p - length:] = rng.integers(3, V, length)
    mask[row, p - length:] = 1
  return jnp.asarray(prompts), jnp.asarray(mask)


# ---------------------------------------------------------------------------------------------
# Sampling in chunks of rows
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("slots", [16, 48, 256])
def test_chunked_sampling_at_a_large_group_samples_the_fixed_batchs_tokens(slots):
  """G = 128 samples of 2 prompts (256 rows) through 16, 48 (not a divisor) or 256 slots: the
  tokens and masks of the fixed batch (which decodes all 256 rows over one repeated KV cache);
  log-probs and entropies to float32 rounding."""
  c, params = _model()
  prompts, mask = _prompts(2)
  sample = lambda slots: jax.device_get(jax.jit(functools.partial(
      sampling.generate, c, max_new_tokens=12, eos_id=STOPS[0], stop_ids=STOPS[1:], pad_id=0,
      num_samples=128, decode_slots=slots))(params, prompts, mask, jax.random.key(5)))
  fixed, chunked = sample(None), sample(slots)
  assert fixed.tokens.shape == (256, 12)
  assert len(set(fixed.mask.sum(-1).tolist())) >= 6  # rows end at many different steps
  np.testing.assert_array_equal(chunked.tokens, fixed.tokens)
  np.testing.assert_array_equal(chunked.mask, fixed.mask)
  for field in ("logprobs", "entropies"):
    np.testing.assert_allclose(getattr(chunked, field), getattr(fixed, field), rtol=1e-6,
                               atol=1e-6, err_msg=field)


def test_chunked_sampling_holds_a_cache_of_the_slots_only():
  """The compiled sampler's temporaries: the fixed batch's KV cache grows with B·G, refill's
  with the slots (compile only, nothing allocated)."""
  c, _ = _model()
  params = jax.eval_shape(functools.partial(models.init_params, c), jax.random.key(0))
  ids = jax.ShapeDtypeStruct((2, 6), jnp.int32)
  key = jax.eval_shape(lambda: jax.random.key(0))

  def temp(g, slots):
    fn = jax.jit(functools.partial(sampling.generate, c, max_new_tokens=64, eos_id=1, pad_id=0,
                                   num_samples=g, decode_slots=slots))
    return fn.lower(params, ids, ids, key).compile().memory_analysis().temp_size_in_bytes

  cache_row = 2 * c.n_layers * c.n_kv_heads * c.resolved_head_dim * (6 + 64) * 4  # k and v
  fixed = temp(512, None)
  assert fixed > 1024 * cache_row  # the 1024-row cache (and a copy: repeat_cache)
  assert temp(512, 32) < fixed / 8
  assert temp(512, 32) < temp(64, None)  # 1024 rows in 32 slots: less than 128 rows at once


# ---------------------------------------------------------------------------------------------
# Gradient-free passes in chunks of rows
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunks", [1, 2, 8, 16])
def test_frozen_passes_in_chunks_give_the_one_pass_values(chunks):
  """4 prompts x G = 16 in 1 (the one-pass program itself), 2, 8 or 16 chunks (one sample of
  every prompt a chunk): the behaviour log-probs and the critic's values of every row, in the
  rows' order."""
  c, params = _model(1)
  b, g, t = 4, 16, 7
  prompts, mask = _prompts(b, seed=1)
  rng = np.random.default_rng(1)
  tokens = jnp.asarray(rng.integers(3, V, (b * g, t)), jnp.int32)
  tmask = jnp.asarray(np.arange(t)[None] < rng.integers(1, t + 1, (b * g, 1)), jnp.float32)
  critic = critic_from_policy(params)
  critic["head"] = {"w": jnp.linspace(-1.0, 1.0, c.d_model), "b": jnp.float32(0.1)}
  passes = {"logp": lambda *x: completion_logprobs(c, params, *x, 0.7)[0],
            "values": functools.partial(completion_values, c, critic)}
  for name, fn in passes.items():
    one = fn(prompts, mask, tokens, tmask)
    chunked = jax.jit(lambda *a, fn=fn: row_chunks.map_row_chunks(fn, *a[:2], a[2:], chunks))(
        prompts, mask, tokens, tmask)
    assert chunked.shape == (b * g, t)
    np.testing.assert_allclose(chunked, one, rtol=1e-6, atol=1e-6, err_msg=name)


def test_frozen_pass_chunks_that_do_not_divide_the_group_are_refused():
  c = base_config()
  c.rl.update(batch_size=4, group_size=12, frozen_pass_chunks=8)
  with pytest.raises(ValueError, match=r"config\.rl\.frozen_pass_chunks: 8 chunks must divide "
                     r"rl\.group_size = 12"):
    configs_base.validate(c)
  c.rl.frozen_pass_chunks = 0
  with pytest.raises(ValueError, match=r"config\.rl\.frozen_pass_chunks"):
    configs_base.validate(c)
  for ok in (1, 2, 3, 4, 6, 12):
    c.rl.frozen_pass_chunks = ok
    configs_base.validate(c)


# ---------------------------------------------------------------------------------------------
# Group statistics at G = 512
# ---------------------------------------------------------------------------------------------
def _np_grpo(r, eps=1e-6, scale=True):
  """docs/ALGORITHMS.md `grpo` / `dr_grpo`, float64: (R − mean) / (std_ddof1 + eps)."""
  r = np.asarray(r, np.float64)
  adv = r - r.mean(-1, keepdims=True)
  return adv / (r.std(-1, ddof=1, keepdims=True) + eps) if scale else adv


def _np_rloo(r):
  r = np.asarray(r, np.float64)
  g = r.shape[-1]
  return np.stack([r[..., i] - np.delete(r, i, axis=-1).mean(-1) for i in range(g)], -1)


def _np_lite_ppo(r, eps=1e-6):
  r = np.asarray(r, np.float64)
  return (r - r.mean(-1, keepdims=True)) / (r.std(ddof=1) + eps)


def _groups_512():
  """[6, 512] rewards: one right, one wrong, half right, random 0/1, continuous, all equal."""
  rng = np.random.default_rng(0)
  g = 512
  one_right, one_wrong = np.zeros(g), np.ones(g)
  one_right[137], one_wrong[400] = 1.0, 0.0
  half = (np.arange(g) % 2).astype(float)
  return np.stack([one_right, one_wrong, half, (rng.random(g) < 0.03).astype(float),
                   rng.normal(0.3, 2.0, g), np.full(g, 2.3)]).astype(np.float32)


def test_group_estimators_at_512_match_a_float64_reference():
  r = _groups_512()
  cases = {"grpo": (adv_lib.grpo(r), _np_grpo(r)),
           "dr_grpo": (adv_lib.grpo(r, scale_by_std=False), _np_grpo(r, scale=False)),
           "rloo": (adv_lib.rloo(r), _np_rloo(r)),
           "lite_ppo": (adv_lib.lite_ppo(r), _np_lite_ppo(r))}
  for name, (got, want) in cases.items():
    got = np.asarray(got)
    assert got.dtype == np.float32 and np.all(np.isfinite(got)), name
    # float32 rounding of sums over 512 terms; the largest advantage is ~22.6 (1 right of 512)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=name)
    assert np.all(got[-1] == 0.0), f"{name}: a group of equal rewards is not exactly 0"
  # 1 right of 512: A = (1 − 1/512) / sqrt(1/512) exactly, the signal large G is for
  np.testing.assert_allclose(np.asarray(adv_lib.grpo(r))[0, 137],
                             (1 - 1 / 512) / (np.sqrt(1 / 512) + 1e-6), rtol=1e-6)
  m = jax.device_get(outcome_metrics(jnp.asarray(r[:5])))
  assert m["solve_all_frac"] == 0.0 and m["solve_none_frac"] == 0.0
  np.testing.assert_array_equal(np.asarray(adv_lib.dynamic_sampling_mask(r))[:, 0],
                                [1, 1, 1, 1, 1, 0])


@settings(max_examples=25, deadline=None)
@given(g=st.sampled_from([256, 384, 512]), p=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_grpo_at_large_g_matches_the_reference_for_any_pass_rate(g, p, seed):
  """0/1 rewards at any pass rate: the float32 estimator equals the float64 formula (sums of
  0/1 over 512 are exact in float32), zero-mean in each group, and 0 for all-equal groups."""
  r = (np.random.default_rng(seed).random((3, g)) < p).astype(np.float32)
  got = np.asarray(adv_lib.grpo(r))
  np.testing.assert_allclose(got, _np_grpo(r), rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(got.sum(-1), 0.0, atol=1e-3)
  equal = r.min(-1) == r.max(-1)
  assert np.all(got[equal] == 0.0)


# ---------------------------------------------------------------------------------------------
# The real compiled step
# ---------------------------------------------------------------------------------------------
def _reward(tokens, mask, answer_ids, meta):
  """A jittable reward with spread inside every group: the share of even ids among the valid
  tokens, so advantages and gradients are not 0."""
  del answer_ids, meta
  return ((tokens % 2 == 0) * mask).sum(-1) / jnp.maximum(mask.sum(-1), 1.0)


def _step(**rl):
  """(metrics, params) of one compiled RL step: 2 prompts x G = 32, 2 minibatches (so the
  behaviour log-probs come from a frozen pass), a k3 KL term (a reference pass)."""
  config = base_config()
  config.rl.update(batch_size=2, group_size=32, max_new_tokens=10, minibatches=2, **rl)
  config.rl.optimizer.warmup_steps = 0  # the first update moves the parameters
  config.algorithm.terms = dict(kl=dict(coef=0.01, kind="k3"))
  configs_base.validate(config)
  c, params = _model(2)
  optimizer = make_optimizer(config.rl.optimizer, config.rl.steps)
  step = jax.jit(make_rl_step(config, c, _reward, optimizer, eos_id=STOPS[0], pad_id=0))
  state = create_state(params, optimizer, with_reference=True)
  prompts, mask = _prompts(2, seed=2)
  batch = dict(prompt_ids=prompts, prompt_mask=mask, answer_ids=jnp.zeros((2, 4), jnp.int32),
               meta=jnp.zeros((2, 1), jnp.int32))
  state, metrics = step(state, batch, jax.random.key(9))
  return jax.device_get(metrics), jax.device_get(state.params)


def test_the_step_with_chunked_sampling_passes_and_micro_batches_is_the_plain_step():
  """Refill through 24 slots, the frozen passes in 4 chunks and 4 micro-batches against the
  fixed batch, one pass and one micro-batch: the same samples and rewards, the same loss and
  gradient norm, the same parameters after two updates (the behaviour and the reference
  log-probs enter both through the ratio and the KL term). Metrics averaged over micro-batches
  (approx_kl, kl_ref, policy_entropy, ...) are means of means there, so they are not compared."""
  plain_metrics, plain_params = _step()
  metrics, params = _step(decode_refill=True, decode_slots=24, frozen_pass_chunks=4,
                          microbatches=4)
  assert plain_metrics["grad_norm"] > 0 and plain_metrics["kl_ref"] > 0
  assert not jax.tree.all(jax.tree.map(np.array_equal, plain_params, _model(2)[1]))
  assert metrics["completion_tokens"] == plain_metrics["completion_tokens"]
  assert metrics["reward_mean"] == plain_metrics["reward_mean"]
  for key in ("loss", "grad_norm", "reward_std", "sample_entropy", "adv_abs_mean",
              "loss_tokens_frac"):
    np.testing.assert_allclose(metrics[key], plain_metrics[key], rtol=1e-5, atol=1e-6,
                               err_msg=key)
  # Adam divides each coordinate's gradient by its own magnitude, so where a gradient is ~0 the
  # float32 rounding of a differently summed gradient moves the update visibly (measured: 1 of
  # 4096 entries off by 1.3e-6); every entry must agree to 1% of one step's size (lr 1e-3).
  lr = 1e-3
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=0.01 * lr),
               params, plain_params)
  close = jax.tree.leaves(jax.tree.map(lambda a, b: np.isclose(a, b, rtol=1e-5, atol=1e-6).mean(),
                                       params, plain_params))
  assert min(close) > 0.99


# ---------------------------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", [None, "cpu"])
def test_the_recipe_validates_at_512_samples_a_prompt(variant):
  config = configs_base.load_config(RECIPE if variant is None else f"{RECIPE}:{variant}")
  configs_base.validate(config)
  rl = config.rl
  assert rl.group_size >= 256 and rl.decode_refill and rl.decode_slots > 0
  assert rl.decode_slots < rl.batch_size * rl.group_size
  assert rl.frozen_pass_chunks > 1
  rows_per_micro = rl.batch_size * rl.group_size // (rl.minibatches * rl.microbatches)
  assert rows_per_micro < rl.group_size  # a micro-batch is a share of one group


def test_the_cpu_recipe_trains_a_tiny_step(tmp_path):
  config = configs_base.load_config(f"{RECIPE}:cpu")
  config.update_from_flattened_dict({
      "sft.steps": 10, "sft.target_accuracy": 0.0, "rl.steps": 1, "rl.group_size": 64,
      "rl.batch_size": 1, "rl.decode_slots": 16, "rl.frozen_pass_chunks": 4,
      "rl.minibatches": 2, "rl.microbatches": 2, "eval.every": 1, "eval.num_prompts": 16,
      "eval.batch_size": 16, "checkpoint.every": 1})
  summary = loop.train(config, str(tmp_path), progress=False)
  assert summary["rl_steps"] == 1
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    rl = [r for r in map(json.loads, f) if r.get("phase") == "rl"]
  assert len(rl) == 1 and np.isfinite(rl[0]["loss"])
  assert 0 < rl[0]["decode_slot_utilisation"] <= 1
