"""Lp-Reg (Huang et al. 2025, arXiv 2510.03222): the behaviour policy's min-p proxy and the
policy loss, against slow NumPy loops written from the reference (CarlanLark/Lp-Reg-dev:
verl/workers/actor/dp_actor.py `apply_min_p` @7e7d20b2, verl/trainer/ppo/core_algos.py
`compute_policy_loss_lp_reg` @700298fb); the sampler's proxy against the teacher-forced pass's;
which tokens the regulariser reaches; the `k > 1` guard; the real compiled step."""

import functools
import math

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rlvr_jax import algorithms, configs_base, models, sampling
from rlvr_jax.algorithms import lp_reg as lp_lib
from rlvr_jax.algorithms import method as method_lib
from rlvr_jax.algorithms import registry
from rlvr_jax.training.forward import completion_logprobs
from tests.helpers import device_batches, load_config, rl_run
from tests.test_losses import ref_aggregate

V = 37


# ---------------------------------------------------------------------------------------------
# The proxy
# ---------------------------------------------------------------------------------------------
def ref_proxy_logp(raw_logits, target, min_p, temperature):
  """The reference's `apply_min_p` then `div_(temperature)` and log-softmax, for one position:
  softmax of the RAW logits, ids with p < min_p · max p set to −1e4, all logits / T, the
  target's log-softmax (float64 loops)."""
  z = [float(x) for x in raw_logits]
  m = max(z)
  p = [math.exp(x - m) for x in z]
  total = sum(p)
  p = [x / total for x in p]
  p_max = max(p)
  modified = [x if pv >= min_p * p_max else -1e4 for x, pv in zip(z, p)]
  zt = [x / temperature for x in modified]
  mt = max(zt)
  lse = mt + math.log(sum(math.exp(x - mt) for x in zt))
  return zt[target] - lse


@pytest.mark.parametrize("min_p,temperature", [(0.02, 1.0), (0.1, 0.7), (0.3, 1.3), (1.0, 1.0)])
def test_min_p_logprobs_match_the_reference_on_raw_logits(min_p, temperature):
  rng = np.random.default_rng(0)
  raw = (rng.normal(size=(6, 50)) * 3).astype(np.float32)
  targets = rng.integers(0, 50, 6)
  targets[0] = int(np.argmax(raw[0]))  # kept (the top id always is)
  targets[1] = int(np.argmin(raw[1]))  # filtered for any min_p here
  got = models.min_p_logprobs(jnp.asarray(raw) / temperature, jnp.asarray(targets),
                              min_p=min_p, temperature=temperature)
  want = [ref_proxy_logp(raw[i], targets[i], min_p, temperature) for i in range(6)]
  kept = np.array([w > -1000 for w in want])
  assert kept[0] and not kept[1]
  np.testing.assert_allclose(np.asarray(got)[kept], np.array(want)[kept], rtol=1e-5, atol=1e-5)
  # filtered: −1e4 / T − LSE over the kept ids, as the reference (float32 rounding of 1e4)
  np.testing.assert_allclose(np.asarray(got)[~kept], np.array(want)[~kept], rtol=1e-6)


def test_the_filter_reads_the_raw_distribution_not_the_tempered_one():
  """z = (0, −3, −5): raw p_2 / p_max = e^-3 ≈ 0.050 ≥ 0.04 is kept; at T = 3 it would be e^-1
  and at T = 0.5 e^-6 — the raw test decides at every temperature, as in the reference."""
  raw = jnp.array([[0.0, -3.0, -5.0]])
  for t in (0.5, 1.0, 3.0):
    got = models.min_p_logprobs(raw / t, jnp.array([1]), min_p=0.04, temperature=t)
    want = ref_proxy_logp([0.0, -3.0, -5.0], 1, 0.04, t)
    np.testing.assert_allclose(got, [want], rtol=1e-6)
    lse = math.log(1 + math.exp(-3 / t))
    np.testing.assert_allclose(got, [-3 / t - lse], rtol=1e-6)  # id 2 dropped, id 1 kept


