"""Memory: FSDP shards the step, bf16 halves parameters, remat trades temp bytes for recompute,
the state is donated. Figures are XLA's `compiled.memory_analysis()`, per device."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import models, parallel
from rlvr_jax.configs_base import validate
from rlvr_jax.training import rl_step
from rlvr_jax.training.run import Run
from rlvr_jax.training.state import tree_size
from tests.helpers import ROOT, load_config

FSDP_SCRIPT = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax
    from rlvr_jax.training.run import Run
    from tests.helpers import load_config

    def per_device_bytes(mesh, devices, gather):
      config = load_config()
      config.mesh.update(mesh)
      # parameters and Adam moments dominate: wide layers, 16 short rollouts
      config.model.update(d_model=256, d_ff=1024, n_layers=2, n_heads=4, n_kv_heads=2,
                          decode_weight_gather=gather)
      # 96 new tokens: an automatic model.decode_cache_segments would be 3 on one device
      config.rl.update(batch_size=8, group_size=2, max_new_tokens=96)
      config.eval.batch_size = 8
      run = Run(config, devices)
      state = run.make_rl_state(run.init_params())
      step = run.compile_step(run._rl_step, state, with_rng=True)
      batch = run.device_batch(next(iter(run.dataset("train", 8, seed=0, shuffle=True, size=8))))
      m = step.lower(state, batch, jax.random.key(0)).compile().memory_analysis()
      layer_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state.params["layers"]))
      return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
              - m.alias_size_in_bytes), layer_bytes

    one, layer_bytes = per_device_bytes(dict(data=1, fsdp=1, tensor=1), jax.devices()[:1], "once")
    fsdp = dict(data=1, fsdp=8, tensor=1)
    per_layer, _ = per_device_bytes(fsdp, jax.devices(), "per_layer")
    once, _ = per_device_bytes(fsdp, jax.devices(), "once")
    print("per_device_bytes", one, per_layer, once, per_layer / one, once / one)
    # the memory floor: a quarter of one device's bytes
    assert per_layer <= one / 4, (one, per_layer)
    # gathering every layer before the decode loop costs at most one copy of the layer weights
    assert per_layer < once <= per_layer + layer_bytes, (per_layer, once, layer_bytes)
""")


def test_fsdp8_rl_step_needs_at_most_a_quarter_of_one_device_memory():
  """With model.decode_weight_gather=\"per_layer\"; \"once\" pays one gathered copy of the layers."""
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, "-c", FSDP_SCRIPT], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  assert "per_device_bytes" in proc.stdout
  print(proc.stdout.strip().splitlines()[-1])  # visible with pytest -s


def _grad_fn(remat="none", dtype="float32", n_layers=2, b=4, t=64):
  """(jitted grad of summed completion log-probs, params, its memory analysis)."""
  c = models.tiny(32, n_layers=n_layers, d_model=64, d_ff=256, remat=remat, param_dtype=dtype,
                  dtype=dtype)
  params = models.init_params(c, jax.random.key(0))
  tokens = jax.random.randint(jax.random.key(1), (b, t), 0, 32)
  p = 8

  def loss(params):
    logp, _ = rl_step.completion_logprobs(c, params, tokens[:, :p], jnp.ones((b, p)),
                                          tokens[:, p:], jnp.ones((b, t - p)))
    return logp.sum()

  f = jax.jit(jax.grad(loss))
  return f, params, f.lower(params).compile().memory_analysis()


def test_remat_policies_give_the_same_gradients_and_full_remat_saves_temp_bytes():
  f, params, none = _grad_fn("none", n_layers=4)
  reference = f(params)
  temp = {}
  for policy in ("full", "dots_saveable"):
    g, _, m = _grad_fn(policy, n_layers=4)
    worst = max(float(jnp.max(jnp.abs(a - b)))
                for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(g(params))))
    assert worst <= 1e-6, (policy, worst)
    temp[policy] = m.temp_size_in_bytes
  # attention scores and MLP activations of every layer vs one layer's input
  assert temp["full"] < 0.5 * none.temp_size_in_bytes, (temp, none.temp_size_in_bytes)
  assert temp["full"] <= temp["dots_saveable"] <= none.temp_size_in_bytes, temp


def test_bf16_parameters_halve_argument_bytes():
  _, p32, m32 = _grad_fn(dtype="float32")
  _, p16, m16 = _grad_fn(dtype="bfloat16")
  assert {x.dtype for x in jax.tree.leaves(p16)} == {jnp.dtype(jnp.bfloat16)}
  ratio = m16.argument_size_in_bytes / m32.argument_size_in_bytes
  assert 0.45 <= ratio <= 0.55, ratio


def _learn(dtype):
  """One update phase (fixed rollouts) of an RL state whose params and compute are `dtype`."""
  config = load_config()
  config.algorithm.advantage = "nsr"  # non-zero gradients from an untrained policy
  config.model.update(param_dtype=dtype, dtype=dtype)
  config.rl.optimizer.update(warmup_steps=0, schedule="constant")  # lr > 0 at step 0
  run = Run(config)
  state = run.make_rl_state(run.init_params())
  before = jax.tree.map(lambda x: np.asarray(x.astype(jnp.float32)), state.params)
  return run, state, before


