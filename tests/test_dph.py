"""DPH-RL (Li et al. 2025, arXiv 2509.07430): the f-divergence generators against slow numpy
references written from /work/shared/ALGORITHMS.md "Third wave" §3.2 (as the reference code
seamoke/DPH-RL@486d2e0b defines them: verl/trainer/ppo/core_algos.py `kl_penalty` (low_var_kl),
`js_low_var`, `alpha_divergence_f`, and the "js" branch of verl/workers/actor/dp_actor.py
`update_policy`), their properties, the split command (data/sql/process_data/exact_correct_id.py,
ray_trainer.py `fit`) on a tiny task, and the compiled step training with the term."""

import dataclasses
import math
from typing import ClassVar

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings

from rlvr_jax import configs_base
from rlvr_jax.algorithms import dph, losses
from rlvr_jax.algorithms.registry import TermContext
from rlvr_jax.data import stored_samples, synthetic
from rlvr_jax.data.tasks.base import Example
from rlvr_jax.evaluation import dph_split
from rlvr_jax.training import rl_step
from rlvr_jax.training.run import Run
from rlvr_jax.training.state import create_state

DIVERGENCES = dph.DIVERGENCES


# ---------------------------------------------------------------------------------------------
# Slow references, one token at a time, from probabilities (u = π_θ(y)/π₀(y), y ~ π₀)
# ---------------------------------------------------------------------------------------------
def ref_f(p_theta: float, p0: float, divergence: str, alpha: float = 0.2) -> float:
  u = p_theta / p0
  if divergence == "forward":  # verl low_var_kl(logprob=π₀, ref=π_θ): clamps log u, then value
    log_u = min(max(math.log(p_theta) - math.log(p0), -20.0), 20.0)
    return min(max(math.exp(log_u) - log_u - 1.0, -10.0), 10.0)
  if divergence == "js_low_var":
    return u * math.log(u) - (u + 1.0) * math.log((u + 1.0) / 2.0)
  if divergence == "alpha":
    return (u ** (1.0 - alpha) - (1.0 - alpha) * u - alpha) / (alpha * (alpha - 1.0))
  if divergence == "js":  # low_var_kl(logprob=π₀, ref=log M), M = (π₀ + π_θ)/2
    x = min(max(math.log((p0 + p_theta) / 2.0) - math.log(p0), -20.0), 20.0)
    return min(max(math.exp(x) - x - 1.0, -10.0), 10.0)
  raise ValueError(divergence)


def ref_loss(logp, pi0_logp, mask, divergence, alpha=0.2):
  """Token mean of f over the valid tokens."""
  total, count = 0.0, 0.0
  for i in range(logp.shape[0]):
    for t in range(logp.shape[1]):
      if mask[i, t] > 0:
        total += ref_f(math.exp(logp[i, t]), math.exp(pi0_logp[i, t]), divergence, alpha)
        count += 1
  return total / max(count, 1.0)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_generators_match_the_reference(divergence):
  rng = np.random.default_rng(0)
  logp = np.log(rng.uniform(0.01, 1.0, (3, 7)))
  pi0 = np.log(rng.uniform(0.01, 1.0, (3, 7)))
  pi0[0, :3] = logp[0, :3]  # π_θ = π₀ on some tokens
  mask = (rng.uniform(size=(3, 7)) > 0.3).astype(np.float32)
  for alpha in (0.2, 0.5, 0.9):
    got = dph.generator(jnp.asarray(logp, jnp.float32), jnp.asarray(pi0, jnp.float32),
                        divergence, alpha=alpha)
    want = [[ref_f(math.exp(a), math.exp(b), divergence, alpha) for a, b in zip(ra, rb)]
            for ra, rb in zip(logp, pi0)]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    loss = losses.aggregate(got, jnp.asarray(mask), "token-mean")
    np.testing.assert_allclose(float(loss), ref_loss(logp, pi0, mask, divergence, alpha),
                               rtol=1e-5, atol=1e-7)


