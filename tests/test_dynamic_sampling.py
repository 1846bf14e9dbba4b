"""DAPO dynamic sampling ("fill": over-sample, keep B varied groups; "mask") and overlong
filtering, against loop references and inside the one compiled step."""

import chex
import jax
import numpy as np
import pytest

from rlvr_jax import configs_base
from rlvr_jax.algorithms import filters
from tests.helpers import device_batches, load_config, rl_run


def ref_fill(rewards, b):
  """The first b groups (in sampling order) whose rewards are not all equal; the shortfall."""
  kept = [i for i, row in enumerate(rewards.tolist()) if len(set(row)) > 1]
  return kept[:b], b - len(kept[:b])


@pytest.mark.parametrize("n,b", [(12, 4), (8, 8), (9, 3), (6, 5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fill_groups_matches_reference(n, b, seed):
  rng = np.random.default_rng(seed)
  rewards = (rng.random((n, 4)) > rng.uniform(0.2, 0.9, (n, 1))).astype(np.float32)
  rewards[rng.random(n) < 0.4] = 1.0  # plenty of all-right groups, so shortfalls happen
  index, valid = jax.jit(filters.fill_groups, static_argnums=1)(rewards, b)
  kept, shortfall = ref_fill(rewards, b)
  index, valid = np.asarray(index), np.asarray(valid)
  assert index.shape == valid.shape == (b,)
  assert list(index[:len(kept)]) == kept and valid.sum() == len(kept) == b - shortfall
  assert np.all(valid[:len(kept)] == 1) and np.all(valid[len(kept):] == 0)
  rest = [i for i in range(n) if i not in kept][:shortfall]  # the dropped groups, in order
  assert list(index[len(kept):]) == rest
  with pytest.raises(ValueError, match="cannot pick"):
    filters.fill_groups(rewards, n + 1)


def ref_finished(tokens, mask, eos):
  out = np.zeros(tokens.shape[:-1])
  for idx in np.ndindex(tokens.shape[:-1]):
    out[idx] = float(any(t == eos and m > 0 for t, m in zip(tokens[idx], mask[idx])))
  return out


def test_finished_is_eos_within_the_budget():
  rng = np.random.default_rng(0)
  eos, pad, t = 2, 0, 6
  tokens = rng.integers(1, 6, (2, 3, t))
  mask = np.zeros(tokens.shape, np.float32)
  for idx in np.ndindex(tokens.shape[:-1]):  # the sampler's layout: valid through the first EOS
    hits = np.flatnonzero(tokens[idx] == eos)
    end = hits[0] + 1 if len(hits) else t
    mask[idx][:end] = 1
    tokens[idx][end:] = pad
  tokens[0, 0] = [3, 4, 5, 3, 4, eos]  # EOS on the last slot: finished, not truncated
  mask[0, 0] = 1
  tokens[0, 1] = [3, 4, 5, 3, 4, 5]  # truncated
  mask[0, 1] = 1
  got = np.asarray(jax.jit(filters.finished, static_argnums=2)(tokens, mask, eos))
  np.testing.assert_array_equal(got, ref_finished(tokens, mask, eos))
  assert got[0, 0] == 1 and got[0, 1] == 0






def test_fill_inside_the_compiled_step_learns_on_b_kept_groups():
  run = rl_run(**{"algorithm.dynamic_sampling": "fill", "algorithm.oversample_factor": 3,
                "algorithm.overlong_filter": True, "rl.temperature": 2.0})
  b, g = run.config.rl.batch_size, run.config.rl.group_size
  assert run.rl_prompts_per_step == 3 * b
  state = run.make_rl_state(run.init_params())
  batches = device_batches(run, 3)
  assert batches[0]["prompt_ids"].shape[0] == 3 * b
  rngs = [jax.device_put(jax.random.key(i)) for i in range(3)]

  # The step's own phases on its first rollout (rl_step samples with the first half of its rng).
  phases = run._rl_step.phases
  sample_score = jax.jit(lambda s, batch, key: phases.score(batch, *phases.sample(s, batch, key)))
  rewards, _ = sample_score(state, batches[0], jax.random.split(rngs[0])[0])
  comp, _ = jax.jit(phases.sample)(state, batches[0], jax.random.split(rngs[0])[0])
  sel_batch, sel_comp, sel_rewards, _, _ = jax.jit(phases.select)(batches[0], comp, rewards, None)
  rewards = np.asarray(rewards)
  kept, shortfall = ref_fill(rewards, b)
  assert np.asarray(sel_rewards).shape == (b, g) and sel_comp.tokens.shape[0] == b * g
  np.testing.assert_array_equal(np.asarray(sel_rewards)[:len(kept)], rewards[kept])
  rows = np.concatenate([np.arange(i * g, (i + 1) * g) for i in kept] or [np.zeros(0, int)])
  np.testing.assert_array_equal(np.asarray(sel_comp.tokens)[:len(rows)],
                                np.asarray(comp.tokens)[rows])
  np.testing.assert_array_equal(np.asarray(sel_batch["prompt_ids"])[:len(kept)],
                                np.asarray(batches[0]["prompt_ids"])[kept])

  # The whole step: traced once, no host transfer after the first call; its first metrics are
  # those of that selection, with the shortfall and the truncated completions out of the loss.
  step = run.compile_step(chex.assert_max_traces(run._rl_step, n=1), state, with_rng=True)
  state, first = step(state, batches[0], rngs[0])
  with jax.transfer_guard("disallow"):
    for batch, rng in zip(batches[1:], rngs[1:]):
      state, metrics = step(state, batch, rng)
  assert step._cache_size() == 1 and int(state.step) == 3
  for k, v in jax.device_get(metrics).items():
    assert np.all(np.isfinite(v)), k
  m = jax.device_get(first)
  assert m["dynamic_sampling_shortfall"] == shortfall
  np.testing.assert_allclose(m["dynamic_sampling_kept_frac"],
                             sum(len(set(r)) > 1 for r in rewards.tolist()) / (3 * b))
  np.testing.assert_allclose(m["reward_mean"], rewards.mean(), rtol=1e-6)  # all 3B groups
  mask, tokens = np.asarray(sel_comp.mask), np.asarray(sel_comp.tokens)
  done = ref_finished(tokens, mask, run.tokenizer.eos_id)
  varied = np.repeat([len(set(r)) > 1 for r in np.asarray(sel_rewards).tolist()], g)
  np.testing.assert_allclose(m["loss_tokens_frac"],
                             (mask * (done * varied)[:, None]).sum() / mask.sum(), rtol=1e-6)
  np.testing.assert_allclose(m["overlong_filtered_frac"], 1 - done.mean(), rtol=1e-6)
  assert 0 < done.mean() < 1 or shortfall > 0  # the case exercises at least one filter


@pytest.mark.parametrize("overrides", [
    {"algorithm.advantage": "dapo", "algorithm.dynamic_sampling": "mask",
     "algorithm.advantage_kw.overlong_buffer_len": 2,
     "algorithm.policy_loss_kw.clip_high": 0.28},
    {"algorithm.advantage": "lite_ppo", "algorithm.policy_loss": "cispo", "rl.minibatches": 2},
])
def test_new_estimators_run_inside_the_compiled_step(overrides):
  run = rl_run(**overrides)
  state = run.make_rl_state(run.init_params())
  step = run.compile_step(run._rl_step, state, with_rng=True)
  for i, b in enumerate(device_batches(run, 2)):
    state, metrics = step(state, b, jax.random.key(i))
  assert step._cache_size() == 1
  m = jax.device_get(metrics)
  for k, v in m.items():
    assert np.all(np.isfinite(v)), k
  if "algorithm.dynamic_sampling" in overrides:
    assert 0 <= m["dynamic_sampling_kept_frac"] <= 1


@pytest.mark.parametrize("overrides,field,hint", [
    ({"dynamic_sampling": "True"}, "dynamic_sampling", "now 'mask'"),
    ({"dynamic_sampling": "sometimes"}, "dynamic_sampling", "'fill'"),
    ({"dynamic_sampling": "fill", "oversample_factor": 1}, "oversample_factor", ">= 2"),
    ({"overlong_filter": True}, "overlong_filter", "ignore_eos"),
    ({"advantage": "lite_ppo", "loss_agg": "seq-mean-token-mean"}, "loss_agg", "token-mean"),
    ({"policy_loss": "cispo", "policy_loss_kw": dict(clip_low=1.5)}, "policy_loss_kw",
     r"policy loss 'cispo': 'clip_low' must be in \[0, 1\]"),
])
def test_bad_config_names_the_field(overrides, field, hint):
  config = load_config()
  config.rl.ignore_eos = True
  configs_base.validate(config)
  config.algorithm.update(overrides)
  with pytest.raises(ValueError, match=rf"config\.algorithm\.{field}: .*{hint}"):
    configs_base.validate(config)


def test_an_old_boolean_dynamic_sampling_is_refused_with_the_new_names():
  rule = configs_base.RULES["algorithm.dynamic_sampling"]
  assert "now 'mask'" in rule.check(True) and "'none'" in rule.check(False)
  assert rule.check("fill") is None and rule.check("mask") is None and rule.check("none") is None
  config = load_config()
  with pytest.raises(TypeError, match="dynamic_sampling"):  # ml_collections keeps it a string
    config.algorithm.dynamic_sampling = True