def test_bf16_update_stays_close_to_float32_with_float32_moments():
  run32, s32, before32 = _learn("float32")
  run16, s16, before16 = _learn("bfloat16")
  batch = run32.device_batch(next(iter(run32.dataset("train", run32.config.rl.batch_size,
                                                     seed=0, shuffle=True, size=16))))
  phases = run32._rl_step.phases
  comp, greedy = jax.jit(phases.sample)(s32, batch, jax.random.key(0))
  rewards, greedy_rewards = jax.jit(phases.score)(batch, comp, greedy)
  args = (batch, comp, rewards, greedy_rewards, jax.random.key(1))
  new32, m32 = jax.jit(phases.learn)(s32, *args)
  new16, m16 = jax.jit(run16._rl_step.phases.learn)(s16, *args)

  assert {x.dtype for x in jax.tree.leaves(new16.params)} == {jnp.dtype(jnp.bfloat16)}
  moments = [x for x in jax.tree.leaves(new16.opt_state) if x.ndim > 0]
  assert moments and all(x.dtype == jnp.float32 for x in moments)
  for k in ("loss", "policy_entropy"):  # from float32 logits and log-probs
    assert m16[k].dtype == jnp.float32, k
  for k in ("loss", "grad_norm", "policy_entropy"):
    np.testing.assert_allclose(np.float32(m16[k]), m32[k], rtol=1e-2, err_msg=k)

  flat = lambda tree: np.concatenate([np.asarray(x.astype(jnp.float32)).ravel()
                                      for x in jax.tree.leaves(tree)])
  p32, p16 = flat(new32.params), flat(new16.params)
  d32, d16 = p32 - flat(before32), p16 - flat(before16)
  assert np.linalg.norm(d32) > 0
  assert np.linalg.norm(p16 - p32) / np.linalg.norm(p32) < 2e-3
  # bf16 rounds each ~lr update onto a grid of ~1e-4: direction kept, magnitude quantised
  assert np.linalg.norm(d16 - d32) / np.linalg.norm(d32) < 0.35
  assert np.dot(d16, d32) / (np.linalg.norm(d16) * np.linalg.norm(d32)) > 0.9


def test_compiled_rl_step_donates_the_whole_state():
  run = Run(load_config())
  state = run.make_rl_state(run.init_params())
  step = run.compile_step(run._rl_step, state, with_rng=True)
  batch = run.device_batch(next(iter(run.dataset("train", run.config.rl.batch_size, seed=0,
                                                 shuffle=True, size=16))))
  m = step.lower(state, batch, jax.random.key(0)).compile().memory_analysis()
  state_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
  assert m.alias_size_in_bytes >= state_bytes - 64, (m.alias_size_in_bytes, state_bytes)
  assert tree_size(state.params) > 0


@pytest.mark.parametrize("value,expected", [(False, "none"), (True, "full"), ("none", "none"),
                                            ("dots_saveable", "dots_saveable")])
def test_remat_accepts_policies_and_the_old_bools(value, expected):
  assert models.tiny(8, remat=value).remat == expected


def test_unknown_remat_policy_is_rejected_naming_the_field():
  config = load_config()
  config.model.remat = "some"
  with pytest.raises(ValueError, match="model.remat"):
    validate(config)
  with pytest.raises(ValueError, match="model.remat"):
    models.tiny(8, remat="some")


def test_constrain_is_a_no_op_without_a_mesh_and_replicates_undivisible_dims():
  x = jnp.ones((6, 4, 8))
  assert parallel.constrain(x, ("batch", "length", "mlp")) is x
  mesh = jax.sharding.AbstractMesh((2, 4, 2), parallel.MESH_AXES)
  # batch 8 takes data x fsdp (2 x 4), mlp 6 takes tensor (2)
  assert parallel.logical_to_spec(("batch", "length", "mlp"), (8, 3, 6), mesh) == jax.P(
      ("data", "fsdp"), None, "tensor")
  # neither batch 6 (data x fsdp = 8) nor mlp 5 (tensor = 2) divides: both replicated
  assert parallel.logical_to_spec(("batch", "length", "mlp"), (6, 3, 5), mesh) == jax.P(
      None, None, None)


def _logprob_temp_bytes(chunk, t, n=1, v=4096, d=64):
  """Temp bytes of jit(grad) of summed token log-probs and entropies over given hidden states."""
  c = models.tiny(v, d_model=d, tie_embeddings=False, logprob_chunk=chunk)
  params = jax.eval_shape(lambda: models.init_params(c, jax.random.key(0)))

  def loss(params, h_ntd, y_nt):
    logp, entropy = models.token_logprobs(c, params, h_ntd, y_nt)
    return jnp.sum(logp) + jnp.sum(entropy)

  lowered = jax.jit(jax.grad(loss, (0, 1))).lower(
      params, jax.ShapeDtypeStruct((n, t, d), jnp.float32), jax.ShapeDtypeStruct((n, t), jnp.int32))
  return lowered.compile().memory_analysis().temp_size_in_bytes


def test_chunked_logprobs_temporaries_do_not_grow_with_the_full_logits():
  """Full logits [n, t, v] are temporaries of the plain path; with model.logprob_chunk only one
  chunk's are, so doubling t leaves the temp bytes far below one full logits buffer."""
  t, logits_bytes = 512, 512 * 4096 * 4
  assert _logprob_temp_bytes(t, t) >= logits_bytes
  assert _logprob_temp_bytes(64, 2 * t) < logits_bytes / 2