def test_forward_and_js_mixture_clamp_like_verl_k3():
  far = jnp.asarray([-30.0, 30.0])  # log u beyond ±20: clamped, finite, value ≤ 10
  f = dph.generator(far, jnp.zeros(2), "forward")
  np.testing.assert_allclose(np.asarray(f), [min(math.exp(-20) + 20 - 1, 10.0), 10.0])
  assert np.isfinite(np.asarray(jax.grad(lambda x: dph.generator(x, jnp.zeros(2), "js").sum())(
      far))).all()


@settings(deadline=None, max_examples=60)
@given(log_u=st.floats(-15.0, 15.0), divergence=st.sampled_from(DIVERGENCES),
       alpha=st.floats(0.05, 0.95))
def test_each_token_value_is_nonnegative_and_its_gradient_pulls_toward_pi0(log_u, divergence,
                                                                            alpha):
  """f(u) ≥ 0 (convex with f(1) = f'(1) = 0); d f / d log π_θ has the sign of log u, so a
  descent step raises π_θ where π_θ < π₀ and lowers it where π_θ > π₀ — except where verl's
  k3 clamp holds the value at 10 ("forward", "js"): there the token has no gradient."""
  f = lambda x: dph.generator(x, jnp.float32(0.0), divergence, alpha=alpha)
  value, grad = jax.value_and_grad(f)(jnp.float32(log_u))
  assert float(value) >= -1e-6
  clamped = divergence in ("forward", "js") and float(value) >= 10.0
  if clamped:
    assert float(grad) == 0.0
  elif abs(log_u) > 1e-3:
    assert np.sign(float(grad)) == np.sign(log_u)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_zero_value_and_gradient_at_pi0(divergence):
  logp = jnp.asarray([[-0.3, -2.0, -7.5]])
  value, grad = jax.value_and_grad(
      lambda lp: dph.generator(lp, logp, divergence, alpha=0.3).sum())(logp)
  assert float(value) == 0.0
  np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-7)


def test_expectations_under_pi0_are_the_divergences():
  """On a toy categorical, E_{π₀}[f(π_θ/π₀)] is KL(π₀‖π_θ) (forward), KL(π_θ‖M) + KL(π₀‖M)
  (js_low_var), Amari's α-divergence (1 − Σ π_θ^{1−α} π₀^α)/(α(1 − α)) (alpha) and KL(π₀‖M)
  (js), M = (π₀ + π_θ)/2."""
  p0 = np.asarray([0.5, 0.3, 0.15, 0.05])
  pt = np.asarray([0.2, 0.6, 0.1, 0.1])
  m = (p0 + pt) / 2
  kl = lambda p, q: float(np.sum(p * np.log(p / q)))
  alpha = 0.2
  want = {"forward": kl(p0, pt), "js_low_var": kl(pt, m) + kl(p0, m),
          "alpha": (1 - np.sum(pt ** (1 - alpha) * p0 ** alpha)) / (alpha * (1 - alpha)),
          "js": kl(p0, m)}
  for divergence, value in want.items():
    f = np.asarray(dph.generator(jnp.log(jnp.asarray(pt, jnp.float32)),
                                 jnp.log(jnp.asarray(p0, jnp.float32)), divergence, alpha=alpha))
    np.testing.assert_allclose(float(np.sum(p0 * f)), value, rtol=1e-5)


def _ctx(logp, pi0, mask, normalizer=None, micro_batches=1):
  zeros = jnp.zeros((1, 1))
  return TermContext(logp=zeros, old_logp=zeros, entropy=zeros, mask=zeros, advantages=zeros,
                     normalizer=None, agg="token-mean", max_len=None, policy_loss=jnp.float32(0),
                     step=jnp.int32(0), micro_batches=micro_batches, stored_logp=logp,
                     stored_old_logp=pi0, stored_mask=mask, stored_normalizer=normalizer)


