"""CISPO as ScaleRL uses it (Khatri et al. 2025, "The Art of Scaling Reinforcement Learning
Compute for LLMs", arXiv 2510.13786; the loss from MiniMax-M1, arXiv 2506.13585): token loss
−sg(clip(ρ_t, 0, ε_max))·A_t·log π(y_t), token-mean, with batch-level advantage normalisation
and zero-variance filtering.

    python -m rlvr_jax.main --config=configs/recipes/cispo.py --workdir=/tmp/cispo \
        --config.init.path=/path/to/Qwen2.5-0.5B-Instruct
    python -m rlvr_jax.main --config=configs/recipes/cispo.py:cpu --workdir=/tmp/cispo_cpu

Default: Qwen2.5-0.5B-Instruct on GSM8K, the setup (mesh, chat template, loader) of
configs/gsm8k_qwen25_05b.py, with ScaleRL's choices that exist here: `policy_loss="cispo"` with the
IS weight clipped to [0, 5] (`policy_loss_kw.clip_low=1`, `clip_high=4`: ε_max = 5, the paper found 4,
5 and 8 alike), advantages = (r − group mean) / batch std (`advantage="lite_ppo"`, the same
normalisation), zero-variance groups out of the loss (`dynamic_sampling="mask"`), float32 logits
(always so here), no KL, 16 generations per prompt. `cpu`: the same on the quickstart's scratchpad
addition with its tiny model and SFT warm start, 100 steps. One run (seed 0, warm-started from the
DAPO `cpu` run's SFT policy (same config and seed)): 2 CPU-minutes of RL; held-out greedy accuracy
0.602 after SFT, 0.711 after RL; no IS weight reached the clip.

Deviations from the paper:
- Model and data: Qwen2.5-0.5B-Instruct on GSM8K (ScaleRL: far larger dense and MoE models on
  competition math).
- Off-policy data: ScaleRL streams generations from up to 8 policy versions back (PipelineRL-8);
  here a rollout feeds 4 sequential updates (`rl.minibatches=4`), so the IS weight departs from 1
  only within a rollout.
- Loss aggregation: token-mean over the batch, as MiniMax-M1's CISPO (ScaleRL averages per prompt).
- No "no-positive-resampling" curriculum (ScaleRL drops prompts once their pass rate reaches 0.9)
  and no interruption-based length control: completions are truncated at 512 tokens.
- Batch size (48 prompts x 16 as we read ScaleRL), learning rate (1e-6) and steps are not checked
  against the paper here; the learning rate and steps are this repository's GSM8K settings.
- Evaluation: greedy accuracy on held-out GSM8K.
"""

import os

from rlvr_jax.configs_base import load_config

_HERE = os.path.dirname(os.path.abspath(__file__))


def _cispo(c):
  c.algorithm.update(advantage="lite_ppo", policy_loss="cispo", loss_agg="token-mean",
                     policy_loss_kw=dict(clip_low=1.0, clip_high=4.0), terms={},
                     dynamic_sampling="mask", overlong_filter=False)
  c.rl.ppo_epochs = 1
  return c


def get_config(arg=None):
  if arg == "cpu":
    c = load_config(os.path.join(_HERE, "_base.py:cpu"))
    return _cispo(c)
  if arg is not None:
    raise ValueError(f"configs/recipes/cispo.py: unknown variant {arg!r}; known: cpu")
  c = load_config(os.path.join(_HERE, "_base.py"))
  c.rl.update(batch_size=48, group_size=16, minibatches=4, microbatches=4)
  return _cispo(c)
