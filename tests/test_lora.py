"""LoRA adapters (rlvr_jax/models/lora.py): the math against numpy, zero-init = the base model,
merged = unmerged, gradients and optimizer state only for the adapters, the reference is the
base, checkpoints hold the adapters alone and resume exactly, and the PEFT round trip.

PEFT conventions checked against huggingface/peft 0.22.0 (src/peft/tuners/lora/layer.py
`LoraLayer.update_layer` / `reset_lora_parameters`: scaling = lora_alpha / r, lora_A kaiming-
uniform(a=√5), lora_B zeros; forward lora_B(lora_A(dropout(x))) * scaling) by loading our adapter
directory with that library (test_peft_loads_our_adapters_onto_the_hf_model).
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from rlvr_jax import configs_base, models, sampling
from rlvr_jax.checkpoints import hf, hf_export, integrity
from rlvr_jax.checkpoints.manager import Checkpointer
from rlvr_jax.evaluation import evaluate
from rlvr_jax.export import export_run
from rlvr_jax.models import lora
from rlvr_jax.models.transformer import _proj
from rlvr_jax.training import forward, loop, warm_start
from rlvr_jax.training.run import Run
from tests.helpers import device_batches, load_config, rl_run

TOL = 1e-5  # float32: merged vs unmerged differ by the rounding of W + s·AB vs xW + s·(xA)B


def _model(seed=0):
  c = models.tiny(37, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48)
  return c, models.init_params(c, jax.random.key(seed))


def _nonzero(adapters, seed=1, std=0.05):
  """Adapters moved off B = 0, as after some training."""
  leaves, treedef = jax.tree.flatten(adapters)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(treedef, [x + std * jax.random.normal(k, x.shape)
                                      for x, k in zip(leaves, keys)])


def _adapted(c, params, cfg=lora.LoraConfig(rank=4, alpha=8.0), moved=True):
  adapters = lora.init(c, cfg, jax.random.key(3))
  return lora.attach(params, _nonzero(adapters) if moved else adapters)


def _tokens(c, shape=(3, 9), seed=2):
  tokens = jax.random.randint(jax.random.key(seed), shape, 0, c.vocab_size)
  mask = jnp.ones(shape, jnp.int32).at[1, :3].set(0)  # a left-padded row
  return tokens, mask


# ---------------------------------------------------------------------------------------------
# Math
# ---------------------------------------------------------------------------------------------
def test_adapted_linear_and_its_gradients_match_numpy():
  """y = x W + ((x A) B)·α/r; dA = α/r · x^T (g B^T), dB = α/r · (x A)^T g (the paper's eq. 3,
  written out with numpy loops over nothing clever)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 6)).astype(np.float32)
  w = rng.normal(size=(6, 7)).astype(np.float32)
  a = rng.normal(size=(6, 3)).astype(np.float32)
  b = rng.normal(size=(3, 7)).astype(np.float32)
  g = rng.normal(size=(2, 5, 7)).astype(np.float32)
  scale = 16.0 / 3
  xf = x.reshape(-1, 6)
  want_y = (xf @ w + (xf @ a) @ b * scale).reshape(2, 5, 7)
  gf = g.reshape(-1, 7)
  want_da = scale * xf.T @ (gf @ b.T)
  want_db = scale * (xf @ a).T @ gf

  def f(a, b):
    return _proj({"w": w, "w_lora": lora.Adapter(a=a, b=b, scale=scale)}, "w", x)

  y, vjp = jax.vjp(f, a, b)
  da, db = vjp(g)
  np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(da, want_da, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(db, want_db, rtol=1e-4, atol=1e-4)


def test_init_follows_peft_and_targets_pick_weights_by_pattern():
  c, _ = _model()
  cfg = lora.LoraConfig(rank=4, alpha=8.0, targets="wq|wv|w_.*")
  adapters = lora.init(c, cfg, jax.random.key(0))["layers"]
  assert sorted(adapters) == ["w_down_lora", "w_gate_lora", "w_up_lora", "wq_lora", "wv_lora"]
  assert not any(v.merged_sampling for v in adapters.values())  # default: sampled unmerged
  merged = lora.init(c, lora.LoraConfig(rank=4, alpha=8.0, sampler="merged"),
                     jax.random.key(0))["layers"]
  assert all(v.merged_sampling for v in merged.values())
  wq = adapters["wq_lora"]
  assert wq.a.shape == (2, 32, 4) and wq.b.shape == (2, 4, 4, 8) and wq.scale == 2.0
  assert adapters["w_down_lora"].a.shape == (2, 48, 4)
  assert not np.any(np.asarray(wq.b))
  bound = 1 / np.sqrt(32)  # kaiming_uniform(a=√5) on [r, in]: U(−1/√in, 1/√in)
  assert np.abs(np.asarray(wq.a)).max() <= bound and np.abs(np.asarray(wq.a)).max() > 0.8 * bound
  wo = lora.init(c, lora.LoraConfig(rank=2, alpha=2.0, targets="wo"), jax.random.key(0))
  assert wo["layers"]["wo_lora"].a.shape == (2, 4, 8, 2)  # both input axes of wo [h, e, d]
  with pytest.raises(ValueError, match="config.lora.targets: 'q_proj' matches none"):
    lora.LoraConfig(rank=4, alpha=8.0, targets="q_proj").target_names()


def test_axes_follow_the_weights_they_adapt():
  c, params = _model()
  axes = lora.axes(c, _adapted(c, params))["layers"]
  assert axes["wq_lora"].a == ("layers", "embed", None)
  assert axes["wq_lora"].b == ("layers", None, "heads", "kv")
  assert axes["wo_lora"].a == ("layers", "heads", "kv", None)
  assert axes["wo_lora"].b == ("layers", None, "embed")
  assert axes["w_down_lora"].a == ("layers", "mlp", None)


# ---------------------------------------------------------------------------------------------
# Zero init, merged = unmerged, the sampler
# ---------------------------------------------------------------------------------------------
def test_zero_init_adapters_give_the_base_models_logits_exactly():
  c, params = _model()
  adapted = _adapted(c, params, moved=False)
  tokens, mask = _tokens(c)
  assert np.array_equal(models.forward(c, params, tokens, mask),
                        models.forward(c, adapted, tokens, mask))
  prompt, comp = tokens[:, :4], tokens[:, 4:]
  pm, cm = mask[:, :4], mask[:, 4:]
  for p in (params, adapted):  # the grouped (one prompt per group) forward too
    assert p is params or np.array_equal(
        forward.completion_logprobs(c, params, prompt[:1], pm[:1], comp, cm)[0],
        forward.completion_logprobs(c, p, prompt[:1], pm[:1], comp, cm)[0])
  assert lora.base(adapted) == params and lora.merge(params) is params


def test_merged_weights_give_the_unmerged_logits():
  c, params = _model()
  adapted = _adapted(c, params)
  tokens, mask = _tokens(c)
  unmerged = np.asarray(models.forward(c, adapted, tokens, mask))
  merged = np.asarray(models.forward(c, lora.merge(adapted), tokens, mask))
  base = np.asarray(models.forward(c, params, tokens, mask))
  assert np.abs(unmerged - base).max() > 0.1  # the adapters matter ...
  np.testing.assert_allclose(merged, unmerged, atol=TOL, rtol=0)  # ... and merge exactly


@pytest.mark.parametrize("gather", ["once", "per_layer"])
def test_sampling_with_merged_weights_is_sampling_with_unmerged_ones(gather):
  """The decode path itself (prefill + decode steps) on unmerged adapters against merged
  weights, and the sampler (which merges) against the unmerged teacher-forced log-probs the loss
  computes: the same tokens, log-probs to float32 rounding."""
  c, params = _model()
  c = dataclasses.replace(c, decode_weight_gather=gather)
  adapted = _adapted(c, params)
  tokens, mask = _tokens(c, (3, 5))
  logits = {}
  for name, p in (("unmerged", adapted), ("merged", lora.merge(adapted))):
    first, cache = models.prefill(c, p, tokens, mask, 8)
    stepped = models.unstack_layers(c, p)
    valid = jnp.concatenate([mask, jnp.zeros((3, 3), jnp.int32)], 1).at[:, 5].set(1)
    nxt, _ = models.decode_step(c, stepped, jnp.argmax(first, -1), mask.sum(-1), cache,
                                jnp.int32(5), valid)
    logits[name] = (np.asarray(first), np.asarray(nxt))
  for i in range(2):
    np.testing.assert_allclose(logits["merged"][i], logits["unmerged"][i], atol=TOL, rtol=0)
  comp = sampling.generate(c, adapted, tokens, mask, jax.random.key(5), max_new_tokens=6,
                           temperature=1.0, num_samples=2)
  # lora.sampler="merged": the same sampler on merged weights
  kept = dict(adapted, layers={k: v.replace(merged_sampling=True) if isinstance(v, lora.Adapter)
                               else v for k, v in adapted["layers"].items()})
  assert lora.has_adapters(lora.for_sampling(adapted)) and not lora.has_adapters(
      lora.for_sampling(kept))
  comp_kept = sampling.generate(c, kept, tokens, mask, jax.random.key(5), max_new_tokens=6,
                                temperature=1.0, num_samples=2)
  np.testing.assert_array_equal(comp_kept.tokens, comp.tokens)
  np.testing.assert_allclose(comp_kept.logprobs, comp.logprobs, atol=1e-4, rtol=0)
  reps = lambda x: jnp.repeat(x, 2, axis=0)
  logp, _ = forward.completion_logprobs(c, adapted, reps(tokens), reps(mask), comp.tokens,
                                        comp.mask)
  np.testing.assert_allclose(np.asarray(comp.logprobs * comp.mask),
                             np.asarray(logp * comp.mask), atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------
# The compiled step: gradients, optimizer state, reference
# ---------------------------------------------------------------------------------------------
def _lora_run(**overrides):
  return rl_run(**{"lora.rank": 4, "lora.alpha": 8.0, "sft.steps": 0,
                   "algorithm.advantage": "nsr", "algorithm.terms.kl": dict(coef=0.1),
                   "rl.optimizer.warmup_steps": 0, "rl.optimizer.learning_rate": 3e-2,
                   **overrides})


def test_only_adapters_train_and_the_reference_is_the_base():
  run = _lora_run(**{"rl.minibatches": 2})
  state = run.make_rl_state(run.init_params())
  assert state.ref_params is None  # no copy: the reference is the base weights
  adapters = lora.trainable(state.params)
  assert sorted(adapters["layers"]) == sorted(n + "_lora" for n in lora.LINEAR_IN_AXES)
  # Adam's moments track the adapters alone: 2 x their size, plus scalar counters.
  moments = [x for x in jax.tree.leaves(state.opt_state) if x.ndim > 0]
  assert sum(x.size for x in moments) == 2 * lora.size(state.params)
  base_shapes = {x.shape for x in jax.tree.leaves(lora.base(state.params))}
  assert not base_shapes & {x.shape for x in moments}
  before = jax.tree.map(np.asarray, state.params)
  step = run.compile_step(run._rl_step, state, with_rng=True)
  kl = []
  for i, b in enumerate(device_batches(run, 3)):
    state, m = step(state, b, jax.random.key(i))
    m = jax.device_get(m)
    assert np.isfinite(m["loss"]) and m["grad_norm"] > 0
    kl.append(float(m["kl_ref"]))
  assert kl[0] == 0.0 and kl[-1] > 0  # adapters off = the policy at step 1; then they move
  unchanged = jax.tree.map(lambda a, b: np.array_equal(a, np.asarray(b)),
                           lora.base(before), lora.base(state.params))
  assert all(jax.tree.leaves(unchanged))
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)),
                       lora.trainable(before), lora.trainable(state.params))
  assert all(jax.tree.leaves(moved))


