"""PRIME: the advantage against a loop over the formula, the implicit PRM's loss and gradient
against closed forms, and the compiled step (traced once, PRM scored before its own update)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rlvr_jax import configs_base, models
from rlvr_jax.algorithms import advantages as adv_lib
from rlvr_jax.algorithms import method
from rlvr_jax.algorithms import registry
from rlvr_jax.algorithms import terms
from rlvr_jax.rewards import implicit_prm
from rlvr_jax.training import rl_step as rl_step_lib
from rlvr_jax.training import rollout as rollout_lib
from rlvr_jax.training.state import create_state
from tests.helpers import ROOT, device_batches, load_config, rl_run


# --- The advantage ---------------------------------------------------------------------------


def _prime_reference(rewards, process, mask, process_coef, outcome_coef):
  """verl's PRIME advantage, one group and one token at a time (numpy, float64)."""
  lead, (g, t) = rewards.shape[:-1], mask.shape[-2:]
  token_r = np.zeros(mask.shape)
  for idx in np.ndindex(*lead):
    lengths = [int(mask[idx][i].sum()) for i in range(g)]
    # process source: every valid token; baseline = sum of per-sample token means / (G - 1)
    means = [process[idx][i, :lengths[i]].mean() if lengths[i] else 0.0 for i in range(g)]
    # outcome source: one reward on the last valid token; its mean is the reward itself
    outcomes = [rewards[idx][i] if lengths[i] else 0.0 for i in range(g)]
    for i in range(g):
      for s in range(lengths[i]):
        r = process_coef * (process[idx][i, s] * g / (g - 1) - sum(means) / (g - 1))
        if s == lengths[i] - 1:
          r += outcome_coef * (rewards[idx][i] * g / (g - 1) - sum(outcomes) / (g - 1))
        token_r[idx][i, s] = r
  returns = np.zeros(mask.shape)
  for idx in np.ndindex(*mask.shape[:-1]):
    for s in range(t):
      if mask[idx][s]:
        returns[idx][s] = sum(token_r[idx][u] for u in range(s, t) if mask[idx][u])
  valid = returns[mask > 0]
  return np.where(mask > 0, (returns - valid.mean()) / valid.std(), 0.0)


def _case(rng, lead, g, t):
  lengths = rng.integers(1, t + 1, size=lead + (g,))
  lengths.reshape(-1)[0] = t  # one row without padding
  mask = (np.arange(t) < lengths[..., None]).astype(np.float32)
  rewards = rng.integers(0, 2, size=lead + (g,)).astype(np.float32)
  process = (rng.normal(size=lead + (g, t)) * 0.3 * mask).astype(np.float32)
  return rewards, process, mask


@pytest.mark.parametrize("lead,g,t,coefs", [
    ((3,), 4, 7, (5.0, 5.0)), ((2, 3), 3, 5, (5.0, 5.0)), ((4,), 2, 6, (1.0, 0.3)),
    ((5,), 8, 4, (0.0, 5.0)), ((2,), 4, 9, (2.0, 0.0)),
])
def test_prime_advantage_matches_a_loop_over_the_formula(lead, g, t, coefs):
  rng = np.random.default_rng(sum(lead) * 100 + g * 10 + t)
  rewards, process, mask = _case(rng, lead, g, t)
  got = adv_lib.prime(rewards, process, mask, process_coef=coefs[0], outcome_coef=coefs[1])
  want = _prime_reference(rewards.astype(np.float64), process.astype(np.float64), mask, *coefs)
  assert got.shape == mask.shape and got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-4, rtol=1e-4)
  assert np.all(np.asarray(got)[mask == 0] == 0)