def _tiny(seed=0, scale=8.0, **kw):
  c = models.tiny(V, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64, **kw)
  params = jax.tree.map(lambda x: x * scale if x.ndim > 1 else x,
                        models.init_params(c, jax.random.key(seed)))
  rng = np.random.default_rng(seed)
  lengths = np.array([5, 3, 1, 4])
  p = lengths.max()
  prompts = np.zeros((4, p), np.int32)
  mask = np.zeros((4, p), np.int32)
  for b, n in enumerate(lengths):
    prompts[b, p - n:] = rng.integers(3, V, n)
    mask[b, p - n:] = 1
  return c, params, jnp.asarray(prompts), jnp.asarray(mask)


@pytest.mark.parametrize("tied,padded", [(True, False), (False, True)])
def test_chunked_and_plain_passes_give_the_reference_proxy_and_unchanged_logprobs(tied, padded):
  c = models.tiny(40 if padded else V, tie_embeddings=tied, valid_vocab_size=V if padded else None,
                  d_model=16)
  params = models.init_params(c, jax.random.key(1))
  params = jax.tree.map(lambda x: x * 6 if x.ndim > 1 else x, params)
  h = jax.random.normal(jax.random.key(2), (3, 7, 16)) * 5
  y = jax.random.randint(jax.random.key(3), (3, 7), 0, V)
  t, kappa = 0.8, 0.2
  raw = np.asarray(models.logits_from_hidden(c, params, h))[..., :V]
  want = np.array([[ref_proxy_logp(raw[i, j], int(y[i, j]), kappa, t) for j in range(7)]
                   for i in range(3)])
  for chunk in (7, 3, 1):
    fn = jax.jit(functools.partial(models.token_logprobs, c, temperature=t, chunk=chunk,
                                   proxy_min_p=kappa))
    logp, ent, proxy = fn(params, h, y)
    base_logp, base_ent = jax.jit(functools.partial(models.token_logprobs, c, temperature=t,
                                                    chunk=chunk))(params, h, y)
    np.testing.assert_array_equal(logp, base_logp)
    np.testing.assert_array_equal(ent, base_ent)
    kept = want > -1000
    assert kept.any() and (~kept).any()
    np.testing.assert_allclose(np.asarray(proxy)[kept], want[kept], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(proxy)[~kept], want[~kept], rtol=1e-5)
    # the proxy is a constant: the gradient of log p is the one without it
    g = jax.grad(lambda p: jnp.sum(models.token_logprobs(c, p, h, y, temperature=t, chunk=chunk,
                                                         proxy_min_p=kappa)[0]))(params)
    g0 = jax.grad(lambda p: jnp.sum(models.token_logprobs(c, p, h, y, temperature=t,
                                                          chunk=chunk)[0]))(params)
    jax.tree.map(np.testing.assert_array_equal, g, g0)


@pytest.mark.parametrize("temperature,decode_slots", [(1.0, None), (0.7, None), (1.0, 3)])
def test_the_sampler_proxy_agrees_with_the_teacher_forced_pass(temperature, decode_slots):
  """Sampler path (decode-step logits) vs teacher-forced path (`completion_logprobs`) on the
  same tokens; and asking for the proxy changes none of the sampler's other outputs."""
  c, params, prompts, mask = _tiny()
  kappa = 0.3  # large, so that sampled tokens are filtered too
  gen = functools.partial(sampling.generate, c, max_new_tokens=8, temperature=temperature,
                          num_samples=3, decode_slots=decode_slots)
  out = jax.jit(functools.partial(gen, proxy_min_p=kappa))(params, prompts, mask,
                                                          jax.random.key(5))
  plain = jax.jit(gen)(params, prompts, mask, jax.random.key(5))
  assert plain.proxy_logprobs is None
  for field in ("tokens", "logprobs", "entropies", "mask"):
    np.testing.assert_array_equal(getattr(out, field), getattr(plain, field), err_msg=field)
  logp, _, proxy = completion_logprobs(c, params, prompts, mask, out.tokens, out.mask,
                                       temperature, proxy_min_p=kappa)
  valid = np.asarray(out.mask) > 0
  got, want = np.asarray(out.proxy_logprobs), np.asarray(proxy)
  kept = want > -1000
  assert (valid & kept).any() and (valid & ~kept).any()
  np.testing.assert_array_equal(got[~valid], 0.0)
  np.testing.assert_allclose(got[valid & kept], want[valid & kept], atol=2e-4)
  np.testing.assert_allclose(got[valid & ~kept], want[valid & ~kept], rtol=1e-5)
  np.testing.assert_allclose(np.asarray(out.logprobs)[valid], np.asarray(logp)[valid], atol=2e-4)
  # kept tokens: the proxy gives them at least the policy's probability (renormalised on fewer)
  assert np.all(got[valid & kept] >= np.asarray(out.logprobs)[valid & kept] - 1e-5)