def test_the_reference_log_probs_are_the_base_models():
  """kl_ref of the step = the k3 KL between the adapted policy and the base model computed
  here from two teacher-forced passes (adapters on / off)."""
  run = _lora_run()
  state = run.make_rl_state(run.init_params())
  adapters = _nonzero(lora.trainable(state.params), std=0.2)
  state = state.replace(params=lora.with_trainable(state.params, adapters))
  batch = device_batches(run, 1)[0]
  phases = run._rl_step.phases
  comp, greedy = jax.jit(phases.sample)(state, batch, jax.random.key(0))
  rewards, _ = phases.score(batch, comp, greedy)
  c, g = run.model_config, run.config.rl.group_size
  reps = lambda x: jnp.repeat(x, g, axis=0)
  args = (reps(batch["prompt_ids"]), reps(batch["prompt_mask"]), comp.tokens, comp.mask)
  logp = np.asarray(forward.completion_logprobs(c, state.params, *args)[0])
  ref = np.asarray(forward.completion_logprobs(c, lora.base(state.params), *args)[0])
  mask = np.asarray(comp.mask)
  d = ref - logp
  want = ((np.exp(d) - d - 1) * mask).sum() / mask.sum()
  _, m = jax.jit(phases.learn)(state, batch, comp, rewards, None, jax.random.key(1))
  np.testing.assert_allclose(float(m["kl_ref"]), want, rtol=1e-4)


