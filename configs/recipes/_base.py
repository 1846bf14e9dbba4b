"""The two starting points the recipes share (not a recipe itself).

`_base.py` (accelerator): configs/gsm8k_qwen25_05b.py, Qwen2.5-class HF weights on GSM8K.
`_base.py:cpu`: configs/quickstart.py (scratchpad addition, tiny model, SFT warm start) with the
`:cpu` recipes' budget: 100 RL steps of 16 prompts x 8, 4 minibatches, 256 held-out prompts
every 25 steps.
"""

import os

from rlvr_jax.configs_base import load_config

_CONFIGS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get_config(arg=None):
  if arg == "cpu":
    c = load_config(os.path.join(_CONFIGS, "quickstart.py"))
    c.rl.update(steps=100, batch_size=16, group_size=8, minibatches=4)
    c.eval.update(every=25, num_prompts=256)
    return c
  if arg is not None:
    raise ValueError(f"configs/recipes/_base.py: unknown variant {arg!r}; known: cpu")
  return load_config(os.path.join(_CONFIGS, "gsm8k_qwen25_05b.py"))
