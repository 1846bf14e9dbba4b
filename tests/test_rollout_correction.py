"""Rollout corrections (the decoupled objective), simulated staleness and the mismatch
diagnostics: each correction against a slow NumPy reference written from ALGORITHMS.md §7.1
(verl docs/algo/rollout_corr_math.md §3.3–3.4, rollout_corr_helper.py), the gradient weight
around every registered policy loss, staleness against a hand-run of the phases, the on-policy
float32 mismatch, and the real compiled step with each correction."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlvr_jax import configs_base
from rlvr_jax.algorithms import losses, registry
from rlvr_jax.algorithms import rollout_correction as rc
from rlvr_jax.training import rl_step as rl_step_lib
from rlvr_jax.training.state import create_state
from tests.helpers import device_batches, load_config, rl_run

CORRECTIONS = ("token_tis", "seq_tis", "token_mis", "seq_mis", "geo_rs")


# ---------------------------------------------------------------------------------------------
# Slow references, one token / one sequence at a time (ALGORITHMS.md §7.1)
# ---------------------------------------------------------------------------------------------
def _ref_correction(name, old, mu, mask, **kw):
  """(weight, accept) [n, t] with ρ_t = π_old/μ, log ρ clamped to ±20 before exp."""
  n, t = old.shape
  weight, accept = np.ones((n, t)), np.ones((n, t))
  for i in range(n):
    valid = [j for j in range(t) if mask[i, j] > 0]
    logs = [float(old[i, j]) - float(mu[i, j]) for j in valid]
    total = sum(logs)
    mean = total / max(len(valid), 1)
    for j in range(t):
      if mask[i, j] == 0:
        weight[i, j] = accept[i, j] = 0.0
        continue
      rho_t = np.exp(min(max(float(old[i, j]) - float(mu[i, j]), -20.0), 20.0))
      rho_seq = np.exp(min(max(total, -20.0), 20.0))
      if name == "none":
        pass
      elif name == "token_tis":
        weight[i, j] = min(rho_t, kw.get("cap", 2.0))
      elif name == "seq_tis":
        weight[i, j] = min(rho_seq, kw.get("cap", 2.0))
      elif name in ("token_mis", "seq_mis"):
        rho = rho_t if name == "token_mis" else rho_seq
        ok = kw.get("low", 0.5) <= rho <= kw.get("high", 2.0)
        weight[i, j], accept[i, j] = (rho, 1.0) if ok else (0.0, 0.0)
      elif name == "geo_rs":
        geo = np.exp(min(max(mean, -20.0), 20.0))
        accept[i, j] = float(kw.get("low", 0.999) <= geo <= kw.get("high", 1.001))
  return weight, accept


def _ref_diagnostics(mu, old, mask, weight=None, accept=None):
  """The every-run metrics, one token at a time (rollout_correction.diagnostics' docstring);
  weight None: no correction, the weights reported are the ratios ρ."""
  logs, ws, kept = [], [], 0
  for i, j in zip(*np.nonzero(mask)):
    lr = min(max(float(old[i, j]) - float(mu[i, j]), -20.0), 20.0)
    logs.append(lr)
    ok = 1.0 if accept is None else float(accept[i, j])
    w = (np.exp(lr) if weight is None else float(weight[i, j])) * ok
    ws.append(w)
    kept += ok
  logs, ws = np.array(logs), np.array(ws)
  n = len(logs)
  return dict(mismatch_k1=np.mean(-logs), mismatch_k3=np.mean(np.exp(logs) - 1 - logs),
              is_weight_mean=ws.sum() / max(kept, 1), is_weight_max=ws.max(),
              is_masked_frac=1 - kept / n,
              is_ess=ws.sum() ** 2 / (n * np.sum(ws ** 2)) if np.any(ws) else 0.0)


def _inputs(seed, n=5, t=7, scale=0.3):
  rng = np.random.default_rng(seed)
  mu = np.log(rng.uniform(0.05, 1.0, (n, t))).astype(np.float32)
  old = (mu + rng.normal(0, scale, (n, t))).astype(np.float32)
  lengths = rng.integers(1, t + 1, n)
  mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
  return old * mask, mu * mask, mask


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), name=st.sampled_from(CORRECTIONS),
       scale=st.sampled_from([1e-4, 0.05, 0.5, 3.0]))
def test_each_correction_matches_the_slow_reference(seed, name, scale):
  old, mu, mask = _inputs(seed, scale=scale)
  weight, accept = rc.CORRECTIONS[name].fn(jnp.asarray((old - mu) * mask), jnp.asarray(mask))
  ref_w, ref_a = _ref_correction(name, old, mu, mask)
  np.testing.assert_allclose(np.ones_like(mask) * mask if weight is None else weight,
                             ref_w, rtol=2e-5, atol=1e-7)
  np.testing.assert_allclose(mask if accept is None else accept, ref_a)


@pytest.mark.parametrize("name,kw", [("token_tis", dict(cap=1.2)), ("seq_tis", dict(cap=5.0)),
                                     ("token_mis", dict(low=0.0, high=1.1)),
                                     ("seq_mis", dict(low=0.8, high=1.25)),
                                     ("geo_rs", dict(low=0.9, high=1.05))])
def test_caps_are_the_keyword_arguments(name, kw):
  old, mu, mask = _inputs(3, scale=0.4)
  corr = rc.from_config(dict(rollout_correction=name, rollout_correction_kw=kw))
  weight, accept = corr(jnp.asarray((old - mu) * mask), jnp.asarray(mask))
  ref_w, ref_a = _ref_correction(name, old, mu, mask, **kw)
  np.testing.assert_allclose(mask if weight is None else weight, ref_w, rtol=2e-5, atol=1e-7)
  np.testing.assert_allclose(mask if accept is None else accept, ref_a)


def test_verl_default_caps():
  """verl's presets (RolloutCorrectionConfig: decoupled_token_is / seq_is 2.0,
  decoupled_seq_is_rs 0.5_2.0, decoupled_geo_rs 0.999_1.001)."""
  hp = {n: rc.CORRECTIONS[n].hyperparameters for n in ("none",) + CORRECTIONS}
  assert hp == {"none": {}, "token_tis": {"cap": 2.0}, "seq_tis": {"cap": 2.0},
                "token_mis": {"low": 0.5, "high": 2.0}, "seq_mis": {"low": 0.5, "high": 2.0},
                "geo_rs": {"low": 0.999, "high": 1.001}}


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([1e-6, 0.1, 1.0, 30.0]),
       name=st.sampled_from(("none",) + CORRECTIONS))
def test_diagnostics_match_the_slow_reference(seed, scale, name):
  old, mu, mask = _inputs(seed, scale=scale)
  corrected = rc.CORRECTIONS[name].fn(jnp.asarray((old - mu) * mask), jnp.asarray(mask))
  got = rc.diagnostics(jnp.asarray(mu), jnp.asarray(old), jnp.asarray(mask),
                       None if name == "none" else corrected)
  ref = _ref_diagnostics(mu, old, mask, *(
      (None, None) if name == "none" else _ref_correction(name, old, mu, mask)))
  for k, v in ref.items():
    np.testing.assert_allclose(float(got[k]), v, rtol=2e-4, atol=1e-6, err_msg=k)


# ---------------------------------------------------------------------------------------------
# The decoupled objective around any policy loss
# ---------------------------------------------------------------------------------------------
def _loss_inputs(seed, n=4, t=6):
  rng = np.random.default_rng(seed)
  old = np.log(rng.uniform(0.1, 1.0, (n, t))).astype(np.float32)
  logp = (old + rng.normal(0, 0.3, (n, t))).astype(np.float32)
  adv = np.repeat(rng.normal(0, 1, (n, 1)), t, 1).astype(np.float32)
  mask = (np.arange(t)[None] < rng.integers(2, t + 1, (n, 1))).astype(np.float32)
  w = rng.uniform(0, 2, (n, t)).astype(np.float32) * mask
  return logp, old, adv, mask, w


def _ref_weighted_ppo_grad(logp, old, adv, mask, w, eps_low=0.2, eps_high=0.2):
  """d/dlogp of Σ_t w_t·max(−r A, −clip(r) A)·M / ΣM, token by token."""
  g = np.zeros_like(logp, dtype=np.float64)
  total = mask.sum()
  for i, j in zip(*np.nonzero(mask)):
    r = np.exp(float(logp[i, j]) - float(old[i, j]))
    a = float(adv[i, j])
    clipped = min(max(r, 1 - eps_low), 1 + eps_high)
    in_band = 1 - eps_low <= r <= 1 + eps_high
    unclipped_wins = in_band or (-r * a > -clipped * a)
    g[i, j] = (-r * a if unclipped_wins else 0.0) * w[i, j] / total
  return g


def _ref_weighted_cispo_grad(logp, old, adv, mask, w, clip_low=1.0, clip_high=4.0):
  """d/dlogp of Σ_t w_t·(−ρ̂_t A_t logp_t)·M / ΣM with ρ̂ = clip(r, 1 − low, 1 + high) constant."""
  g = np.zeros_like(logp, dtype=np.float64)
  for i, j in zip(*np.nonzero(mask)):
    r = np.exp(float(logp[i, j]) - float(old[i, j]))
    g[i, j] = -min(max(r, 1 - clip_low), 1 + clip_high) * adv[i, j] * w[i, j] / mask.sum()
  return g


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("loss,ref", [("ppo", _ref_weighted_ppo_grad),
                                      ("cispo", _ref_weighted_cispo_grad)])
def test_weighted_gradient_is_the_decoupled_objective(loss, ref, seed):
  logp, old, adv, mask, w = _loss_inputs(seed)
  fn = registry.POLICY_LOSSES[loss]

  def objective(lp):
    return fn(rc.reweight(lp, jnp.asarray(w)), jnp.asarray(old), jnp.asarray(adv),
              jnp.asarray(mask), normalizer=jnp.sum(jnp.asarray(mask)))[0]

  np.testing.assert_allclose(jax.grad(objective)(jnp.asarray(logp)),
                             ref(logp, old, adv, mask, w), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(n for n, c in registry.POLICY_LOSSES.items() if c.builtin))
def test_reweight_scales_each_tokens_gradient_of_any_loss_and_keeps_its_value(name):
  """For every registered loss: the value (and its metrics) unchanged, the gradient w ⊙ ∇L; with a
  weight constant over a sequence (seq_tis, seq_mis) that is the sequence's gradient times w."""
  logp, old, adv, mask, w = _loss_inputs(7)
  component = registry.POLICY_LOSSES[name]
  kw = {"agg": losses.GSPO_AGGREGATION} if "agg" in component.context_keywords else {}
  # the context a loss may ask for: a random key (Clip-Cov), a min-p proxy (Lp-Reg); the same
  # for both calls, so the weighted call sees the same selection
  if "key" in component.context_keywords:
    kw["key"] = jax.random.key(3)
  if "proxy_logp" in component.context_keywords:
    kw["proxy_logp"] = jnp.asarray(logp) + 0.5

  def value(lp, weight=None):
    lp = lp if weight is None else rc.reweight(lp, weight)
    return component.fn(lp, jnp.asarray(old), jnp.asarray(adv), jnp.asarray(mask),
                        normalizer=None, **kw)

  plain, plain_m = value(jnp.asarray(logp))
  weighted, weighted_m = value(jnp.asarray(logp), jnp.asarray(w))
  assert float(plain) == float(weighted)
  jax.tree.map(np.testing.assert_array_equal, plain_m, weighted_m)
  grad = jax.grad(lambda lp: value(lp)[0])(jnp.asarray(logp))
  grad_w = jax.grad(lambda lp: value(lp, jnp.asarray(w))[0])(jnp.asarray(logp))
  np.testing.assert_allclose(grad_w, w * grad, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# The real step
# ---------------------------------------------------------------------------------------------
def _parity(tokens, mask, answer, meta):
  """A reward a random policy earns about half the time: groups vary, gradients flow."""
  del mask, answer, meta
  return (tokens[:, 0] % 2).astype(jnp.float32)


def _step_fn(run, optimizer):
  return rl_step_lib.make_rl_step(run.config, run.model_config, _parity, optimizer,
                                  eos_id=run.tokenizer.eos_id, pad_id=run.tokenizer.pad_id)


def _state(run, optimizer, params=None):
  params = run.init_params() if params is None else params
  return create_state(params, optimizer, with_reference=False,
                      staleness=run.config.rl.get("simulated_staleness", 0))


def _train(run, optimizer, steps, batches=None):
  step = rl_step_lib.jit_rl_step(_step_fn(run, optimizer))
  state = _state(run, optimizer)
  batches = batches or device_batches(run, steps)
  rows = []
  for i in range(steps):
    state, m = step(state, batches[i], jax.random.key(i))
    rows.append(jax.device_get(m))
  return state, rows


def test_on_policy_float32_mismatch_is_zero_and_read_from_the_update_s_own_forward():
  """One model, one program: the sampler's log-probs and the teacher-forced forward's agree to
  float32 rounding. The on-policy step reads π_old from the update's forward (no extra pass):
  the diagnostics equal those of the sampler's μ against an independent teacher-forced pass."""
  run = rl_run()
  sgd = optax.sgd(1.0)
  state = _state(run, sgd)
  batch = device_batches(run, 1)[0]
  rng_sample, _ = jax.random.split(jax.random.key(0))
  comp, _ = run._rl_step.phases.sample(state, batch, rng_sample)
  old, _ = rl_step_lib.completion_logprobs(run.model_config, state.params, batch["prompt_ids"],
                                           batch["prompt_mask"], comp.tokens, comp.mask,
                                           run.config.rl.temperature)
  mask = np.asarray(comp.mask)
  ref = _ref_diagnostics(np.asarray(comp.logprobs), np.asarray(old) * mask, mask)
  _, rows = _train(run, sgd, 1, [batch])
  m = rows[0]
  assert abs(m["mismatch_k1"]) < 1e-6 and 0 <= m["mismatch_k3"] < 1e-10
  assert abs(m["is_weight_max"] - 1) < 1e-5 and m["is_masked_frac"] == 0
  assert float(m["is_ess"]) > 1 - 1e-6
  for k, v in ref.items():
    np.testing.assert_allclose(m[k], v, rtol=1e-5, atol=1e-8, err_msg=k)


def _plain_config(**overrides):
  c = load_config()
  c.update_from_flattened_dict(overrides)
  return c


def test_staleness_zero_and_no_correction_are_the_default_step_bit_for_bit():
  """rl.simulated_staleness = 0 keeps no copy and samples with state.params; a config written
  before these fields (neither present) gives the same step, bit for bit."""
  sgd = optax.sgd(1.0)
  explicit = rl_run(**{"rl.simulated_staleness": 0, "algorithm.rollout_correction": "none"})
  older = copy.deepcopy(explicit.config)  # as the run resolved it (rl.max_new_tokens)
  with older.unlocked():
    del older.rl["simulated_staleness"]
    del older.algorithm["rollout_correction"], older.algorithm["rollout_correction_kw"]
  older_run = rl_run()
  older_run.config = older
  assert _state(explicit, sgd).stale_params is None
  batches = device_batches(explicit, 2)
  s1, r1 = _train(explicit, sgd, 2, batches)
  s2, r2 = _train(older_run, sgd, 2, batches)
  assert r1[-1]["grad_norm"] > 0
  assert [{k: np.asarray(v).tolist() for k, v in r.items()} for r in r1] == [
      {k: np.asarray(v).tolist() for k, v in r.items()} for r in r2]
  jax.tree.map(np.testing.assert_array_equal, s1.params, s2.params)


def _hand_step(plain, state, sample_params, batch, rng):
  """One step by hand from the phases of the plain (k = 0) step: sample with `sample_params`,
  learn with `state` treating every token as an earlier policy's."""
  rng_sample, rng_learn = jax.random.split(rng)
  comp, greedy = jax.jit(plain.phases.sample)(state.replace(params=sample_params), batch,
                                              rng_sample)
  rewards, _ = plain.phases.score(batch, comp, greedy)
  return jax.jit(plain.phases.learn)(state, batch, comp, rewards, None, rng_learn, comp.mask)


def test_staleness_one_samples_with_the_previous_parameters():
  """k = 1 against a hand-run of the phases: step s samples with θ_{s−1} (θ_0 at s = 0) and
  learns on those tokens with θ_s, their sampler log-probs as μ (no correction: the ratio is
  against μ on every token, as for APRIL's carried tokens)."""
  sgd = optax.sgd(2.0)
  stale_run = rl_run(**{"rl.simulated_staleness": 1})
  plain_run = rl_run()
  batches = device_batches(plain_run, 2)
  theta0 = plain_run.init_params()
  state, rows = _train(stale_run, sgd, 2, batches)
  plain = _step_fn(plain_run, sgd)
  s1, _ = _hand_step(plain, _state(plain_run, sgd, theta0), theta0, batches[0],
                     jax.random.key(0))
  s2, m = _hand_step(plain, s1, theta0, batches[1], jax.random.key(1))
  m = jax.device_get(m)
  for k in ("reward_mean", "completion_tokens", "loss", "grad_norm", "ratio_mean",
            "mismatch_k1", "mismatch_k3", "is_ess"):
    np.testing.assert_allclose(rows[1][k], m[k], rtol=1e-5, atol=1e-8, err_msg=k)
  assert rows[1]["mismatch_k1"] > 1e-4  # θ_0 sampled, θ_1 learns
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               state.params, s2.params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               state.stale_params[0], s1.params)
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(theta0),
                                                       jax.tree.leaves(s1.params)))


