"""APRIL active partial rollouts: buffer bookkeeping, exact resumption, stale behaviour
log-probs in the ratio, the compiled step, config checks and the heavy-tailed task."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import configs_base, models, sampling
from rlvr_jax.checkpoints.manager import Checkpointer, StateMismatchError, abstract_like
from rlvr_jax.data import synthetic
from rlvr_jax.sampling import partial
from rlvr_jax.training import april, rl_step
from rlvr_jax.training.run import Run
from tests.helpers import load_config

V = 29
G = 2
N = 10
STOPS = tuple(range(4, 12))  # frequent stop tokens: rows of a random model end at varied lengths
_RESUME = jax.jit(sampling.resume, static_argnums=0,
                  static_argnames=("group_size", "min_groups_done", "stop_ids", "pad_id"))


def _model(seed=0, groups=4):
  c = models.tiny(V, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32)
  params = models.init_params(c, jax.random.key(seed))
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, 6, groups)
  p = int(lengths.max())
  prompts, mask = np.zeros((groups, p), np.int32), np.zeros((groups, p), np.int32)
  for i, length in enumerate(lengths):
    prompts[i, p - length:] = rng.integers(8, V, length)
    mask[i, p - length:] = 1
  return c, params, jnp.asarray(prompts), jnp.asarray(mask)


def _resume(c, params, prompts, mask, part, min_groups_done):
  return _RESUME(c, params, prompts, mask, part, group_size=G, min_groups_done=min_groups_done,
                 stop_ids=STOPS, pad_id=0)


# ---------------------------------------------------------------------------------------------
# Buffer bookkeeping against plain Python
# ---------------------------------------------------------------------------------------------
def _split_reference(done, b):
  done_idx = [i for i, d in enumerate(done) if d]
  train = done_idx[:b]
  return train, [i for i in range(len(done)) if i not in train]


@pytest.mark.parametrize("seed", range(6))
def test_split_takes_the_first_done_groups_and_keeps_the_rest_in_order(seed):
  rng = np.random.default_rng(seed)
  k = int(rng.integers(2, 9))
  b = int(rng.integers(1, k + 1))
  done = rng.random(k) < 0.5
  done[rng.choice(k, b, replace=False)] = True  # the decode loop guarantees >= b done
  train, kept = april.split(jnp.asarray(done), b)
  ref_train, ref_kept = _split_reference(done.tolist(), b)
  assert np.asarray(train).tolist() == ref_train
  assert np.asarray(kept).tolist() == ref_kept


def test_take_and_group_rows_match_python_indexing():
  rng = np.random.default_rng(0)
  k, p, n = 5, 3, 4
  batch = dict(prompt_ids=jnp.asarray(rng.integers(0, 9, (k, p)), jnp.int32),
               prompt_mask=jnp.ones((k, p), jnp.int32),
               answer_ids=jnp.asarray(rng.integers(0, 9, (k, 2)), jnp.int32),
               meta=jnp.zeros((k, 0), jnp.int32))
  buf = april.fresh_groups(batch, jax.random.key(1), jnp.int32(7), group_size=G,
                           max_new_tokens=n, pad_id=0)
  groups = [3, 0, 4]
  got = buf.take(jnp.asarray(groups), G)
  rows = [g * G + j for g in groups for j in range(G)]
  np.testing.assert_array_equal(got.prompt_ids, np.asarray(batch["prompt_ids"])[groups])
  np.testing.assert_array_equal(got.answer_ids, np.asarray(batch["answer_ids"])[groups])
  np.testing.assert_array_equal(got.part.uniforms, np.asarray(buf.part.uniforms)[rows])
  assert np.asarray(got.born).tolist() == [7, 7, 7]
  # each row draws its own uniforms, laid out as `sampling.generate` draws them
  ref = np.asarray(jax.random.uniform(jax.random.key(1), (n, k * G))).T
  np.testing.assert_array_equal(buf.part.uniforms, ref)


def test_rollout_bookkeeping_against_python():
  """A pool of carried + fresh groups: the trained groups are the first b done ones in pool
  order (carried first), the buffer keeps every other group in order, carried tokens are
  untouched and `stale` marks exactly them."""
  c, params, prompts, mask = _model(groups=6)
  b, n = 2, N
  answers = jnp.arange(6 * 3, dtype=jnp.int32).reshape(6, 3)  # identifies each group
  batch = lambda s: dict(prompt_ids=prompts[s], prompt_mask=mask[s], answer_ids=answers[s],
                         meta=jnp.zeros((s.stop - s.start, 0), jnp.int32))
  kw = dict(max_new_tokens=n, temperature=1.0, top_k=0, top_p=1.0, eos_id=None, pad_id=0,
            stop_ids=STOPS)
  buffer = april.fresh_groups(batch(slice(0, 4)), jax.random.key(3), jnp.int32(0),
                              group_size=G, max_new_tokens=n, pad_id=0)
  # interrupt the carried groups first, so the pool mixes partial and fresh rows
  part, _ = _resume(c, params, buffer.prompt_ids, buffer.prompt_mask, buffer.part, 1)
  buffer = buffer.replace(part=part)
  assert not bool(part.done.all()) and float(part.mask.sum()) > 0
  rollout = jax.jit(functools.partial(april.rollout, c, group_size=G, sample_kw=kw))
  train, kept, stale, steps = rollout(params, buffer, batch(slice(4, 6)), jax.random.key(4),
                                      jnp.int32(1))
  # the same decode, run directly on the pool, gives the done flags the split must follow
  pool = april.concat(buffer, april.fresh_groups(batch(slice(4, 6)), jax.random.key(4),
                                                 jnp.int32(1), group_size=G,
                                                 max_new_tokens=n, pad_id=0))
  decoded, ref_steps = _resume(c, params, pool.prompt_ids, pool.prompt_mask, pool.part, b)
  assert int(steps) == int(ref_steps)
  done_g = np.asarray(decoded.done).reshape(-1, G).all(-1).tolist()
  assert sum(done_g) >= b
  ref_train, ref_kept = _split_reference(done_g, b)
  ids = lambda x: np.asarray(x.answer_ids)[:, 0].tolist()
  assert ids(train) == [3 * g for g in ref_train]
  assert ids(kept) == [3 * g for g in ref_kept]
  assert np.asarray(train.born).tolist() == [0 if g < 4 else 1 for g in ref_train]
  rows = lambda gs: [g * G + j for g in gs for j in range(G)]
  carried = np.asarray(pool.part.mask)
  np.testing.assert_array_equal(stale, carried[rows(ref_train)])
  for name in ("tokens", "mask", "uniforms", "done"):
    got = np.concatenate([np.asarray(getattr(train.part, name)),
                          np.asarray(getattr(kept.part, name))])
    np.testing.assert_array_equal(got, np.asarray(getattr(decoded, name))[rows(ref_train +
                                                                               ref_kept)], name)
  # carried tokens are a prefix the rollout never rewrites
  before, after = np.asarray(pool.part.tokens), np.asarray(decoded.tokens)
  np.testing.assert_array_equal(np.where(carried > 0, after, 0), np.where(carried > 0, before, 0))
  assert bool(np.asarray(train.part.done).all())


# ---------------------------------------------------------------------------------------------
# The sampler: resumed rows continue exactly
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_interrupted_then_resumed_decode_equals_uninterrupted(seed):
  c, params, prompts, mask = _model(seed)
  k = prompts.shape[0]
  uniforms = jax.random.uniform(jax.random.key(seed + 10), (k * G, N))
  straight, _ = _resume(c, params, prompts, mask, partial.fresh(uniforms, 0), k)
  first, steps1 = _resume(c, params, prompts, mask, partial.fresh(uniforms, 0), 1)
  unfinished = ~np.asarray(first.done)
  # the interruption is real: some rows stopped mid-way with tokens already sampled
  assert int(steps1) < N and unfinished.any()
  assert (np.asarray(first.mask).sum(-1)[unfinished] > 0).any()
  resumed, steps2 = _resume(c, params, prompts, mask, first, k)
  np.testing.assert_array_equal(resumed.tokens, straight.tokens)
  np.testing.assert_array_equal(resumed.mask, straight.mask)
  np.testing.assert_array_equal(resumed.done, straight.done)
  np.testing.assert_allclose(resumed.logprobs, straight.logprobs, atol=1e-5)
  np.testing.assert_allclose(resumed.entropies, straight.entropies, atol=1e-5)
  assert int(steps2) == np.asarray(straight.mask).sum(-1).max() - steps1


def test_a_fresh_pool_decodes_what_generate_decodes():
  c, params, prompts, mask = _model(2)
  k = prompts.shape[0]
  rng = jax.random.key(5)
  ref = sampling.generate(c, params, prompts, mask, rng, max_new_tokens=N, stop_ids=STOPS,
                          num_samples=G)
  uniforms = jax.random.uniform(rng, (N, k * G)).T
  out, steps = _resume(c, params, prompts, mask, partial.fresh(uniforms, 0), k)
  np.testing.assert_array_equal(out.tokens, ref.tokens)
  np.testing.assert_array_equal(out.mask, ref.mask)
  np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=1e-5)
  assert int(steps) == int(ref.mask.sum(-1).max())


# ---------------------------------------------------------------------------------------------
# The compiled step
# ---------------------------------------------------------------------------------------------
def _run(**overrides):
  config = load_config()
  config.rl.partial_rollouts = True
  config.task.name, config.task.kwargs = "longtail_reverse", dict(max_length=8)
  for path, value in overrides.items():
    parent, leaf = path.rsplit(".", 1)
    config[parent][leaf] = value
  return Run(config)


def test_april_step_traced_once_without_host_transfers_and_carries_the_buffer(tmp_path):
  run = _run(**{"algorithm.terms.kl": dict(coef=0.01)})
  it = iter(run.dataset("train", run.config.rl.batch_size, seed=0, shuffle=True, size=1000))
  state = run.prime_rollouts(run.make_rl_state(run.init_params()), it)
  b, g = run.config.rl.batch_size, run.config.rl.group_size
  assert state.rollouts.prompt_ids.shape[0] == b  # (factor 2 - 1) x batch_size groups
  assert int(state.rollouts.prompt_mask.sum(-1).min()) > 0  # every slot holds a prompt
  step = run.compile_step(chex.assert_max_traces(run._rl_step, n=1), state, with_rng=True)
  batches = [run.device_batch(next(it)) for _ in range(3)]
  rngs = [jax.device_put(jax.random.key(i)) for i in range(3)]
  state, m = step(state, batches[0], rngs[0])
  seen = []
  with jax.transfer_guard("disallow"):
    for batch, rng in zip(batches[1:], rngs[1:]):
      state, m = step(state, batch, rng)
      seen.append(jax.device_get(m))
  assert step._cache_size() == 1 and int(state.step) == 3
  for k, v in seen[-1].items():
    assert np.isfinite(v), k
  assert seen[-1]["decode_steps"] <= run.config.rl.max_new_tokens
  assert state.rollouts.part.tokens.shape == (b * g, run.config.rl.max_new_tokens)
  # the buffer is part of the checkpointed state: a restore gives it back exactly, and a
  # checkpoint without it is refused with the buffer's leaves named
  ckpt = Checkpointer(str(tmp_path / "ckpt"), use_async=False)
  ckpt.save(3, state, {"i": 0}, {})
  template = abstract_like(run.make_rl_state(run.init_params()))
  _, restored, _, _ = ckpt.restore_latest(template)
  for path, x in jax.tree_util.tree_leaves_with_path(state):
    np.testing.assert_array_equal(x, dict(jax.tree_util.tree_leaves_with_path(restored))[path])
  plain = Checkpointer(str(tmp_path / "plain"), use_async=False)
  plain.save(0, state.replace(rollouts=None), {"i": 0}, {})
  with pytest.raises(StateMismatchError, match="rollouts"):
    plain.restore_latest(template)


def test_stale_tokens_use_their_stored_behaviour_logprobs_in_the_ratio():
  """ratio_mean of the update = mean over valid tokens of exp(logp - old): 1 on tokens of this
  step, exp(-delta) on stale tokens whose stored log-prob is the current one + delta."""
  run = _run()
  state = run.make_rl_state(run.init_params())
  it = iter(run.dataset("train", run.config.rl.batch_size, seed=0, shuffle=True, size=1000))
  batch = run.device_batch(next(it))
  phases = run._rl_step.phases
  comp, _ = phases.sample(state, batch, jax.random.key(0))
  rewards = jnp.asarray(np.random.default_rng(0).integers(0, 2, (batch["prompt_ids"].shape[0],
                                                                  run.config.rl.group_size)),
                        jnp.float32)
  logp, _ = rl_step.completion_logprobs(run.model_config, state.params, batch["prompt_ids"],
                                        batch["prompt_mask"], comp.tokens, comp.mask)
  rng = np.random.default_rng(1)
  mask = np.asarray(comp.mask)
  stale = (np.arange(mask.shape[1])[None] < rng.integers(0, mask.shape[1], (mask.shape[0], 1)))
  stale = stale.astype(np.float32) * mask
  delta = rng.uniform(-0.5, 0.5, mask.shape).astype(np.float32)
  behaviour = np.where(stale > 0, np.asarray(logp) + delta, np.asarray(comp.logprobs)) * mask
  comp = comp.replace(logprobs=jnp.asarray(behaviour))
  _, m = jax.jit(phases.learn)(state, batch, comp, rewards, None, jax.random.key(1),
                               jnp.asarray(stale))
  ref = np.sum(np.where(stale > 0, np.exp(-delta), 1.0) * mask) / mask.sum()
  assert stale.sum() > 0
  np.testing.assert_allclose(float(m["ratio_mean"]), ref, rtol=1e-5)


def test_off_by_default_and_the_off_state_has_no_buffer():
  """Off, the step is the unchanged sample -> score -> learn (bit-identical states were checked
  against the commit before APRIL; tests/test_train_step.py checks its decode_steps)."""
  config = load_config()
  assert config.rl.partial_rollouts is False
  run = Run(config)
  assert run._rl_step.__name__ == "rl_step"
  assert jax.eval_shape(run.make_rl_state, run.init_params()).rollouts is None


# ---------------------------------------------------------------------------------------------
# Config checks and the task
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value,named", [
    ("data.prompt_bucket", 4, "data.prompt_bucket"),
    ("algorithm.advantage", "remax", "algorithm.advantage"),
    ("rl.partial_rollouts_factor", 1, "rl.partial_rollouts_factor"),
])
def test_bad_april_config_names_the_field(field, value, named):
  config = load_config()
  config.rl.partial_rollouts = True
  parent, leaf = field.rsplit(".", 1)
  config[parent][leaf] = value
  with pytest.raises(ValueError, match=named.replace(".", r"\.")):
    configs_base.validate(config)


def test_longtail_lengths_follow_the_power_law():
  """(verify / reward_fn agreement: tests/test_synthetic.py.)"""
  task = synthetic.make_task("longtail_reverse", max_length=12, alpha=1.2)
  probs = task.length_probs()
  ref = [k ** -1.2 for k in range(1, 13)]
  np.testing.assert_allclose(probs, [r / sum(ref) for r in ref])
  counts = np.zeros(12)
  for i in range(3000):
    ex = task.example(i, split="train", seed=0)
    digits = ex.prompt[len("rev "):-1]
    assert ex.answer == digits[::-1] and task.verify(ex.answer, ex)
    counts[len(digits) - 1] += 1
  # lengths >= 3 are rarely rejected by the train/test split: their shares follow P(L)
  np.testing.assert_allclose(counts[2:] / counts.sum(), probs[2:], atol=0.02)
