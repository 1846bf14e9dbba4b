"""Peer benchmark: Hugging Face TRL `GRPOTrainer` GRPO steps on a small randomly initialised model,
CPU: a `Qwen2ForCausalLM` (QKV bias) for the "qwen2" sizes, a `LlamaForCausalLM` (no biases) for the
"llama" ones (SmolLM2).

Run with TRL's own virtualenv (PyPI trl, CPU torch, transformers), e.g.

  /work/peers/trl/bin/python benchmarks/peers/trl_grpo.py --size tiny --steps 10 --warmup 2 --out trl_tiny.json

Workloads and protocol: sizes.py next to this file. One trainer step here is one generation of
prompts x G completions (transformers `generate`, no vLLM) followed by ONE optimizer step on all of
those rows (num_iterations=1, steps_per_generation=1, gradient_accumulation_steps=1,
per_device_train_batch_size=prompts*G), beta=0 (no reference model), fp32, AdamW, loss_type "dapo"
(TRL's default: token mean over the whole batch). Completions are forced to exactly `new_tokens`
tokens with min_new_tokens = max_new_tokens = new_tokens.

Timing is observation only: a TrainerCallback stamps on_step_begin/on_step_end (and the optimizer
step), and thin wrappers time `model.generate`, `trainer._generate_and_score_completions` and
`trainer.compute_loss` without changing what they do. Everything offline: the tokenizer is a
word-level vocabulary built in-process, the model comes from a Qwen2Config / LlamaConfig.
"""

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sizes import SIZES, arch, describe  # noqa: E402

import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from transformers import (LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast,  # noqa: E402
                          Qwen2Config, Qwen2ForCausalLM, TrainerCallback)
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"


def make_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
  """Word-level tokenizer: ids 0..2 are pad/eos/unk, then words w3..w{V-1}; exactly V entries."""
  vocab = {PAD: 0, EOS: 1, UNK: 2}
  for i in range(3, vocab_size):
    vocab[f"w{i}"] = i
  tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
  tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
  fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                 padding_side="left", truncation_side="left")
  assert len(fast) == vocab_size, (len(fast), vocab_size)
  return fast


def make_prompts(n: int, prompt_len: int, vocab_size: int, seed: int) -> list:
  g = torch.Generator().manual_seed(seed)
  ids = torch.randint(3, vocab_size, (n, prompt_len), generator=g)
  return [" ".join(f"w{int(t)}" for t in row) for row in ids]


def length_reward(completions, **kwargs):
  """Cheap Python reward: characters in the decoded completion (varies with the sampled words)."""
  return [float(len(c)) for c in completions]


class StepTimer(TrainerCallback):
  def __init__(self):
    self.begin = None
    self.step_times = []   # on_step_begin -> on_step_end: generate+score+forward+backward+clip+optimizer
    self.wall_times = []   # on_step_end -> next on_step_end: also data fetch + TRL/Trainer logging hooks
    self.opt_times = []
    self._last_end = None
    self._opt_begin = None

  def on_step_begin(self, args, state, control, **kw):
    self.begin = time.perf_counter()

  def on_pre_optimizer_step(self, args, state, control, **kw):
    self._opt_begin = time.perf_counter()

  def on_optimizer_step(self, args, state, control, **kw):
    self.opt_times.append(time.perf_counter() - self._opt_begin)

  def on_step_end(self, args, state, control, **kw):
    now = time.perf_counter()
    self.step_times.append(now - self.begin)
    if self._last_end is not None:
      self.wall_times.append(now - self._last_end)
    else:
      self.wall_times.append(None)
    self._last_end = now


