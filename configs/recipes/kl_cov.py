"""KL-Cov (Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning
Language Models", arXiv 2505.22617, §4): the unclipped importance-weighted policy gradient plus
β·|log π − log π_old| on the tokens whose advantage and log-prob covary most
(`policy_loss="kl_cov"`, docs/ALGORITHMS.md). It needs several updates a rollout (one is refused).

    python -m rlvr_jax.main --config=configs/recipes/kl_cov.py --workdir=/tmp/kl_cov \
        --config.init.path=/path/to/Qwen2.5-0.5B-Instruct
    python -m rlvr_jax.main --config=configs/recipes/kl_cov.py:cpu --workdir=/tmp/kl_cov_cpu

Default: Qwen2.5-0.5B-Instruct on GSM8K, the setup (mesh, chat template, loader) of
configs/gsm8k_qwen25_05b.py, with the settings of the paper's runs (the Entropy-Mechanism
repository's recipe/dapo/7b_kl_cov.sh, as read for ALGORITHMS.md §1.4): GRPO advantages, the top
2e-3 of tokens by covariance penalised (its k_percent = 0.2 %) with β = 1, no PPO clipping,
token-mean loss, no KL to a reference, no entropy bonus, 8 responses a prompt, 256 prompts a step
in mini-batches of 32 prompts (8 updates a rollout), temperature 1, DAPO's group filter
(`dynamic_sampling="fill"`, 3x over-sample), lr 1e-6.
`cpu`: the same on the quickstart's scratchpad addition with its tiny model and SFT warm start
(configs/recipes/_base.py:cpu: 100 steps of 16 prompts x 8, 4 updates a rollout, so the penalty
acts from the second update on). Not measured.

Deviations from the paper:
- Model and data: Qwen2.5-0.5B-Instruct on GSM8K (the paper: Qwen2.5-7B / 32B on its math mix).
- kl_cov_ratio 2e-3 is the 7B run's (the 32B run and verl's default: 2e-4).
- Generation budget 512 tokens (the paper: 8192).
- Learning rate 1e-6: the paper's 32B value and this repository's GSM8K one (its 7B run: 5e-7).
- The group filter draws a fixed 3x over-sample inside the compiled step instead of re-sampling
  until the batch is full; a shortfall is masked and reported.
- The top-k is per micro-batch, as the reference's is per GPU; in `cpu` k = max(1, ⌊2e-3 · N⌋)
  is 1 token per update.
- Evaluation: greedy accuracy on held-out GSM8K (the paper: avg@k on seven math benchmarks).
"""

import os

import ml_collections

from rlvr_jax.configs_base import load_config

_HERE = os.path.dirname(os.path.abspath(__file__))


def _kl_cov(c):
  c.algorithm.update(advantage="grpo", advantage_kw={}, policy_loss="kl_cov",
                     loss_agg="token-mean", dynamic_sampling="fill", oversample_factor=3,
                     overlong_filter=False)
  # assigned, not merged: the base's PPO keywords are not this loss's, and its terms go
  c.algorithm.policy_loss_kw = ml_collections.ConfigDict(dict(kl_cov_ratio=2e-3, ppo_kl_coef=1.0))
  c.algorithm.terms = ml_collections.ConfigDict()
  c.rl.update(temperature=1.0, top_p=1.0, ppo_epochs=1)
  return c


def get_config(arg=None):
  if arg == "cpu":
    return _kl_cov(load_config(os.path.join(_HERE, "_base.py:cpu")))
  if arg is not None:
    raise ValueError(f"configs/recipes/kl_cov.py: unknown variant {arg!r}; known: cpu")
  c = load_config(os.path.join(_HERE, "_base.py"))
  c.rl.update(batch_size=256, group_size=8, minibatches=8, microbatches=4)
  c.rl.optimizer.update(learning_rate=1e-6)
  return _kl_cov(c)