@pytest.mark.parametrize("name", CORRECTIONS)
def test_each_correction_trains_in_the_real_step_with_the_reference_weights(name):
  """Stale by one update (SGD, lr 2): step 1's μ is θ_0's, π_old θ_1's. The step's diagnostics
  and its loss mask equal the slow reference's from a hand-run of both policies."""
  sgd = optax.sgd(2.0)
  run = rl_run(**{"rl.simulated_staleness": 1, "algorithm.rollout_correction": name})
  plain = _step_fn(rl_run(), sgd)
  batches = device_batches(run, 2)
  before = jax.tree.map(np.asarray, run.init_params())
  state, rows = _train(run, sgd, 2, batches)
  for r in rows:
    for k, v in r.items():
      assert np.all(np.isfinite(v)), k
  # hand-run of step 1: θ_0 samples, θ_1 (the queue's last entry) is π_old
  theta1 = state.stale_params[0]
  rng_sample, _ = jax.random.split(jax.random.key(1))
  comp, _ = plain.phases.sample(_state(run, sgd, jax.tree.map(jnp.asarray, before)), batches[1],
                                rng_sample)
  old, _ = rl_step_lib.completion_logprobs(run.model_config, theta1, batches[1]["prompt_ids"],
                                           batches[1]["prompt_mask"], comp.tokens, comp.mask,
                                           run.config.rl.temperature)
  mask = np.asarray(comp.mask)
  old, mu = np.asarray(old) * mask, np.asarray(comp.logprobs)
  w, a = _ref_correction(name, old, mu, mask)
  ref = _ref_diagnostics(mu, old, mask, w, a)
  for k, v in ref.items():
    np.testing.assert_allclose(rows[1][k], v, rtol=1e-3, atol=1e-6, err_msg=k)
  np.testing.assert_allclose(rows[1]["loss_tokens_frac"], a.sum() / mask.sum(), rtol=1e-6)
  assert rows[1]["mismatch_k1"] > 1e-4
  if name == "geo_rs":  # 0.999..1.001 on the geometric mean: one update away, most are out
    assert rows[1]["is_masked_frac"] > 0
  moved = [not np.array_equal(x, np.asarray(y))
           for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(state.params))]
  assert any(moved)