def test_config_refusals_name_the_field():
  def refused(field, **overrides):
    c = load_config()
    c.update_from_flattened_dict({"lora.rank": 4, "sft.steps": 0, **overrides})
    with pytest.raises(ValueError, match=rf"config\.{field}"):
      configs_base.validate(c)

  refused("sft.steps", **{"sft.steps": 4})
  refused("lora.dropout", **{"lora.dropout": 0.05})
  refused("lora.targets", **{"lora.targets": "q_proj|v_proj"})
  refused("lora.rank", **{"lora.rank": -1})
  refused("lora.sampler", **{"lora.sampler": "fused"})
  refused("algorithm.terms", **{"algorithm.advantage": "gae", "algorithm.terms.value": {}})
  refused("algorithm.ref_reset_every", **{"algorithm.terms.kl": {"coef": 0.1},
                                          "algorithm.ref_reset_every": 5})


# ---------------------------------------------------------------------------------------------
# Checkpoints: the adapters alone, exact resume (base from sft.init_from)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
  config = load_config()
  config.rl.steps = 0
  config.checkpoint.use_async = False
  workdir = str(tmp_path_factory.mktemp("sft"))
  loop.train(config, workdir, progress=False)
  return workdir


def _lora_config(sft_dir, steps):
  config = load_config()
  config.update_from_flattened_dict({
      "lora.rank": 4, "lora.alpha": 8.0, "sft.init_from": sft_dir, "rl.steps": steps,
      # NSR: a 4-step SFT policy gets no reward, and NSR still pushes its wrong samples down
      "algorithm.advantage": "nsr", "algorithm.terms.kl": dict(coef=0.1),
      "rl.optimizer.warmup_steps": 0,
      "rl.optimizer.learning_rate": 3e-2, "checkpoint.every": 1, "checkpoint.use_async": False,
      "checkpoint.keep": 10, "eval.every": 100})
  return config


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if not k.endswith("_time_s")}
            for line in f]


