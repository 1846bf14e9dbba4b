"""ProRL reference resets: semantics of a reset, the scheduled reset inside the one compiled step,
the plateau rule against a loop reference, and an exact resume across a plateau reset."""

import json
import logging
import os
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from rlvr_jax import configs_base
from rlvr_jax.algorithms.method import Method
from rlvr_jax.training import loop, prorl
from rlvr_jax.training.run import Run
from rlvr_jax.training.state import create_state, make_optimizer
from tests.helpers import ROOT, load_config


def _equal(a, b) -> bool:
  return all(np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _adam(opt_state) -> optax.ScaleByAdamState:
  (adam,) = [s for s in jax.tree.leaves(opt_state, is_leaf=prorl._is_adam) if prorl._is_adam(s)]
  return adam


def test_reset_makes_reference_the_policy_and_zeroes_adam_keeping_the_lr_schedule():
  config = load_config()
  optimizer = make_optimizer(config.rl.optimizer, total_steps=10)
  params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
  state = create_state(params, optimizer, with_reference=True)
  grads = {"w": jnp.full((2, 3), 0.5), "b": jnp.full(3, -1.0)}
  for _ in range(3):  # moments, counts and params move away from their initial values
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state)
  assert not _equal(state.params, state.ref_params)
  assert int(_adam(state.opt_state).count) == 3

  reset = jax.jit(lambda s: prorl.reset_reference(s, optimizer))(state)
  assert _equal(reset.ref_params, state.params) and _equal(reset.params, state.params)
  adam = _adam(reset.opt_state)
  assert int(adam.count) == 0
  assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves((adam.mu, adam.nu)))
  # Everything that is not Adam's (the learning-rate schedule's count) keeps its value.
  schedule = [x for x, y in zip(jax.tree.leaves(reset.opt_state), jax.tree.leaves(state.opt_state))
              if x.ndim == 0 and int(x) == 3]
  assert len(schedule) == 1 and int(reset.step) == 3

  with pytest.raises(ValueError, match=r"algorithm\.terms\.kl"):
    prorl.reset_reference(create_state(params, optimizer, with_reference=False), optimizer)


def ref_plateau_resets(values, patience, min_delta):
  """Indices of `values` at which the plateau rule resets, written as a plain loop."""
  out, best, stalled = [], None, 0
  for i, v in enumerate(values):
    if best is None or v > best + min_delta:
      best, stalled = v, 0
    else:
      stalled += 1
      if stalled == patience:
        out.append(i)
        stalled = 0
  return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("patience,min_delta", [(1, 0.0), (2, 0.01), (3, 0.05)])
def test_plateau_tracker_matches_reference_and_its_meta_resumes_it(seed, patience, min_delta):
  values = list(np.random.default_rng(seed).choice([0.1, 0.2, 0.25, 0.3], 30))
  tracker = prorl.PlateauTracker(patience, min_delta)
  got = []
  for i, v in enumerate(values):
    if i == 12:  # through a checkpoint's meta (JSON), as a resumed run gets it
      meta = json.loads(json.dumps(tracker.to_meta()))
      alg = load_config().algorithm
      alg.update(ref_reset_patience=patience, ref_reset_min_delta=min_delta)
      tracker = prorl.PlateauTracker.from_config(alg, meta)
    if tracker.observe(v):
      got.append(i)
  assert got == ref_plateau_resets(values, patience, min_delta)
  assert prorl.PlateauTracker.from_config(load_config().algorithm) is None  # patience 0: off


def test_resets_need_a_reference_policy():
  for field in ("ref_reset_every", "ref_reset_patience"):
    c = load_config()
    c.algorithm[field] = 5
    with pytest.raises(ValueError, match=f"algorithm.{field}"):
      configs_base.validate(c)