def test_outcome_only_prime_is_whitened_rloo_on_every_token():
  rewards, process, mask = _case(np.random.default_rng(0), (6,), 4, 5)
  got = adv_lib.prime(rewards, process, mask, process_coef=0.0, outcome_coef=5.0)
  want = adv_lib.whiten(adv_lib.broadcast_to_tokens(adv_lib.rloo(rewards), mask), mask)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_token_rloo_of_one_reward_per_sample_sums_to_zero_in_each_group():
  rewards, _, mask = _case(np.random.default_rng(1), (5,), 4, 6)
  last = adv_lib.last_token_onehot(mask)
  out = adv_lib.token_rloo(rewards[..., None] * last, last)
  np.testing.assert_allclose(np.asarray(out).sum((-1, -2)), 0.0, atol=1e-6)


def test_registry_prime_needs_the_process_rewards():
  rewards, process, mask = _case(np.random.default_rng(2), (2,), 3, 4)
  x = registry.AdvantageInputs(rewards=rewards, tokens=np.zeros(mask.shape, np.int32),
                               mask=mask, logp=np.zeros_like(mask))
  assert "process_rewards" in registry.ADVANTAGES["prime"].needs
  cfg = load_config().algorithm
  cfg.advantage = "prime"  # without the term that provides them: refused before anything runs
  with pytest.raises(ValueError, match="advantage 'prime' reads process rewards"):
    method.Method.from_config(cfg)
  got = registry.ADVANTAGES["prime"](x.replace(process_rewards=process), process_coef=2.0,
                                     outcome_coef=3.0)
  want = _prime_reference(rewards, process, mask, 2.0, 3.0)
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-4, rtol=1e-4)


# --- The implicit PRM's loss -----------------------------------------------------------------


