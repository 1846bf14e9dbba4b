"""The compiled RL step: traced once, no host transfers, learns, every estimator runs."""


import chex
import jax
import numpy as np
import pytest

from rlvr_jax.training import rl_step, warm_start
from rlvr_jax.training.state import create_state
from tests.helpers import device_batches, rl_run






def test_rl_step_traced_once_without_host_transfers():
  run = rl_run(**{"algorithm.advantage": "nsr", "algorithm.terms.kl": dict(coef=0.01)})
  state = run.make_state(run.init_params(), run.rl_optimizer, with_reference=True)
  step_fn = chex.assert_max_traces(run._rl_step, n=1)
  step = run.compile_step(step_fn, state, with_rng=True)
  batches = device_batches(run, 3)
  rngs = [jax.device_put(jax.random.key(i)) for i in range(3)]
  before = jax.tree.map(np.asarray, state.params)
  state, metrics = step(state, batches[0], rngs[0])
  with jax.transfer_guard("disallow"):
    for b, r in zip(batches[1:], rngs[1:]):
      state, metrics = step(state, b, r)
  assert step._cache_size() == 1
  assert int(state.step) == 3
  m = jax.device_get(metrics)
  for k in ("reward_mean", "loss", "grad_norm", "completion_tokens", "kl_ref", "clip_fraction",
            "completion_tokens_correct", "completion_tokens_wrong", "correct_frac"):
    assert np.isfinite(m[k]), k
  assert m["grad_norm"] > 0  # NSR on an untrained model always has negative samples
  assert m["decode_steps"] == m["completion_tokens_max"]  # the loop ends with the longest row
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), before, state.params)
  assert all(jax.tree.leaves(changed))


@pytest.mark.parametrize("advantage,extra", [
    ("grpo", {}), ("dr_grpo", {"algorithm.loss_agg": "seq-mean-token-sum-norm"}),
    ("rloo", {}), ("remax", {}), ("reinforce_pp", {"algorithm.terms.kl": dict(coef=0.01)}),
    ("psr", {}), ("nsr", {}), ("w_reinforce", {}), ("tempo", {}),
    ("dapo", {"algorithm.policy_loss_kw.clip_high": 0.28,
              "algorithm.advantage_kw.overlong_buffer_len": 2,
              "algorithm.dynamic_sampling": "mask"}),
    ("gae", {"algorithm.advantage_kw.lam": 0.95, "algorithm.terms.value": dict(),
             "rl.minibatches": 2}),
    ("grpo", {"algorithm.high_entropy_frac": 0.2, "rl.microbatches": 2}),
    ("grpo", {"algorithm.high_entropy_frac": 0.2, "algorithm.high_entropy_invert": True}),
    ("grpo", {"algorithm.policy_loss": "gspo", "algorithm.loss_agg": "seq-mean-token-mean"}),
])
def test_every_estimator_runs_inside_the_compiled_step(advantage, extra):
  run = rl_run(**{"algorithm.advantage": advantage, **extra})
  state = run.make_rl_state(run.init_params())
  assert (state.value_params is not None) == (advantage == "gae")
  step = run.compile_step(run._rl_step, state, with_rng=True)
  for i, b in enumerate(device_batches(run, 2)):
    state, metrics = step(state, b, jax.random.key(i))
  assert step._cache_size() == 1
  for k, v in jax.device_get(metrics).items():
    assert np.all(np.isfinite(v)), (advantage, k)


def test_sft_step_reduces_loss_and_rl_step_sees_rewards():
  run = rl_run(**{"sft.steps": 60, "sft.batch_size": 32, "model.d_model": 64, "model.d_ff": 128,
                "model.n_layers": 2, "model.n_heads": 4, "model.n_kv_heads": 2})
  params, first = warm_start.sft(run, run.init_params(), progress=False)
  assert first["sft_loss"] < 1.5  # from ~ln(vocab) = 2.8 at init
  state = run.make_state(params, run.rl_optimizer, with_reference=False)
  step = run.compile_step(run._rl_step, state, with_rng=True)
  state, m = step(state, device_batches(run, 1)[0], jax.random.key(0))
  assert np.isfinite(float(m["loss"]))


