"""The default run config every `configs/*.py` starts from, and its validation.

All fields exist here with their defaults, so a typo in `--config.a.b=v` fails at the flag
parser ("key does not exist"), and `validate` checks the values before anything compiles.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from rlvr_jax.algorithms import registry
from rlvr_jax.models.config import REMAT_POLICIES

# Estimators whose baseline comes from the other members of the group.
GROUP_BASELINE_ESTIMATORS = ("grpo", "dr_grpo", "dapo", "rloo", "tempo", "reinforce_pp_baseline",
                             "pure_min", "pure_min_strict", "pure_sum")
# Estimators that credit reasoning steps with a process reward model (config.prm).
PRM_ESTIMATORS = ("pure_min", "pure_min_strict", "pure_sum")


def _optimizer(lr: float) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      learning_rate=lr, warmup_steps=10, schedule="constant", final_lr_frac=0.1,
      max_grad_norm=1.0, weight_decay=0.0, b1=0.9, b2=0.99))


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = ml_collections.ConfigDict(dict(name="addition", kwargs=dict(digits=2)))
  # Token buffer lengths; 0 derives them from a char-level synthetic task.
  # prompt_bucket > 0 cuts each batch's prompt buffer to its longest prompt rounded up to this
  # multiple: varying prompt lengths then compile at most prompt_len / prompt_bucket programs.
  c.data = ml_collections.ConfigDict(dict(train_size=1_000_000, eval_seed=1234, prompt_len=0,
                                          completion_len=0, answer_len=0, prompt_bucket=0))
  # Where the policy comes from: "scratch" (random init, char tokenizer built from the task),
  # "hf" (a local HF directory) or "gguf" (a local .gguf file); dtype of the loaded weights.
  c.init = ml_collections.ConfigDict(dict(kind="scratch", path="", dtype="float32"))
  # vocab_size 0: the tokenizer's size; a larger value pads the embedding table (padding ids are
  # masked out of the logits). Either is then rounded up to a multiple of vocab_multiple (128 is
  # what TPUs want). Both apply to models trained from scratch; checkpoints bring their own.
  # dtype: compute; param_dtype: stored weights (logits, log-probs, losses and Adam moments are
  # float32 regardless); remat: "none" / "full" (per layer) / "dots_saveable"; cache_dtype: the
  # sampler's KV cache (None: dtype); unroll_layers: a Python loop over layers instead of a scan
  # (faster steps on CPU, compile time grows with depth).
  c.model = ml_collections.ConfigDict(dict(
      vocab_size=0, vocab_multiple=1, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128,
      head_dim=None, rope_theta=10_000.0, norm_eps=1e-6, qk_norm=False, qkv_bias=False,
      tie_embeddings=True, dtype="float32", param_dtype="float32", remat="none",
      cache_dtype=ml_collections.FieldReference(None, field_type=str), unroll_layers=False))
  # SFT stops early once held-out greedy accuracy reaches target_accuracy (0 disables).
  c.sft = ml_collections.ConfigDict(dict(steps=100, batch_size=32, optimizer=_optimizer(3e-3),
                                         target_accuracy=0.0, eval_every=50))
  # ignore_eos: every completion runs max_new_tokens (benchmarks that must do a fixed amount of
  # work); the EOS token is then an ordinary token.
  c.rl = ml_collections.ConfigDict(dict(
      steps=100, batch_size=16, group_size=8, max_new_tokens=0, temperature=1.0, top_k=0,
      top_p=1.0, ignore_eos=False, ppo_epochs=1, minibatches=1, microbatches=1, optimizer=_optimizer(1e-3)))
  c.algorithm = ml_collections.ConfigDict(dict(
      advantage="grpo", policy_loss="ppo", loss_agg="token-mean", eps=1e-6, clip_low=0.2,
      clip_high=0.2, dual_clip=ml_collections.FieldReference(None, field_type=float),
      max_len=ml_collections.FieldReference(None, field_type=int), kl_coef=0.0, kl_kind="k3",
      entropy_coef=0.0, high_entropy_frac=ml_collections.FieldReference(None, field_type=float),
      dynamic_sampling=False, overlong_buffer_len=0, positive_weight=0.1, negative_weight=1.0,
      kl_penalty_coef=0.01, gamma=1.0, lam=1.0, value_clip=0.2,
      # PURE: min-form softmax temperature; weight of the verifiable reward (PRM+VR; 0 = PRM only)
      pure_temperature=0.1, verifiable_coef=1.0,
      # GSPO clips the sequence-level ratio (policy_loss="gspo"), far tighter than token ratios
      gspo_clip_low=3e-4, gspo_clip_high=4e-4))
  # PPO critic, built when algorithm.advantage == "gae" (initialised from the policy trunk).
  c.value = ml_collections.ConfigDict(dict(optimizer=_optimizer(1e-3)))
  # Process reward model for PURE (algorithm.advantage in PRM_ESTIMATORS): the policy trunk after
  # SFT plus a scalar head, trained for `steps` on the policy's own samples (`group_size` per
  # prompt at `temperature`) with step labels, then frozen. A step ends at a token whose text
  # ends with `step_delimiter`.
  c.prm = ml_collections.ConfigDict(dict(
      step_delimiter="\n\n", steps=100, batch_size=16, group_size=4, temperature=1.0,
      eval_prompts=64, optimizer=_optimizer(1e-3)))
  c.eval = ml_collections.ConfigDict(dict(every=25, num_prompts=256, batch_size=128))
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  c.checkpoint = ml_collections.ConfigDict(dict(every=25, keep=3, use_async=True))
  # Multi-process (multi-host) run: jax.distributed.initialize() first, its settings from
  # JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID or auto-detected (SLURM, TPU).
  c.distributed = False
  # Fault injection (-1: off). sigkill_after_step: SIGKILL right after this RL step's checkpoint
  # save starts (with async saves, while its arrays are being written); sigkill_before_manifest:
  # SIGKILL once orbax has finished this step's checkpoint, before its content manifest is written.
  c.debug = ml_collections.ConfigDict(dict(sigkill_after_step=-1, sigkill_before_manifest=-1))
  c.log_every = 1
  return c


def load_config(spec: str) -> ml_collections.ConfigDict:
  """The config a `--config=` flag would give: "configs/quickstart.py" or
  "configs/quickstart.py:tiny" (the part after ':' is `get_config`'s argument). For notebooks,
  scripts and configs that derive from other configs."""
  path, arg = (spec, "") if os.path.isfile(spec) else spec.rpartition(":")[::2]
  if not os.path.isfile(path):
    raise ValueError(f"config file {path!r} does not exist")
  module_spec = importlib.util.spec_from_file_location(
      os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def validate(c: ml_collections.ConfigDict, batch_divisor: int = 1) -> None:
  """Raises ValueError naming the first bad field. Runs before anything is compiled."""

  def need(ok: bool, field: str, why: str):
    if not ok:
      raise ValueError(f"config.{field}: {why}")

  need(c.rl.group_size >= 1, "rl.group_size", f"must be >= 1, got {c.rl.group_size}")
  need(isinstance(c.model.remat, bool) or c.model.remat in REMAT_POLICIES, "model.remat",
       f"must be one of {REMAT_POLICIES} (or a bool), got {c.model.remat!r}")
  for field in ("dtype", "param_dtype"):
    need(c.model[field] in ("float32", "bfloat16", "float16"), f"model.{field}",
         f"must be float32, bfloat16 or float16, got {c.model[field]!r}")
  need(not (c.algorithm.advantage in GROUP_BASELINE_ESTIMATORS and c.rl.group_size < 2),
       "rl.group_size", f"advantage '{c.algorithm.advantage}' uses a group baseline and needs "
       f"group_size >= 2, got {c.rl.group_size}")
  try:
    registry.ADVANTAGES[c.algorithm.advantage]
    registry.POLICY_LOSSES[c.algorithm.policy_loss]
    registry.check_aggregation(c.algorithm.loss_agg)
  except ValueError as e:
    raise ValueError(f"config.algorithm: {e}") from None
  for phase in ("sft", "rl"):
    need(c[phase].steps >= 0, f"{phase}.steps", f"must be >= 0, got {c[phase].steps}")
    need(c[phase].optimizer.learning_rate > 0, f"{phase}.optimizer.learning_rate", "must be > 0")
  need(c.sft.batch_size % batch_divisor == 0, "sft.batch_size",
       f"{c.sft.batch_size} is not divisible by the mesh batch shards ({batch_divisor})")
  need(c.rl.batch_size % batch_divisor == 0, "rl.batch_size",
       f"{c.rl.batch_size} is not divisible by the mesh batch shards ({batch_divisor})")
  rollouts = c.rl.batch_size * c.rl.group_size
  per_update = c.rl.minibatches * c.rl.microbatches
  need(rollouts % per_update == 0, "rl.minibatches",
       f"rl.batch_size * rl.group_size = {rollouts} must be divisible by rl.minibatches * "
       f"rl.microbatches = {per_update}")
  need(c.eval.batch_size % batch_divisor == 0, "eval.batch_size",
       f"{c.eval.batch_size} is not divisible by the mesh batch shards ({batch_divisor})")
  need(c.eval.num_prompts % c.eval.batch_size == 0 or c.eval.num_prompts < c.eval.batch_size,
       "eval.num_prompts", f"{c.eval.num_prompts} must be a multiple of eval.batch_size "
       f"({c.eval.batch_size})")
  need(c.rl.temperature >= 0, "rl.temperature", "must be >= 0")
  need(0 < c.rl.top_p <= 1, "rl.top_p", f"must be in (0, 1], got {c.rl.top_p}")
  need(c.checkpoint.every > 0, "checkpoint.every", "must be > 0")
  need(c.eval.every > 0, "eval.every", "must be > 0")
  need(c.sft.eval_every > 0, "sft.eval_every", "must be > 0")
  need(0 <= c.sft.target_accuracy <= 1, "sft.target_accuracy", "must be in [0, 1]")
  if c.algorithm.advantage in PRM_ESTIMATORS:
    need(c.prm.steps > 0, "prm.steps", f"advantage '{c.algorithm.advantage}' needs a trained "
         f"process reward model: prm.steps must be > 0, got {c.prm.steps}")
    need(bool(c.prm.step_delimiter), "prm.step_delimiter", "must be a non-empty string")
    need(c.prm.group_size >= 1, "prm.group_size", f"must be >= 1, got {c.prm.group_size}")
    need(c.prm.batch_size >= 1, "prm.batch_size", f"must be >= 1, got {c.prm.batch_size}")
    need(c.prm.batch_size % batch_divisor == 0, "prm.batch_size",
         f"{c.prm.batch_size} is not divisible by the mesh batch shards ({batch_divisor})")
    need(c.prm.eval_prompts > 0, "prm.eval_prompts", "must be > 0")
    need(c.prm.temperature >= 0, "prm.temperature", "must be >= 0")
    need(c.prm.optimizer.learning_rate > 0, "prm.optimizer.learning_rate", "must be > 0")
  need(c.data.prompt_bucket >= 0, "data.prompt_bucket",
       f"must be >= 0 (0 disables bucketing), got {c.data.prompt_bucket}")
  need(c.model.vocab_size >= 0, "model.vocab_size", f"must be >= 0, got {c.model.vocab_size}")
  need(c.model.vocab_multiple >= 1, "model.vocab_multiple",
       f"must be >= 1, got {c.model.vocab_multiple}")
  need(c.init.kind == "scratch" or (c.model.vocab_size == 0 and c.model.vocab_multiple == 1),
       "model.vocab_size", f"init.kind={c.init.kind!r} takes the vocabulary from the checkpoint; "
       "leave model.vocab_size=0 and model.vocab_multiple=1")
  need(c.algorithm.high_entropy_frac is None or 0 < c.algorithm.high_entropy_frac <= 1,
       "algorithm.high_entropy_frac", "must be in (0, 1] or None")