def test_prm_cross_entropy_and_its_gradient_match_closed_forms():
  rng = np.random.default_rng(3)
  n, t, beta = 6, 5, 0.05
  mask = (np.arange(t) < rng.integers(1, t + 1, size=(n, 1))).astype(np.float32)
  logp = rng.normal(size=(n, t)).astype(np.float32) * 3 - 2
  ref = rng.normal(size=(n, t)).astype(np.float32) * 3 - 2
  labels = np.array([1, 0, 1, 1, 0, 0], np.float32)

  def loss(lp):
    r = implicit_prm.token_rewards(lp, ref, mask, beta)
    return implicit_prm.ce_loss(r.sum(-1), labels).mean()

  scores = beta * ((logp - ref) * mask).sum(-1).astype(np.float64)
  p = 1 / (1 + np.exp(-scores))
  want = np.mean(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
  np.testing.assert_allclose(float(loss(logp)), want, rtol=1e-5)
  # dL/dlogp_nt = (sigma(R_n) - y_n) * beta * m_nt / n
  want_grad = ((p - labels) * beta / n)[:, None] * mask
  np.testing.assert_allclose(np.asarray(jax.grad(loss)(logp)), want_grad, rtol=1e-4, atol=1e-9)
  acc = np.mean((scores > 0) == (labels > 0.5))
  assert float(implicit_prm.outcome_accuracy(jnp.asarray(scores), labels)) == pytest.approx(acc)


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_prm_loss_on_a_tiny_model_matches_numpy_log_probs():
  """The `prime` term on the completion log-probs of a real (tiny) model (as
  `rollout.implicit_prm_update` runs it): check its value and token rewards against log-softmax
  of the full-sequence logits, computed in numpy."""
  mc = models.ModelConfig(vocab_size=11, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1,
                          d_ff=32)
  params = models.init_params(mc, jax.random.key(0))
  ref_params = models.init_params(mc, jax.random.key(1))
  rng = np.random.default_rng(4)
  n, p_len, t, beta = 4, 3, 5, 0.1
  prompts = rng.integers(1, 11, size=(n, p_len)).astype(np.int32)
  tokens = rng.integers(1, 11, size=(n, t)).astype(np.int32)
  mask = (np.arange(t) < np.array([[5], [2], [4], [1]])).astype(np.float32)
  labels = np.array([1, 0, 0, 1], np.float32)

  def np_logp(prm):
    seq = np.concatenate([prompts, tokens], 1)
    logits = np.asarray(models.forward(mc, prm, jnp.asarray(seq)), np.float64)
    lp = _log_softmax(logits)[:, p_len - 1:-1]
    return np.take_along_axis(lp, tokens[..., None], -1)[..., 0]

  ref_logp = np_logp(ref_params)
  r_want = beta * (np_logp(params) - ref_logp) * mask
  scores = r_want.sum(-1)
  prob = 1 / (1 + np.exp(-scores))
  want = -np.sum(labels * np.log(prob) + (1 - labels) * np.log(1 - prob)) / n
  mb = dict(prompt_ids=prompts, prompt_mask=np.ones_like(prompts, np.float32), tokens=tokens,
            mask=mask, ref_logp=(ref_logp * mask).astype(np.float32), labels=labels)
  logp, _ = rl_step_lib.completion_logprobs(mc, params, mb["prompt_ids"], mb["prompt_mask"],
                                            mb["tokens"], mb["mask"], 1.0)
  ctx = registry.ImplicitPRMContext(logp=logp, ref_logp=mb["ref_logp"], mask=mb["mask"],
                                    labels=mb["labels"], normalizer=n)
  loss, prime_metrics = terms.prime(ctx, beta=beta)
  r_nt = prime_metrics["process_rewards"]
  np.testing.assert_allclose(np.asarray(r_nt), r_want, atol=2e-5)
  np.testing.assert_allclose(float(loss), want, rtol=1e-4)


# --- The compiled step -----------------------------------------------------------------------


def _prime_run(**overrides):
  config = configs_base.load_config(f"{ROOT}/configs/prime_addition.py:tiny")
  config.rl.optimizer.warmup_steps = 0
  config.prime.optimizer.warmup_steps = 0
  return rl_run(config, **overrides)




def test_prime_step_traced_once_without_host_transfers():
  run = _prime_run(**{"rl.microbatches": 2})
  state = run.make_rl_state(run.init_params())
  assert state.ref_params is not None and state.prime_opt_state is not None
  step = run.compile_step(chex.assert_max_traces(run._rl_step, n=1), state, with_rng=True)
  batches = device_batches(run, 3)
  rngs = [jax.device_put(jax.random.key(i)) for i in range(3)]
  before = jax.tree.map(np.asarray, state.prime_params)
  state, metrics = step(state, batches[0], rngs[0])
  with jax.transfer_guard("disallow"):
    for b, r in zip(batches[1:], rngs[1:]):
      state, metrics = step(state, b, r)
  assert step._cache_size() == 1
  m = jax.device_get(metrics)
  for k in ("prime_loss", "prime_accuracy", "prime_grad_norm", "prime_score_mean", "loss"):
    assert np.isfinite(m[k]), k
  assert 0 <= m["prime_accuracy"] <= 1 and m["prime_grad_norm"] > 0
  moved = [not np.array_equal(a, np.asarray(b))
           for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state.prime_params))]
  assert all(moved)


