"""Quickstart: SFT warm start, then GRPO, on 2-digit addition with a tiny from-scratch model.

    python -m rlvr_jax.main --config=configs/quickstart.py --workdir=/tmp/quickstart
    python -m rlvr_jax.main --config=configs/quickstart.py:tiny --workdir=/tmp/qs_tiny

Runs in a few minutes on a 2-core CPU. The `tiny` variant (seconds) is what tests use.
"""

from rlvr_jax.configs_base import base_config


def get_config(arg=None):
  c = base_config()
  c.task.name = "addition"
  c.task.kwargs = dict(digits=2)
  c.model.update(d_model=96, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=256)
  c.sft.steps = 600
  c.sft.batch_size = 64
  c.sft.optimizer.learning_rate = 3e-3
  c.rl.steps = 500
  c.rl.batch_size = 32
  c.rl.group_size = 8
  c.rl.optimizer.learning_rate = 3e-4
  c.eval.every = 50
  c.eval.num_prompts = 512
  c.checkpoint.every = 50
  if arg == "tiny":
    c.model.update(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64)
    c.sft.steps = 4
    c.sft.batch_size = 8
    c.rl.steps = 4
    c.rl.batch_size = 4
    c.rl.group_size = 4
    c.eval.every = 2
    c.eval.num_prompts = 16
    c.eval.batch_size = 16
    c.checkpoint.every = 2
  elif arg is not None:
    raise ValueError(f"configs/quickstart.py: unknown variant {arg!r}; known: tiny")
  return c
