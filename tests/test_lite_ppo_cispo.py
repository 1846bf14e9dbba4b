"""Lite PPO advantages and the CISPO loss against loop references written from the papers."""

import math

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import configs_base
from rlvr_jax.algorithms import advantages as A
from rlvr_jax.algorithms import losses as L
from rlvr_jax.algorithms import method
from rlvr_jax.algorithms import registry
from tests.test_losses import ref_aggregate


def _rewards(seed, shape):
  """0/1 rewards with some all-equal groups, and some graded ones."""
  rng = np.random.default_rng(seed)
  r = (rng.random(shape) > 0.5).astype(np.float32)
  r.reshape(-1, shape[-1])[0] = 1.0
  if r.size > 2 * shape[-1]:
    r.reshape(-1, shape[-1])[1] = rng.uniform(-1, 2, shape[-1])
  return r


def ref_lite_ppo(rewards, eps=1e-6):
  """(r_i − mean of its group) / (std of every reward in the batch, ddof=1, + eps), by loops."""
  flat = [float(x) for x in rewards.reshape(-1)]
  mean_all = sum(flat) / len(flat)
  std_batch = math.sqrt(sum((x - mean_all) ** 2 for x in flat) / (len(flat) - 1))
  out = np.zeros(rewards.shape)
  for lead in np.ndindex(rewards.shape[:-1]):
    group = [float(x) for x in rewards[lead]]
    for i, r in enumerate(group):
      out[lead + (i,)] = (r - sum(group) / len(group)) / (std_batch + eps)
  return out


@pytest.mark.parametrize("shape", [(6,), (4, 5), (2, 3, 4)])
@pytest.mark.parametrize("seed", [0, 1])
def test_lite_ppo_matches_reference(shape, seed):
  rewards = _rewards(seed, shape)
  got = jax.jit(A.lite_ppo)(rewards)
  np.testing.assert_allclose(got, ref_lite_ppo(rewards), rtol=1e-5, atol=1e-6)
  assert got.dtype == jnp.float32
  np.testing.assert_array_equal(A.lite_ppo(rewards[..., :1]), 0.0)  # a group of one


def test_lite_ppo_registry_broadcasts_over_valid_tokens_only():
  rng = np.random.default_rng(3)
  b, g, t = 3, 4, 6
  rewards = _rewards(3, (b, g))
  lengths = rng.integers(1, t + 1, (b, g))
  mask = (np.arange(t) < lengths[..., None]).astype(np.float32)
  x = registry.AdvantageInputs(rewards=jnp.asarray(rewards), tokens=jnp.zeros((b, g, t), jnp.int32),
                               mask=jnp.asarray(mask), logp=jnp.zeros((b, g, t)))
  got = np.asarray(registry.ADVANTAGES["lite_ppo"](x, eps=1e-6))
  seq = ref_lite_ppo(rewards)
  want = np.zeros((b, g, t))
  for i, j, k in np.ndindex(b, g, t):
    if k < lengths[i, j]:
      want[i, j, k] = seq[i, j]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(st.integers(2, 4), st.integers(0, 2**31 - 1))
def test_lite_ppo_properties(g, seed):
  rng = np.random.default_rng(seed)
  rewards = rng.uniform(-2, 2, (3, g)).astype(np.float32)
  adv = np.asarray(A.lite_ppo(rewards))
  np.testing.assert_allclose(adv.sum(-1), 0.0, atol=1e-4)  # each group is centred
  # one group: the batch std is the group std, so Lite PPO is GRPO
  np.testing.assert_allclose(A.lite_ppo(rewards[:1]), A.grpo(rewards[:1]), rtol=1e-4, atol=1e-5)
  # a shift of every reward changes nothing
  np.testing.assert_allclose(A.lite_ppo(rewards + 3.0), adv, rtol=1e-3, atol=1e-4)


def test_lite_ppo_gives_an_equal_group_exactly_zero():
  rewards = _rewards(7, (3, 5))
  for v in (0.0, 1.0, 2.3, -7.1, 1e-7):
    rewards[1] = v
    adv = np.asarray(A.lite_ppo(rewards))
    assert np.all(adv[1] == 0) and np.any(adv != 0), v
    assert np.all(np.asarray(A.lite_ppo(np.full((3, 5), v, np.float32))) == 0), v


