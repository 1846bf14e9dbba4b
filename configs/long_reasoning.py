"""Long chains of thought: GRPO with 16k-token completions on a 1.5B model, one device.

    python -m rlvr_jax.main --config=configs/long_reasoning.py --workdir=/tmp/long \
        --config.init.path=/path/to/DeepSeek-R1-Distill-Qwen-1.5B
    python -m rlvr_jax.main --config=configs/long_reasoning.py:cpu --workdir=/tmp/long_cpu

The settings that make 8 prompts x G 8 x 16,384 tokens fit one 80 GiB card (59.28 GiB by XLA's
buffer assignment for Qwen2.5-1.5B's shapes, benchmarks/MEMORY.md "Long completions"):
float32 master weights (bf16 ones would round away updates at lr 1e-6; 57.98 GiB with them)
and bf16 compute, remat full, one row per micro-batch (`rl.microbatches` = 64),
completion log-probs in chunks whose float32 logits fit 256 MiB (`model.logprob_chunk` 0) and
training attention in blocks of 512 queries (`model.attention_chunk` 0): the step's temporaries
grow linearly in completion length. A 32k budget fits a 141 GiB card (87.57 GiB with bf16
weights).
`rl.decode_refill` (off here) keeps decode rows busy when lengths are heavy-tailed; it was
measured on CPU only (experiments/results/decode_refill), so try it on your accelerator first.

Untuned: a starting point with the shapes right, not a reproduction of a paper's numbers. The
`cpu` variant runs the same long-sequence paths on a scratch model in seconds, with small chunks
forced (2 log-prob positions, 4 attention queries a block) so every chunked code path runs.
"""

from rlvr_jax.configs_base import base_config


def get_config(arg=None):
  c = base_config()
  c.init.update(kind="hf", path="", dtype="float32")  # float32 master weights
  c.model.update(dtype="bfloat16", remat="full", cache_dtype="bfloat16")
  c.task.name = "gsm8k"
  c.task.kwargs = dict(template="chat")
  c.data.update(prompt_len=448, completion_len=16384, answer_len=16, prompt_bucket=64)
  c.sft.steps = 0
  c.rl.update(steps=500, batch_size=8, group_size=8, temperature=0.6, max_new_tokens=16384,
              microbatches=64)
  c.rl.optimizer.update(learning_rate=1e-6, warmup_steps=10, weight_decay=0.0)
  # long chains: per-token loss (DAPO's token-mean) and overlong samples out of the loss
  c.algorithm.update(advantage="grpo", policy_loss="ppo", loss_agg="token-mean",
                     policy_loss_kw=dict(clip_low=0.2, clip_high=0.28), overlong_filter=True)
  c.eval.update(every=50, num_prompts=256, batch_size=16)
  c.checkpoint.update(every=25, keep=3)
  if arg == "cpu":
    c.init.update(kind="scratch", path="", dtype="float32")
    c.model.update(d_model=32, n_layers=2, n_heads=2, n_kv_heads=1, d_ff=64, dtype="float32",
                   cache_dtype=None, logprob_chunk=2, attention_chunk=4)
    c.task.name = "longtail_reverse"
    c.task.kwargs = dict(max_length=8, alpha=1.2)
    c.data.update(prompt_len=0, completion_len=0, answer_len=0, prompt_bucket=0)
    c.sft.update(steps=4, batch_size=8, target_accuracy=0.0)
    c.rl.update(steps=2, batch_size=4, group_size=4, max_new_tokens=0, microbatches=4,
                temperature=1.0, decode_refill=True)
    c.eval.update(every=2, num_prompts=16, batch_size=16)
    c.checkpoint.update(every=2)
  elif arg is not None:
    raise ValueError(f"configs/long_reasoning.py: unknown variant {arg!r}; known: cpu")
  return c
