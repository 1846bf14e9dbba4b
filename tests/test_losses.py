"""Losses and aggregation against loop references written from docs/ALGORITHMS.md."""

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.algorithms import losses as L
from rlvr_jax.algorithms import method
from rlvr_jax.algorithms import registry

MODES = L.AGGREGATIONS


def _batch(seed, b=6, t=7):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, t + 1, b)
  lengths[1] = 0  # a fully masked sequence (e.g. dropped by dynamic sampling)
  mask = (np.arange(t) < lengths[:, None]).astype(np.float32)
  logp = rng.normal(-1.0, 0.5, (b, t)).astype(np.float32)
  old_logp = (logp + rng.normal(0.0, 0.3, (b, t))).astype(np.float32)
  adv = np.repeat(rng.normal(size=(b, 1)), t, axis=1).astype(np.float32)
  return logp, old_logp, adv, mask


def ref_aggregate(x, mask, mode, max_len=None):
  x, mask = x.reshape(-1, x.shape[-1]).astype(np.float64), mask.reshape(-1, mask.shape[-1])
  seqs = [(row, m) for row, m in zip(x, mask) if m.sum() > 0]
  if mode == "token-mean":
    return sum((r * m).sum() for r, m in seqs) / sum(m.sum() for _, m in seqs)
  if mode == "token-sum":
    return sum((r * m).sum() for r, m in seqs)
  if mode == "seq-mean-token-sum":
    return np.mean([(r * m).sum() for r, m in seqs])
  if mode == "seq-mean-token-mean":
    return np.mean([(r * m).sum() / m.sum() for r, m in seqs])
  return np.mean([(r * m).sum() for r, m in seqs]) / (max_len or x.shape[-1])


def ref_ppo_tokens(logp, old_logp, adv, clip_low, clip_high, dual_clip):
  out = np.zeros(logp.shape)
  for idx in np.ndindex(logp.shape):
    ratio = math.exp(min(max(float(logp[idx]) - float(old_logp[idx]), -20), 20))
    a = float(adv[idx])
    loss = max(-a * ratio, -a * min(max(ratio, 1 - clip_low), 1 + clip_high))
    if dual_clip is not None and a < 0:
      loss = min(loss, -dual_clip * a)
    out[idx] = loss
  return out


@pytest.mark.parametrize("mode", MODES)
def test_aggregate_matches_reference(mode):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 5)).astype(np.float32)
  mask = (rng.random((2, 3, 5)) > 0.4).astype(np.float32)
  mask[0, 0] = 0
  for max_len in (None, 16):
    np.testing.assert_allclose(L.aggregate(x, mask, mode, max_len),
                               ref_aggregate(x, mask, mode, max_len), rtol=1e-5)
  assert float(L.aggregate(x, np.zeros_like(mask), mode)) == 0.0
  with pytest.raises(ValueError, match="token-mean"):
    L.aggregate(x, mask, "mean")


@pytest.mark.parametrize("clip_high,dual_clip", [(0.2, None), (0.28, 3.0)])
@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum-norm"])
def test_policy_loss_matches_reference(clip_high, dual_clip, mode):
  logp, old_logp, adv, mask = _batch(1)
  adv = adv * np.random.default_rng(1).uniform(0.5, 2.0, adv.shape).astype(np.float32)
  old_logp[0, 0] = logp[0, 0] + 50.0  # exercises the ±20 log-ratio clamp
  loss, metrics = jax.jit(L.policy_loss, static_argnames=("dual_clip", "agg"))(
      logp, old_logp, adv, mask, clip_high=clip_high, dual_clip=dual_clip, agg=mode)
  tokens = ref_ppo_tokens(logp, old_logp, adv, 0.2, clip_high, dual_clip)
  np.testing.assert_allclose(loss, ref_aggregate(tokens, mask, mode), rtol=1e-5)
  ratio = np.exp(np.clip(logp - old_logp, -20, 20))
  clipped = -adv * np.clip(ratio, 0.8, 1 + clip_high) > -adv * ratio
  np.testing.assert_allclose(metrics["clip_fraction"], (clipped * mask).sum() / mask.sum(),
                             rtol=1e-6)
  np.testing.assert_allclose(metrics["approx_kl"],
                             ((old_logp - logp).clip(-20, 20) * mask).sum() / mask.sum(),
                             rtol=1e-5)
  assert all(v.dtype == jnp.float32 and v.shape == () for v in metrics.values())


