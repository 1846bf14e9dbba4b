"""In-flight refill (`sampling.generate(..., decode_slots=k)`, k rows decoding at once): the same
completions as the fixed batch, whatever the slots; a decode schedule that matches list
scheduling of the rows; the RL step's decode metrics with refill on and off; the config
combinations it refuses."""

import dataclasses
import functools
import heapq

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import configs_base, models, sampling
from tests.helpers import device_batches, load_config, rl_run

V = 37
# With several stop ids a completion stops with probability ~ 8/37 a token: lengths spread
# from 1 to the budget, so rows finish at different steps and slots are refilled mid-loop,
# several in one step.
STOPS = (3, 5, 7, 11, 13, 17, 19, 23)
B = 5


def _setup(seed=0):
  """A tiny model and B left-padded prompts of lengths 1..6."""
  c = models.tiny(V, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64)
  params = models.init_params(c, jax.random.key(seed))
  rng = np.random.default_rng(seed)
  p = 6
  prompts, mask = np.zeros((B, p), np.int32), np.zeros((B, p), np.int32)
  for row, length in enumerate(rng.integers(1, p + 1, B)):
    prompts[row, p - length:] = rng.integers(3, V, length)
    mask[row, p - length:] = 1
  return c, params, jnp.asarray(prompts), jnp.asarray(mask)


def _sample(c, params, prompts, mask, *, slots, n, g, temperature=1.0, **kw):
  fn = jax.jit(functools.partial(sampling.generate_with_stats, c, max_new_tokens=n,
                                 temperature=temperature, eos_id=STOPS[0], stop_ids=STOPS[1:],
                                 pad_id=0, num_samples=g, decode_slots=slots, **kw))
  comp, stats = fn(params, prompts, mask, jax.random.key(7))
  return jax.device_get(comp), jax.device_get(stats)


def _assert_same(got, want):
  """Tokens and masks equal; log-probs and entropies equal up to float32 rounding (the decode
  step runs on another number of rows over a longer, masked cache)."""
  np.testing.assert_array_equal(got.tokens, want.tokens)
  np.testing.assert_array_equal(got.mask, want.mask)
  for field in ("logprobs", "entropies"):
    np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-6, atol=1e-6,
                               err_msg=field)


def _list_schedule(row_len, slots):
  """Reference decode steps: row j (in original order) starts on the slot that frees first
  (lowest index on ties) and holds it for its length."""
  free = [(0, s) for s in range(slots)]
  for length in row_len:
    t, s = heapq.heappop(free)
    heapq.heappush(free, (t + length, s))
  return max(t for t, _ in free)


def _assert_schedule(comp, stats, slots):
  """decode_steps from the reference scheduler; utilisation = tokens / (steps x rows)."""
  lengths = comp.mask.sum(-1)
  rows = min(slots, len(lengths))
  steps = _list_schedule(lengths.tolist(), rows)
  assert stats.decode_steps == steps
  np.testing.assert_allclose(stats.slot_utilisation, lengths.sum() / (steps * rows), rtol=1e-6)


@pytest.mark.parametrize("g,n", [(1, 16), (3, 1), (3, 16)])
def test_refill_samples_what_the_fixed_batch_samples(g, n):
  """Slots: one, fewer than a group, not a multiple of G, more than the rows."""
  c, params, prompts, mask = _setup()
  fixed, _ = _sample(c, params, prompts, mask, slots=None, n=n, g=g)
  lengths = fixed.mask.sum(-1)
  if n == 16:  # rows stop at many different steps, some run the whole budget
    assert lengths.min() <= 2 and len(set(lengths.tolist())) >= 4
  for slots in (1, 2, 4, 3 * B + 1):
    refill, stats = _sample(c, params, prompts, mask, slots=slots, n=n, g=g)
    _assert_same(refill, fixed)
    _assert_schedule(refill, stats, slots)


@pytest.mark.parametrize("kw", [dict(top_k=5), dict(top_p=0.8), dict(temperature=0.0)])
def test_refill_keeps_truncated_and_greedy_sampling(kw):
  c, params, prompts, mask = _setup(1)
  fixed, _ = _sample(c, params, prompts, mask, slots=None, n=8, g=2, **kw)
  refill, _ = _sample(c, params, prompts, mask, slots=3, n=8, g=2, **kw)
  _assert_same(refill, fixed)


