"""Clip-Cov (Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning
Language Models", arXiv 2505.22617, §4): PPO-clip whose loss, value and gradient, is dropped on a
few tokens drawn at random among those whose advantage and log-prob covary inside (1, 5)
(`policy_loss="clip_cov"`, docs/ALGORITHMS.md).

    python -m rlvr_jax.main --config=configs/recipes/clip_cov.py --workdir=/tmp/clip_cov \
        --config.init.path=/path/to/Qwen2.5-0.5B-Instruct
    python -m rlvr_jax.main --config=configs/recipes/clip_cov.py:cpu --workdir=/tmp/clip_cov_cpu

Default: Qwen2.5-0.5B-Instruct on GSM8K, the setup (mesh, chat template, loader) of
configs/gsm8k_qwen25_05b.py, with the settings of the paper's runs (the Entropy-Mechanism
repository's recipe/dapo/7b_clip_cov.sh and 32b_clip_cov.sh, as read for ALGORITHMS.md §1.3, and
verl's clip_cov defaults): GRPO advantages, clip_cov_ratio 2e-4 with the band (1, 5), PPO clip
ε_low = ε_high = 1 (the ratio clamped to [0, 2]), token-mean loss, no KL, no entropy bonus,
8 responses a prompt, 256 prompts a step in mini-batches of 32 prompts (8 updates a rollout),
temperature 1, DAPO's group filter (`dynamic_sampling="fill"`, 3x over-sample), lr 1e-6.
`cpu`: the same on the quickstart's scratchpad addition with its tiny model and SFT warm start
(configs/recipes/_base.py:cpu: 100 steps of 16 prompts x 8, 4 updates a rollout). Not measured.

Deviations from the paper:
- Model and data: Qwen2.5-0.5B-Instruct on GSM8K (the paper: Qwen2.5-7B / 32B on its math mix).
- Generation budget 512 tokens (the paper: 8192).
- Learning rate 1e-6: the paper's 32B value and this repository's GSM8K one (its 7B run: 5e-7).
- The group filter draws a fixed 3x over-sample inside the compiled step instead of re-sampling
  until the batch is full; a shortfall is masked and reported.
- The tokens are drawn per micro-batch (rl.microbatches splits a mini-batch), as the reference
  draws per GPU; k = max(1, ⌊2e-4 · N⌋) is then 1 to a few tokens per micro-batch here, and 1 per
  update in `cpu` (about 1/600 of its tokens, more than 2e-4).
- Evaluation: greedy accuracy on held-out GSM8K (the paper: avg@k on seven math benchmarks).
"""

import os

import ml_collections

from rlvr_jax.configs_base import load_config

_HERE = os.path.dirname(os.path.abspath(__file__))


def _clip_cov(c):
  c.algorithm.update(advantage="grpo", advantage_kw={}, policy_loss="clip_cov",
                     loss_agg="token-mean", dynamic_sampling="fill", oversample_factor=3,
                     overlong_filter=False)
  # assigned, not merged: the base's PPO keywords are not this loss's, and its terms go
  c.algorithm.policy_loss_kw = ml_collections.ConfigDict(dict(
      clip_cov_ratio=2e-4, clip_cov_lb=1.0, clip_cov_ub=5.0, clip_low=1.0, clip_high=1.0))
  c.algorithm.terms = ml_collections.ConfigDict()
  c.rl.update(temperature=1.0, top_p=1.0, ppo_epochs=1)
  return c


def get_config(arg=None):
  if arg == "cpu":
    return _clip_cov(load_config(os.path.join(_HERE, "_base.py:cpu")))
  if arg is not None:
    raise ValueError(f"configs/recipes/clip_cov.py: unknown variant {arg!r}; known: cpu")
  c = load_config(os.path.join(_HERE, "_base.py"))
  c.rl.update(batch_size=256, group_size=8, minibatches=8, microbatches=4)
  c.rl.optimizer.update(learning_rate=1e-6)
  return _clip_cov(c)