def _cispo_batch(seed, lead=(2, 3), t=7):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(0, t + 1, lead)
  mask = (np.arange(t) < lengths[..., None]).astype(np.float32)
  logp = rng.normal(-1.0, 0.5, lead + (t,)).astype(np.float32)
  old_logp = (logp + rng.normal(0.0, 1.0, lead + (t,))).astype(np.float32)
  adv = np.repeat(rng.normal(size=lead + (1,)), t, axis=-1).astype(np.float32)
  return logp, old_logp, adv, mask


def ref_cispo(logp, old_logp, adv, mask, clip_low, clip_high):
  """Token losses −clip(ρ)·A·logp and their d/dlogp = −clip(ρ)·A (ρ constant), by loops."""
  loss = np.zeros(logp.shape)
  dloss = np.zeros(logp.shape)
  for idx in np.ndindex(logp.shape):
    ratio = math.exp(min(max(float(logp[idx]) - float(old_logp[idx]), -20), 20))
    w = min(max(ratio, 1 - clip_low), 1 + clip_high)
    loss[idx] = -w * float(adv[idx]) * float(logp[idx])
    dloss[idx] = -w * float(adv[idx])
  return loss, dloss


@pytest.mark.parametrize("clip_low,clip_high", [(1.0, 4.0), (0.2, 0.28)])
@pytest.mark.parametrize("seed", [0, 1])
def test_cispo_value_and_gradient_match_reference(clip_low, clip_high, seed):
  logp, old_logp, adv, mask = _cispo_batch(seed)
  old_logp[0, 0, 0] = logp[0, 0, 0] + 50.0  # the ±20 log-ratio clamp
  fn = lambda lp: L.cispo_loss(lp, old_logp, adv, mask, clip_low=clip_low,
                               clip_high=clip_high)
  (loss, metrics), grad = jax.jit(jax.value_and_grad(fn, has_aux=True))(logp)
  tok, dtok = ref_cispo(logp, old_logp, adv, mask, clip_low, clip_high)
  n_valid = mask.sum()
  np.testing.assert_allclose(loss, ref_aggregate(tok, mask, "token-mean"), rtol=1e-5)
  np.testing.assert_allclose(grad, dtok * mask / n_valid, rtol=1e-5, atol=1e-7)
  ratio = np.exp(np.clip(logp - old_logp, -20, 20))
  clipped = (ratio < 1 - clip_low) | (ratio > 1 + clip_high)
  np.testing.assert_allclose(metrics["clip_fraction"], (clipped * mask).sum() / n_valid,
                             rtol=1e-6)
  # no token's gradient is dropped, also where PPO-clip's is 0
  ppo_grad = jax.grad(lambda lp: L.policy_loss(lp, old_logp, adv, mask, clip_low=clip_low,
                                               clip_high=clip_high)[0])(logp)
  valid = (mask > 0) & (adv != 0)
  assert np.all(np.asarray(grad)[valid] != 0)
  assert np.any(np.asarray(ppo_grad)[valid] == 0)


def test_cispo_other_aggregations_and_exact_accumulation():
  logp, old_logp, adv, mask = _cispo_batch(4, lead=(8,))
  tok, _ = ref_cispo(logp, old_logp, adv, mask, 1.0, 4.0)
  loss = jax.jit(L.cispo_loss, static_argnames="agg")
  for mode in L.AGGREGATIONS:
    full = loss(logp, old_logp, adv, mask, agg=mode)[0]
    np.testing.assert_allclose(full, ref_aggregate(tok, mask, mode), rtol=1e-5)
    norm = L.aggregate_normalizer(mask, mode)
    parts = sum(loss(logp[s], old_logp[s], adv[s], mask[s], agg=mode, normalizer=norm)[0]
                for s in (slice(0, 4), slice(4, 8)))
    np.testing.assert_allclose(parts, full, rtol=1e-5)


def test_cispo_is_registered_with_its_own_clip_fields():
  cfg = configs_base.base_config().algorithm
  cfg.policy_loss = "cispo"  # PPO's clips (0.2, 0.2) are not read: CISPO's own defaults are
  cispo = method.Method.from_config(cfg).policy_loss
  assert (cispo.kw["clip_low"], cispo.kw["clip_high"]) == (1.0, 4.0)
  logp, old_logp, adv, mask = _cispo_batch(5)
  got, _ = cispo(logp, old_logp, adv, mask, normalizer=None, agg=cfg.loss_agg,
                 max_len=cfg.max_len)
  tok, _ = ref_cispo(logp, old_logp, adv, mask, 1.0, 4.0)
  np.testing.assert_allclose(got, ref_aggregate(tok, mask, "token-mean"), rtol=1e-5)