def test_scheduled_reset_inside_the_compiled_step():
  """ref_reset_every=2: the step is traced once and runs without host transfers; after steps 2
  and 4 the reference equals the policy and Adam's moments are zero, after 1 and 3 they are not.
  CHORD rides along, so the step with both is covered too."""
  config = load_config()
  with config.unlocked():
    config.algorithm.update(advantage="nsr", terms=dict(kl=dict(coef=0.01), chord=dict()),
                            ref_reset_every=2)
  config.rl.optimizer.update(warmup_steps=0, schedule="constant")  # step 1 moves the policy
  run = Run(config)
  state = run.make_rl_state(run.init_params())
  step_fn = run.compile_step(chex.assert_max_traces(run._rl_step, n=1), state, with_rng=True)
  it = iter(run.dataset("train", config.rl.batch_size, seed=0, shuffle=True, size=100,
                        with_demo=True))
  batches = [run.device_batch(next(it)) for _ in range(4)]
  rngs = [jax.device_put(jax.random.key(i)) for i in range(4)]
  for i in range(4):
    if i == 0:
      state, m = step_fn(state, batches[i], rngs[i])
    else:
      with jax.transfer_guard("disallow"):
        state, m = step_fn(state, batches[i], rngs[i])
    m = jax.device_get(m)
    adam = _adam(state.opt_state)
    is_reset = (i + 1) % 2 == 0
    assert m["ref_reset"] == float(is_reset), i
    assert _equal(state.ref_params, state.params) == is_reset, i
    assert (int(adam.count) == 0) == is_reset, i
    assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(adam.mu)) == is_reset, i
    # μ follows the update number i + 1 (defaults: CHORD-μ's 0.9 -> 0.05 over 200 steps)
    assert m["chord_mu"] == pytest.approx(0.05 + 0.85 * 0.5 * (1 + np.cos(np.pi * (i + 1) / 200)))
    assert np.isfinite(m["chord_sft_loss"])
  assert step_fn._cache_size() == 1 and int(state.step) == 4


def _rows(workdir):
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  for r in rows:  # wall-clock timings legitimately differ between runs
    r.pop("step_time_s", None)
    r.pop("sft_time_s", None)
  return rows


def _params(workdir, step):
  restored = ocp.StandardCheckpointer().restore(
      os.path.join(workdir, "checkpoints", str(step), "state"))
  return restored["params"], restored["ref_params"]


def test_plateau_reset_resumes_exactly(tmp_path, caplog):
  """Evaluations at steps 0 (after SFT), 2, 4, 6; min_delta 1 means none ever improves, so with
  patience 2 the plateau rule resets at step 4 only; a scheduled reset every 5 adds step 5.
  Resuming from step 3, whose checkpoint holds one stalled evaluation, must reset at step 4
  again: metrics and final parameters equal the uninterrupted run's bit for bit."""
  config = load_config()
  with config.unlocked():
    # the entropy term moves the policy even where every reward is equal (the tiny model's
    # rewards are all 0 on some machines), so the step after a reset leaves the reference
    config.algorithm.update(terms=dict(kl=dict(coef=0.01), entropy=dict(coef=0.01)),
                            ref_reset_patience=2, ref_reset_min_delta=1.0, ref_reset_every=5)
  config.rl.steps = 6
  config.checkpoint.update(every=1, keep=10, use_async=False)
  workdir = str(tmp_path / "run")
  with caplog.at_level(logging.INFO):
    loop.train(config.copy_and_resolve_references(), workdir, progress=False)
  straight = _rows(workdir)
  by_step = {r["step"]: r for r in straight if r["phase"] == "rl"}
  assert [s for s, r in by_step.items() if r.get("ref_reset")] == [4, 5]
  assert [s for s, r in by_step.items() if r.get("ref_reset_plateau")] == [4]
  assert "ProRL: step 4 reset" in caplog.text and "ProRL: step 5 reset" in caplog.text
  final, final_ref = _params(workdir, 6)
  at4, ref4 = _params(workdir, 4)
  assert _equal(at4, ref4) and not _equal(final, final_ref)

  for step in (4, 5, 6):  # as if the run had died right after saving step 3
    shutil.rmtree(os.path.join(workdir, "checkpoints", str(step)))
  loop.train(config.copy_and_resolve_references(), workdir, progress=False)
  assert _rows(workdir) == straight
  resumed, resumed_ref = _params(workdir, 6)
  assert _equal(resumed, final) and _equal(resumed_ref, final_ref)


@pytest.mark.parametrize("variant", ["", ":cpu"])
def test_recipe_variants_validate(variant):
  """configs/recipes/prorl.py: every leaf passes its rule; the ProRL pieces are switched on."""
  c = configs_base.load_config(os.path.join(ROOT, "configs", "recipes", "prorl.py") + variant)
  configs_base.validate(c)
  method = Method.from_config(c.algorithm)
  (kl,) = [t for t in method.terms if t.name == "kl"]
  assert kl.kw["coef"] > 0 and kl.kw["kind"] == "k3"
  assert c.algorithm.ref_reset_patience > 0 and c.algorithm.dynamic_sampling
  assert (method.policy_loss.kw["clip_low"], method.policy_loss.kw["clip_high"]) == (0.2, 0.4)