def test_checkpoints_hold_the_adapters_alone_and_resume_exactly(sft_run, tmp_path):
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  loop.train(_lora_config(sft_run, 3), straight, progress=False)
  loop.train(_lora_config(sft_run, 2), resumed, progress=False)
  loop.train(_lora_config(sft_run, 3), resumed, progress=False)  # resumes at step 2
  assert _rows(resumed)[-1] == _rows(straight)[-1]
  assert _rows(straight)[-1]["step"] == 3 and _rows(straight)[-1]["kl_ref"] > 0
  ck = Checkpointer(os.path.join(straight, "checkpoints"), read_only=True)
  try:
    meta = ck._manager.restore(3, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
  finally:
    ck.close()
  params_keys = [k for k in meta[integrity.SIGNATURE_KEY] if k.startswith(".params")]
  assert params_keys and all("_lora" in k for k in params_keys), params_keys
  assert not any(k.startswith(".ref_params") for k in meta[integrity.SIGNATURE_KEY])
  opt_shapes = [tuple(v[0]) for k, v in meta[integrity.SIGNATURE_KEY].items()
                if k.startswith(".opt_state")]
  adapter_shapes = {tuple(v[0]) for k, v in meta[integrity.SIGNATURE_KEY].items()
                    if k.startswith(".params")}
  assert {s for s in opt_shapes if s} == adapter_shapes
  # The evaluation / export restore rebuilds the policy: the SFT base plus the trained adapters.
  run = Run(_lora_config(sft_run, 3))
  params, step = evaluate.restore_params(run, straight, "latest")
  assert step == 3
  base = warm_start.load_sft(run, sft_run)[0]
  same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), base,
                      lora.base(params))
  assert all(jax.tree.leaves(same))
  assert float(jnp.abs(lora.trainable(params)["layers"]["wq_lora"].b).max()) > 0