def test_a_correction_recomputes_pi_old_and_otherwise_the_fast_path_stays():
  base = rl_run()
  spec = lambda **o: rl_step_lib.StepSpec.from_config(
      _plain_config(**o), base.model_config, _parity, {"policy": optax.sgd(1.0)}, eos_id=1,
      pad_id=0)
  assert spec().on_policy and not spec().correction.on
  assert spec(**{"rl.simulated_staleness": 2}).on_policy  # stale tokens keep μ: no recompute
  corrected = spec(**{"algorithm.rollout_correction": "token_tis"})
  assert corrected.correction.on and not corrected.on_policy


@pytest.mark.parametrize("staleness", [0, 1])
def test_april_stale_tokens_go_through_the_same_mu_path(staleness):
  """With a correction, APRIL's carried tokens are weighted by π_old/μ like any other (their
  μ is the sampler's of an earlier step); with simulated staleness the pool is sampled by the
  queue's policy. The compiled step trains and reports the diagnostics."""
  config = load_config()
  config.rl.partial_rollouts = True
  config.task.name, config.task.kwargs = "longtail_reverse", dict(max_length=8)
  config.algorithm.rollout_correction = "token_tis"
  config.rl.simulated_staleness = staleness
  from rlvr_jax.training.run import Run
  run = Run(config)
  state = run.make_rl_state(run.init_params())
  it = iter(run.dataset("train", run.config.rl.batch_size, seed=0, shuffle=True, size=1000))
  state = run.prime_rollouts(state, it)
  step = run.compile_step(run._rl_step, state, with_rng=True)
  for i in range(2):
    state, m = step(state, run.device_batch(next(it)), jax.random.key(i))
  m = jax.device_get(m)
  for k in ("mismatch_k1", "mismatch_k3", "is_weight_mean", "is_weight_max", "is_ess"):
    assert np.isfinite(m[k]), k


@pytest.mark.parametrize("overrides,field,text", [
    ({"algorithm.rollout_correction": "tis"}, "algorithm.rollout_correction", "token_tis"),
    ({"algorithm.rollout_correction": "token_tis",
      "algorithm.rollout_correction_kw": {"cap": -1.0}}, "algorithm.rollout_correction_kw",
     "'cap' must be > 0"),
    ({"algorithm.rollout_correction": "seq_mis",
      "algorithm.rollout_correction_kw": {"low": 3.0}}, "algorithm.rollout_correction_kw",
     "must not exceed"),
    ({"algorithm.rollout_correction_kw": {"cap": 2.0}}, "algorithm.rollout_correction_kw",
     "no hyperparameter 'cap'"),
    ({"rl.simulated_staleness": -1}, "rl.simulated_staleness", ">= 0"),
])
def test_bad_config_is_refused_naming_the_field(overrides, field, text):
  config = load_config()
  with config.unlocked():
    for k, v in overrides.items():
      parent, _, leaf = k.rpartition(".")
      config[parent.split(".")[0]][leaf] = v
  with pytest.raises(ValueError, match=rf"config\.{field}.*{text}"):
    configs_base.validate(config)