@pytest.mark.parametrize("mode", MODES)
def test_grad_accumulation_equals_full_minibatch(mode):
  """Σ over micro-batches of grad(loss with mini-batch normaliser) == grad(full loss)."""
  logp, old_logp, adv, mask = _batch(2, b=6)
  feats = jnp.asarray(np.random.default_rng(2).normal(size=logp.shape + (3,)), jnp.float32)
  w = jnp.array([0.3, -0.2, 0.1])

  @jax.jit
  def loss_and_grad(w, logp, old_logp, adv, mask, feats, normalizer):
    def loss_fn(w):
      return L.policy_loss(logp + feats @ w, old_logp, adv, mask, clip_high=0.28, agg=mode,
                           max_len=12, normalizer=normalizer)[0]
    return jax.value_and_grad(loss_fn)(w)

  batch = (logp, old_logp, adv, mask, feats)
  full_loss, full_grad = loss_and_grad(w, *batch, None)
  normalizer = L.aggregate_normalizer(mask, mode)
  micro = [slice(0, 2), slice(2, 5), slice(5, 6)]
  parts = [loss_and_grad(w, *(a[rows] for a in batch), normalizer) for rows in micro]
  np.testing.assert_allclose(sum(p[0] for p in parts), full_loss, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(sum(p[1] for p in parts), full_grad, rtol=1e-5, atol=1e-7)


def test_gspo_is_the_sequence_level_objective():
  logp, old_logp, adv, mask = _batch(3)
  clip_low, clip_high = 0.1, 0.15

  def sequence_objective(logp):
    valid = mask.sum(-1) > 0
    s = jnp.exp(((logp - old_logp) * mask).sum(-1) / jnp.maximum(mask.sum(-1), 1))
    a = adv[:, 0]
    per_seq = -jnp.minimum(s * a, jnp.clip(s, 1 - clip_low, 1 + clip_high) * a)
    return jnp.sum(per_seq * valid) / valid.sum()

  gspo = lambda lp: L.gspo_loss(lp, old_logp, adv, mask, clip_low=clip_low,
                                clip_high=clip_high)[0]
  both = jax.jit(lambda lp: [jax.value_and_grad(f)(lp) for f in (gspo, sequence_objective)])
  (got, got_grad), (want, want_grad) = both(jnp.asarray(logp))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-6)


def ref_gspo(logp, old_logp, adv, mask, clip_low, clip_high):
  """GSPO-token objective (Zheng et al. 2025, eq. 13) as a loop: mean over sequences of each
  sequence's token mean of max(−s·A_t, −clip(s)·A_t), s = exp(mean log-ratio)."""
  per_seq = []
  for lp, olp, a, m in zip(logp.astype(np.float64), old_logp, adv, mask):
    valid = np.nonzero(m)[0]
    if valid.size == 0:
      continue
    s = math.exp(np.mean(lp[valid] - olp[valid]))
    terms = [max(-s * a[t], -min(max(s, 1 - clip_low), 1 + clip_high) * a[t]) for t in valid]
    per_seq.append(np.mean(terms))
  return np.mean(per_seq)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gspo_matches_the_paper_objective_and_accumulates_exactly(seed):
  logp, old_logp, adv, mask = _batch(seed)
  adv = adv + np.random.default_rng(seed).normal(0, 0.5, adv.shape).astype(np.float32)
  clip_low, clip_high = 0.02, 0.03  # some sequences clipped, some not
  got, _ = L.gspo_loss(logp, old_logp, adv, mask, clip_low=clip_low, clip_high=clip_high)
  want = ref_gspo(logp, old_logp, adv, mask, clip_low, clip_high)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Ragged lengths: a token mean over the batch would be a different number.
  assert not np.isclose(want, L.aggregate(*_gspo_token_losses(logp, old_logp, adv, mask,
                                                               clip_low, clip_high), "token-mean"))
  normalizer = L.aggregate_normalizer(mask, L.GSPO_AGGREGATION)
  loss_and_grad = jax.value_and_grad(lambda lp, *a: L.gspo_loss(
      lp, *a, clip_low=clip_low, clip_high=clip_high, normalizer=normalizer)[0])
  full = jax.value_and_grad(lambda lp: L.gspo_loss(lp, old_logp, adv, mask, clip_low=clip_low,
                                                   clip_high=clip_high)[0])(logp)
  parts = [loss_and_grad(logp[r], old_logp[r], adv[r], mask[r])
           for r in (slice(0, 2), slice(2, 5), slice(5, 6))]
  np.testing.assert_allclose(sum(p[0] for p in parts), full[0], rtol=1e-5)
  np.testing.assert_allclose(np.concatenate([p[1] for p in parts]), full[1], rtol=1e-5,
                             atol=1e-7)


