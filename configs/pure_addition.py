"""PURE (min-form credit with a process reward model) on the quickstart's scratchpad addition.

    python -m rlvr_jax.main --config=configs/pure_addition.py --workdir=/tmp/pure_min
    python -m rlvr_jax.main --config=configs/pure_addition.py:sum --workdir=/tmp/pure_sum

Same task, model and SFT warm start as configs/quickstart.py. The scratchpad's columns
("7+5+0=12,3+8+1=12#122") are the reasoning steps: a step ends at ','; the last one (the last
column and the answer) ends at EOS. After SFT a PRM (policy trunk + scalar head) is trained on
the policy's own samples, a step labelled correct iff the scratchpad agrees with the gold one up
to and including it, then frozen; RL uses its step scores with the verifiable reward (PRM+VR,
`algorithm.advantage_kw.verifiable_coef`, 5 here). Variants: default = min-form (softmax(-r/T) weights, T=0.1),
`strict` = running-min, `sum` = plain sum of step rewards (the paper's reward-hacked contrast),
`tiny` = seconds, for tests. experiments/pure_min_vs_sum.py runs the comparison.
"""

import os

from rlvr_jax.configs_base import load_config

_QUICKSTART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quickstart.py")

VARIANTS = {None: "pure_min", "strict": "pure_min_strict", "sum": "pure_sum", "tiny": "pure_min"}


def get_config(arg=None):
  if arg not in VARIANTS:
    raise ValueError(f"configs/pure_addition.py: unknown variant {arg!r}; known: "
                     f"{', '.join(k for k in VARIANTS if k)}")
  c = load_config(_QUICKSTART + (":tiny" if arg == "tiny" else ""))
  c.algorithm.advantage = VARIANTS[arg]
  # The verifiable reward at 5x the PRM returns: at 1x every PRM variant was reward-hacked
  # within 25-200 steps (experiments/results/pure_min_vs_sum/).
  c.algorithm.advantage_kw = dict(verifiable_coef=5.0)
  c.prm.update(step_delimiter=",", steps=150, batch_size=32, group_size=4, temperature=1.0,
               eval_prompts=128)
  c.prm.optimizer.learning_rate = 1e-3
  if arg == "tiny":
    c.prm.update(steps=3, batch_size=4, group_size=2, eval_prompts=8)
  return c
