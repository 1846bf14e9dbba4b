"""The default run config every `configs/*.py` starts from, and its validation.

All fields exist here with their defaults; `validate` refuses a field that is not one of them
(a typo in `--config.a.b=v`, with the closest field), checks every value against its rule in
`RULES` (one per leaf), the method's components and their keyword arguments
(`algorithms.method.problems`), then the relations between fields, before anything compiles.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from rlvr_jax import config_rules, environments
from rlvr_jax.config_legacy import legacy_fields, new_spelling
from rlvr_jax.algorithms import losses, registry, rollout_correction
from rlvr_jax.algorithms.method import Method, problems
from rlvr_jax.config_rules import Bool, Choice, Dict, Float, Int, Registered, Str
from rlvr_jax.data import synthetic
from rlvr_jax.models import lora
from rlvr_jax.models.config import DECODE_WEIGHT_GATHER, REMAT_POLICIES

# algorithm.dynamic_sampling: "none"; "mask" drops zero-variance groups from the loss (the batch
# shrinks); "fill" samples oversample_factor x rl.batch_size groups and learns on rl.batch_size
# kept ones (DAPO §3.2; algorithms/filters.py).
DYNAMIC_SAMPLING = ("none", "mask", "fill")


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
  # record_example_accuracy: each RL metrics row lists the batch's train-source rows
  # (example_index) and the fraction of each one's G samples that were correct
  # (example_accuracy), the history 1-shot RLVR ranks examples by (rlvr_jax.data.one_shot).
  # rl_train_size > 0: the RL phase draws from that many train examples only (train_size is
  # the SFT's pool and, at 0, RL's too), e.g. 1-shot RLVR's pool of which every epoch is scored.
  # one_shot_from: such a run's workdir; this run's RL then trains on the single example ranked
  # one_shot_rank (1 = pi_1, the largest historical variance) there, repeated to fill batches.
  # env: an environment's name (rlvr_jax.environments, `@register_env`) makes every RL step a
  # batch of multi-turn episodes (None: the single-turn compiled step); env_kw: its keyword
  # arguments. An episode has at most max_turns assistant turns of rl.max_new_tokens each, ended
  # by EOS or by the turn_stop string ("": EOS only), and episode_tokens tokens after the prompt,
  # the policy's and the observations' (0: what max_turns full turns and observations hold);
  # an observation keeps its first observation_len tokens. The environments run in env_workers
  # threads; a call past env_timeout_s ends its episode with reward 0 (counted in env_errors).
  # stored_samples: a file of completions sampled before RL with their log-probs
  # (rlvr_jax/data/stored_samples.py; DPH-RL's `python -m rlvr_jax.prepare_dph`), read
  # when a component needs them (terms.dph): every RL step adds stored_samples_per_step of its
  # rows to the loss, and RL trains on the file's train_index prompts of the training source.
  c.data = ml_collections.ConfigDict(dict(train_size=1_000_000, eval_seed=1234, prompt_len=0,
                                          completion_len=0, answer_len=0, prompt_bucket=0,
                                          rl_train_size=0, record_example_accuracy=False,
                                          one_shot_from="", one_shot_rank=1,
                                          env=ml_collections.FieldReference(None, field_type=str),
                                          env_kw=ml_collections.ConfigDict(), max_turns=4,
                                          episode_tokens=0, observation_len=32, turn_stop="",
                                          env_workers=4, env_timeout_s=10.0,
                                          stored_samples="", stored_samples_per_step=0))
  # Where the policy comes from: "scratch" (random init, char tokenizer built from the task),
  # "hf" (a local HF directory) or "gguf" (a local .gguf file); dtype of the loaded weights.
  c.init = ml_collections.ConfigDict(dict(kind="scratch", path="", dtype="float32"))
  # vocab_size 0: the tokenizer's size; a larger value pads the embedding table (padding ids are
  # masked out of the logits). Either is then rounded up to a multiple of vocab_multiple (128 is
  # what TPUs want). Both apply to models trained from scratch; checkpoints bring their own.
  # dtype: compute; param_dtype: stored weights (logits, log-probs, losses and Adam moments are
  # float32 regardless); remat: "none" / "full" (per layer) / "dots_saveable"; cache_dtype: the
  # sampler's KV cache (None: dtype); unroll_layers: a Python loop over layers instead of a scan
  # (faster steps on CPU, compile time grows with depth); decode_weight_gather: with sharded
  # weights, "once" gathers all layers before the decode loop (fastest, one copy of the weights
  # per device while sampling), "per_layer" one layer at a time each token (least memory);
  # decode_cache_segments: the decode loop runs in this many segments whose KV cache ends where
  # the segment ends, so attention reads fewer empty slots (0: one per 32 new tokens, at most 8);
  # attention_chunk: training attention runs its queries in blocks of this many, so its memory
  # grows linearly in length (0: one block up to 1024 queries, blocks of 512 above);
  # logprob_chunk: completion log-probs are computed this many positions at a time, recomputing
  # each chunk's logits in the backward pass (0: all at once while one device's float32 logits
  # fit 256 MiB, else chunks that do; see models.token_logprobs).
  c.model = ml_collections.ConfigDict(dict(
      vocab_size=0, vocab_multiple=1, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128,
      head_dim=None, rope_theta=10_000.0, norm_eps=1e-6, qk_norm=False, qkv_bias=False,
      tie_embeddings=True, dtype="float32", param_dtype="float32", remat="none",
      attention_chunk=0,
      cache_dtype=ml_collections.FieldReference(None, field_type=str), unroll_layers=False,
      decode_weight_gather="once", decode_cache_segments=0, logprob_chunk=0))
  # LoRA (models/lora.py): rank > 0 trains low-rank adapters, scale alpha / rank, on the linear
  # weights whose names fully match `targets` (a regular expression over wq wk wv wo w_gate w_up
  # w_down) and freezes every base weight; the optimizer, its state and the checkpoints hold the
  # adapters alone, a KL term's reference is the base (adapters off), the sampler runs on merged
  # weights. The base must be rebuilt from the config on resume: init.* or sft.init_from, no SFT
  # phase in the run. dropout: PEFT's lora_dropout (0 only, for now: README, "LoRA adapters").
  # sampler: "unmerged" (x W + ((x A) B)·α/r, the training forward's arithmetic) or "merged"
  # (W + (α/r)·A B once per rollout: a second copy of the adapted weights while sampling, e.g.
  # Qwen2.5-7B on one device 92.7 instead of 68.6 GiB; as fast on CPU; models.lora.for_sampling).
  # rank 0: off, and every other config compiles the program it always did.
  c.lora = ml_collections.ConfigDict(dict(rank=0, alpha=16.0, dropout=0.0,
                                          targets="wq|wk|wv|wo|w_gate|w_up|w_down",
                                          sampler="unmerged"))
  # SFT stops early once held-out greedy accuracy reaches target_accuracy (0 disables).
  # init_from: an earlier run's workdir whose checkpoint 0 becomes this run's warm start (its SFT
  # policy; no SFT here). Ablations start every variant of a seed from one SFT this way; the
  # earlier run needs the same model (only its policy parameters are read).
  c.sft = ml_collections.ConfigDict(dict(steps=100, batch_size=32, optimizer=_optimizer(3e-3),
                                         init_from="",
                                         target_accuracy=0.0, eval_every=50))
  # ignore_eos: every completion runs max_new_tokens (benchmarks that must do a fixed amount of
  # work); the EOS token is then an ordinary token.
  # partial_rollouts: APRIL (training/april.py): decode partial_rollouts_factor x batch_size
  # groups, stop once batch_size are done, carry the rest to the next step in the train state.
  # decode_refill: in-flight refill (sampling.generate's decode_slots): decode_slots rows
  # (prompt, sample pairs) decode at once, a finished row's slot takes the next waiting row
  # inside the decode loop (0: sampling.auto_slots); the same tokens as without it. The KV
  # cache then holds decode_slots rows, not batch_size x group_size (BroRL's hundreds of
  # samples a prompt: benchmarks/MEMORY.md).
  # frozen_pass_chunks: the gradient-free passes over the rollout (behaviour log-probs with
  # several updates a rollout, a KL term's reference log-probs, critic values) run in this many
  # chunks, each group_size / frozen_pass_chunks samples of every prompt (training/row_chunks.py;
  # 1: every row at once); it divides group_size.
  # simulated_staleness: k > 0 samples with the policy of k updates ago, kept in the train state
  # (training/staleness.py; 0: the current policy, no copy), to study off-policy training.
  c.rl = ml_collections.ConfigDict(dict(
      steps=100, batch_size=16, group_size=8, max_new_tokens=0, temperature=1.0, top_k=0,
      top_p=1.0, ignore_eos=False, ppo_epochs=1, minibatches=1, microbatches=1,
      partial_rollouts=False, partial_rollouts_factor=2, decode_refill=False, decode_slots=0,
      frozen_pass_chunks=1, simulated_staleness=0, optimizer=_optimizer(1e-3)))
  # The method: an advantage estimator, a policy loss and loss terms, each a registered function
  # (docs/ALGORITHMS.md) whose keyword defaults these dicts override; a term is on when it is
  # listed, e.g. terms.kl = dict(coef=1e-3, kind="k3") (a KL loss term to a frozen reference).
  # Shared by the components: loss_agg and max_len (L_max; None: the completion length). Token
  # selection: high_entropy_frac (the 80/20 rule's top-rho entropy tokens; None: every token) and
  # its complement with high_entropy_invert. DAPO's filters: dynamic_sampling (see above) with
  # oversample_factor, and overlong_filter (truncated samples leave the loss). ProRL
  # (training/prorl.py): reset a KL term's reference and Adam's moments to the current policy
  # every N steps (0: never) and/or when held-out accuracy has not beaten its best by more than
  # min_delta for `patience` evaluations in a row (0: never). rollout_correction: the decoupled
  # objective's weight π_old/μ (sampler vs learner) around the policy loss, "none" or one of
  # algorithms/rollout_correction.py, whose caps rollout_correction_kw overrides.
  c.algorithm = ml_collections.ConfigDict(dict(
      advantage="grpo", advantage_kw=ml_collections.ConfigDict(), policy_loss="ppo",
      policy_loss_kw=ml_collections.ConfigDict(), terms=ml_collections.ConfigDict(),
      rollout_correction="none", rollout_correction_kw=ml_collections.ConfigDict(),
      loss_agg="token-mean", max_len=ml_collections.FieldReference(None, field_type=int),
      high_entropy_frac=ml_collections.FieldReference(None, field_type=float),
      high_entropy_invert=False, dynamic_sampling="none", oversample_factor=3,
      overlong_filter=False, ref_reset_every=0, ref_reset_patience=0, ref_reset_min_delta=0.0))
  # The critic's optimizer, used when a term trains a critic (terms.value; initialised from the
  # policy trunk).
  c.value = ml_collections.ConfigDict(dict(optimizer=_optimizer(1e-3)))
  # Process reward model for estimators that need step rewards (PURE): the policy trunk after
  # SFT plus a scalar head, trained for `steps` on the policy's own samples (`group_size` per
  # prompt at `temperature`) with step labels, then frozen. A step ends at a token whose text
  # ends with `step_delimiter`. init_from: an earlier PURE run's workdir whose checkpoint 0 holds
  # the PRM to use instead of training one (ablations train one PRM a seed and share it; that
  # run needs this run's model).
  c.prm = ml_collections.ConfigDict(dict(
      step_delimiter="\n\n", steps=100, batch_size=16, group_size=4, temperature=1.0,
      eval_prompts=64, optimizer=_optimizer(1e-3), init_from=""))
  # The optimizer of PRIME's implicit PRM (terms.prime): a copy of the policy after SFT, trained
  # every RL step on the outcome labels (one update per rollout batch).
  c.prime = ml_collections.ConfigDict(dict(optimizer=_optimizer(1e-3)))
  c.eval = ml_collections.ConfigDict(dict(every=25, num_prompts=256, batch_size=128))
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  c.checkpoint = ml_collections.ConfigDict(dict(every=25, keep=3, use_async=True))
  # Metrics go to metrics.jsonl and TensorBoard always; with wandb=True also to a Weights & Biases
  # run (the [wandb] extra) in `wandb_project` named `wandb_name` ("": the workdir's name), under
  # `wandb_entity` ("": the default). WANDB_MODE=offline and WANDB_DIR work as wandb documents.
  c.logging = ml_collections.ConfigDict(dict(wandb=False, wandb_project="rlvr_jax",
                                             wandb_name="", wandb_entity=""))
  # Multi-process (multi-host) run: jax.distributed.initialize() first, its settings from
  # JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID or auto-detected (SLURM, TPU).
  c.distributed = False
  # Fault injection (-1: off). sigkill_after_step: SIGKILL right after this RL step's checkpoint
  # save starts (with async saves, while its arrays are being written); sigkill_before_manifest:
  # SIGKILL once orbax has finished this step's checkpoint, before its content manifest is written.
  c.debug = ml_collections.ConfigDict(dict(sigkill_after_step=-1, sigkill_before_manifest=-1))
  return c


def load_config(spec: str) -> ml_collections.ConfigDict:
  """The config a `--config=` flag would give: "configs/quickstart.py" or
  "configs/quickstart.py:tiny" (the part after ':' is `get_config`'s argument). For notebooks,
  scripts and configs that derive from other configs; a relative path that is not found from
  the working directory is looked up in the checkout rlvr_jax runs from, so a config file kept
  anywhere can start from a shipped one."""
  path, arg = (spec, "") if os.path.isfile(spec) else spec.rpartition(":")[::2]
  checkout = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), path)
  if not os.path.isfile(path) and not os.path.isabs(path) and os.path.isfile(checkout):
    path = checkout  # "configs/quickstart.py" from anywhere: the checkout rlvr_jax runs from
  if not os.path.isfile(path):
    raise ValueError(f"config file {path!r} does not exist")
  module_spec = importlib.util.spec_from_file_location(
      os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def _optimizer_rules(prefix: str) -> dict[str, config_rules.Rule]:
  return {
      f"{prefix}.learning_rate": Float(gt=0),
      f"{prefix}.warmup_steps": Int(ge=0),
      f"{prefix}.schedule": Choice("constant", "cosine"),
      f"{prefix}.final_lr_frac": Float(ge=0, le=1),  # cosine: final lr = lr x this
      f"{prefix}.max_grad_norm": Float(gt=0),
      f"{prefix}.weight_decay": Float(ge=0),
      f"{prefix}.b1": Float(ge=0, lt=1),
      f"{prefix}.b2": Float(ge=0, lt=1),
  }


_DTYPES = ("float32", "bfloat16", "float16")


class _DynamicSampling(Choice):
  """The modes of algorithm.dynamic_sampling, which used to be a bool: say what replaced it."""

  def check(self, v):
    why = super().check(v)
    if why is not None and v in (True, False, "True", "False"):
      why += " (it was a bool: the old True, mask-only, is now 'mask'; False is 'none')"
    return why


# One rule per leaf of `base_config()` (and of any field a configs/*.py adds): `validate` fails on
# a leaf without one, and tests/test_config_rules.py walks every config in configs/. A new field is
# one line here; the ranges follow what the consuming code computes (docs/ALGORITHMS.md).
RULES: dict[str, config_rules.Rule] = {
    "seed": Int(ge=0),
    "task.name": Registered(synthetic.TASKS),
    "task.kwargs": Dict(checked_by="the task's constructor (data.synthetic.make_task)"),
    "data.train_size": Int(ge=1),
    "data.eval_seed": Int(ge=0),
    "data.prompt_len": Int(ge=0),  # 0: derived from a char-level task
    "data.completion_len": Int(ge=0),
    "data.answer_len": Int(ge=0),
    "data.prompt_bucket": Int(ge=0),  # 0 disables bucketing
    "data.rl_train_size": Int(ge=0),  # 0: data.train_size
    "data.record_example_accuracy": Bool(),
    "data.one_shot_from": Str(),  # "": train on the whole train split
    "data.one_shot_rank": Int(ge=1),  # checked against the prior run's ranking when it is read
    "data.env": Registered(environments.ENVS, optional=True),  # None: single-turn
    "data.env_kw": Dict(checked_by="the environment's constructor (environments.make_env)"),
    "data.max_turns": Int(ge=1),
    "data.episode_tokens": Int(ge=0),  # 0: max_turns full turns and observations
    "data.observation_len": Int(ge=1),
    "data.turn_stop": Str(),  # "": a turn ends at EOS only
    "data.env_workers": Int(ge=1),
    "data.env_timeout_s": Float(gt=0),
    "data.stored_samples": Str(),  # "": none; the file is read and checked by the run builder
    "data.stored_samples_per_step": Int(ge=0),
    "init.kind": Choice("scratch", "hf", "gguf"),
    "init.path": Str(),
    "init.dtype": Choice(*_DTYPES),
    "model.vocab_size": Int(ge=0),  # 0: the tokenizer's size
    "model.vocab_multiple": Int(ge=1),
    "model.d_model": Int(ge=1),
    "model.n_layers": Int(ge=1),
    "model.n_heads": Int(ge=1),
    "model.n_kv_heads": Int(ge=1),
    "model.d_ff": Int(ge=1),
    "model.head_dim": Int(ge=2, optional=True),  # None: d_model // n_heads
    "model.rope_theta": Float(gt=0),
    "model.norm_eps": Float(gt=0),
    "model.qk_norm": Bool(),
    "model.qkv_bias": Bool(),
    "model.tie_embeddings": Bool(),
    "model.dtype": Choice(*_DTYPES),
    "model.param_dtype": Choice(*_DTYPES),
    "model.remat": Choice(*REMAT_POLICIES, False, True),  # the old bools: none / full
    "model.attention_chunk": Int(ge=0),  # 0: automatic (see ModelConfig)
    "model.cache_dtype": Choice(None, *_DTYPES),  # None: model.dtype
    "model.unroll_layers": Bool(),
    "model.decode_weight_gather": Choice(*DECODE_WEIGHT_GATHER),
    "model.decode_cache_segments": Int(ge=0),  # 0: automatic (see ModelConfig)
    "model.logprob_chunk": Int(ge=0),  # 0: automatic (see ModelConfig)
    "lora.rank": Int(ge=0),  # 0: off
    "lora.alpha": Float(gt=0),
    "lora.dropout": Float(ge=0, lt=1),  # PEFT's lora_dropout (only 0 runs: _check_lora)
    "lora.targets": Str(nonempty=True),  # matched against the names in models.lora.LINEAR_IN_AXES
    "lora.sampler": Choice("merged", "unmerged"),
    "sft.steps": Int(ge=0),
    "sft.batch_size": Int(ge=1),
    **_optimizer_rules("sft.optimizer"),
    "sft.target_accuracy": Float(ge=0, le=1),  # 0 disables early stopping
    "sft.eval_every": Int(ge=1),
    "sft.init_from": Str(),  # "": run the SFT phase
    "rl.steps": Int(ge=0),
    "rl.batch_size": Int(ge=1),
    "rl.group_size": Int(ge=1),
    "rl.max_new_tokens": Int(ge=0),  # 0: data's completion length
    "rl.temperature": Float(ge=0),  # 0: greedy
    "rl.top_k": Int(ge=0),  # 0 disables
    "rl.top_p": Float(gt=0, le=1),  # 1 disables
    "rl.ignore_eos": Bool(),
    "rl.ppo_epochs": Int(ge=1),
    "rl.minibatches": Int(ge=1),
    "rl.microbatches": Int(ge=1),
    "rl.partial_rollouts": Bool(),
    "rl.partial_rollouts_factor": Int(ge=2),  # pool = factor x batch_size groups
    "rl.decode_refill": Bool(),
    "rl.decode_slots": Int(ge=0),  # rows decoding at once with decode_refill (0: automatic)
    "rl.frozen_pass_chunks": Int(ge=1),  # chunks of the gradient-free passes (1: one pass)
    "rl.simulated_staleness": Int(ge=0),  # 0: sample with the current policy
    **_optimizer_rules("rl.optimizer"),
    "algorithm.advantage": Registered(registry.ADVANTAGES),
    "algorithm.advantage_kw": Dict(checked_by="the estimator's keyword arguments"),
    "algorithm.policy_loss": Registered(registry.POLICY_LOSSES),
    "algorithm.policy_loss_kw": Dict(checked_by="the policy loss's keyword arguments"),
    "algorithm.terms": Dict(checked_by="the registered terms and their keyword arguments"),
    "algorithm.rollout_correction": Registered(rollout_correction.CORRECTIONS),
    "algorithm.rollout_correction_kw": Dict(checked_by="the rollout correction's caps"),
    "algorithm.loss_agg": Choice(*losses.AGGREGATIONS),
    "algorithm.max_len": Int(ge=1, optional=True),  # None: the completion length
    "algorithm.high_entropy_frac": Float(gt=0, le=1, optional=True),  # None: every token
    # True: train on the complement of the top-ρ entropy tokens (the lowest 1 − ρ); needs a ρ
    "algorithm.high_entropy_invert": Bool(),
    "algorithm.dynamic_sampling": _DynamicSampling(*DYNAMIC_SAMPLING),
    "algorithm.oversample_factor": Int(ge=1),  # k: groups sampled per kept one, with "fill"
    "algorithm.overlong_filter": Bool(),  # truncated completions (no EOS) leave the loss
    "algorithm.ref_reset_every": Int(ge=0),  # 0: no scheduled reset
    "algorithm.ref_reset_patience": Int(ge=0),  # evaluations; 0: no plateau reset
    "algorithm.ref_reset_min_delta": Float(ge=0),
    **_optimizer_rules("value.optimizer"),
    "prm.step_delimiter": Str(),  # non-empty when a PRM is used (cross-field check below)
    "prm.steps": Int(ge=0),
    "prm.batch_size": Int(ge=1),
    "prm.group_size": Int(ge=1),
    "prm.temperature": Float(ge=0),
    "prm.eval_prompts": Int(ge=1),
    "prm.init_from": Str(),  # "": train the PRM here
    **_optimizer_rules("prm.optimizer"),
    **_optimizer_rules("prime.optimizer"),
    "eval.every": Int(ge=1),
    "eval.num_prompts": Int(ge=1),
    "eval.batch_size": Int(ge=1),
    "mesh.data": Int(ge=-1),  # -1: the remaining devices; 0 is refused by parallel.make_mesh
    "mesh.fsdp": Int(ge=-1),
    "mesh.tensor": Int(ge=-1),
    "checkpoint.every": Int(ge=1),
    "checkpoint.keep": Int(ge=1),
    "checkpoint.use_async": Bool(),
    "logging.wandb": Bool(),
    "logging.wandb_project": Str(nonempty=True),
    "logging.wandb_name": Str(),
    "logging.wandb_entity": Str(),
    "distributed": Bool(),
    "debug.sigkill_after_step": Int(ge=-1),  # -1 disables
    "debug.sigkill_before_manifest": Int(ge=-1),  # -1 disables
}


def validate(c: ml_collections.ConfigDict, batch_divisor: int = 1) -> None:
  """Raises ValueError naming the first bad field. Runs before anything is compiled: the old
  spelling of the method (with the new one), every leaf against its rule in `RULES`, the
  components and their keywords (`algorithm.method.problems`), then the checks that relate
  several fields."""
  legacy = legacy_fields(c.to_dict())
  if legacy:
    raise ValueError(f"config.{legacy[0]}: the method is now spelled with components; write "
                     f"{new_spelling(c.to_dict())} (docs/ALGORITHMS.md)")
  bad = config_rules.violations(c, RULES)
  bad = bad or problems(c.algorithm, group_size=c.rl.group_size,
                        updates_per_rollout=c.rl.ppo_epochs * c.rl.minibatches)
  bad = bad or rollout_correction.problems(c.algorithm)
  if bad:
    raise ValueError(bad[0] + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
  _check_relations(c, batch_divisor)


def _check_relations(c: ml_collections.ConfigDict, batch_divisor: int) -> None:
  """Checks between fields whose values each passed their own rule."""

  def need(ok: bool, field: str, why: str):
    if not ok:
      raise ValueError(f"config.{field}: {why}")

  method = Method.from_config(c.algorithm)
  need(not c.sft.init_from or os.path.isdir(os.path.join(c.sft.init_from, "checkpoints")),
       "sft.init_from", f"{c.sft.init_from!r} holds no checkpoints/ directory (it must be the "
       "--workdir of an earlier run)")
  need(not c.prm.init_from or os.path.isdir(os.path.join(c.prm.init_from, "checkpoints")),
       "prm.init_from", f"{c.prm.init_from!r} holds no checkpoints/ directory (it must be the "
       "--workdir of an earlier PURE run)")
  need(not c.data.one_shot_from
       or os.path.isfile(os.path.join(c.data.one_shot_from, "metrics.jsonl")),
       "data.one_shot_from", f"{c.data.one_shot_from!r} holds no metrics.jsonl (it must be the "
       "--workdir of an earlier run with data.record_example_accuracy=True)")
  need(not c.algorithm.overlong_filter or not c.rl.ignore_eos, "algorithm.overlong_filter",
       "filters completions that never emit EOS, and rl.ignore_eos=True makes every completion so")
  need(c.algorithm.dynamic_sampling != "fill" or c.algorithm.oversample_factor >= 2,
       "algorithm.oversample_factor", f"dynamic_sampling='fill' over-samples prompt groups to "
       f"refill the dropped ones and needs oversample_factor >= 2, got "
       f"{c.algorithm.oversample_factor}")
  need(not c.algorithm.high_entropy_invert or c.algorithm.high_entropy_frac is not None,
       "algorithm.high_entropy_invert", "inverts the top-ρ entropy mask and needs "
       "algorithm.high_entropy_frac = ρ (e.g. 0.2 trains on the 80% lowest-entropy tokens)")
  kl_terms = [t.name for t in method.terms_training("policy") if "ref_logp" in t.component.needs]
  for field in ("ref_reset_every", "ref_reset_patience"):
    need(not c.algorithm[field] or bool(kl_terms), f"algorithm.{field}",
         "resets the reference policy of a KL term (ProRL) and needs one: add "
         "algorithm.terms.kl = {'coef': ...}")
  demo_shares = c.rl.minibatches * c.rl.microbatches
  need("demos" not in method.needs or c.rl.batch_size % demo_shares == 0, "rl.batch_size",
       f"with demonstrations in the loss each of the rl.minibatches * rl.microbatches = "
       f"{demo_shares} "
       f"updates takes an equal share of the {c.rl.batch_size} demonstrations; make "
       "rl.batch_size a multiple of it")
  _check_stored_samples(c, method, need, batch_divisor)
  for phase in ("sft", "rl"):
    need(c[phase].batch_size % batch_divisor == 0, f"{phase}.batch_size",
         f"{c[phase].batch_size} is not divisible by the mesh batch shards ({batch_divisor})")
  rollouts = c.rl.batch_size * c.rl.group_size
  per_update = c.rl.minibatches * c.rl.microbatches
  need(rollouts % per_update == 0, "rl.minibatches",
       f"rl.batch_size * rl.group_size = {rollouts} must be divisible by rl.minibatches * "
       f"rl.microbatches = {per_update}")
  need(c.rl.group_size % c.rl.frozen_pass_chunks == 0, "rl.frozen_pass_chunks",
       f"{c.rl.frozen_pass_chunks} chunks must divide rl.group_size = {c.rl.group_size} (each "
       "chunk holds an equal share of every prompt's samples)")
  need(c.eval.batch_size % batch_divisor == 0, "eval.batch_size",
       f"{c.eval.batch_size} is not divisible by the mesh batch shards ({batch_divisor})")
  need(c.eval.num_prompts % c.eval.batch_size == 0 or c.eval.num_prompts < c.eval.batch_size,
       "eval.num_prompts", f"{c.eval.num_prompts} must be a multiple of eval.batch_size "
       f"({c.eval.batch_size})")
  need(not c.prm.init_from or method.needs_prm, "prm.init_from",
       f"advantage '{c.algorithm.advantage}' uses no process reward model; prm.init_from is for "
       f"estimators that need step rewards")
  if method.needs_prm:
    need(c.prm.steps > 0 or bool(c.prm.init_from), "prm.steps",
         f"advantage '{c.algorithm.advantage}' needs a trained process reward model: prm.steps "
         f"must be > 0 (or prm.init_from set), got {c.prm.steps}")
    need(bool(c.prm.step_delimiter), "prm.step_delimiter", "must be a non-empty string")
    need(c.prm.batch_size % batch_divisor == 0, "prm.batch_size",
         f"{c.prm.batch_size} is not divisible by the mesh batch shards ({batch_divisor})")
  need(c.init.kind == "scratch" or (c.model.vocab_size == 0 and c.model.vocab_multiple == 1),
       "model.vocab_size", f"init.kind={c.init.kind!r} takes the vocabulary from the checkpoint; "
       "leave model.vocab_size=0 and model.vocab_multiple=1")
  need(not c.logging.wandb or importlib.util.find_spec("wandb") is not None, "logging.wandb",
       "True needs the [wandb] extra: pip install 'rlvr_jax[wandb]'")
  need(c.rl.decode_refill or not c.rl.decode_slots, "rl.decode_slots",
       f"{c.rl.decode_slots} rows decoding at once is read only with rl.decode_refill=True; "
       "set rl.decode_refill=True, or leave rl.decode_slots=0")
  if c.rl.partial_rollouts:
    need(not c.rl.decode_refill, "rl.decode_refill", "APRIL (rl.partial_rollouts) decodes "
         "its own pool of carried and fresh groups (sampling.resume) and stops once "
         "rl.batch_size are done, which in-flight refill does not; turn one of them off")
    need(c.data.prompt_bucket == 0, "data.prompt_bucket", "must be 0 with rl.partial_rollouts: "
         "the carried rollout groups keep a fixed prompt width across steps")
    need("greedy_rewards" not in method.needs, "algorithm.advantage",
         f"'{c.algorithm.advantage}' needs a greedy completion of every trained prompt in the "
         "same step, which rl.partial_rollouts (APRIL) does not resume; use another estimator")
    need(c.algorithm.dynamic_sampling != "fill", "algorithm.dynamic_sampling", "'fill' "
         "over-samples fresh groups every step, which rl.partial_rollouts (APRIL) also does; "
         "use one of them ('mask' filters zero-variance groups with APRIL)")
    need("demos" not in method.needs, "algorithm.terms", "carried rollout groups do not keep "
         "their demonstrations; turn rl.partial_rollouts off to mix SFT into the RL loss")
    need(not c.data.record_example_accuracy, "data.record_example_accuracy", "carried "
         "rollout groups do not keep their source index; turn rl.partial_rollouts off to "
         "record per-example accuracy")
  if c.data.env is not None:
    _check_env(c, method, need)
  if c.lora.rank:
    _check_lora(c, method, need)
  max_len = c.algorithm.max_len or c.rl.max_new_tokens  # DAPO's L_max (0: not known yet)
  buffer_len = method.advantage.kw.get("overlong_buffer_len", 0)
  need(not max_len or buffer_len <= max_len, "algorithm.advantage_kw.overlong_buffer_len",
       f"{buffer_len} is longer than the completion budget L_max = {max_len} "
       "(algorithm.max_len, else rl.max_new_tokens)")


def _check_stored_samples(c: ml_collections.ConfigDict, method: Method, need,
                          batch_divisor: int) -> None:
  """data.stored_samples is named exactly when a component needs stored samples, and its rows
  split evenly over the step's updates and the mesh."""
  users = ", ".join(t.component.label for t in method.terms if "stored_samples" in
                    t.component.needs) or "a component"
  if "stored_samples" not in method.needs:
    need(not c.data.stored_samples, "data.stored_samples", "no listed component reads stored "
         "samples (e.g. algorithm.terms.dph = {}); leave data.stored_samples empty")
    return
  need(bool(c.data.stored_samples), "data.stored_samples", f"{users} needs a file of stored "
       "samples: make one with python -m rlvr_jax.prepare_dph --config=... --out=FILE")
  per_step, shares = c.data.stored_samples_per_step, c.rl.minibatches * c.rl.microbatches
  need(per_step >= 1 and per_step % shares == 0 and per_step % batch_divisor == 0,
       "data.stored_samples_per_step", f"{per_step} stored rows a step must be >= 1 and a "
       f"multiple of rl.minibatches * rl.microbatches = {shares} (each update takes an equal "
       f"share) and of the mesh batch shards ({batch_divisor})")
  why = "is not supported with stored samples (data.stored_samples)"
  need(not c.rl.partial_rollouts, "rl.partial_rollouts", why)
  need(c.data.env is None, "data.env", why)
  need(not c.data.one_shot_from, "data.one_shot_from", f"{why}: the stored file's train_index "
       "chooses the RL prompts")


def _check_env(c: ml_collections.ConfigDict, method: Method, need) -> None:
  """What multi-turn episodes (data.env) do not combine with."""
  why = f"is not supported with data.env={c.data.env!r} (multi-turn episodes)"
  need(not c.rl.partial_rollouts, "rl.partial_rollouts", why)
  need(c.algorithm.dynamic_sampling != "fill", "algorithm.dynamic_sampling", f"'fill' {why}; "
       "'mask' is")
  need("greedy_rewards" not in method.needs, "algorithm.advantage",
       f"'{c.algorithm.advantage}' needs greedy completions, which multi-turn episodes "
       "(data.env) do not sample")
  token_level = sorted(method.needs & {"values", "step_rewards", "process_rewards"})
  need(not token_level, "algorithm", f"a method that needs {', '.join(token_level)} (per-token "
       f"states or step scores) {why}: the observations' tokens would count as the policy's "
       "states; use an outcome estimator (grpo, rloo, ...)")
  need(not c.distributed, "distributed", why)
  need(c.rl.simulated_staleness == 0, "rl.simulated_staleness", why)
  need(c.data.episode_tokens == 0 or c.data.episode_tokens >= c.rl.max_new_tokens,
       "data.episode_tokens", f"{c.data.episode_tokens} is less than one turn "
       f"(rl.max_new_tokens = {c.rl.max_new_tokens})")


def _check_lora(c: ml_collections.ConfigDict, method: Method, need) -> None:
  """What LoRA adapters (lora.rank > 0) need and do not combine with."""
  lora.LoraConfig.from_config(c.lora).target_names()  # a pattern matching nothing fails here
  need(c.sft.steps == 0 or bool(c.sft.init_from), "sft.steps",
       f"{c.sft.steps} SFT steps would train the base weights the adapters sit on, which no "
       "checkpoint keeps (it holds the adapters alone), so a resume could not rebuild them: set "
       "sft.steps=0, or run the warm start as its own run and point sft.init_from at it")
  need(c.lora.dropout == 0, "lora.dropout", f"{c.lora.dropout}: dropout on the adapters' input "
       "is not implemented (it needs a random key in the update's forward); use 0")
  why = "is not supported with LoRA (lora.rank > 0)"
  need(not (c.algorithm.ref_reset_every or c.algorithm.ref_reset_patience),
       "algorithm.ref_reset_every", f"a ProRL reference reset {why}: the reference is the "
       "base weights (adapters off), not a copy that could be reset")
  need(not c.rl.get("simulated_staleness", 0), "rl.simulated_staleness",
       f"simulated staleness {why} (its queue would copy the base weights each step)")
  need(not method.has_critic, "algorithm.terms", f"a critic (terms.value) {why}")
  need(not method.has_implicit_prm, "algorithm.terms", f"PRIME's implicit PRM {why}")
  need(not method.needs_prm, "algorithm.advantage", f"a process reward model {why}")