def timed(store: list, fn):
  def wrapper(*a, **k):
    t0 = time.perf_counter()
    out = fn(*a, **k)
    store.append(time.perf_counter() - t0)
    return out
  return wrapper


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--warmup", type=int, default=1)
  ap.add_argument("--out", default=None)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--gradient-checkpointing", action="store_true",
                  help="TRL's own default is True; off by default here (see notes)")
  args = ap.parse_args()
  s = SIZES[args.size]
  P, G, T = s["prompts"], s["group"], s["new_tokens"]
  rows = P * G
  total = args.warmup + args.steps

  torch.manual_seed(args.seed)
  tokenizer = make_tokenizer(s["vocab"])
  a = arch(args.size)
  common = dict(
      vocab_size=s["vocab"], hidden_size=s["d_model"], intermediate_size=s["d_ff"],
      num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
      num_key_value_heads=s["kv_heads"], head_dim=s["d_model"] // s["heads"],
      rope_theta=a["rope_theta"], rms_norm_eps=a["norm_eps"], tie_word_embeddings=True,
      torch_dtype=torch.float32, pad_token_id=tokenizer.pad_token_id,
      eos_token_id=tokenizer.eos_token_id, bos_token_id=None, use_cache=True)
  if a["family"] == "qwen2":
    model = Qwen2ForCausalLM(Qwen2Config(**common)).to(torch.float32)
  else:  # SmolLM2 is a Llama: no bias on any projection
    model = LlamaForCausalLM(LlamaConfig(**common, attention_bias=False, mlp_bias=False)
                             ).to(torch.float32)
  assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "untied"
  has_bias = model.model.layers[0].self_attn.q_proj.bias is not None
  assert has_bias == a["qkv_bias"], f"QKV bias {has_bias}, {a['family']} wants {a['qkv_bias']}"
  n_params = sum(p.numel() for p in model.parameters())

  prompts = make_prompts(P * total * 2, s["prompt_len"], s["vocab"], args.seed)
  assert all(len(tokenizer(p)["input_ids"]) == s["prompt_len"] for p in prompts)
  dataset = Dataset.from_dict({"prompt": prompts})

  out_dir = tempfile.mkdtemp(prefix="trl_grpo_bench_")
  cfg = GRPOConfig(
      output_dir=out_dir,
      use_cpu=True,
      seed=args.seed,
      max_steps=total,
      per_device_train_batch_size=rows,      # all prompts x G rows in the one micro-batch
      gradient_accumulation_steps=1,          # -> steps_per_generation = 1, generation_batch_size = rows
      num_generations=G,
      num_iterations=1,
      beta=0.0,
      loss_type="dapo",                       # TRL default, token mean over the batch
      max_completion_length=T,
      generation_kwargs={"min_new_tokens": T},  # EOS masked until T tokens -> every completion is T long
      temperature=1.0, top_p=1.0, top_k=0,
      bf16=False, fp16=False,
      # transformers 5.24 name; TRL's config defaults the deprecated alias gradient_checkpointing=True
      activation_checkpointing=args.gradient_checkpointing,
      report_to="none",
      save_strategy="no",
      logging_steps=10**9,
      disable_tqdm=True,
      log_completions=False,
      dataloader_num_workers=0,
  )
  assert cfg.steps_per_generation == 1 and cfg.generation_batch_size == rows, (
      cfg.steps_per_generation, cfg.generation_batch_size)

  timer = StepTimer()
  trainer = GRPOTrainer(model=model, reward_funcs=length_reward, args=cfg, train_dataset=dataset,
                        processing_class=tokenizer, callbacks=[timer])

  phases = {"generate": [], "rollout": [], "loss_forward": []}
  lengths_seen, trl_min_len, trl_max_len = [], [], []
  gen_model = trainer.model
  gen_model.generate = timed(phases["generate"], gen_model.generate)
  trainer._generate_and_score_completions = timed(phases["rollout"],
                                                  trainer._generate_and_score_completions)
  trainer.compute_loss = timed(phases["loss_forward"], trainer.compute_loss)
  orig_generate = trainer._generate

  def checked_generate(prompts_):
    out = orig_generate(prompts_)
    lengths_seen.extend(len(c) for c in out[1])   # completion_ids per row
    m = trainer._metrics["train"]                 # TRL's own per-generation length metrics
    trl_min_len.append(m["completions/min_length"][-1])
    trl_max_len.append(m["completions/max_length"][-1])
    return out
  trainer._generate = checked_generate

  ckpt_active = trainer.model.is_activation_checkpointing
  t0 = time.perf_counter()
  trainer.train()
  train_total = time.perf_counter() - t0

  min_len, max_len = trl_min_len, trl_max_len
  checked = (len(lengths_seen) == rows * total and all(l == T for l in lengths_seen)
             and len(min_len) == total and all(x == T for x in min_len + max_len))
  if not checked:
    print(f"WARNING: completion lengths not all {T}: seen {sorted(set(lengths_seen))}, "
          f"TRL min {min_len} max {max_len}", file=sys.stderr)
  assert len(timer.step_times) == total, (len(timer.step_times), total)
  assert len(phases["generate"]) == total, phases["generate"]

  W = args.warmup
  keep = lambda xs: xs[W:]
  c = model.config
  result = {
      "framework": "trl",
      "version": trl.__version__,
      "torch": torch.__version__,
      "transformers": transformers.__version__,
      "size": args.size,
      "workload": describe(args.size),
      "step_times": keep(timer.step_times),
      "wall_step_times": keep(timer.wall_times),
      "phase_times": {
          "generate": keep(phases["generate"]),
          "rollout": keep(phases["rollout"]),
          "loss_forward": keep(phases["loss_forward"]),
          "optimizer_step": keep(timer.opt_times),
      },
      "warmup_step_times": timer.step_times[:W],
      "dims": {
          "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
          "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_hidden_layers,
          "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_key_value_heads,
          "head_dim": getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads,
          "tie_word_embeddings": bool(getattr(c, "tie_word_embeddings", None)
                                      if getattr(c, "tie_word_embeddings", None) is not None
                                      else c.get_text_config().tie_word_embeddings),
          "qkv_bias": model.model.layers[0].self_attn.q_proj.bias is not None,
          "family": a["family"], "model_class": type(model).__name__,
          "dtype": str(next(model.parameters()).dtype),
          "attn_implementation": getattr(c, "_attn_implementation", None),
          "params": n_params,
      },
      "rows": rows,
      "prompts": P, "group": G,
      "new_tokens": T,
      "prompt_len": s["prompt_len"],
      "completion_lengths_checked": bool(checked),
      "completion_lengths_seen": sorted(set(lengths_seen)),
      "torch_threads": torch.get_num_threads(),
      "train_total_s": train_total,
      "trl_settings": {
          "per_device_train_batch_size": cfg.per_device_train_batch_size,
          "num_generations": cfg.num_generations,
          "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
          "steps_per_generation": cfg.steps_per_generation,
          "generation_batch_size": cfg.generation_batch_size,
          "num_iterations": cfg.num_iterations, "beta": cfg.beta, "loss_type": cfg.loss_type,
          "scale_rewards": cfg.scale_rewards, "epsilon": cfg.epsilon,
          "max_completion_length": cfg.max_completion_length,
          "generation_kwargs": cfg.generation_kwargs, "temperature": cfg.temperature,
          "top_p": cfg.top_p, "top_k": cfg.top_k,
          "optim": str(cfg.optim), "learning_rate": cfg.learning_rate,
          "weight_decay": cfg.weight_decay, "max_grad_norm": cfg.max_grad_norm,
          "lr_scheduler_type": str(cfg.lr_scheduler_type),
          "gradient_checkpointing": cfg.gradient_checkpointing,
          "model_activation_checkpointing_active": bool(ckpt_active), "bf16": cfg.bf16,
          "use_vllm": cfg.use_vllm, "use_cpu": cfg.use_cpu,
      },
      "notes": (
          "EOS is suppressed by transformers' min_new_tokens logits processor (EOS logit -inf until "
          "new_tokens), so EOS is never sampled, rather than sampled-but-ignored; the training "
          "log-probs use the unmasked distribution. "
          "TRL's training forward always computes per-token entropy (fused LM head with "
          "outputs=('log_probs','entropy')) for its 'entropy' metric; not removable without "
          "patching TRL. "
          "No separate old-logprob forward: TRL skips it when gradient_accumulation_steps % "
          "(steps_per_generation*num_iterations) == 0 (here 1 % 1) and uses per_token_logps.detach(). "
          "Gradient clipping at max_grad_norm=1.0 (Trainer default) and a linear LR schedule are "
          "part of each step. "
          + ("Gradient checkpointing ON (TRL default). " if cfg.gradient_checkpointing else
             "Gradient checkpointing OFF (TRL's default is True; disabled so the backward does not "
             "recompute the forward; pass --gradient-checkpointing for TRL's default). ")
          + "Generation runs HF generate with a dynamic KV cache in eager PyTorch "
          "(GRPOConfig builds its GenerationConfig with disable_compile=True); no torch.compile. "
          "TRL's sampler repeats each prompt G times and generate() runs on prompts*G rows, so the "
          "prompt prefill is computed per row (not once per group). "
          "Each step also includes TRL's host-side work: prompt tokenization, completion "
          "batch_decode, reward call, group advantage normalisation, metric gathering. "
          "step_times = on_step_begin..on_step_end (excludes the dataloader fetch of the prompt "
          "strings and Trainer logging); wall_step_times = on_step_end..on_step_end. "
          "Phase 'generate' times model.generate only; 'rollout' times "
          "_generate_and_score_completions (tokenize+generate+decode+reward+advantages); "
          "'loss_forward' times compute_loss (forward through the fused LM head + loss); the rest "
          "of a step is backward, grad clipping, optimizer and scheduler."),
  }

  med = lambda xs: sorted(xs)[len(xs) // 2] if xs else float("nan")
  st, gt = result["step_times"], result["phase_times"]["generate"]
  print(f"trl {trl.__version__} torch {torch.__version__} {args.size}: {len(st)} steps, "
        f"step median {med(st):.3f}s (min {min(st) if st else float('nan'):.3f}s), "
        f"generate median {med(gt):.3f}s, rows {rows}, new_tokens {T}, "
        f"lengths_checked {checked}, threads {torch.get_num_threads()}")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
