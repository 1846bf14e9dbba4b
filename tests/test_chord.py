"""CHORD: μ schedule and φ-weighted SFT loss against loop references written from the paper's
formulas (arXiv 2508.11408; Trinity-RFT's mix_chord), and the compiled step's mixed update
against an independent (1 − μ)·REINFORCE + μ·SFT gradient."""

import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given

from rlvr_jax import configs_base
from rlvr_jax.algorithms import chord
from rlvr_jax.training import rl_step
from rlvr_jax.training.run import Run
from rlvr_jax.training.state import create_state
from tests.helpers import load_config


def ref_mu(step, start, end, decay_steps, warmup_steps):
  """The paper's CHORD-μ schedule: linear warm-up to the peak, cosine decay to the valley."""
  if step < warmup_steps:
    return step / warmup_steps * start
  if step >= warmup_steps + decay_steps:
    return end
  frac = (step - warmup_steps) / decay_steps
  return end + (start - end) * 0.5 * (1 + math.cos(math.pi * frac))


@pytest.mark.parametrize("start,end,decay,warmup", [
    (0.9, 0.05, 200, 0), (0.5, 0.02, 40, 20), (0.1, 0.1, 0, 0), (0.7, 0.0, 13, 5), (1.0, 0.3, 1, 0)])
def test_mu_schedule_matches_reference(start, end, decay, warmup):
  steps = np.arange(0, warmup + decay + 5)
  got = np.asarray(chord.mu_schedule(jnp.asarray(steps), start=start, end=end,
                                     decay_steps=decay, warmup_steps=warmup))
  want = [ref_mu(int(s), start, end, decay, warmup) for s in steps]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert np.all(np.diff(got[warmup:]) <= 1e-6)  # non-increasing after the warm-up


def test_mu_schedule_paper_values():
  """CHORD-μ: 0.9 at the schedule's step 0 (the peak; the first update reads step 1), 0.05 from
  step 200 on; CHORD-φ's constant 0.1."""
  mu = lambda s, **kw: float(chord.mu_schedule(s, **kw))
  paper = dict(start=0.9, end=0.05, decay_steps=200)
  assert mu(0, **paper) == pytest.approx(0.9) and mu(100, **paper) == pytest.approx(0.475)
  assert mu(200, **paper) == pytest.approx(0.05) and mu(5000, **paper) == pytest.approx(0.05)
  assert mu(0, start=0.1, end=0.1, decay_steps=0) == pytest.approx(0.1)


def ref_sft(logp, mask, use_phi):
  """Σ over valid expert tokens of −w·log p, divided by their count; w = p(1 − p) or 1."""
  total, count = 0.0, 0.0
  for idx in np.ndindex(logp.shape):
    if mask[idx] > 0:
      p = math.exp(float(logp[idx]))
      w = p * (1 - p) if use_phi else 1.0
      total += -w * float(logp[idx])
      count += 1
  return total / count


@pytest.mark.parametrize("use_phi", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sft_loss_matches_reference_with_padding_and_leading_axes(use_phi, seed):
  rng = np.random.default_rng(seed)
  shape = (2, 3, 7)  # leading axes [2, 3], T = 7
  lengths = rng.integers(0, 8, shape[:-1])
  lengths[0, 0] = 0  # a row that is all padding
  mask = (np.arange(7) < lengths[..., None]).astype(np.float32)
  logp = np.log(rng.uniform(0.01, 0.99, shape)).astype(np.float32)
  loss, metrics = chord.sft_loss(jnp.asarray(logp), jnp.asarray(mask), use_phi=use_phi)
  np.testing.assert_allclose(float(loss), ref_sft(logp, mask, use_phi), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["chord_sft_nll"]), ref_sft(logp, mask, False),
                             rtol=1e-5)
  # φ is a weight, not a function to differentiate: d loss / d log p_t = −w_t m_t / Σ m.
  grad = jax.grad(lambda lp: chord.sft_loss(lp, jnp.asarray(mask), use_phi=use_phi)[0])(
      jnp.asarray(logp))
  p = np.exp(logp.astype(np.float64))
  w = p * (1 - p) if use_phi else np.ones_like(p)
  np.testing.assert_allclose(np.asarray(grad), -w * mask / mask.sum(), rtol=1e-5, atol=1e-8)
  # The normaliser of a whole mini-batch makes micro-batch losses add up to the full one.
  halves = [chord.sft_loss(jnp.asarray(logp[i]), jnp.asarray(mask[i]), use_phi=use_phi,
                           normalizer=jnp.asarray(mask.sum()))[0] for i in range(2)]
  np.testing.assert_allclose(float(sum(halves)), float(loss), rtol=1e-5)