def test_advantage_uses_the_scores_from_before_the_prm_update():
  """One on-policy learn phase, checked against an independent recomputation: the PRM takes
  one step on CE(sigma(R_phi), r_o), and the policy's REINFORCE update uses the PRIME advantage
  of the PRM rewards of the parameters *before* that step (not after). Plain SGD (lr 1) for
  both, so each update is minus its gradient: Adam's first step, lr * g / (|g| + eps), would
  turn rounding in near-zero gradients into lr-sized differences."""
  run = _prime_run(**{"algorithm.advantage_kw.outcome_coef": 1.0})
  cfg, g = run.config, run.config.rl.group_size
  sgd = optax.sgd(1.0)
  phases = rl_step_lib.make_rl_step(cfg, run.model_config, run.reward_fn, sgd,
                                    eos_id=run.tokenizer.eos_id, pad_id=run.tokenizer.pad_id,
                                    prime_optimizer=sgd).phases
  state = create_state(run.init_params(), sgd, with_reference=True, prime_optimizer=sgd)
  noise = jax.tree.map(lambda x: 0.3 * jax.random.normal(jax.random.key(7), x.shape, x.dtype),
                       state.prime_params)  # a PRM that already differs from the reference
  state = state.replace(prime_params=jax.tree.map(jnp.add, state.prime_params, noise))
  batch = device_batches(run, 1)[0]
  comp, _ = jax.jit(phases.sample)(state, batch, jax.random.key(0))
  rewards, _ = jax.jit(phases.score)(batch, comp, None)
  new_state, metrics = jax.jit(phases.learn)(state, batch, comp, rewards, None,
                                             jax.random.key(1))
  b, t = rewards.shape[0], comp.tokens.shape[1]
  mask = np.asarray(comp.mask)
  labels = np.asarray(rewards).reshape(-1)

  def logp(params):
    prompts = (np.repeat(batch["prompt_ids"], g, 0), np.repeat(batch["prompt_mask"], g, 0))
    return rl_step_lib.completion_logprobs(run.model_config, params, *prompts, comp.tokens,
                                           comp.mask, cfg.rl.temperature)[0]

  ref = logp(state.ref_params)
  beta = cfg.algorithm.terms.prime.beta
  prm_rewards = jax.jit(lambda params: beta * (logp(params) - ref) * mask)

  def ce(params):
    s = prm_rewards(params).sum(-1)
    return -jnp.mean(labels * jnp.log(jax.nn.sigmoid(s))
                     + (1 - labels) * jnp.log(1 - jax.nn.sigmoid(s)))

  def assert_step(new, old, grads):
    for a, o, d in zip(*map(jax.tree.leaves, (new, old, grads))):
      np.testing.assert_allclose(np.asarray(a) - np.asarray(o), -np.asarray(d), atol=2e-6)

  grads = jax.jit(jax.grad(ce))(state.prime_params)
  assert_step(new_state.prime_params, state.prime_params, grads)
  prime_after = jax.tree.map(jnp.subtract, state.prime_params, grads)

  r_before = np.asarray(prm_rewards(state.prime_params))
  r_after = np.asarray(prm_rewards(prime_after))
  assert np.abs(r_before - r_after).max() > 1e-3
  scores = r_before.sum(-1)
  assert float(metrics["prime_score_mean"]) == pytest.approx(scores.mean(), abs=1e-5)
  assert float(metrics["prime_accuracy"]) == pytest.approx(
      np.mean((scores > 0) == (labels > 0.5)))

  def policy_grad(process_r):
    adv = np.asarray(adv_lib.prime(np.asarray(rewards), process_r.reshape(b, g, t),
                                   mask.reshape(b, g, t), process_coef=5.0,
                                   outcome_coef=1.0)).reshape(b * g, t)
    return jax.jit(jax.grad(lambda p: -(adv * logp(p) * mask).sum() / mask.sum()))(state.params)

  assert_step(new_state.params, state.params, policy_grad(r_before))
  with pytest.raises(AssertionError):
    assert_step(new_state.params, state.params, policy_grad(r_after))


# --- Config ---------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides,field", [
    ({"algorithm.advantage_kw.process_coef": 0.0, "algorithm.advantage_kw.outcome_coef": 0.0},
     "algorithm.advantage_kw"),
    ({"rl.group_size": 1}, "rl.group_size"),
    ({"algorithm.terms.prime.beta": 0.0}, "algorithm.terms.prime"),
    ({"prime.optimizer.learning_rate": -1.0}, "prime.optimizer.learning_rate"),
])
def test_bad_prime_config_names_the_field(overrides, field):
  config = configs_base.load_config(f"{ROOT}/configs/prime_addition.py:tiny")
  for path, value in overrides.items():
    node = config
    *parents, leaf = path.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  with pytest.raises(ValueError, match=rf"config\.{field}"):
    configs_base.validate(config)


@pytest.mark.parametrize("arg", [None, "cpu"])
def test_recipe_variants_validate(arg):
  config = configs_base.load_config(f"{ROOT}/configs/recipes/prime.py" + (f":{arg}" if arg else ""))
  assert config.algorithm.advantage == "prime"
  configs_base.validate(config)


