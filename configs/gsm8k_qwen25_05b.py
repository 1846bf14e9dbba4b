"""GRPO on GSM8K with Qwen2.5-0.5B-Instruct from a local Hugging Face directory, on 8 devices
(mesh data=1, fsdp=4, tensor=2), chat-template prompts asking for \\boxed{}.

    python -m rlvr_jax.main --config=configs/gsm8k_qwen25_05b.py --workdir=/tmp/gsm8k_qwen \
        --config.init.path=/path/to/Qwen2.5-0.5B-Instruct
    python -m rlvr_jax.evaluate --config=configs/gsm8k_qwen25_05b.py --workdir=/tmp/gsm8k_qwen \
        --config.init.path=/path/to/Qwen2.5-0.5B-Instruct --n=8 --k=1,4,8

The directory needs config.json, *.safetensors and tokenizer.json / tokenizer_config.json (as
`huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct` leaves them). The `smoke` variant runs
the same code path (same mesh, task, loader) for two short steps; the test feeds it a tiny
random Qwen2 checkpoint on 8 forced CPU devices.
"""

from rlvr_jax.configs_base import base_config


def get_config(arg=None):
  c = base_config()
  c.init.update(kind="hf", path="", dtype="float32")  # float32 master weights
  c.model.update(dtype="bfloat16", remat="full")
  c.mesh.update(data=1, fsdp=4, tensor=2)
  c.task.name = "gsm8k"
  c.task.kwargs = dict(template="chat")
  # The longest GSM8K question is 1.1k characters, about 400 Qwen tokens (an estimate; the
  # pipeline raises on any prompt that does not fit). completion_len bounds the generation.
  c.data.update(prompt_len=448, completion_len=512, answer_len=16, prompt_bucket=64)
  c.sft.steps = 0
  c.rl.update(steps=500, batch_size=32, group_size=8, temperature=1.0, max_new_tokens=512,
              minibatches=4, microbatches=2)
  c.rl.optimizer.update(learning_rate=1e-6, warmup_steps=10, weight_decay=0.0)
  c.algorithm.update(advantage="grpo", policy_loss="ppo", loss_agg="token-mean",
                     policy_loss_kw=dict(clip_low=0.2, clip_high=0.28))
  c.eval.update(every=50, num_prompts=256, batch_size=64)
  c.checkpoint.update(every=50, keep=3)
  if arg == "smoke":
    # The test's small BPE splits finer than Qwen's.
    c.data.update(prompt_len=512, completion_len=8, answer_len=16)
    c.rl.update(steps=2, batch_size=4, group_size=8, max_new_tokens=8, minibatches=2)
    c.eval.update(every=1, num_prompts=4, batch_size=4)
    c.checkpoint.update(every=1, use_async=False)
  elif arg is not None:
    raise ValueError(f"configs/gsm8k_qwen25_05b.py: unknown variant {arg!r}; known: smoke")
  return c