@given(st.floats(0.0, 1.0))
def test_phi_is_bounded_and_vanishes_at_the_ends(p):
  w = float(chord.phi(jnp.float32(p)))
  assert 0.0 <= w <= 0.25 + 1e-7
  assert w == pytest.approx(p * (1 - p), abs=1e-6)


def test_config_checks_name_the_field():
  def bad(**fields):
    c = load_config()
    with c.unlocked():
      c.algorithm.update(fields)
    with pytest.raises(ValueError) as e:
      configs_base.validate(c)
    return str(e.value)

  # CHORD's hyperparameters live in its term: written anywhere else (CHORD off), refused.
  why = bad(policy_loss_kw=dict(phi=True))
  assert "config.algorithm.policy_loss_kw:" in why and "'phi'" in why
  why = bad(terms=dict(chord=dict(mu_start=0.1, mu_end=0.5)))
  assert "config.algorithm.terms.chord:" in why and "mu_end" in why
  why = bad(terms=dict(chord=dict(mu_start=1.5)))
  assert "config.algorithm.terms.chord:" in why and "'mu_start'" in why
  c = load_config()
  with c.unlocked():
    c.algorithm.terms.chord = dict()
  c.rl.update(batch_size=6, minibatches=4)  # 24 rollouts split, but 6 demos do not
  with pytest.raises(ValueError, match="rl.batch_size"):
    configs_base.validate(c)


def test_chord_update_is_the_mixed_gradient():
  """One update of the compiled learn phase (SGD, lr 1: the update is minus the gradient) with
  μ = 0.3 and CHORD-φ equals −(0.7 · grad REINFORCE on the rollouts + 0.3 · grad φ-weighted NLL
  of the demonstrations), both computed here through an independent teacher-forced forward;
  two micro-batches, so the accumulation over them is checked too."""
  config = load_config()
  with config.unlocked():
    config.algorithm.update(advantage="nsr", terms=dict(chord=dict(
        phi=True, mu_start=0.3, mu_end=0.3, mu_decay_steps=0)))
  config.rl.microbatches = 2
  run = Run(config)
  sgd = optax.sgd(1.0)
  step = rl_step.make_rl_step(config, run.model_config, run.reward_fn, sgd,
                              eos_id=run.tokenizer.eos_id, pad_id=run.tokenizer.pad_id)
  state = create_state(run.init_params(), sgd, with_reference=False)
  ds = run.dataset("train", config.rl.batch_size, seed=0, shuffle=True, size=100, with_demo=True)
  batch = run.device_batch(next(iter(ds)))
  comp, greedy = jax.jit(step.phases.sample)(state, batch, jax.random.key(0))
  rewards, _ = jax.jit(step.phases.score)(batch, comp, greedy)
  new_state, metrics = jax.jit(step.phases.learn)(state, batch, comp, rewards, None,
                                                  jax.random.key(1))
  np.testing.assert_allclose(float(metrics["chord_mu"]), 0.3, rtol=1e-6)

  g, temp = config.rl.group_size, config.rl.temperature
  adv = np.where(np.asarray(rewards) > 0, 0.0, -1.0).reshape(-1, 1)  # NSR
  assert (adv != 0).any()
  mask, demo_mask = np.asarray(comp.mask), np.asarray(batch["demo_mask"])

  def logprobs(params, prompts, prompt_mask, tokens, token_mask):
    return rl_step.completion_logprobs(run.model_config, params, prompts, prompt_mask, tokens,
                                       token_mask, temp)[0]

  def parts(params):
    logp = logprobs(params, np.repeat(batch["prompt_ids"], g, 0),
                    np.repeat(batch["prompt_mask"], g, 0), comp.tokens, comp.mask)
    reinforce = -(adv * logp * mask).sum() / mask.sum()
    demo_logp = logprobs(params, batch["prompt_ids"], batch["prompt_mask"], batch["demo_ids"],
                         batch["demo_mask"])
    p = jax.lax.stop_gradient(jnp.exp(demo_logp))
    sft = -(p * (1 - p) * demo_logp * demo_mask).sum() / demo_mask.sum()
    return reinforce, sft

  g_rl = jax.grad(lambda q: parts(q)[0])(state.params)
  g_sft = jax.grad(lambda q: parts(q)[1])(state.params)
  np.testing.assert_allclose(float(metrics["chord_sft_loss"]), float(parts(state.params)[1]),
                             rtol=1e-5)
  for new, old, a, b in zip(*map(jax.tree.leaves, (new_state.params, state.params, g_rl, g_sft))):
    step_taken = np.asarray(old) - np.asarray(new)
    np.testing.assert_allclose(step_taken, 0.7 * np.asarray(a) + 0.3 * np.asarray(b),
                               rtol=1e-4, atol=1e-7)
  # Both parts move the parameters: the check above is not carried by one of them alone.
  norm = lambda t: float(optax.tree.norm(t))
  assert norm(g_rl) > 1e-4 and norm(g_sft) > 1e-4