def _gspo_token_losses(logp, old_logp, adv, mask, clip_low, clip_high):
  s = np.exp((((logp - old_logp) * mask).sum(-1) / np.maximum(mask.sum(-1), 1)))[:, None]
  return np.maximum(-s * adv, -np.clip(s, 1 - clip_low, 1 + clip_high) * adv), mask


def test_gspo_refuses_any_other_aggregation():
  """A token-mean GSPO (the old default) is not the paper's objective: the registry and the
  config validation both refuse it instead of computing it."""
  from rlvr_jax.configs_base import base_config, validate
  logp, old_logp, adv, mask = _batch(0)
  cfg = base_config()
  cfg.algorithm.policy_loss = "gspo"
  assert cfg.algorithm.loss_agg == "token-mean"
  with pytest.raises(ValueError, match="config.algorithm.loss_agg"):
    validate(cfg)
  for mode in set(MODES) - {L.GSPO_AGGREGATION}:
    with pytest.raises(ValueError, match="gspo"):
      method.Method.from_config({"advantage": "grpo", "policy_loss": "gspo", "loss_agg": mode})
  cfg.algorithm.loss_agg = L.GSPO_AGGREGATION
  validate(cfg)
  got, _ = method.Method.from_config(cfg.algorithm).policy_loss(
      logp, old_logp, adv, mask, normalizer=None, agg=cfg.algorithm.loss_agg,
      max_len=cfg.algorithm.max_len)
  np.testing.assert_allclose(got, ref_gspo(logp, old_logp, adv, mask, 3e-4, 4e-4), rtol=1e-5)


@pytest.mark.parametrize("kind", L.KL_KINDS)
def test_kl_values_and_documented_gradients(kind):
  rng = np.random.default_rng(4)
  logp = rng.normal(-1, 1, (3, 4)).astype(np.float32)
  ref = rng.normal(-1, 1, (3, 4)).astype(np.float32)
  ref[0, 0] = logp[0, 0] + 30.0  # beyond the k3 clamp
  x = ref.astype(np.float64) - logp
  value = {"k1": -x, "k2": 0.5 * x**2, "k3": np.clip(np.exp(np.clip(x, -20, 20)) - 1 - x, -10, 10),
           "abs": np.abs(x)}[kind]
  grad = {"k1": np.ones_like(x), "k2": -x, "k3": (1 - np.exp(x)) * (np.abs(np.exp(x) - 1 - x) < 10),
          "abs": np.sign(-x)}[kind]
  np.testing.assert_allclose(L.kl(logp, ref, kind), value, rtol=1e-5)
  got = jax.grad(lambda lp: L.kl(lp, ref, kind).sum())(jnp.asarray(logp))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, grad, rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="k3"):
    L.kl(logp, ref, "k4")


def test_high_entropy_mask_matches_reference_with_ties():
  rng = np.random.default_rng(5)
  entropy = np.round(rng.random((4, 9)) * 4) / 4  # many ties
  mask = (rng.random((4, 9)) > 0.3).astype(np.float32)
  fn = jax.jit(L.high_entropy_mask, static_argnames="top_frac")
  for rho in (0.2, 0.05, 0.5, 1.0):
    got = np.asarray(fn(entropy, mask, top_frac=rho))
    order = sorted((-entropy.flat[i], i) for i in range(entropy.size) if mask.flat[i])
    k = max(1, math.ceil(Fraction(str(rho)) * len(order)))
    want = np.zeros(entropy.size, np.float32)
    want[[i for _, i in order[:k]]] = 1
    np.testing.assert_array_equal(got, want.reshape(entropy.shape))


def test_high_entropy_mask_inverted_is_the_complement_numpy_reference():
  rng = np.random.default_rng(9)
  entropy = np.round(rng.random((3, 11)) * 4) / 4  # many ties
  mask = (rng.random((3, 11)) > 0.25).astype(np.float32)
  fn = jax.jit(L.high_entropy_mask, static_argnames=("top_frac", "invert"))
  for rho in (0.2, 0.5, 1.0):
    got = np.asarray(fn(entropy, mask, top_frac=rho, invert=True))
    valid = [i for i in range(entropy.size) if mask.flat[i]]
    top = sorted(valid, key=lambda i: (-entropy.flat[i], i))[:max(1, math.ceil(
        Fraction(str(rho)) * len(valid)))]
    want = np.zeros(entropy.size, np.float32)
    want[sorted(set(valid) - set(top))] = 1
    np.testing.assert_array_equal(got, want.reshape(entropy.shape))
    top_mask = np.asarray(fn(entropy, mask, top_frac=rho))
    np.testing.assert_array_equal(got + top_mask, mask)  # a partition of the valid tokens


