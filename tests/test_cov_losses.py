"""Clip-Cov and KL-Cov (Cui et al. 2025, arXiv 2505.22617) against loop references written from
/work/shared/ALGORITHMS.md "Third wave" §1.2–1.4, which follow the reference code:
PRIME-RL/Entropy-Mechanism-of-RL verl/trainer/ppo/core_algos.py@6071b11c
(`compute_policy_loss_kl_cov`, `compute_policy_loss_clip_cov`) and volcengine/verl
verl/trainer/ppo/core_algos.py@012be9d9 (the same two, registered "kl_cov" / "clip_cov").

Clip-Cov's random choice is made deterministic by handing the reference the same draw
u = uniform(key, mask.shape) the loss documents: a random permutation's first k candidates are
the k candidates of smallest u. Plus gradient checks (which tokens get zero gradient), property
tests, the validation rules, the step's per-micro-batch key, and the compiled step with each."""

import math

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import algorithms, configs_base
from rlvr_jax.algorithms import cov as cov_lib
from rlvr_jax.algorithms import method, registry
from rlvr_jax.training import update as update_lib
from tests.helpers import device_batches, load_config, rl_run
from tests.test_losses import ref_aggregate


# ---------------------------------------------------------------------------------------------
# Loop references
# ---------------------------------------------------------------------------------------------
def ref_cov(adv, logp, mask):
  """cov_i = (A_i − mean A)(logp_i − mean logp), means over the valid tokens, by loops."""
  valid = [idx for idx in np.ndindex(mask.shape) if mask[idx] > 0]
  n = len(valid)
  mean_a = sum(float(adv[i]) for i in valid) / max(n, 1)
  mean_l = sum(float(logp[i]) for i in valid) / max(n, 1)
  out = np.zeros(mask.shape)
  for idx in np.ndindex(mask.shape):
    out[idx] = (float(adv[idx]) - mean_a) * (float(logp[idx]) - mean_l)
  return out


def ref_clip_cov(logp, old_logp, adv, mask, draw, *, ratio_k, lb, ub, clip_low, clip_high):
  """Token losses, d(token loss)/dlogp and the dropped tokens of Clip-Cov (§1.3), by loops.
  `draw`: the uniform numbers whose smallest k among the candidates are dropped."""
  cov = ref_cov(adv, logp, mask)
  n_valid = int(sum(1 for idx in np.ndindex(mask.shape) if mask[idx] > 0))
  k = max(int(ratio_k * n_valid), 1)  # the reference's rounding
  loss, dloss, clipped = np.zeros(mask.shape), np.zeros(mask.shape), np.zeros(mask.shape, bool)
  candidates = []
  for pos, idx in enumerate(np.ndindex(mask.shape)):
    r = math.exp(min(max(float(logp[idx]) - float(old_logp[idx]), -20), 20))
    a = float(adv[idx])
    pg1, pg2 = -a * r, -a * min(max(r, 1 - clip_low), 1 + clip_high)
    loss[idx] = max(pg1, pg2)
    clipped[idx] = pg2 > pg1 and mask[idx] > 0
    dloss[idx] = 0.0 if clipped[idx] else -a * r
    if mask[idx] > 0 and not clipped[idx] and lb < cov[idx] < ub:
      candidates.append((float(draw[idx]), pos, idx))
  dropped = np.zeros(mask.shape, bool)
  for _, _, idx in sorted(candidates)[:k]:
    dropped[idx] = True
    loss[idx] = dloss[idx] = 0.0
  return loss, dloss, dropped, clipped, cov


def ref_kl_cov(logp, old_logp, adv, mask, *, ratio_k, coef):
  """Token losses, d(token loss)/dlogp and the penalised tokens of KL-Cov (§1.4), by loops;
  top-k by cov, ties to the earlier position."""
  cov = ref_cov(adv, logp, mask)
  valid = [(pos, idx) for pos, idx in enumerate(np.ndindex(mask.shape)) if mask[idx] > 0]
  k = max(1, int(len(valid) * ratio_k)) if valid else 0
  top = sorted(valid, key=lambda p: (-cov[p[1]], p[0]))[:k]
  penalised = np.zeros(mask.shape, bool)
  for _, idx in top:
    penalised[idx] = True
  loss, dloss = np.zeros(mask.shape), np.zeros(mask.shape)
  for idx in np.ndindex(mask.shape):
    d = float(logp[idx]) - float(old_logp[idx])
    r = math.exp(min(max(d, -20), 20))
    a = float(adv[idx])
    loss[idx] = -a * r + (coef * abs(d) if penalised[idx] else 0.0)
    dloss[idx] = -a * r + (coef * float(np.sign(d)) if penalised[idx] else 0.0)
  return loss, dloss, penalised, cov