# ---------------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------------
def ref_lp_reg(logp, old_logp, adv, mask, proxy, *, neg_frac=0.01, pos_frac=0.0, coef=1.0,
               clip_low=1.0, clip_high=9.0, guard=True):
  """Token losses, their d/dlogp, and the regularised set S', by loops (docs/ALGORITHMS.md,
  Lp-Reg; the reference's `compute_policy_loss_lp_reg`): PPO-clip; among valid tokens with
  A < 0 (A > 0) the k = max(1, int(N·ρ)) lowest logp (if k > 1), those with logp < proxy get
  −A·ratio + β·clamp(k3, ±10)."""
  n_rows, t = logp.shape
  loss = np.zeros(logp.shape)
  dloss = np.zeros(logp.shape)
  cells = [(i, j) for i in range(n_rows) for j in range(t)]
  for i, j in cells:
    ratio = math.exp(min(max(float(logp[i, j]) - float(old_logp[i, j]), -20), 20))
    a = float(adv[i, j])
    unclipped, clipped = -a * ratio, -a * min(max(ratio, 1 - clip_low), 1 + clip_high)
    loss[i, j] = max(unclipped, clipped)
    dloss[i, j] = -a * ratio if unclipped >= clipped else 0.0
  chosen = set()
  for sign, frac in ((-1, neg_frac), (1, pos_frac)):
    cand = [(float(logp[i, j]), i * t + j, (i, j)) for i, j in cells
            if mask[i, j] > 0 and np.sign(adv[i, j]) == sign]
    if not cand:
      continue
    k = max(1, int(len(cand) * frac))
    if guard and k <= 1:
      continue
    if not guard and frac == 0:
      continue
    for lp, _, (i, j) in sorted(cand)[:k]:
      if lp < float(proxy[i, j]):
        chosen.add((i, j))
  for i, j in chosen:
    ratio = math.exp(min(max(float(logp[i, j]) - float(old_logp[i, j]), -20), 20))
    d = float(proxy[i, j]) - float(logp[i, j])
    kl = math.exp(d) - d - 1
    a = float(adv[i, j])
    loss[i, j] = -a * ratio + coef * min(max(kl, -10), 10)
    dloss[i, j] = -a * ratio + (coef * (1 - math.exp(d)) if kl < 10 else 0.0)
  return loss, dloss, chosen