# --- The implicit PRM reads raw logits (temperature 1) ---------------------------------------


def _np_completion_logp(mc, params, batch, comp, g, temperature):
  """log softmax(logits / temperature) of each completion token [n, t], float64: the full
  sequence (prompt repeated for each of its G completions, then the completion) through
  `models.forward`, the log-softmax in numpy."""
  prompts = np.repeat(np.asarray(batch["prompt_ids"]), g, 0)
  prompt_mask = np.repeat(np.asarray(batch["prompt_mask"]), g, 0)
  tokens, mask = np.asarray(comp.tokens), np.asarray(comp.mask)
  p = prompts.shape[1]
  seq = np.concatenate([prompts, tokens], 1)
  seq_mask = np.concatenate([prompt_mask, mask], 1).astype(np.int32)
  logits = np.asarray(models.forward(mc, params, jnp.asarray(seq), jnp.asarray(seq_mask)),
                      np.float64)[:, p - 1:-1]
  lp = _log_softmax(logits / temperature)
  return np.take_along_axis(lp, tokens[..., None], -1)[..., 0] * mask


def test_implicit_prm_uses_raw_logits_and_the_kl_reference_the_sampling_temperature():
  """verl's recipe/prime (prime_dp_rm.py `_forward_micro_batch`, checked at commit 10a6180)
  scores with log_softmax of the raw logits of both the PRM and its reference: no temperature;
  only the actor's (and the KL reference's, fsdp_workers.py `compute_ref_log_prob`, which sets
  meta_info["temperature"] = rollout.temperature) log-probs divide the logits by it. At
  rl.temperature 0.6 with a KL term on, the credit phase's r_phi must be beta * (log pi_phi -
  log pi_ref) of raw-logit log-softmaxes, and its `ref_logp` (the KL anchor) the tempered one."""
  temperature, beta = 0.6, 0.05
  run = _prime_run(**{"rl.temperature": temperature})
  with run.config.unlocked():
    run.config.algorithm.terms.kl = dict(coef=0.01)
  cfg, g = run.config, run.config.rl.group_size
  sgd = optax.sgd(1.0)
  spec = rollout_lib.StepSpec.from_config(
      cfg, run.model_config, run.reward_fn, {"policy": sgd, "implicit_prm": sgd},
      eos_id=run.tokenizer.eos_id, pad_id=run.tokenizer.pad_id)
  state = create_state(run.init_params(), sgd, with_reference=True, prime_optimizer=sgd)
  noise = jax.tree.map(lambda x: 0.3 * jax.random.normal(jax.random.key(7), x.shape, x.dtype),
                       state.prime_params)
  state = state.replace(prime_params=jax.tree.map(jnp.add, state.prime_params, noise))
  batch = device_batches(run, 1)[0]
  comp, _ = jax.jit(lambda p, b: rollout_lib.rollout(spec, p, b, jax.random.key(0)))(
      state.params, batch)
  rewards, _ = rollout_lib.score(spec, batch, comp, None)
  ro = rollout_lib.Rollout(batch=batch, completions=comp, rewards=rewards)
  _, ro, _ = jax.jit(lambda s, r: rollout_lib.advantages(spec, s, r))(state, ro)

  raw = lambda params: _np_completion_logp(run.model_config, params, batch, comp, g, 1.0)
  want = beta * (raw(state.prime_params) - raw(state.ref_params))
  tempered = lambda params: _np_completion_logp(run.model_config, params, batch, comp, g,
                                                temperature)
  wrong = beta * (tempered(state.prime_params) - tempered(state.ref_params))
  assert np.abs(want - wrong).max() > 1e-3  # the check below tells the two apart
  np.testing.assert_allclose(np.asarray(ro.process_rewards), want, atol=2e-5)
  # The KL path keeps the sampling temperature (as verl's reference policy does).
  np.testing.assert_allclose(np.asarray(ro.ref_logp), tempered(state.ref_params), atol=5e-5)