def test_one_update_per_rollout_is_the_policy_gradient_without_an_old_logp_forward():
  """With ppo_epochs x minibatches = 1 the step skips the behaviour log-prob forward (ratio is
  1 by construction); its update must equal plain REINFORCE: grad of -mean_t(A_t log pi(y_t))
  through an independent teacher-forced forward, then the same optimizer."""
  import optax
  from rlvr_jax.training import rl_step as rl_step_lib
  run = rl_run(**{"algorithm.advantage": "nsr", "rl.minibatches": 1, "rl.ppo_epochs": 1,
                "rl.optimizer.warmup_steps": 0, "rl.optimizer.schedule": "constant"})
  state = run.make_rl_state(run.init_params())
  batch = device_batches(run, 1)[0]
  phases = run._rl_step.phases
  comp, greedy = jax.jit(phases.sample)(state, batch, jax.random.key(0))
  rewards, _ = jax.jit(phases.score)(batch, comp, greedy)
  new_state, metrics = jax.jit(phases.learn)(state, batch, comp, rewards, None,
                                             jax.random.key(1))
  assert float(metrics["ratio_mean"]) == 1.0 and float(metrics["approx_kl"]) == 0.0

  g = run.config.rl.group_size
  adv_t = np.where(np.asarray(rewards) > 0, 0.0, -1.0).reshape(-1, 1)  # NSR: -1 when wrong
  assert (adv_t != 0).any()
  mask = np.asarray(comp.mask)

  def reinforce(params):
    logp, _ = rl_step_lib.completion_logprobs(
        run.model_config, params, np.repeat(batch["prompt_ids"], g, 0),
        np.repeat(batch["prompt_mask"], g, 0), comp.tokens, comp.mask, run.config.rl.temperature)
    return -(adv_t * logp * mask).sum() / mask.sum()

  grads = jax.grad(reinforce)(state.params)
  updates, _ = run.rl_optimizer.update(grads, state.opt_state, state.params)
  expected = optax.apply_updates(state.params, updates)
  for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
  moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
              for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(state.params)))
  assert moved > 1e-5


def test_length_by_outcome_is_the_masked_mean_of_each_kind():
  lengths = np.array([3, 10, 5, 7, 2, 9], np.int32)
  rewards = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0], np.float32)
  m = jax.device_get(jax.jit(rl_step.length_by_outcome)(lengths, rewards))
  np.testing.assert_allclose(m["completion_tokens_correct"], (3 + 5 + 9) / 3, rtol=1e-6)
  np.testing.assert_allclose(m["completion_tokens_wrong"], (10 + 7 + 2) / 3, rtol=1e-6)
  np.testing.assert_allclose(m["correct_frac"], 0.5)
  none_right = jax.device_get(rl_step.length_by_outcome(lengths, np.zeros(6, np.float32)))
  assert none_right["completion_tokens_correct"] == 0.0 and none_right["correct_frac"] == 0.0
  np.testing.assert_allclose(none_right["completion_tokens_wrong"], lengths.mean(), rtol=1e-6)


def test_plain_api_step_is_the_run_builders_step_and_donates_the_state():
  """make_rl_step + create_state + jit_rl_step (the documented plain recipe) compiles the step
  as Run.compile_step does: the same numbers from the same state and batches, and the state is
  donated (the old state's buffers are consumed, the update lands in place)."""
  run = rl_run()
  ids = dict(eos_id=run.tokenizer.eos_id, pad_id=run.tokenizer.pad_id)
  plain = rl_step.jit_rl_step(rl_step.make_rl_step(run.config, run.model_config, run.reward_fn,
                                                   run.rl_optimizer, **ids))
  built = run.compile_step(run._rl_step, run.make_rl_state(run.init_params()), with_rng=True)
  states = {"plain": create_state(run.init_params(), run.rl_optimizer, with_reference=False),
            "run": run.make_rl_state(run.init_params())}
  out = {}
  for name, step in (("plain", plain), ("run", built)):
    state = states[name]
    for i, b in enumerate(device_batches(run, 2)):
      before = state
      state, metrics = step(state, b, jax.random.key(i))
      assert before.params["embed"].is_deleted(), name  # donated
    out[name] = jax.device_get((state, metrics))
  chex.assert_trees_all_equal(out["plain"], out["run"])
