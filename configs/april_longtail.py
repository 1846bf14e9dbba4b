"""APRIL (active partial rollouts) vs plain rollouts on heavy-tailed reversal lengths.

    python -m rlvr_jax.main --config=configs/april_longtail.py --workdir=/tmp/april_off
    python -m rlvr_jax.main --config=configs/april_longtail.py:april --workdir=/tmp/april_on \
        --config.sft.init_from=/tmp/april_off

Reversal of digit strings whose length follows P(L) ∝ L^-1.2 on [1, 24] (`longtail_reverse`):
a batch's decode loop runs as long as its longest completion, usually a rare long one. The
`april` variant decodes 2 x batch_size groups and stops once batch_size are done, carrying the
rest in the train state (rlvr_jax/training/april.py). Compare `decode_steps` per RL step and
`eval_accuracy`. `tiny`: seconds, for tests.
"""

from rlvr_jax.configs_base import base_config


def get_config(arg=None):
  c = base_config()
  c.task.name = "longtail_reverse"
  c.task.kwargs = dict(max_length=24, alpha=1.2)
  c.model.update(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128)
  c.sft.steps = 600
  c.sft.batch_size = 64
  c.sft.target_accuracy = 0.5
  c.sft.eval_every = 50
  c.rl.steps = 200
  c.rl.batch_size = 16
  c.rl.group_size = 8
  c.eval.every = 20
  c.eval.num_prompts = 256
  c.checkpoint.every = 50
  variant, _, size = (arg or "").partition(",")
  if "tiny" in (variant, size):
    c.model.update(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64)
    c.task.kwargs = dict(max_length=8, alpha=1.2)
    c.sft.steps = 4
    c.sft.target_accuracy = 0.0
    c.sft.batch_size = 8
    c.rl.steps = 4
    c.rl.batch_size = 4
    c.rl.group_size = 4
    c.eval.every = 2
    c.eval.num_prompts = 16
    c.checkpoint.every = 2
  if variant == "april":
    c.rl.partial_rollouts = True
    c.rl.partial_rollouts_factor = 2
  elif variant not in ("", "tiny"):
    raise ValueError(f"configs/april_longtail.py: unknown variant {arg!r}; known: april, tiny, "
                     "april,tiny")
  return c