def _batch(seed, n=6, t=9, spread=0.3):
  """logp over a wide range (so |cov| reaches the (1, 5) band), old_logp within ±spread (some
  ratios outside [0.8, 1.2]), sequence advantages in ±[0.5, 2.5], ragged lengths, one empty
  row."""
  rng = np.random.default_rng(seed)
  logp = rng.uniform(-6.0, -0.01, (n, t)).astype(np.float32)
  old_logp = (logp + rng.uniform(-spread, spread, (n, t))).astype(np.float32)
  adv_n = rng.uniform(0.5, 2.5, n) * rng.choice([-1.0, 1.0], n)
  lengths = rng.integers(1, t + 1, n)
  lengths[-1] = 0
  mask = (np.arange(t) < lengths[:, None]).astype(np.float32)
  adv = (adv_n[:, None] * mask).astype(np.float32)
  return logp, old_logp, adv, mask


def _grad_and_value(fn, logp):
  (loss, metrics), grad = jax.jit(jax.value_and_grad(fn, has_aux=True))(jnp.asarray(logp))
  return float(loss), jax.device_get(metrics), np.asarray(grad)


# ---------------------------------------------------------------------------------------------
# The covariance and the selection sizes
# ---------------------------------------------------------------------------------------------
def test_token_covariance_on_a_hand_vector():
  # valid tokens A = (1, 1, -1, -1), logp = (-1, -3, -1, -3): means 0 and -2, so
  # cov = (1·1, 1·(-1), (-1)·1, (-1)·(-1)) = (1, -1, -1, 1); the padded token is ignored
  adv = np.array([[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0]], np.float32)
  logp = np.array([[-1.0, -3.0, 50.0], [-1.0, -3.0, 50.0]], np.float32)
  mask = np.array([[1, 1, 0], [1, 1, 0]], np.float32)
  got = cov_lib.token_covariance(adv, logp, mask)
  np.testing.assert_allclose(np.asarray(got) * mask, [[1, -1, 0], [-1, 1, 0]])
  for seed in range(3):
    logp, _, adv, mask = _batch(seed)
    np.testing.assert_allclose(np.asarray(cov_lib.token_covariance(adv, logp, mask)) * mask,
                               ref_cov(adv, logp, mask) * mask, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n,ratio", [(0, 2e-4), (1, 2e-4), (4999, 2e-4), (5000, 2e-4),
                                     (10001, 2e-4), (7, 0.5), (9, 1.0), (123457, 2e-3),
                                     (99, 0.05)])
def test_selection_size_is_the_references_max_int(n, ratio):
  assert int(cov_lib.selection_size(jnp.int32(n), ratio)) == max(int(ratio * n), 1)


# ---------------------------------------------------------------------------------------------
# Clip-Cov
# ---------------------------------------------------------------------------------------------
CLIP_COV_CASES = [  # (ratio_k, lb, ub, clip_low, clip_high)
    (2e-4, 1.0, 5.0, 0.2, 0.2),     # the reference's defaults: k = 1 here
    (0.1, 1.0, 5.0, 0.2, 0.2),
    (0.3, 0.5, 5.0, 0.2, 0.28),
    (0.1, 1.0, 5.0, 1.0, 1.0),      # the reference runs' clamp [0, 2]
    (1.0, -1e9, 1e9, 0.2, 0.2),     # every candidate dropped
]


