"""Lp-Reg (Huang et al. 2025, "Low-probability Tokens Sustain Exploration in Reinforcement
Learning with Verifiable Reward", arXiv 2510.03222): GRPO advantages, PPO-clip with the lowest-
probability negative tokens regularised toward the min-p proxy of π_old (`policy_loss="lp_reg"`,
docs/ALGORITHMS.md), on-policy.

    python -m rlvr_jax.main --config=configs/recipes/lp_reg.py --workdir=/tmp/lp_reg \
        --config.init.path=/path/to/Qwen2.5-0.5B-Instruct
    python -m rlvr_jax.main --config=configs/recipes/lp_reg.py:cpu --workdir=/tmp/lp_reg_cpu

Default: the authors' on-policy scripts (CarlanLark/Lp-Reg-dev
recipe/lp_reg/Qwen3_14b_lp_reg_onpolicy_64gpu.sh, Qwen2.5_32b_lp_reg_onpolicy_64gpu.sh @700298fb)
on this repository's GSM8K setup (configs/gsm8k_qwen25_05b.py: Qwen2.5-0.5B-Instruct, chat
template, 8 devices): min-p κ = 0.02 on π_old's raw logits, ρ_neg = 0.01 (the 14B script; 0.005
for 32B), ρ_pos = 0, β = 1 (k3, "low_var_kl"), PPO clip [0, 10] (clip_ratio_low 1, clip_ratio_high
9), the `k > 1` guard, token-mean, GRPO advantages, no KL or entropy term, no dynamic sampling,
256 prompts x 8, one optimizer step per rollout (mini-batch = the whole batch: the behaviour
log-probs and the proxy come from the sampler), lr 1e-6 constant, no weight decay, gradient
clip 1, T = 1, top-p 1.
`cpu`: the same method on the quickstart's scratchpad addition (tiny model, SFT warm start, 100
steps of 16 prompts x 8), on-policy, with that config's learning rate (3e-4, cosine). Not run:
no result is claimed for either variant.

Deviations from the paper's runs:
- Model and data: Qwen2.5-0.5B-Instruct on GSM8K with 512 new tokens (the paper: Qwen3-14B-Base
  and Qwen2.5-32B on DAPO-Math-17K with 8192), greedy GSM8K test accuracy (the paper: five math
  benchmarks); 300 steps (our choice; the scripts run 15 epochs of DAPO-Math-17K).
- Micro-batches: Lp-Reg selects its lowest-probability tokens per micro-batch. The reference's
  micro-batches are per GPU with up to 30k tokens (dynamic batch size); here a micro-batch is 32
  completions across the mesh (`rl.microbatches=64`, for memory), so its k is smaller and taken
  over the whole mesh's micro-batch, not per device.
- The learning-rate schedule starts with one warm-up step at 0 (this repository's schedules);
  the scripts' constant schedule starts at 1e-6.
- Rewards: 0/1 from the GSM8K verifier (the scripts' DAPO reward manager gives ±1); GRPO's
  normalisation makes the advantages the same.
"""

import os

from rlvr_jax.configs_base import load_config

_HERE = os.path.dirname(os.path.abspath(__file__))


def _lp_reg(c):
  c.algorithm.update(advantage="grpo", policy_loss="lp_reg", loss_agg="token-mean",
                     policy_loss_kw=dict(min_p=0.02, neg_frac=0.01, pos_frac=0.0, coef=1.0,
                                         clip_low=1.0, clip_high=9.0, k_guard=True),
                     terms={}, dynamic_sampling="none", overlong_filter=False)
  c.rl.update(temperature=1.0, top_p=1.0, ppo_epochs=1, minibatches=1)
  return c


def get_config(arg=None):
  if arg == "cpu":
    c = load_config(os.path.join(_HERE, "_base.py:cpu"))
    return _lp_reg(c)
  if arg is not None:
    raise ValueError(f"configs/recipes/lp_reg.py: unknown variant {arg!r}; known: cpu")
  c = load_config(os.path.join(_HERE, "_base.py"))
  c.rl.update(steps=300, batch_size=256, group_size=8, microbatches=64)
  c.rl.optimizer.update(learning_rate=1e-6, warmup_steps=0, weight_decay=0.0,
                        schedule="constant", max_grad_norm=1.0)
  c.eval.update(every=16)
  c.checkpoint.update(every=16)
  return _lp_reg(c)