def test_high_entropy_mask_keeps_exactly_ceil_of_the_valid_count():
  fn = jax.jit(L.high_entropy_mask, static_argnames="top_frac")
  entropy = jnp.asarray(np.random.default_rng(6).random(600), jnp.float32)
  for n in [0, 1, 4, 5, 6, 10, 15, 35, 100, 555, 600]:
    mask = (np.arange(600) < n).astype(np.float32)
    kept = np.asarray(fn(entropy, mask, top_frac=0.2))
    assert kept.sum() == (max(1, math.ceil(Fraction(n, 5))) if n else 0)
    assert np.all(kept <= mask)


def test_value_loss_matches_reference():
  rng = np.random.default_rng(7)
  values, old_values, returns = (rng.normal(size=(3, 5)).astype(np.float32) for _ in range(3))
  mask = (rng.random((3, 5)) > 0.3).astype(np.float32)
  per_token = np.zeros((3, 5))
  for idx in np.ndindex(values.shape):
    v, vo, r = float(values[idx]), float(old_values[idx]), float(returns[idx])
    vc = vo + min(max(v - vo, -0.2), 0.2)
    per_token[idx] = 0.5 * max((v - r) ** 2, (vc - r) ** 2)
  loss, metrics = L.value_loss(values, old_values, returns, mask, clip=0.2)
  np.testing.assert_allclose(loss, ref_aggregate(per_token, mask, "token-mean"), rtol=1e-5)
  assert 0.0 <= float(metrics["value_clip_fraction"]) <= 1.0


def test_entropy_and_bonus():
  logits = np.random.default_rng(8).normal(size=(2, 3, 5)).astype(np.float32)
  z = logits / 0.7
  p = np.exp(z - z.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  want = -(p * np.log(p)).sum(-1)
  entropy = L.token_entropy(logits, temperature=0.7)
  np.testing.assert_allclose(entropy, want, rtol=1e-5)
  mask = np.ones((2, 3), np.float32)
  np.testing.assert_allclose(L.entropy_bonus(entropy, mask, coef=0.01), -0.01 * want.mean(),
                             rtol=1e-5)


def test_policy_loss_vmaps_over_groups_and_registry():
  logp, old_logp, adv, mask = _batch(9, b=6)
  reshape = lambda a: a.reshape(2, 3, -1)
  per_group = jax.jit(jax.vmap(lambda *a: L.policy_loss(*a)[0]))(
      *map(reshape, (logp, old_logp, adv, mask)))
  want = [L.policy_loss(*(a[3 * g:3 * g + 3] for a in (logp, old_logp, adv, mask)))[0]
          for g in range(2)]
  np.testing.assert_allclose(per_group, want, rtol=1e-6)
  loss, _ = registry.POLICY_LOSSES["ppo"](logp, old_logp, adv, mask, agg="seq-mean-token-mean",
                                          clip_high=0.28)
  np.testing.assert_allclose(
      loss, L.policy_loss(logp, old_logp, adv, mask, clip_high=0.28,
                          agg="seq-mean-token-mean")[0])
  builtin = {n for n, c in registry.POLICY_LOSSES.items() if c.builtin}
  # (configs/your_own_method.py may add its own)
  assert builtin == {"ppo", "gspo", "cispo", "clip_cov", "kl_cov", "lp_reg"}
  with pytest.raises(ValueError, match="gspo"):
    registry.POLICY_LOSSES["reinforce"]


def test_gspo_from_the_default_config_uses_gspo_clip_ranges():
  """The base config's token clip (0.2) must not leak into GSPO's sequence-ratio clip."""
  from rlvr_jax.configs_base import base_config
  cfg = base_config().algorithm
  cfg.policy_loss, cfg.loss_agg = "gspo", "seq-mean-token-mean"
  rng = np.random.default_rng(0)
  old_logp = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
  # Sequence ratios of exp(0.01) ~ 1.01: outside GSPO's [1 - 3e-4, 1 + 4e-4], inside PPO's 0.2.
  logp = old_logp + 0.01
  adv, mask = jnp.ones((4, 6)), jnp.ones((4, 6))
  gspo = method.Method.from_config(cfg).policy_loss
  got = jax.grad(lambda lp: gspo(lp, old_logp, adv, mask, normalizer=None, agg=cfg.loss_agg,
                                 max_len=cfg.max_len)[0])(logp)
  want = jax.grad(lambda lp: L.gspo_loss(lp, old_logp, adv, mask, clip_low=3e-4,
                                         clip_high=4e-4)[0])(logp)
  np.testing.assert_allclose(got, want, atol=1e-7)
  np.testing.assert_array_equal(got, 0.0)  # clipped with a positive advantage: no gradient
