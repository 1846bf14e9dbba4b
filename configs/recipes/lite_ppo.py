"""Lite PPO (Liu et al. 2025, "Part I: Tricks or Traps? A Deep Dive into RL for LLM Reasoning",
arXiv 2508.08221): critic-free vanilla PPO-clip with two tricks only, advantages normalised by
the group mean and the *batch* standard deviation (`advantage="lite_ppo"`) and token-level loss
aggregation (token-mean).

    python -m rlvr_jax.main --config=configs/recipes/lite_ppo.py --workdir=/tmp/lite_ppo \
        --config.init.path=/path/to/Qwen2.5-0.5B-Instruct
    python -m rlvr_jax.main --config=configs/recipes/lite_ppo.py:cpu --workdir=/tmp/lite_ppo_cpu

Default: Qwen2.5-0.5B-Instruct on GSM8K, the setup (mesh, chat template, loader) of
configs/gsm8k_qwen25_05b.py; the method's settings as the authors' framework documents them (ROLL,
LitePPO page): group-mean / batch-std reward normalisation, token-level loss, PPO clip 0.2, one PPO
epoch, no overlong filtering, 512 prompts per rollout step. `cpu`: the same algorithm on the
quickstart's scratchpad addition with its tiny model and SFT warm start, 100 steps. One run (seed
0, warm-started from the DAPO `cpu` run's SFT policy (same config and seed)): 2 CPU-minutes of RL;
held-out greedy accuracy 0.602 after SFT, 0.707 after RL.

Deviations from the paper:
- Model and data: Qwen2.5-0.5B-Instruct on GSM8K (the paper: Qwen3-4B / 8B, base and aligned,
  on open math sets of three difficulty levels).
- Generation budget 512 tokens (ROLL's example: 4096), sized for GSM8K.
- Responses per prompt (8), learning rate (1e-6), mini-batches (4) and steps are this repository's
  GSM8K settings: not checked against the paper here.
- No KL term: ROLL's example config also carries a KL loss (coefficient 0.001) that is not one of
  Lite PPO's two techniques.
- Evaluation: greedy accuracy on held-out GSM8K (the paper: six math benchmarks).
"""

import os

from rlvr_jax.configs_base import load_config

_HERE = os.path.dirname(os.path.abspath(__file__))


def _lite_ppo(c):
  c.algorithm.update(advantage="lite_ppo", policy_loss="ppo", loss_agg="token-mean",
                     policy_loss_kw=dict(clip_low=0.2, clip_high=0.2), terms={},
                     dynamic_sampling="none", overlong_filter=False)
  c.rl.ppo_epochs = 1
  return c


def get_config(arg=None):
  if arg == "cpu":
    c = load_config(os.path.join(_HERE, "_base.py:cpu"))
    return _lite_ppo(c)
  if arg is not None:
    raise ValueError(f"configs/recipes/lite_ppo.py: unknown variant {arg!r}; known: cpu")
  c = load_config(os.path.join(_HERE, "_base.py"))
  c.rl.update(batch_size=512, group_size=8, minibatches=4, microbatches=8)
  return _lite_ppo(c)