def test_compiled_step_evaluates_mu_at_the_update_number_like_trinity():
  """Trinity-RFT's trainer samples the batch of its k-th update (k = 1, 2, ...) with
  `sample_strategy.sample(train_step_num + 1)` (trinity/trainer/trainer.py; train_step_num = the
  updates done before it), the mix sample strategy stamps that number on every experience
  (mix_sample_strategy.py: exp.info["step"] = step) and MIXCHORDPolicyLossFn evaluates
  `mu_schedule_function` at it (chord_policy_loss.py). So the first update (state.step 0 here)
  takes μ(1): with warm-up 3, decay 5, 0.8 -> 0.1 that is 0.8/3 ≈ 0.267, and μ reaches 0.1 at the
  8th update (state.step 7). Read from the compiled learn phase's `chord_mu` metric."""
  config = load_config()
  with config.unlocked():
    config.algorithm.update(advantage="nsr", terms=dict(chord=dict(
        mu_start=0.8, mu_end=0.1, mu_warmup_steps=3, mu_decay_steps=5)))
  run = Run(config)
  sgd = optax.sgd(0.0)
  step = rl_step.make_rl_step(config, run.model_config, run.reward_fn, sgd,
                              eos_id=run.tokenizer.eos_id, pad_id=run.tokenizer.pad_id)
  state = create_state(run.init_params(), sgd, with_reference=False)
  ds = run.dataset("train", config.rl.batch_size, seed=0, shuffle=True, size=100, with_demo=True)
  batch = run.device_batch(next(iter(ds)))
  comp, greedy = jax.jit(step.phases.sample)(state, batch, jax.random.key(0))
  rewards, _ = jax.jit(step.phases.score)(batch, comp, greedy)
  learn = jax.jit(step.phases.learn)
  got = []
  for done in range(10):  # state.step = updates done before this one
    s = state.replace(step=jnp.asarray(done, jnp.int32))
    _, metrics = learn(s, batch, comp, rewards, None, jax.random.key(1))
    got.append(float(metrics["chord_mu"]))
  want = [ref_mu(done + 1, 0.8, 0.1, 5, 3) for done in range(10)]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert got[0] == pytest.approx(0.8 / 3, rel=1e-5)
  assert got[7] == pytest.approx(0.1) and got[6] > 0.1 + 1e-3