def test_term_is_coef_times_the_aggregate_and_accumulates_over_micro_batches():
  rng = np.random.default_rng(1)
  logp = jnp.asarray(np.log(rng.uniform(0.05, 1, (4, 5))), jnp.float32)
  pi0 = jnp.asarray(np.log(rng.uniform(0.05, 1, (4, 5))), jnp.float32)
  mask = jnp.asarray(rng.uniform(size=(4, 5)) > 0.2, jnp.float32)
  term = dph.dph
  loss, metrics = term(_ctx(logp, pi0, mask), coef=0.05, divergence="js_low_var")
  want = ref_loss(np.asarray(logp), np.asarray(pi0), np.asarray(mask), "js_low_var")
  np.testing.assert_allclose(float(loss), 0.05 * want, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["dph_divergence"]), want, rtol=1e-5)
  # two micro-batches under the mini-batch normaliser: their losses sum to the whole, and the
  # metric (a partial sum times the micro-batch count) averages to it
  norm = losses.aggregate_normalizer(mask, "token-mean")
  halves = [term(_ctx(logp[i:i + 2], pi0[i:i + 2], mask[i:i + 2], norm, 2), coef=0.05,
                 divergence="js_low_var") for i in (0, 2)]
  np.testing.assert_allclose(sum(float(h[0]) for h in halves), float(loss), rtol=1e-5)
  np.testing.assert_allclose(np.mean([float(h[1]["dph_divergence"]) for h in halves]), want,
                             rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# A tiny task whose split is known: index % 3 == 0 always solved, 1 never, 2 a coin (the parity
# of the first completion token)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _GateTask:
  name: ClassVar[str] = "dph_test_gate"
  meta_size: ClassVar[int] = 1
  max_prompt_chars: ClassVar[int] = 8
  max_completion_chars: ClassVar[int] = 3

  def example(self, index, *, split, seed):
    kind = index % 3
    return Example(prompt=f"{split[:2]}{'ehc'[kind]}{index}=", answer="a", demo="ab",
                   meta=(kind,))

  def alphabet(self):
    return "abcdehnrstw0123456789="

  def verify(self, completion, example):
    raise NotImplementedError  # the split reads the jittable reward only

  def reward_fn(self, tokenizer):
    del tokenizer

    def reward(ids, mask, answer, meta):
      del mask, answer
      coin = (ids[:, 0] % 2 == 0)
      return jnp.where(meta[:, 0] == 0, 1.0, jnp.where(meta[:, 0] == 2, coin * 1.0, 0.0))

    return reward


@pytest.fixture(scope="module", autouse=True)
def _gate_task():
  before = dict(synthetic.TASKS)
  synthetic.register_task(_GateTask)
  yield
  synthetic.TASKS.clear()
  synthetic.TASKS.update(before)


def _config(stored="", **terms):
  c = configs_base.base_config()
  c.task.name, c.task.kwargs = _GateTask.name, {}
  c.model.update(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64)
  c.sft.steps = 0
  c.rl.update(steps=2, batch_size=4, group_size=2)
  c.data.update(rl_train_size=12, stored_samples=stored, stored_samples_per_step=4 if stored else 0)
  c.eval.update(num_prompts=4, batch_size=4)
  c.checkpoint.update(every=1, use_async=False)
  if stored:
    c.algorithm.terms = dict(dph=terms or dict())
  return c


@pytest.fixture(scope="module")
def split_file(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("dph") / "split.npz")
  summary = dph_split.split(_config(), path, samples=4, stored=2, checkpoint="none",
                            progress=False)
  return path, summary


def test_split_puts_always_solved_prompts_aside_with_their_pi0_samples(split_file):
  path, summary = split_file
  stored = stored_samples.load(path)
  with np.load(path) as f:
    pass_rate, perfect, source_index = f["pass_rate"], f["perfect_index"], f["source_index"]
  kind = np.arange(12) % 3
  # pass rate = unbiased pass@1 = c/n of 4 samples
  assert (pass_rate[kind == 0] == 1).all() and (pass_rate[kind == 1] == 0).all()
  np.testing.assert_allclose(pass_rate * 4, np.round(pass_rate * 4), atol=1e-5)
  assert 0 < pass_rate[kind == 2].mean() < 1  # the coin prompts are sampled, not assumed
  np.testing.assert_array_equal(perfect, np.flatnonzero(np.round(pass_rate * 4) == 4))
  np.testing.assert_array_equal(stored.train_index, np.flatnonzero(np.round(pass_rate * 4) < 4))
  assert summary["perfect"] == len(perfect) and summary["explore"] == len(stored.train_index)
  # stored rows: fresh correct samples of D_pef prompts (2 each for the always-solved ones)
  assert set(source_index) <= set(perfect)
  for i in np.flatnonzero(kind == 0):
    assert (source_index == i).sum() == 2
  run = Run(_config())
  tok = run.tokenizer
  prompts = [tok.decode([t for t, m in zip(ids, mask) if m])
             for ids, mask in zip(stored.rows["prompt_ids"], stored.rows["prompt_mask"])]
  assert prompts == [run.rl_source()[int(i)].prompt for i in source_index]
  rows = stored.rows
  assert (rows["mask"].sum(-1) >= 1).all() and (rows["logp"][rows["mask"] == 0] == 0).all()
  # π₀'s log-probs are the teacher-forced ones of the RL loss, at rl.temperature
  logp, _ = rl_step.completion_logprobs(run.model_config, run.init_params(), rows["prompt_ids"],
                                        rows["prompt_mask"], rows["tokens"], rows["mask"],
                                        run.config.rl.temperature)
  np.testing.assert_allclose(rows["logp"], np.asarray(logp) * rows["mask"], rtol=1e-6,
                             atol=1e-6)
  assert stored.meta["checkpoint"] == "none" and stored.meta["samples"] == 4


def test_the_run_refuses_a_file_made_for_another_config(split_file, tmp_path):
  path, _ = split_file
  with pytest.raises(ValueError, match=r"config\.data\.stored_samples: .*temperature"):
    Run(_with(_config(path), "rl.temperature", 0.7))
  with pytest.raises(ValueError, match=r"config\.data\.stored_samples: .*not a file"):
    Run(_config(str(tmp_path / "missing.npz")))


def _with(c, field, value):
  c.update_from_flattened_dict({field: value})
  return c


def test_config_checks_name_the_field(split_file):
  path, _ = split_file

  def why(c):
    with pytest.raises(ValueError) as e:
      configs_base.validate(c)
    return str(e.value)

  assert "config.algorithm.terms.dph:" in why(_config(path, divergence="kl"))
  assert "'alpha'" in why(_config(path, divergence="alpha", alpha=1.0))
  assert "config.data.stored_samples:" in why(_dph_without_file())
  assert "config.data.stored_samples_per_step:" in why(
      _with(_with(_config(path), "data.stored_samples_per_step", 3), "rl.minibatches", 2))
  assert "config.data.stored_samples_per_step:" in why(
      _with(_config(path), "data.stored_samples_per_step", 0))
  assert "config.data.stored_samples:" in why(_with(_config(), "data.stored_samples", path))
  assert "config.rl.partial_rollouts:" in why(_with(_config(path), "rl.partial_rollouts", True))
  configs_base.validate(_config(path))


def _dph_without_file():
  c = _config()
  c.algorithm.terms = dict(dph=dict())
  c.data.stored_samples_per_step = 4
  return c


def test_every_rl_batch_holds_explore_prompts_and_stored_rows(split_file):
  path, _ = split_file
  run = Run(_config(path))
  stored = stored_samples.load(path)
  explore = {run.rl_source().source[int(i)].prompt for i in stored.train_index}
  it = iter(run.rl_dataset())
  seen = []
  for _ in range(6):
    batch = next(it)
    assert batch["stored_ids"].shape == (4, stored.rows["tokens"].shape[1])
    texts = [run.tokenizer.decode([t for t, m in zip(ids, mask) if m])
             for ids, mask in zip(batch["prompt_ids"], batch["prompt_mask"])]
    assert set(texts) <= explore
    seen += [tuple(r) for r in batch["stored_ids"]]
  assert {tuple(r) for r in stored.rows["tokens"]} >= set(seen)
  # the iterator state is what a checkpoint saves: a restored iterator resumes exactly
  state = it.get_state()
  a = next(it)
  it2 = iter(run.rl_dataset())
  it2.set_state(state)
  b = next(it2)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])