def _batch(seed, n=6, t=40, on_policy=True, filtered=0.2):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(t // 2, t + 1, n)
  mask = (np.arange(t) < lengths[:, None]).astype(np.float32)
  logp = rng.normal(-2.0, 1.5, (n, t)).astype(np.float32)
  old = logp if on_policy else (logp + rng.normal(0, 0.3, (n, t))).astype(np.float32)
  adv = np.repeat(rng.normal(size=(n, 1)), t, axis=1).astype(np.float32)
  proxy = (logp + rng.normal(0.3, 1.0, (n, t))).astype(np.float32)
  proxy = np.minimum(proxy, -1e-3)
  proxy[rng.random((n, t)) < filtered] = -1e4 - 3.0  # filtered by min-p
  return logp, old.astype(np.float32), adv, mask, proxy


def _loss(logp, old, adv, mask, proxy, **kw):
  fn = lambda lp: lp_lib.lp_reg(lp, old, adv, mask, proxy_logp=proxy, **kw)
  return jax.jit(jax.value_and_grad(fn, has_aux=True))(jnp.asarray(logp))


@pytest.mark.parametrize("kw", [dict(), dict(neg_frac=0.1), dict(neg_frac=0.2, pos_frac=0.1),
                                dict(neg_frac=0.3, coef=0.5, clip_low=0.2, clip_high=0.28),
                                dict(neg_frac=0.05, guard=False)])
@pytest.mark.parametrize("seed,on_policy", [(0, True), (1, False), (2, False)])
def test_lp_reg_value_gradient_and_metrics_match_the_loop(kw, seed, on_policy):
  logp, old, adv, mask, proxy = _batch(seed, on_policy=on_policy)
  old[0, 0] = logp[0, 0] + 50.0  # the ±20 log-ratio clamp
  proxy[1, 2] = logp[1, 2] + 5.0  # k3 beyond its clamp (if selected)
  guard = kw.pop("guard", True)
  (loss, metrics), grad = _loss(logp, old, adv, mask, proxy, k_guard=guard, **kw)
  tok, dtok, chosen = ref_lp_reg(logp, old, adv, mask, proxy, guard=guard, **kw)
  n_valid = mask.sum()
  np.testing.assert_allclose(loss, ref_aggregate(tok, mask, "token-mean"), rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(grad, dtok * mask / n_valid, rtol=2e-5, atol=1e-7)
  np.testing.assert_allclose(metrics["lp_reg_selected_frac"], len(chosen) / n_valid, rtol=1e-6)
  filtered = ((proxy < -1000) * mask).sum() / n_valid
  np.testing.assert_allclose(metrics["lp_reg_filtered_frac"], filtered, rtol=1e-6)
  if kw.get("neg_frac", 0.01) >= 0.2:
    assert chosen, "the case should regularise something"


@pytest.mark.parametrize("agg", algorithms.AGGREGATIONS)
def test_lp_reg_aggregations(agg):
  logp, old, adv, mask, proxy = _batch(3, on_policy=False)
  got, _ = lp_lib.lp_reg(logp, old, adv, mask, proxy_logp=proxy, agg=agg, max_len=50,
                         neg_frac=0.2)
  tok, _, _ = ref_lp_reg(logp, old, adv, mask, proxy, neg_frac=0.2)
  np.testing.assert_allclose(got, ref_aggregate(tok, mask, agg, max_len=50), rtol=2e-5)


@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(st.integers(0, 2**31 - 1), st.floats(0.02, 0.5), st.floats(0.0, 0.5))
def test_only_the_regularised_tokens_get_the_regulariser(seed, neg_frac, pos_frac):
  """On-policy: ∂L/∂logp differs from β = 0 only on S' (low-probability tokens the proxy
  keeps and gives more probability), where it is β(1 − π_proxy/π_θ)/N < 0 until k3 reaches
  its clamp (then 0): the regulariser raises them. Filtered tokens, tokens above the proxy,
  A = 0 tokens and masked tokens never get it."""
  logp, old, adv, mask, proxy = _batch(seed)
  adv[0] = 0.0
  kw = dict(neg_frac=neg_frac, pos_frac=pos_frac)
  grad = lambda coef: jax.grad(lambda lp: lp_lib.lp_reg(lp, old, adv, mask, proxy_logp=proxy,
                                                        coef=coef, **kw)[0])(jnp.asarray(logp))
  _, m1 = lp_lib.lp_reg(logp, old, adv, mask, proxy_logp=proxy, **kw)
  _, _, chosen = ref_lp_reg(logp, old, adv, mask, proxy, **kw)
  sel = np.zeros(mask.shape, bool)
  for i, j in chosen:
    sel[i, j] = True
  diff = np.asarray(grad(1.0)) - np.asarray(grad(0.0))
  d = proxy.astype(np.float64) - logp
  unclamped = np.exp(d) - d - 1 < 10
  np.testing.assert_array_equal(diff[~(sel & unclamped)], 0.0)
  assert np.all(diff[sel & unclamped] < 0)
  assert not np.any(sel & (proxy < -1000)) and not np.any(sel & (logp >= proxy))
  assert not np.any(sel & (adv == 0)) and not np.any(sel & (mask == 0))
  assert float(m1["lp_reg_selected_frac"]) == pytest.approx(sel.sum() / mask.sum())


def test_the_k_guard():
  """k = max(1, ⌊N·ρ⌋): with N = 150 negative tokens at ρ = 0.01 k = 1, and the reference
  regularises nothing (`if k > 1`); `k_guard=False` regularises that one lowest token; at
  N = 200, k = 2 either way; ρ = 0 is off either way."""
  t = 50
  logp = np.linspace(-8.0, -1.0, 4 * t, dtype=np.float32).reshape(4, t)
  adv = np.full((4, t), -1.0, np.float32)
  mask = np.ones((4, t), np.float32)
  proxy = logp + np.float32(0.5)  # every token below its proxy (k3 below its clamp)
  three = mask.copy()
  three[3] = 0.0  # 150 negative tokens
  sel = lambda m, **kw: float(lp_lib.lp_reg(logp, logp, adv, m, proxy_logp=proxy, **kw)[1][
      "lp_reg_selected_frac"]) * m.sum()
  assert sel(three) == 0
  assert sel(three, k_guard=False) == 1
  assert sel(mask) == 2 and sel(mask, k_guard=False) == 2
  assert sel(mask, neg_frac=0.0, k_guard=False) == 0
  # the one token is the lowest log-prob (ties: the earlier position)
  (_, _), g = _loss(logp, logp, adv, three, proxy, k_guard=False, coef=1.0)
  (_, _), g0 = _loss(logp, logp, adv, three, proxy, k_guard=False, coef=0.0)
  hit = np.argwhere(np.asarray(g) != np.asarray(g0))
  assert hit.tolist() == [[0, 0]]
  # guarded with k = 1: the loss is PPO's with the same clip
  got = lp_lib.lp_reg(logp, logp, adv, three, proxy_logp=proxy)[0]
  want = algorithms.losses.policy_loss(logp, logp, adv, three, clip_low=1.0, clip_high=9.0)[0]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_lowest_is_exact_at_integers():
  """⌊N·ρ⌋ without float rounding: N = 300 at ρ = 0.01 is 3 (float32 300·0.01 is 2.9999998)."""
  cand = jnp.ones((300,), bool)
  got = lp_lib.lowest(jnp.arange(300.0), cand, 0.01)
  assert int(got.sum()) == 3 and bool(got[:3].all())
  assert int(lp_lib.lowest(jnp.arange(300.0), cand, 0.005).sum()) == 0  # k = 1: guarded


# ---------------------------------------------------------------------------------------------
# Registration, configuration, the step
# ---------------------------------------------------------------------------------------------
def _alg(**fields):
  alg = configs_base.base_config().algorithm
  alg.update(fields)
  return alg


def test_registered_defaults_need_and_the_proxy_parameter():
  c = registry.POLICY_LOSSES["lp_reg"]
  assert c.hyperparameters == {"min_p": 0.02, "neg_frac": 0.01, "pos_frac": 0.0, "coef": 1.0,
                               "clip_low": 1.0, "clip_high": 9.0, "k_guard": True}
  assert c.needs == {"proxy_logp"} and "proxy_logp" in c.context_keywords
  m = method_lib.Method.from_config(_alg(policy_loss="lp_reg",
                                         policy_loss_kw=dict(min_p=0.05)))
  assert m.proxy_min_p == 0.05
  assert method_lib.Method.from_config(_alg()).proxy_min_p is None
  bad = method_lib.problems(_alg(policy_loss="lp_reg", policy_loss_kw=dict(min_p=0.0)))
  assert bad and "'min_p' must be in (0, 1], got 0.0" in bad[0]
  bad = method_lib.problems(_alg(policy_loss="lp_reg", policy_loss_kw=dict(neg_frac=1.5)))
  assert bad and "'neg_frac' must be in [0, 1]" in bad[0]


def test_a_need_without_its_parameter_and_disagreeing_parameters_are_refused():
  with pytest.raises(ValueError, match="needs 'proxy_logp': it must take the hyperparameter "
                     "'min_p'"):
    algorithms.register_term("test_only_no_min_p", needs=("proxy_logp",))(
        lambda ctx, *, coef=1.0: (0.0, {}))

  def spark(ctx, *, min_p=0.1):
    return 0.0, {}
  try:
    algorithms.register_term("test_only_spark", needs=("proxy_logp",))(spark)
    bad = method_lib.problems(_alg(policy_loss="lp_reg", terms=dict(test_only_spark={})))
    assert bad and "policy loss 'lp_reg' has min_p=0.02, term 'test_only_spark' has min_p=0.1" \
        in bad[0]
    assert method_lib.problems(_alg(policy_loss="lp_reg",
                                    terms=dict(test_only_spark=dict(min_p=0.02)))) == []
  finally:
    registry.TERMS.pop("test_only_spark", None)
    registry.TERMS.pop("test_only_no_min_p", None)


def _lp_config(**rl):
  config = load_config()
  config.algorithm.policy_loss = "lp_reg"
  config.algorithm.advantage = "nsr"  # A = −1 on every wrong sample of the untrained policy
  # the untrained policy is near uniform: κ = 0.5 filters some sampled tokens and keeps others,
  # ρ = 0.5 reaches kept ones among the lowest
  config.algorithm.policy_loss_kw = ml_collections.ConfigDict(dict(neg_frac=0.5, min_p=0.5))
  config.rl.update(rl)
  return config


def test_every_other_config_computes_no_proxy():
  run = rl_run(load_config())
  assert method_lib.Method.from_config(run.config.algorithm).proxy_min_p is None
  state = run.make_rl_state(run.init_params())
  (batch,) = device_batches(run, 1)
  comp, _ = run._rl_step.phases.sample(state, batch, jax.random.key(0))
  assert comp.proxy_logprobs is None


def test_on_policy_step_reads_the_sampler_proxy_which_the_teacher_forced_pass_agrees_with():
  run = rl_run(_lp_config(minibatches=1, ppo_epochs=1))
  state = run.make_rl_state(run.init_params())
  (batch,) = device_batches(run, 1)
  comp, _ = jax.jit(run._rl_step.phases.sample)(state, batch, jax.random.key(0))
  assert comp.proxy_logprobs is not None
  g = run.config.rl.group_size
  prompts = (jnp.repeat(batch["prompt_ids"], g, 0), jnp.repeat(batch["prompt_mask"], g, 0))
  _, _, proxy = completion_logprobs(run.model_config, state.params, *prompts, comp.tokens,
                                    comp.mask, run.config.rl.temperature, proxy_min_p=0.5)
  valid = np.asarray(comp.mask) > 0
  got, want = np.asarray(comp.proxy_logprobs)[valid], np.asarray(proxy)[valid]
  kept = want > -1000
  assert kept.any() and (~kept).any()
  np.testing.assert_allclose(got[kept], want[kept], atol=2e-4)
  np.testing.assert_allclose(got[~kept], want[~kept], rtol=1e-5)
  _check_trained(run, state, batch)


@pytest.mark.parametrize("rl", [dict(minibatches=2), dict(minibatches=1, ppo_epochs=2),
                                dict(minibatches=1, partial_rollouts=True)])
def test_off_policy_steps_train_with_the_behaviour_pass_proxy(rl):
  """Several updates a rollout: the proxy comes from the behaviour pass; APRIL (on-policy, but
  its sampler gives none): from a pass of its own."""
  run = rl_run(_lp_config(**rl))
  state = run.make_rl_state(run.init_params())
  (batch,) = device_batches(run, 1)
  _check_trained(run, state, batch)


def _check_trained(run, state, batch):
  """Two steps (the first one's learning rate is 0, the warm-up's start)."""
  step = jax.jit(run._rl_step)
  new_state, metrics = step(state, batch, jax.random.key(0))
  new_state, _ = step(new_state, batch, jax.random.key(1))
  for k in ("lp_reg_selected_frac", "lp_reg_lowest_frac", "lp_reg_kl_mean",
            "lp_reg_filtered_frac", "clip_fraction", "loss"):
    assert k in metrics and np.isfinite(float(metrics[k])), k
  for k in ("lp_reg_lowest_frac", "lp_reg_selected_frac", "lp_reg_kl_mean", "lp_reg_filtered_frac"):
    assert float(metrics[k]) > 0, k
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new_state.params)
  assert any(jax.tree.leaves(changed))