# ---------------------------------------------------------------------------------------------
# Export: merged HF weights and a PEFT adapter directory, checked with transformers and peft
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["llama_gqa_tied", "qwen2_bias"])
def test_peft_loads_our_adapters_onto_the_hf_model(case, tmp_path):
  peft = pytest.importorskip("peft")
  torch = pytest.importorskip("torch")
  from tests import test_hf  # its tiny HF models, built offline

  model = test_hf._torch_model(test_hf.HF_CONFIGS[case]())
  model.save_pretrained(tmp_path / "base")
  c, params = hf.load(tmp_path / "base")
  adapted = _adapted(c, params, lora.LoraConfig(rank=4, alpha=16.0,
                                                targets="wq|wk|wv|wo|w_gate|w_up|w_down"))
  hf_export.export_peft(tmp_path / "adapter", adapted, base_model_name_or_path=str(tmp_path))
  config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
  assert config["r"] == 4 and config["lora_alpha"] == 16.0
  assert sorted(config["target_modules"]) == sorted(
      ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
  tokens, mask = test_hf._batch(c.vocab_size)
  ours = np.asarray(models.forward(c, adapted, jnp.asarray(tokens), jnp.asarray(mask)))
  base_logits = test_hf._torch_logits(model, tokens, mask)
  peft_model = peft.PeftModel.from_pretrained(model, str(tmp_path / "adapter")).eval()
  theirs = test_hf._torch_logits(peft_model, tokens, mask)
  valid = mask.astype(bool)
  assert np.abs(ours[valid] - base_logits[valid]).max() > 0.1  # the adapters change the model
  assert np.abs(ours[valid] - theirs[valid]).max() < test_hf.TOL
  # ... and the merged export is the same model as a plain HF checkpoint.
  merged = peft_model.merge_and_unload()
  hf.save(tmp_path / "merged", c, lora.merge(adapted))
  plain = test_hf._MODEL_CLASSES[config_type(case)].from_pretrained(
      tmp_path / "merged", dtype=torch.float32, attn_implementation="eager").eval()
  ours_merged = test_hf._torch_logits(plain, tokens, mask)
  assert np.abs(ours_merged[valid] - test_hf._torch_logits(merged, tokens, mask)[valid]).max() \
      < test_hf.TOL
  assert np.abs(ours_merged[valid] - ours[valid]).max() < test_hf.TOL


def config_type(case):
  return "qwen2" if case.startswith("qwen2") else "llama"


def test_export_of_a_lora_run_merged_and_as_an_adapter(sft_run, tmp_path):
  """rlvr-export of a LoRA run: the restored policy is the SFT base plus the trained adapters,
  written merged (the merged path's logits: test_peft_loads_our_adapters_onto_the_hf_model) or as
  a PEFT directory holding the trained adapters under PEFT's names."""
  import safetensors.numpy
  workdir = str(tmp_path / "run")
  loop.train(_lora_config(sft_run, 1), workdir, progress=False)
  run, params, step = export_run(workdir, str(tmp_path / "merged"), "latest")
  assert step == 1 and lora.has_adapters(params)
  _, adapter_params, _ = export_run(workdir, str(tmp_path / "adapter"), "latest", "adapter")
  assert sorted(os.listdir(tmp_path / "adapter")) == ["adapter_config.json",
                                                      "adapter_model.safetensors"]
  tensors = safetensors.numpy.load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
  b = np.asarray(lora.trainable(params)["layers"]["wq_lora"].b[0])
  np.testing.assert_array_equal(
      tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"],
      b.reshape(b.shape[0], -1).T)
  with pytest.raises(ValueError, match="no LoRA adapters"):
    export_run(str(sft_run), str(tmp_path / "none"), "latest", "adapter")
  assert run.lora is not None and lora.has_adapters(adapter_params)


def test_optimizer_update_touches_only_adapters():
  """optax over `lora.trainable`: the update tree is the adapters' (no base leaf exists)."""
  c, params = _model()
  adapted = _adapted(c, params)
  opt = optax.adam(1e-2)
  state = opt.init(lora.trainable(adapted))
  tokens, mask = _tokens(c)

  def loss(t):
    return -jax.nn.log_softmax(models.forward(c, lora.with_trainable(adapted, t), tokens,
                                              mask)).mean()

  grads = jax.grad(loss)(lora.trainable(adapted))
  assert jax.tree.structure(grads) == jax.tree.structure(lora.trainable(adapted))
  updates, _ = opt.update(grads, state)
  new = lora.with_trainable(adapted, optax.apply_updates(lora.trainable(adapted), updates))
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: a is b, lora.base(new),
                                          lora.base(adapted))))
