"""Advantage estimators against slow loop references written from docs/ALGORITHMS.md."""

import math

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.algorithms import advantages as A
from rlvr_jax.algorithms import losses
from rlvr_jax.algorithms import method
from rlvr_jax.algorithms import registry

EPS = 1e-6
FAST = hypothesis.settings(max_examples=15, deadline=None, derandomize=True)

# Jitted once per shape: far cheaper on CPU than op-by-op dispatch of each primitive.
grpo = jax.jit(A.grpo, static_argnames="scale_by_std")
tempo = jax.jit(A.tempo, static_argnames="scale_by_std")
min_form = jax.jit(A.min_form)
gae = jax.jit(A.gae)
pure_token_returns = jax.jit(A.pure_token_returns)
reinforce_plus_plus = jax.jit(A.reinforce_plus_plus, static_argnames="baseline")


def _rollout(seed, lead=(2,), g=4, t=6, vocab=3):
  """Random tokens from a small vocabulary (so prefixes are shared), prefix masks, pad id 0."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(0, t + 1, lead + (g,))
  mask = (np.arange(t) < lengths[..., None]).astype(np.float32)
  tokens = np.where(mask > 0, rng.integers(1, vocab + 1, lead + (g, t)), 0).astype(np.int32)
  rewards = rng.integers(0, 2, lead + (g,)).astype(np.float32)
  return tokens, rewards, mask


def _std1(r):
  return float(np.std(r, ddof=1))


# --- References ------------------------------------------------------------------------------


def ref_grpo(rewards, scale=True):
  out = np.zeros_like(rewards, dtype=np.float64)
  for idx in np.ndindex(rewards.shape[:-1]):
    r = rewards[idx].astype(np.float64)
    if len(r) < 2:
      continue
    out[idx] = (r - r.mean()) / (_std1(r) + EPS) if scale else r - r.mean()
  return out


def ref_tempo(tokens, rewards, mask, scale=True):
  """The literal walk of docs/ALGORITHMS.md: loop over i, t, shrink P."""
  out = np.zeros(tokens.shape, np.float64)
  for idx in np.ndindex(tokens.shape[:-2]):
    y, r, m = tokens[idx], rewards[idx].astype(np.float64), mask[idx]
    g, t_len = y.shape
    if g < 2:
      continue
    mu, den = r.mean(), (_std1(r) + EPS if scale else 1.0)
    for i in range(g):
      p = list(range(g))
      for t in range(t_len):
        if len(p) == 1:
          out[idx + (i, t)] = (r[i] - mu) / den * m[i, t]
          continue
        b = [k for k in p if y[k, t] == y[i, t]]
        if m[i, t]:
          out[idx + (i, t)] = (r[i] - mu + r[b].mean() - r[p].mean()) / den
        p = b
  return out


def ref_returns(rewards, mask, gamma):
  out = np.zeros_like(rewards, dtype=np.float64)
  for idx in np.ndindex(rewards.shape[:-1]):
    valid = [t for t in range(rewards.shape[-1]) if mask[idx + (t,)]]
    for a, t in enumerate(valid):
      out[idx + (t,)] = sum(gamma ** b * rewards[idx + (s,)] for b, s in enumerate(valid[a:]))
  return out


def ref_whiten(x, mask, eps=1e-8):
  vals = x[mask > 0].astype(np.float64)
  if vals.size == 0:
    return np.zeros_like(x)
  return (x - vals.mean()) / math.sqrt(max(vals.var(), eps)) * mask


def ref_last_onehot(mask):
  out = np.zeros_like(mask)
  for idx in np.ndindex(mask.shape[:-1]):
    valid = np.nonzero(mask[idx])[0]
    if valid.size:
      out[idx + (valid[-1],)] = 1
  return out


# --- Outcome advantages ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 5), (2, 1), (4,), (2, 3, 2)])
@pytest.mark.parametrize("scale", [True, False])
def test_grpo_matches_reference(shape, scale):
  rewards = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  got = grpo(rewards, scale_by_std=scale)
  np.testing.assert_allclose(got, ref_grpo(rewards, scale), rtol=1e-5, atol=1e-5)


@FAST
@hypothesis.given(st.sampled_from([(6,), (3, 5), (2, 2, 7)]).flatmap(
    lambda shape: hnp.arrays(np.float32, shape, elements=st.floats(-10, 10, width=32))))
def test_grpo_zero_mean_per_group(rewards):
  adv = np.asarray(grpo(rewards))
  assert np.all(np.isfinite(adv))
  np.testing.assert_allclose(adv.mean(-1), 0.0, atol=1e-4 * max(1.0, np.abs(adv).max()))


def test_rloo_remax_weighted_reinforce():
  rng = np.random.default_rng(1)
  rewards = rng.integers(0, 2, (3, 5)).astype(np.float32)
  greedy = rng.normal(size=3).astype(np.float32)
  want_rloo = [[r[i] - (r.sum() - r[i]) / (len(r) - 1) for i in range(len(r))] for r in rewards]
  np.testing.assert_allclose(A.rloo(rewards), want_rloo, atol=1e-6)
  np.testing.assert_array_equal(A.rloo(rewards[:, :1]), 0.0)
  np.testing.assert_allclose(A.remax(rewards, greedy), rewards - greedy[:, None], atol=1e-6)
  for pw, nw in [(1.0, 0.0), (0.0, 1.0), (0.1, 1.0)]:
    want = [[pw if x > 0 else -nw for x in r] for r in rewards]
    np.testing.assert_allclose(A.weighted_reinforce(rewards, positive_weight=pw,
                                                    negative_weight=nw), want)


# --- TEMPO -----------------------------------------------------------------------------------


def test_tempo_worked_example():
  tokens = np.array([[5, 7, 9, 2], [5, 7, 8, 2], [5, 6, 3, 0], [5, 7, 9, 4]], np.int32)
  rewards = np.array([1, 0, 1, 1], np.float32)
  mask = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]], np.float32)
  row0 = [0.5, 1 / 3, 7 / 6, 0.5]
  want = np.array([row0, [-1.5, -5 / 3, -17 / 6, -1.5], [0.5, 1.0, 0.5, 0.0], row0])
  got = tempo(tokens, rewards, mask)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(got, ref_tempo(tokens, rewards, mask), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("lead,g,t", [((), 4, 5), ((3,), 5, 7), ((2, 2), 3, 4), ((2,), 1, 3),
                                      ((2,), 2, 1)])
@pytest.mark.parametrize("seed", [0, 1])
def test_tempo_matches_walk(lead, g, t, seed):
  tokens, rewards, mask = _rollout(seed, lead, g, t)
  if seed:
    rewards = np.random.default_rng(seed).normal(size=rewards.shape).astype(np.float32)
  got = tempo(tokens, rewards, mask)
  np.testing.assert_allclose(got, ref_tempo(tokens, rewards, mask), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(tempo(tokens, rewards, mask, scale_by_std=False),
                             ref_tempo(tokens, rewards, mask, scale=False), rtol=1e-5, atol=1e-5)


@FAST
@hypothesis.given(st.integers(0, 2**31 - 1))
def test_tempo_equals_grpo_for_identical_responses(seed):
  rng = np.random.default_rng(seed)
  g, t = 5, 6
  tokens = np.broadcast_to(rng.integers(0, 9, (1, t)), (g, t)).astype(np.int32)
  mask = np.broadcast_to((np.arange(t) < rng.integers(0, t + 1)), (g, t)).astype(np.float32)
  rewards = rng.integers(0, 2, g).astype(np.float32)
  want = np.asarray(grpo(rewards))[:, None] * mask
  np.testing.assert_allclose(tempo(tokens, rewards, mask), want, rtol=1e-6, atol=1e-6)


def test_tempo_never_nan_and_group_of_one():
  tokens, _, mask = _rollout(3, (2,), 4, 5)
  for rewards in (np.ones((2, 4), np.float32), np.zeros((2, 4), np.float32)):
    adv = np.asarray(tempo(tokens, rewards, mask))
    assert np.all(np.isfinite(adv)) and np.all(adv == 0)
  np.testing.assert_array_equal(tempo(tokens[:, :1], np.ones((2, 1)), mask[:, :1]), 0.0)
  np.testing.assert_array_equal(tempo(tokens, np.ones((2, 4)), np.zeros_like(mask)), 0.0)


def test_jit_equals_vmap():
  tokens, rewards, mask = _rollout(4, (3,), 4, 6)
  np.testing.assert_allclose(tempo(tokens, rewards, mask),
                             jax.jit(jax.vmap(A.tempo))(tokens, rewards, mask), rtol=1e-6)
  values = np.random.default_rng(4).normal(size=mask.shape).astype(np.float32)
  np.testing.assert_allclose(gae(mask, values, mask)[0],
                             jax.jit(jax.vmap(A.gae))(mask, values, mask)[0], rtol=1e-6)
  np.testing.assert_allclose(grpo(rewards), jax.vmap(A.grpo)(rewards), rtol=1e-6)


# --- GAE / returns / REINFORCE++ --------------------------------------------------------------


def ref_gae(rewards, values, mask, gamma, lam):
  adv = np.zeros_like(rewards, dtype=np.float64)
  for idx in np.ndindex(rewards.shape[:-1]):
    valid = [t for t in range(rewards.shape[-1]) if mask[idx + (t,)]]
    v = [values[idx + (t,)] for t in valid] + [0.0]
    deltas = [rewards[idx + (t,)] + gamma * v[a + 1] - v[a] for a, t in enumerate(valid)]
    for a, t in enumerate(valid):
      adv[idx + (t,)] = sum((gamma * lam) ** l * d for l, d in enumerate(deltas[a:]))
  return adv


@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (0.9, 0.95), (0.5, 0.0)])
def test_gae_and_returns_match_reference(gamma, lam):
  rng = np.random.default_rng(5)
  _, _, mask = _rollout(5, (2, 3), 1, 7)
  rewards = rng.normal(size=mask.shape).astype(np.float32)
  values = rng.normal(size=mask.shape).astype(np.float32)
  adv, ret = gae(rewards, values, mask, gamma=gamma, lam=lam)
  want = ref_gae(rewards, values, mask, gamma, lam)
  np.testing.assert_allclose(adv, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ret, (want + values) * mask, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(A.discounted_returns(rewards, mask, gamma=gamma),
                             ref_returns(rewards, mask, gamma), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("baseline", [False, True])
def test_reinforce_plus_plus_matches_reference(baseline):
  rng = np.random.default_rng(6)
  _, rewards, mask = _rollout(6, (3,), 4, 6)
  kl = rng.normal(size=mask.shape).astype(np.float32)
  beta, gamma = 0.05, 0.9
  r = rewards - rewards.mean(-1, keepdims=True) if baseline else rewards
  token_r = -beta * kl * mask + r[..., None] * ref_last_onehot(mask)
  want = ref_whiten(ref_returns(token_r, mask, gamma), mask)
  got = reinforce_plus_plus(rewards, mask, kl, kl_coef=beta, gamma=gamma, baseline=baseline)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_whiten_matches_reference():
  rng = np.random.default_rng(7)
  x = rng.normal(3, 2, (4, 5)).astype(np.float32)
  mask = (rng.random((4, 5)) > 0.3).astype(np.float32)
  np.testing.assert_allclose(A.whiten(x, mask), ref_whiten(x, mask), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(A.whiten(x, np.zeros_like(mask)), 0.0)


# --- PURE ------------------------------------------------------------------------------------


def _steps(seed, lead, t):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, t + 1, lead)
  mask = (np.arange(t) < lengths[..., None]).astype(np.float32)
  step_end = ((rng.random(lead + (t,)) < 0.3) * mask + ref_last_onehot(mask)).clip(0, 1)
  return step_end.astype(np.float32), mask


def test_segment_steps_and_placement():
  step_end, mask = _steps(8, (3, 2), 9)
  step_id, step_len = A.segment_steps(step_end, mask)
  for idx in np.ndindex(mask.shape[:-1]):
    k, start = 0, 0
    for t in range(mask.shape[-1]):
      if not mask[idx + (t,)]:
        continue
      assert step_id[idx + (t,)] == k
      if step_end[idx + (t,)]:
        assert step_len[idx + (t,)] == t - start + 1
        k, start = k + 1, t + 1
      else:
        assert step_len[idx + (t,)] == 0
  scores = np.arange(1, 10, dtype=np.float32) * np.ones(mask.shape[:-1] + (1,))
  placed = A.place_at_step_ends(scores, step_end, mask)
  np.testing.assert_allclose(placed, (np.asarray(step_id) + 1) * step_end)


def ref_min_form(r, m, temperature):
  out = np.zeros_like(r, dtype=np.float64)
  for idx in np.ndindex(r.shape[:-1]):
    valid = np.nonzero(m[idx])[0]
    if valid.size:
      z = np.exp(-r[idx][valid].astype(np.float64) / temperature)
      out[idx + (valid,)] = z / z.sum() * r[idx][valid]
  return out


def test_min_form_matches_reference_and_strict_is_running_min():
  rng = np.random.default_rng(9)
  r = rng.uniform(-1, 1, (4, 6)).astype(np.float32)
  m = (rng.random((4, 6)) > 0.4).astype(np.float32)
  m[0] = 0
  for temperature in (0.1, 1.0):
    np.testing.assert_allclose(min_form(r, m, temperature=temperature),
                               ref_min_form(r, m, temperature), rtol=1e-5, atol=1e-6)
  grad = jax.grad(lambda r: min_form(r, m).sum())(jnp.asarray(r))
  assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[m == 0] == 0)
  strict = np.asarray(A.strict_min_form(r, m))
  for b in range(4):
    valid = np.nonzero(m[b])[0]
    assert np.all(strict[b][m[b] == 0] == 0)
    for a, k in enumerate(valid):
      np.testing.assert_allclose(strict[b][valid[a:]].sum(), r[b][valid[a:]].min(), atol=1e-6)


@FAST
@hypothesis.given(hnp.arrays(np.float32, 8, elements=st.floats(-1, 1, width=32)),
                  st.integers(1, 8))
def test_min_form_tends_to_min(r, num_steps):
  temperature = 1e-3
  m = (np.arange(8) < num_steps).astype(np.float32)
  total = float(np.sum(min_form(r, m, temperature=temperature)))
  assert abs(total - r[:num_steps].min()) <= num_steps * temperature + 1e-5


def ref_pure(pr, step_end, mask, solved, coef, kl, beta):
  """PURE returns from docs/ALGORITHMS.md, one sample at a time."""
  lead, (g, t_len) = pr.shape[:-2], pr.shape[-2:]
  out = np.zeros(pr.shape, np.float64)
  keep = np.zeros(pr.shape)
  for idx in np.ndindex(lead):
    ends = np.clip(step_end[idx] * mask[idx] + ref_last_onehot(mask[idx]), 0, 1)
    totals = [(pr[idx][j] * ends[j]).sum() for j in range(g)]
    lengths = [mask[idx][j].sum() for j in range(g)]
    v = solved[idx] - 1.0
    for i in range(g):
      others = [j for j in range(g) if j != i]
      den = sum(lengths[j] for j in others)
      b = sum(totals[j] for j in others) / den if others and den else 0.0
      vr = v[i] - np.mean([v[j] for j in others]) if others else 0.0
      r = np.zeros(t_len)
      count = 0
      for t in range(t_len):
        if not mask[idx][i, t]:
          continue
        count += 1
        r[t] -= beta * kl[idx][i, t]
        if ends[i, t]:
          r[t] += pr[idx][i, t] - b * count
          count = 0
      valid = np.nonzero(mask[idx][i])[0]
      if valid.size:
        r[valid[-1]] += coef * vr
      for t in valid:
        out[idx + (i, t)] = r[t:].sum()
        keep[idx + (i, t)] = 1 - ends[i, t]
  return ref_whiten(out, keep)


@pytest.mark.parametrize("coef,beta", [(0.0, 0.0), (1.0, 0.001), (0.5, 0.3)])
def test_pure_token_returns_matches_reference(coef, beta):
  rng = np.random.default_rng(10)
  step_end, mask = _steps(10, (2, 4), 8)
  step_end[0, 1] *= rng.random(8) < 0.5  # EOS left unmarked: must still end a step
  pr = min_form(rng.uniform(-1, 1, mask.shape).astype(np.float32), step_end * mask)
  pr = np.asarray(pr)
  solved = rng.integers(0, 2, (2, 4)).astype(np.float32)
  kl = rng.normal(size=mask.shape).astype(np.float32)
  got = pure_token_returns(pr, step_end, mask, verifiable_rewards=solved,
                             verifiable_coef=coef, kl=kl, kl_coef=beta)
  want = ref_pure(pr, step_end, mask, solved, coef, kl, beta)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  ends = np.clip(step_end * mask + ref_last_onehot(mask), 0, 1)
  assert np.all(np.asarray(got)[ends > 0] == 0)


# --- Groups of equal rewards ------------------------------------------------------------------

# Equal rewards the float32 mean misses by an ulp (2.3 × 6 gave GRPO 0.19), large magnitudes,
# negatives, tiny values, plus random ones over 16 decades.
_EQUAL_VALUES = np.concatenate([
    np.array([2.3, -987.65, 0.1, 1 / 3, -7.77, 1e-7, 123456.79, -3.3e5, 1e20, -1e30, 0.0, 1.0],
             np.float32),
    (np.random.default_rng(0).normal(size=100) * 10.0 ** np.random.default_rng(1).uniform(
        -8, 8, 100)).astype(np.float32)])


def _equal_groups(g):
  """[V, G] rewards, group v all equal to _EQUAL_VALUES[v]; random tokens sharing prefixes."""
  rewards = np.repeat(_EQUAL_VALUES[:, None], g, axis=1)
  tokens = np.random.default_rng(g).integers(1, 3, (len(_EQUAL_VALUES), g, 4)).astype(np.int32)
  return rewards, tokens, np.ones(tokens.shape, np.float32)


@jax.jit
def _group_baseline_advantages(rewards, tokens, mask):
  return (A.grpo(rewards), A.grpo(rewards, scale_by_std=False), A.rloo(rewards),
          A.tempo(tokens, rewards, mask), A.reinforce_plus_plus(rewards, mask, baseline=True))


@pytest.mark.parametrize("g", [2, 3, 4, 5, 6, 7, 8, 9, 13, 16, 17, 31, 32, 33, 63, 64])
def test_equal_rewards_give_exactly_zero_advantage(g):
  for adv in _group_baseline_advantages(*_equal_groups(g)):
    assert np.all(np.asarray(adv) == 0)


def test_whiten_of_equal_values_is_exactly_zero():
  for v in _EQUAL_VALUES:
    x = np.full((3, 5), v, np.float32)
    mask = np.ones((3, 5), np.float32)
    mask[0, :2] = 0  # the shift must use a valid entry
    x[0, :2] = 17.0
    assert np.all(np.asarray(A.whiten(x, mask)) == 0), v


# Estimators with a group baseline (they need "group"); lite_ppo's group-mean baseline is scaled
# by a batch statistic: an all-equal group still gets 0, but its rewards move the other groups'
# scale.
# The library's estimators: collecting tests/test_config_rules.py loads every configs/*.py, and
# configs/your_own_method.py registers a user's estimator into the same registry.
_BUILTIN = sorted(n for n, c in registry.ADVANTAGES.items() if c.builtin)
_GROUP_BASELINE = [n for n in _BUILTIN if "group" in registry.ADVANTAGES[n].needs
                   and n != "lite_ppo"]
_PRM = [n for n in _BUILTIN if "step_rewards" in registry.ADVANTAGES[n].needs]


def _only_hyperparameters(name, **kw):
  """The keywords of `kw` that estimator `name` takes."""
  hp = registry.ADVANTAGES[name].hyperparameters
  return {k: v for k, v in kw.items() if k in hp}


@pytest.mark.parametrize("name", _GROUP_BASELINE)
@pytest.mark.parametrize("g", [2, 7, 64])
def test_a_group_of_equal_rewards_carries_no_signal(name, g):
  """Every group-baseline estimator: a group of equal rewards [v] × G gives exactly the same
  advantages as [0] × G, for the whole batch. For outcome estimators without a KL penalty those
  advantages are exactly 0. PURE's PRM baseline is a per-token rate, not a group mean, so a PURE
  row is not 0; its group baseline on the verifiable reward (leave-one-out) must cancel. PRIME's
  implicit process rewards do not depend on the outcome: its outcome source must cancel."""
  x = _inputs(seed=g, b=2, g=g)
  kw = _only_hyperparameters(name, kl_coef=0.01, verifiable_coef=1.0)
  run = jax.jit(lambda x: registry.ADVANTAGES[name](x, **kw))
  first_group = lambda v: x.replace(rewards=x.rewards.at[0].set(v))
  want = np.asarray(run(first_group(0.0)))
  for v in _EQUAL_VALUES:
    np.testing.assert_array_equal(run(first_group(v)), want, err_msg=f"{v}")
  if name not in _PRM and name != "prime":
    no_kl = x.replace(ref_logp=None)
    for v in _EQUAL_VALUES:
      got = run(no_kl.replace(rewards=jnp.full((2, g), v, jnp.float32)))
      assert np.all(np.asarray(got) == 0), v


# --- DAPO helpers ----------------------------------------------------------------------------


def test_overlong_penalty_and_dynamic_sampling():
  lengths = np.arange(0, 25)
  want = [0.0 if n <= 16 else ((16 - n) / 4 if n <= 20 else -1.0) for n in lengths]
  np.testing.assert_allclose(A.overlong_penalty(lengths, 20, 4), want, atol=1e-6)
  rewards = np.array([[1, 1, 1], [0, 1, 0], [0, 0, 0], [0.5, 0.5, 0.25]], np.float32)
  np.testing.assert_array_equal(A.dynamic_sampling_mask(rewards),
                                [[0] * 3, [1] * 3, [0] * 3, [1] * 3])


# --- Registry --------------------------------------------------------------------------------


def _inputs(seed=11, b=2, g=4, t=6):
  tokens, rewards, mask = _rollout(seed, (b,), g, t)
  rng = np.random.default_rng(seed)
  step_end, _ = _steps(seed, (b, g), t)
  f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
  return registry.AdvantageInputs(
      rewards=jnp.asarray(rewards), tokens=jnp.asarray(tokens), mask=jnp.asarray(mask),
      logp=f(b, g, t), ref_logp=f(b, g, t), values=f(b, g, t), greedy_rewards=f(b),
      step_rewards=jnp.asarray(step_end) * f(b, g, t), step_end=jnp.asarray(step_end * mask),
      process_rewards=f(b, g, t) * jnp.asarray(mask))


@pytest.mark.parametrize("name", _BUILTIN)
def test_every_registered_advantage_is_token_level_and_jittable(name):
  x = _inputs()
  kw = _only_hyperparameters(name, eps=1e-6)
  adv = jax.jit(lambda x: registry.ADVANTAGES[name](x, **kw))(x)
  assert adv.shape == x.mask.shape and adv.dtype == jnp.float32
  assert np.all(np.isfinite(adv)) and np.all(np.asarray(adv)[np.asarray(x.mask) == 0] == 0)


def test_registry_adapters_use_the_library_functions():
  x = _inputs()
  adv = lambda n: jax.jit(lambda x: registry.ADVANTAGES[n](
      x, **_only_hyperparameters(n, kl_coef=0.0)))(x)
  np.testing.assert_allclose(adv("grpo"), grpo(x.rewards)[..., None] * x.mask)
  np.testing.assert_allclose(adv("dr_grpo"), (x.rewards - x.rewards.mean(-1, keepdims=True))
                             [..., None] * x.mask, atol=1e-6)
  np.testing.assert_allclose(adv("tempo"), tempo(x.tokens, x.rewards, x.mask))
  np.testing.assert_allclose(adv("dapo"), adv("grpo"))  # dynamic sampling is the trainer's
  np.testing.assert_allclose(adv("lite_ppo"), A.lite_ppo(x.rewards)[..., None] * x.mask,
                             rtol=1e-6)  # jit vs eager: one float32 ulp
  np.testing.assert_allclose(adv("reinforce_pp"), reinforce_plus_plus(x.rewards, x.mask))


def test_registry_unknown_names_and_registration():
  with pytest.raises(ValueError, match="tempo"):
    registry.ADVANTAGES["nope"]
  with pytest.raises(ValueError, match="seq-mean-token-sum-norm"):
    losses.check_aggregation("nope")
  # An estimator whose input nothing provides is refused before anything runs.
  assert any("advantage 'gae' reads critic values" in p
             for p in method.problems({"advantage": "gae", "policy_loss": "ppo"}))

  @registry.register_advantage("test_only_constant")
  def _constant(x, *, value=2.0):
    return x.mask * value

  try:
    np.testing.assert_array_equal(registry.ADVANTAGES["test_only_constant"](_inputs()),
                                  2.0 * _inputs().mask)
    with pytest.raises(ValueError, match="already registered"):
      registry.register_advantage("test_only_constant")(lambda x: x.mask)
  finally:
    del registry.ADVANTAGES["test_only_constant"]