def test_the_compiled_step_trains_with_the_term(split_file):
  """Two RL steps of the real compiled step: at the first update π_θ = π₀, so the divergence
  on the stored rows is 0 (the stored log-probs are the loss's own forward); after an update it
  is positive, and finite everywhere."""
  path, _ = split_file
  config = _config(path, coef=0.5, divergence="js_low_var")
  config.rl.optimizer.update(learning_rate=3e-2, warmup_steps=0)
  config.rl.group_size = 4  # the coin prompts' groups vary: the RL loss moves the policy
  run = Run(config)
  state = run.make_rl_state(run.init_params())
  step = run.compile_rl_step(state)
  it = iter(run.rl_dataset())
  divergences = []
  for i in range(2):
    state, metrics = step(state, run.device_batch(next(it)), jax.random.key(i))
    metrics = jax.device_get(metrics)
    assert all(np.isfinite(v).all() for v in metrics.values())
    divergences.append(float(metrics["dph_divergence"]))
  assert abs(divergences[0]) < 1e-6 and divergences[1] > 1e-6


def test_the_update_is_the_rl_gradient_plus_coef_times_the_divergence_gradient(split_file):
  """One update of the compiled learn phase (SGD, lr 1: the update is minus the gradient) with
  the stored π₀ log-probs moved off the policy's, against −(∇ REINFORCE on the rollouts +
  coef·∇ token-mean f on the stored rows), both through an independent teacher-forced forward;
  two micro-batches, so accumulation over them is checked too."""
  path, _ = split_file
  coef, alpha = 0.3, 0.4
  config = _config(path, coef=coef, divergence="alpha", alpha=alpha)
  config.algorithm.advantage = "nsr"
  config.rl.microbatches = 2
  run = Run(config)
  sgd = optax.sgd(1.0)
  step = rl_step.make_rl_step(config, run.model_config, run.reward_fn, sgd,
                              eos_id=run.tokenizer.eos_id, pad_id=run.tokenizer.pad_id)
  state = create_state(run.init_params(), sgd, with_reference=False)
  batch = dict(next(iter(run.rl_dataset())))
  shift = np.random.default_rng(0).normal(0.0, 0.5, batch["stored_logp"].shape)
  batch["stored_logp"] = ((batch["stored_logp"] + shift) * batch["stored_mask"]).astype(
      np.float32)
  batch = run.device_batch(batch)
  comp, greedy = jax.jit(step.phases.sample)(state, batch, jax.random.key(0))
  rewards, _ = jax.jit(step.phases.score)(batch, comp, greedy)
  new_state, metrics = jax.jit(step.phases.learn)(state, batch, comp, rewards, None,
                                                  jax.random.key(1))
  g, temp = config.rl.group_size, config.rl.temperature
  adv = np.where(np.asarray(rewards) > 0, 0.0, -1.0).reshape(-1, 1)  # NSR
  mask, smask = np.asarray(comp.mask), np.asarray(batch["stored_mask"])
  pi0 = np.asarray(batch["stored_logp"])

  def logprobs(params, prompts, prompt_mask, tokens, token_mask):
    return rl_step.completion_logprobs(run.model_config, params, prompts, prompt_mask, tokens,
                                       token_mask, temp)[0]

  def parts(params):
    logp = logprobs(params, np.repeat(batch["prompt_ids"], g, 0),
                    np.repeat(batch["prompt_mask"], g, 0), comp.tokens, comp.mask)
    reinforce = -(adv * logp * mask).sum() / mask.sum()
    s_logp = logprobs(params, batch["stored_prompt_ids"], batch["stored_prompt_mask"],
                      batch["stored_ids"], batch["stored_mask"])
    u = jnp.exp(s_logp - pi0)
    f = (u ** (1 - alpha) - (1 - alpha) * u - alpha) / (alpha * (alpha - 1))
    return reinforce, (f * smask).sum() / smask.sum()

  g_rl = jax.grad(lambda q: parts(q)[0])(state.params)
  g_f = jax.grad(lambda q: parts(q)[1])(state.params)
  np.testing.assert_allclose(float(metrics["dph_divergence"]), float(parts(state.params)[1]),
                             rtol=1e-5)
  for new, old, a, b in zip(*map(jax.tree.leaves, (new_state.params, state.params, g_rl, g_f))):
    np.testing.assert_allclose(np.asarray(old) - np.asarray(new),
                               np.asarray(a) + coef * np.asarray(b), rtol=1e-4, atol=1e-7)
  norm = lambda t: float(optax.tree.norm(t))
  assert norm(g_rl) > 1e-4 and norm(g_f) > 1e-4

