"""Quickstart: SFT warm start, then GRPO, on 3-digit addition with a scratchpad, tiny model.

    python -m rlvr_jax.main --config=configs/quickstart.py --workdir=/tmp/quickstart
    python -m rlvr_jax.main --config=configs/quickstart.py:tiny --workdir=/tmp/qs_tiny

Runs in a few minutes on a 2-core CPU. The `tiny` variant (seconds) is what tests use.
"""

from rlvr_jax.configs_base import base_config


def get_config(arg=None):
  c = base_config()
  c.task.name = "addition"
  # The demonstrations add column by column ("7+5+0=12,3+8+1=12#122"): SFT gets the format and
  # most columns right; RL then removes the compounding per-column errors.
  c.task.kwargs = dict(digits=3, scratchpad=True)
  c.model.update(d_model=96, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=256)
  # Warm start to a fixed competence (the same for every seed), leaving RL the rest.
  c.sft.steps = 1500
  c.sft.target_accuracy = 0.5
  c.sft.batch_size = 64
  c.sft.optimizer.learning_rate = 3e-3
  c.rl.steps = 400
  c.rl.batch_size = 32
  c.rl.group_size = 8
  c.rl.minibatches = 4  # 4 PPO updates per rollout batch
  c.rl.optimizer.learning_rate = 3e-4
  c.rl.optimizer.schedule = "cosine"  # to 3e-5: late updates stop undoing what RL gained
  c.eval.every = 25
  c.eval.num_prompts = 512
  c.checkpoint.every = 25
  if arg == "tiny":
    c.model.update(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64)
    c.sft.steps = 4
    c.sft.target_accuracy = 0.0
    c.sft.batch_size = 8
    c.rl.steps = 4
    c.rl.batch_size = 4
    c.rl.group_size = 4
    c.rl.minibatches = 1
    c.eval.every = 2
    c.eval.num_prompts = 16
    c.eval.batch_size = 16
    c.checkpoint.every = 2
  elif arg is not None:
    raise ValueError(f"configs/quickstart.py: unknown variant {arg!r}; known: tiny")
  return c