@pytest.mark.parametrize("ratio_k,lb,ub,clip_low,clip_high", CLIP_COV_CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clip_cov_value_gradient_and_metrics_match_reference(ratio_k, lb, ub, clip_low,
                                                            clip_high, seed):
  logp, old_logp, adv, mask = _batch(seed)
  key = jax.random.key(seed + 100)
  draw = np.asarray(jax.random.uniform(key, mask.shape))  # the loss's documented draw
  kw = dict(clip_cov_ratio=ratio_k, clip_cov_lb=lb, clip_cov_ub=ub, clip_low=clip_low,
            clip_high=clip_high)
  fn = lambda lp: cov_lib.clip_cov(lp, old_logp, adv, mask, key=key, **kw)
  loss, metrics, grad = _grad_and_value(fn, logp)
  tok, dtok, dropped, clipped, cov = ref_clip_cov(
      logp, old_logp, adv, mask, draw, ratio_k=ratio_k, lb=lb, ub=ub, clip_low=clip_low,
      clip_high=clip_high)
  n = mask.sum()
  assert dropped.any()  # the batches reach the band
  np.testing.assert_allclose(loss, ref_aggregate(tok, mask, "token-mean"), rtol=1e-5)
  np.testing.assert_allclose(grad, dtok * mask / n, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(metrics["cov_selected_frac"], dropped.sum() / n, rtol=1e-6)
  np.testing.assert_allclose(metrics["clip_fraction"], clipped.sum() / n, rtol=1e-6)
  np.testing.assert_allclose(metrics["cov_mean"], (cov * mask).sum() / n, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(metrics["cov_selected_mean"], cov[dropped].mean(), rtol=1e-4)
  band = (mask > 0) & ~clipped & (cov > lb) & (cov < ub)
  np.testing.assert_allclose(metrics["cov_band_frac"], band.sum() / n, rtol=1e-6)
  np.testing.assert_allclose(metrics["approx_kl"], ((old_logp - logp) * mask).sum() / n,
                             rtol=1e-4, atol=1e-7)
  # dropped tokens: no gradient; PPO-clipped ones neither; every other valid token has one
  assert np.all(grad[dropped] == 0) and np.all(grad[clipped] == 0)
  assert np.all(grad[(mask > 0) & ~dropped & ~clipped] != 0)


@pytest.mark.parametrize("agg", algorithms.AGGREGATIONS)
def test_clip_cov_every_aggregation_keeps_dropped_tokens_in_the_denominator(agg):
  logp, old_logp, adv, mask = _batch(5)
  key = jax.random.key(3)
  draw = np.asarray(jax.random.uniform(key, mask.shape))
  got = cov_lib.clip_cov(logp, old_logp, adv, mask, key=key, agg=agg, max_len=12,
                         clip_cov_ratio=0.2)[0]
  tok, *_ = ref_clip_cov(logp, old_logp, adv, mask, draw, ratio_k=0.2, lb=1.0, ub=5.0,
                         clip_low=0.2, clip_high=0.2)
  np.testing.assert_allclose(got, ref_aggregate(tok, mask, agg, max_len=12), rtol=1e-5)


def test_clip_cov_is_ppo_when_the_band_holds_nothing():
  logp, old_logp, adv, mask = _batch(6)
  got, m = cov_lib.clip_cov(logp, old_logp, adv, mask, key=jax.random.key(0), clip_cov_lb=1e6,
                            clip_cov_ub=2e6)
  want, _ = algorithms.policy_loss(logp, old_logp, adv, mask)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert float(m["cov_selected_frac"]) == 0.0 and float(m["cov_selected_mean"]) == 0.0


def test_clip_cov_draws_a_uniform_subset_of_the_band():
  """Over 400 keys every band token is dropped about k/|band| of the time (deterministic keys:
  the bound is ±6 standard deviations of a binomial, not a flaky statistical test)."""
  logp, _, adv, mask = _batch(7, n=12, t=16)
  old_logp = logp  # nothing clipped: the band is every valid token with lb < cov < ub
  band = (mask > 0) & (ref_cov(adv, logp, mask) > 1.0) & (ref_cov(adv, logp, mask) < 5.0)
  k = max(int(0.05 * mask.sum()), 1)
  assert band.sum() > k >= 2

  @jax.jit
  def dropped(key):
    grad = jax.grad(lambda lp: cov_lib.clip_cov(lp, old_logp, adv, mask, key=key,
                                                clip_cov_ratio=0.05)[0])(jnp.asarray(logp))
    return (grad == 0) & (mask > 0)

  counts = np.zeros(mask.shape)
  for i in range(400):
    d = np.asarray(dropped(jax.random.key(i)))
    assert d.sum() == k and not (d & ~band).any()
    counts += d
  p = k / band.sum()
  sd = math.sqrt(400 * p * (1 - p))
  assert np.all(np.abs(counts[band] - 400 * p) < 6 * sd), (counts[band], 400 * p)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), ratio_k=st.sampled_from([2e-4, 0.05, 0.2, 1.0]),
                  lb=st.sampled_from([-1.0, 0.0, 0.5, 1.0]), n=st.integers(1, 5),
                  t=st.integers(1, 12))
def test_clip_cov_properties(seed, ratio_k, lb, n, t):
  """Dropped tokens lie in the band, number min(k, |band|), have zero gradient; the loss is
  PPO's less the dropped tokens' losses (same denominator)."""
  logp, old_logp, adv, mask = _batch(seed % 1000, n=n + 1, t=t)
  key = jax.random.key(seed)
  fn = lambda lp: cov_lib.clip_cov(lp, old_logp, adv, mask, key=key, clip_cov_ratio=ratio_k,
                                   clip_cov_lb=lb)
  loss, metrics, grad = _grad_and_value(fn, logp)
  cov = ref_cov(adv, logp, mask)
  ratio = np.exp(logp - old_logp)
  pg1, pg2 = -adv * ratio, -adv * np.clip(ratio, 0.8, 1.2)
  clipped = (pg2 > pg1) & (mask > 0)
  band = (mask > 0) & ~clipped & (cov > lb + 1e-4) & (cov < 5.0 - 1e-4)
  maybe = (mask > 0) & ~clipped & (cov > lb - 1e-4) & (cov < 5.0 + 1e-4)
  n_valid = int(mask.sum())
  k = max(int(ratio_k * n_valid), 1)
  dropped = (grad == 0) & (mask > 0) & ~clipped
  assert not (dropped & ~maybe).any()
  assert min(k, band.sum()) <= dropped.sum() <= min(k, maybe.sum())
  np.testing.assert_allclose(metrics["cov_selected_frac"] * n_valid, dropped.sum(), atol=1e-4)
  ppo_tok = np.maximum(pg1, pg2)
  np.testing.assert_allclose(loss, (ppo_tok * mask * ~dropped).sum() / n_valid, rtol=1e-4,
                             atol=1e-6)


def test_clip_cov_takes_a_key_and_the_key_is_not_a_hyperparameter():
  component = registry.POLICY_LOSSES["clip_cov"]
  assert "key" in component.context_keywords
  assert component.hyperparameters == {"clip_cov_ratio": 2e-4, "clip_cov_lb": 1.0,
                                       "clip_cov_ub": 5.0, "clip_low": 0.2, "clip_high": 0.2}
  assert "key" not in registry.POLICY_LOSSES["ppo"].context_keywords


# ---------------------------------------------------------------------------------------------
# KL-Cov
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio_k,coef", [(2e-4, 1.0), (2e-3, 1.0), (0.1, 1.0), (0.3, 0.1),
                                          (1.0, 2.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_cov_value_gradient_and_metrics_match_reference(ratio_k, coef, seed):
  logp, old_logp, adv, mask = _batch(seed)
  fn = lambda lp: cov_lib.kl_cov(lp, old_logp, adv, mask, kl_cov_ratio=ratio_k,
                                 ppo_kl_coef=coef)
  loss, metrics, grad = _grad_and_value(fn, logp)
  tok, dtok, penalised, cov = ref_kl_cov(logp, old_logp, adv, mask, ratio_k=ratio_k, coef=coef)
  n = mask.sum()
  np.testing.assert_allclose(loss, ref_aggregate(tok, mask, "token-mean"), rtol=1e-5)
  np.testing.assert_allclose(grad, dtok * mask / n, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(metrics["cov_selected_frac"], penalised.sum() / n, rtol=1e-6)
  np.testing.assert_allclose(metrics["cov_selected_mean"], cov[penalised].mean(), rtol=1e-4)
  np.testing.assert_allclose(metrics["ppo_kl_abs"], (np.abs(logp - old_logp) * mask).sum() / n,
                             rtol=1e-4)


def test_kl_cov_breaks_ties_by_position_and_counts_exactly():
  # every valid token has the same cov (A and logp constant per row, two rows mirrored): the
  # first k valid positions are penalised, not every token at the threshold
  adv = np.array([[1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]], np.float32)
  logp = np.array([[-1.0, -1.0, -1.0], [-3.0, -3.0, 0.0]], np.float32)
  mask = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
  old_logp = logp - 0.1
  tok, dtok, penalised, _ = ref_kl_cov(logp, old_logp, adv, mask, ratio_k=0.4, coef=1.0)
  assert penalised.sum() == 2
  loss, _, grad = _grad_and_value(
      lambda lp: cov_lib.kl_cov(lp, old_logp, adv, mask, kl_cov_ratio=0.4), logp)
  np.testing.assert_allclose(grad, dtok * mask / 5, rtol=1e-5)


def test_kl_cov_with_zero_coef_is_the_unclipped_policy_gradient():
  logp, old_logp, adv, mask = _batch(3, spread=0.8)
  fn = lambda lp: cov_lib.kl_cov(lp, old_logp, adv, mask, kl_cov_ratio=0.5, ppo_kl_coef=0.0)[0]
  unclipped = lambda lp: algorithms.aggregate(-adv * jnp.exp(lp - old_logp), mask, "token-mean")
  np.testing.assert_allclose(fn(logp), unclipped(logp), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(fn)(logp), jax.grad(unclipped)(logp), rtol=1e-6)


def test_kl_cov_on_policy_is_the_policy_gradient_value_and_gradient():
  """logp = old_logp (one update a rollout): |d| = 0 with zero subgradient (torch's), so the
  penalty adds nothing: what `several_updates` refuses."""
  logp, _, adv, mask = _batch(4)
  fn = lambda lp: cov_lib.kl_cov(lp, jax.lax.stop_gradient(lp), adv, mask, kl_cov_ratio=1.0)[0]
  np.testing.assert_allclose(fn(logp), ref_aggregate(-adv, mask, "token-mean"), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(fn)(logp), -adv * mask / mask.sum(), rtol=1e-6)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), ratio_k=st.sampled_from([2e-4, 0.05, 0.3, 1.0]),
                  n=st.integers(1, 5), t=st.integers(1, 12))
def test_kl_cov_properties(seed, ratio_k, n, t):
  """Exactly min(k, N) tokens are penalised (their gradient moves by β·sign(d)/N), and none of
  the others has a larger cov."""
  logp, old_logp, adv, mask = _batch(seed % 1000, n=n + 1, t=t)
  fn = lambda lp: cov_lib.kl_cov(lp, old_logp, adv, mask, kl_cov_ratio=ratio_k)
  _, metrics, grad = _grad_and_value(fn, logp)
  n_valid = int(mask.sum())
  base = -adv * np.exp(logp - old_logp) / n_valid
  shift = (grad - base) * n_valid * np.sign(logp - old_logp)
  penalised = (np.abs(shift - 1.0) < 1e-3) & (mask > 0)
  assert np.all((np.abs(shift) < 1e-3) | penalised | (mask == 0))
  assert penalised.sum() == min(max(int(ratio_k * n_valid), 1), n_valid)
  cov = ref_cov(adv, logp, mask)
  others = (mask > 0) & ~penalised
  if others.any():
    assert cov[penalised].min() >= cov[others].max() - 1e-4
  np.testing.assert_allclose(metrics["cov_selected_frac"] * n_valid, penalised.sum(), atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def _validate(**overrides):
  config = load_config()
  config.update_from_flattened_dict(overrides)
  configs_base.validate(config)


def test_kl_cov_with_one_update_a_rollout_is_refused_naming_the_fields():
  with pytest.raises(ValueError, match=r"^config\.rl\.ppo_epochs: policy loss 'kl_cov' acts "
                     r"only where .* rl\.ppo_epochs \* rl\.minibatches >= 2, got 1"):
    _validate(**{"algorithm.policy_loss": "kl_cov"})
  _validate(**{"algorithm.policy_loss": "kl_cov", "rl.minibatches": 2})
  _validate(**{"algorithm.policy_loss": "kl_cov", "rl.ppo_epochs": 2})
  _validate(**{"algorithm.policy_loss": "clip_cov"})  # Clip-Cov acts on-policy too


@pytest.mark.parametrize("loss,kw,message", [
    ("clip_cov", dict(clip_cov_ratio=0.0), "'clip_cov_ratio' must be in (0, 1], got 0.0"),
    ("clip_cov", dict(clip_cov_lb=5.0), "the band is empty: clip_cov_lb (5.0) must be below "
     "clip_cov_ub (5.0)"),
    ("clip_cov", dict(clip_low=1.5), "'clip_low' must be in [0, 1], got 1.5"),
    ("clip_cov", dict(clip_cov_ration=0.1), "has no hyperparameter 'clip_cov_ration' (did you "
     "mean 'clip_cov_ratio'?)"),
    ("kl_cov", dict(kl_cov_ratio=2.0), "'kl_cov_ratio' must be in (0, 1], got 2.0"),
    ("kl_cov", dict(ppo_kl_coef=-1.0), "'ppo_kl_coef' must be >= 0, got -1.0"),
])
def test_bad_hyperparameters_are_refused(loss, kw, message):
  alg = configs_base.base_config().algorithm
  alg.update(policy_loss=loss, policy_loss_kw=kw)
  bad = method.problems(alg, group_size=4, updates_per_rollout=2)
  assert bad and bad[0].startswith("config.algorithm.policy_loss_kw: ") and message in bad[0], bad


# ---------------------------------------------------------------------------------------------
# The step: a key for each micro-batch update, and training with each loss
# ---------------------------------------------------------------------------------------------
@algorithms.register_policy_loss("_key_probe")
def _key_probe(logp, old_logp, advantages, mask, *, key, normalizer=None):
  """The PG loss, and the first uniform number of this micro-batch's key as a metric."""
  loss = algorithms.aggregate(-advantages * logp, mask, "token-mean", normalizer=normalizer)
  return loss, {"key_probe": jax.random.uniform(key)}


def test_each_micro_batch_update_gets_its_own_key_from_the_update_key():
  run = rl_run(**{"algorithm.policy_loss": "_key_probe", "rl.ppo_epochs": 2,
                  "rl.minibatches": 2, "rl.microbatches": 2})
  keys = update_lib.loss_keys(_spec(run), jax.random.key(5))
  assert keys.shape == (2, 2, 2)
  draws = np.asarray(jax.vmap(jax.random.uniform)(keys.reshape(-1)))
  assert len(set(draws.tolist())) == 8  # all different
  state = run.make_rl_state(run.init_params())
  batch = device_batches(run, 1)[0]
  phases = run._rl_step.phases
  comp, greedy = jax.jit(phases.sample)(state, batch, jax.random.key(0))
  rewards, _ = jax.jit(phases.score)(batch, comp, greedy)
  _, metrics = jax.jit(phases.learn)(state, batch, comp, rewards, None, jax.random.key(5))
  # metrics are averaged over the micro-batches, then over the updates
  np.testing.assert_allclose(float(metrics["key_probe"]), draws.mean(), rtol=1e-6)
  assert update_lib.loss_keys(_spec(rl_run()), jax.random.key(5)) is None  # ppo: no key


def _spec(run):
  from rlvr_jax.training.rollout import StepSpec
  return StepSpec.from_config(run.config, run.model_config, None, {"policy": None}, eos_id=0,
                              pad_id=0)


@pytest.mark.parametrize("loss,overrides", [
    ("clip_cov", {"algorithm.policy_loss_kw": dict(clip_cov_ratio=0.2, clip_cov_lb=-1.0),
                  "rl.minibatches": 2, "rl.microbatches": 2}),
    ("kl_cov", {"algorithm.policy_loss_kw": dict(kl_cov_ratio=0.2), "rl.minibatches": 2}),
])
def test_the_compiled_step_trains_with_each(loss, overrides):
  # NSR: an untrained model's wrong samples have advantage -1, so the parameters must move
  run = rl_run(**{"algorithm.policy_loss": loss, "algorithm.advantage": "nsr", **overrides})
  configs_base.validate(run.config)
  state = run.make_rl_state(run.init_params())
  before = jax.tree.map(np.asarray, state.params)
  step = run.compile_step(run._rl_step, state, with_rng=True)
  for i, b in enumerate(device_batches(run, 2)):
    state, metrics = step(state, b, jax.random.key(i))
  assert step._cache_size() == 1
  m = jax.device_get(metrics)
  for k, v in m.items():
    assert np.all(np.isfinite(v)), (loss, k)
  assert m["cov_selected_frac"] > 0
  if loss == "kl_cov":
    assert m["ppo_kl_abs"] > 0  # the second minibatch's policy has moved
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), before, state.params)
  assert all(jax.tree.leaves(changed))