def _np_logp(mc, params, prompts, prompt_mask, tokens, mask):
  """log softmax of the raw logits of each completion token [n, t], float64 (numpy)."""
  from rlvr_jax import models
  p = prompts.shape[1]
  seq = np.concatenate([prompts, tokens], 1)
  seq_mask = np.concatenate([prompt_mask, mask], 1).astype(np.int32)
  logits = np.asarray(models.forward(mc, params, jnp.asarray(seq), jnp.asarray(seq_mask)),
                      np.float64)[:, p - 1:-1]
  logits = logits - logits.max(-1, keepdims=True)
  lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  return np.take_along_axis(lp, tokens[..., None], -1)[..., 0] * mask


def test_reset_leaves_primes_frozen_reference_alone():
  """PRIME with a KL term and ProRL resets (every step): a reset moves the KL anchor to the
  policy, but PRIME's implicit PRM keeps measuring r_phi = beta * log(pi_phi / pi_ref) against the
  frozen initial policy, as verl's recipe/prime does (its PRM worker deep-copies its own
  reference at start, prime_fsdp_workers.py, and never updates it). Checked after one real
  compiled step (which reset) against a numpy r_phi with the *initial* parameters as reference."""
  config = configs_base.load_config(f"{ROOT}/configs/prime_addition.py:tiny")
  with config.unlocked():
    config.algorithm.terms.kl = dict(coef=0.01)
    config.algorithm.ref_reset_every = 1
  config.rl.optimizer.update(warmup_steps=0, schedule="constant", learning_rate=1e-2)
  config.prime.optimizer.update(warmup_steps=0, schedule="constant", learning_rate=1e-2)
  run = Run(config)
  params0 = run.init_params()
  initial = jax.tree.map(np.asarray, params0)
  state = run.make_rl_state(params0)
  step_fn = run.compile_rl_step(state)
  batches = [run.device_batch(b) for b, _ in zip(
      run.dataset("train", run.rl_prompts_per_step, seed=0, shuffle=True, size=100), range(2))]
  state, m = step_fn(state, batches[0], jax.device_put(jax.random.key(0)))
  assert jax.device_get(m["ref_reset"]) == 1.0 and _equal(state.ref_params, state.params)
  assert not _equal(state.params, initial)

  phases = run._rl_step.phases
  comp, _ = jax.jit(phases.sample)(state, batches[1], jax.random.key(1))
  rewards, _ = jax.jit(phases.score)(batches[1], comp, None)
  from rlvr_jax.training import rollout as rollout_lib
  spec = rollout_lib.StepSpec.from_config(
      config, run.model_config, run.reward_fn,
      {"policy": run.rl_optimizer, "implicit_prm": run.prime_optimizer},
      eos_id=run.tokenizer.eos_id, pad_id=run.tokenizer.pad_id)
  ro = rollout_lib.Rollout(batch=batches[1], completions=comp, rewards=rewards)
  _, ro, _ = jax.jit(lambda s, r: rollout_lib.advantages(spec, s, r))(state, ro)

  g, beta = config.rl.group_size, config.algorithm.terms.prime.beta
  rows = (np.repeat(np.asarray(batches[1]["prompt_ids"]), g, 0),
          np.repeat(np.asarray(batches[1]["prompt_mask"]), g, 0),
          np.asarray(comp.tokens), np.asarray(comp.mask))
  logp = lambda params: _np_logp(run.model_config, params, *rows)
  prm = logp(state.prime_params)
  want, moved = beta * (prm - logp(initial)), beta * (prm - logp(state.ref_params))
  assert np.abs(want).max() > 1e-3  # the PRM has moved from the initial policy
  assert np.abs(want - moved).max() > 1e-3  # the check below tells the two references apart
  np.testing.assert_allclose(np.asarray(ro.process_rewards), want, atol=2e-5)
  # A plateau reset (between steps, `Run.compile_reset`) leaves it frozen too.
  state = run.compile_reset(state)(state)
  assert _equal(state.ref_params, state.params) and _equal(state.prime_ref_params, initial)


@pytest.mark.parametrize("kl,resets,separate", [
    (False, {}, False), (True, {}, False), (True, {"ref_reset_every": 3}, True),
    (True, {"ref_reset_patience": 2}, True)])
def test_prime_keeps_one_reference_unless_resets_would_move_it(kl, resets, separate):
  """PRIME's frozen reference is a second copy only when ProRL resets will move the KL anchor;
  otherwise the one frozen `ref_params` serves both (no extra memory)."""
  config = configs_base.load_config(f"{ROOT}/configs/prime_addition.py:tiny")
  with config.unlocked():
    if kl:
      config.algorithm.terms.kl = dict(coef=0.01)
    config.algorithm.update(resets)
  configs_base.validate(config)
  run = Run(config)
  state = jax.eval_shape(run.make_rl_state, run.init_params())
  assert state.ref_params is not None and (state.prime_ref_params is not None) == separate