def test_refill_with_scanned_decode_layers_and_cache_segments():
  """decode_weight_gather="per_layer" writes each row's slot into the stacked cache; cache
  segments (which refill cannot use) leave the fixed batch's samples unchanged."""
  c, params, prompts, mask = _setup(2)
  fixed, _ = _sample(c, params, prompts, mask, slots=None, n=12, g=2)
  for cs in (dataclasses.replace(c, decode_weight_gather="per_layer"),
             dataclasses.replace(c, decode_cache_segments=3)):
    refill, _ = _sample(cs, params, prompts, mask, slots=3, n=12, g=2)
    _assert_same(refill, fixed)


def test_each_row_samples_what_it_samples_alone():
  """Per-row random streams: a row does not depend on which slot it ran in or when. With one
  slot every row decodes alone, after the others; with several, beside them."""
  c, params, prompts, mask = _setup(3)
  alone, _ = _sample(c, params, prompts, mask, slots=1, n=10, g=2)
  for slots in (3, 4):
    together, _ = _sample(c, params, prompts, mask, slots=slots, n=10, g=2)
    _assert_same(together, alone)


def test_decode_steps_and_utilisation_follow_list_scheduling():
  c, params, prompts, mask = _setup(4)
  g, n = 3, 12
  for slots in (1, 4, 7, 3 * B):
    comp, stats = _sample(c, params, prompts, mask, slots=slots, n=n, g=g)
    _assert_schedule(comp, stats, slots)
  fixed, fixed_stats = _sample(c, params, prompts, mask, slots=None, n=n, g=g)
  assert fixed_stats.decode_steps == fixed.mask.sum(-1).max()
  np.testing.assert_allclose(fixed_stats.slot_utilisation,
                             fixed.mask.sum() / (fixed_stats.decode_steps * B * g), rtol=1e-6)


def test_automatic_slots():
  c, params, prompts, mask = _setup(5)
  comp, stats = _sample(c, params, prompts, mask, slots=0, n=8, g=2)
  _assert_schedule(comp, stats, sampling.auto_slots(2 * B))


def _step_metrics(refill: bool):
  overrides = {"rl.decode_refill": refill, "rl.decode_slots": 5 if refill else 0}
  run = rl_run(**overrides)
  state = run.make_rl_state(run.init_params())
  step = run.compile_step(run._rl_step, state, with_rng=True)
  batch = device_batches(run, 1)[0]
  rng_sample, _ = jax.random.split(jax.random.key(0))  # the step's own sampling key
  comp, _ = jax.jit(run._rl_step.phases.sample)(state, batch, rng_sample)
  _, metrics = step(state, batch, jax.random.key(0))
  return jax.device_get(comp), jax.device_get(metrics), run


def test_rl_step_samples_the_same_with_refill_and_reports_its_decode():
  fixed_comp, fixed, run = _step_metrics(False)
  refill_comp, refill, _ = _step_metrics(True)
  _assert_same(refill_comp, fixed_comp)
  for key in ("reward_mean", "completion_tokens", "completion_tokens_max", "correct_frac"):
    assert refill[key] == fixed[key], key
  np.testing.assert_allclose(refill["loss"], fixed["loss"], rtol=1e-5, atol=1e-7)
  rows = run.config.rl.batch_size * run.config.rl.group_size
  assert rows > 5
  assert fixed["decode_steps"] == fixed["completion_tokens_max"]
  np.testing.assert_allclose(fixed["decode_slot_utilisation"],
                             fixed["completion_tokens"] / fixed["completion_tokens_max"],
                             rtol=1e-6)
  lengths = fixed_comp.mask.sum(-1)
  # the step sampled these rows
  np.testing.assert_allclose(lengths.sum(), fixed["completion_tokens"] * rows, rtol=1e-6)
  assert refill["decode_steps"] == _list_schedule(lengths.tolist(), 5)
  np.testing.assert_allclose(
      refill["decode_slot_utilisation"],
      fixed["completion_tokens"] * rows / (refill["decode_steps"] * 5), rtol=1e-6)


@pytest.mark.parametrize("overrides,field,reason", [
    ({"rl.decode_refill": True, "rl.partial_rollouts": True}, "rl.decode_refill",
     "APRIL"),
    ({"rl.decode_slots": 4}, "rl.decode_slots", "read only with rl.decode_refill=True"),
    ({"rl.decode_refill": True, "rl.decode_slots": -1}, "rl.decode_slots", ">= 0"),
])
def test_config_refuses_refill_combinations(overrides, field, reason):
  config = load_config()
  config.update_from_flattened_dict(overrides)
  with pytest.raises(ValueError, match=rf"^config\.{field.replace('.', '[.]')}: .*{reason}"):
    configs_base.validate(config)
  config.update_from_flattened_dict({"rl.partial_rollouts": False, "rl.decode_slots": 4,
                                     "rl.decode_refill": True})
  configs_base.validate(config)
