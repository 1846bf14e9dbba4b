"""Recipe: PRIME, online implicit process rewards (Cui et al. 2025, "Process Reinforcement
through Implicit Rewards", arXiv 2502.01456), with the hyper-parameters of the authors' code
(verl `recipe/prime`: `config/prime_trainer.yaml`, `run_prime_qwen.sh`).

    python -m rlvr_jax.main --config=configs/recipes/prime.py --workdir=/tmp/prime \
        --config.init.path=/path/to/Qwen2.5-Math-7B-SFT-or-Qwen2.5-class-HF-dir
    python -m rlvr_jax.main --config=configs/recipes/prime.py:cpu --workdir=/tmp/prime_cpu

Default variant (an accelerator): a Qwen2.5-class model from a local HF directory on GSM8K,
chat prompts asking for \\boxed{}. From the recipe: 4 rollouts per prompt at temperature 1,
policy AdamW lr 5e-7, implicit PRM lr 1e-6 (constant, no warm-up, grad clip 1.0), β = 0.05,
outcome and process weights 5 and 5, no KL, entropy bonus 0.001, one policy update per rollout
batch (ppo_mini_batch_size = train_batch_size = 64 prompts), the PRM initialised from the same
SFT model as the policy and the reference.

Deviations, all forced by this codebase or the budget, none hidden:
* verl filters prompts to group accuracy in [0.2, 0.8] from a 4x over-sampled batch; here
  `algorithm.dynamic_sampling="fill"` with `oversample_factor=4` samples 4 x 64 groups and
  learns on the first 64 that are neither all right nor all wrong (with 4 rollouts that is the
  same set of groups). A shortfall is masked and reported (`dynamic_sampling_shortfall`) rather
  than re-sampled.
* verl's `prime_norm: batch_norm` and its "token" granularity (last token's process reward
  zeroed) are not implemented (see `advantages.prime`); its default `update: before` re-scores
  with the updated PRM, this step uses the scores from before the update (issue 12).
* Completions are cut at 1024 new tokens (verl: 3072) and the data is GSM8K only (the paper
  trains on Eurus-2-RL-Data, math and code; verl's example mixes GSM8K and MATH).
The `cpu` variant is configs/prime_addition.py (synthetic scratchpad addition, tiny model, SFT
warm start) at 150 RL steps: minutes on a 2-core CPU.
"""

import os

from rlvr_jax.configs_base import base_config, load_config

_CPU = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "prime_addition.py")


def get_config(arg=None):
  if arg == "cpu":
    c = load_config(_CPU)
    c.rl.steps = 150
    return c
  if arg is not None:
    raise ValueError(f"configs/recipes/prime.py: unknown variant {arg!r}; known: cpu")
  c = base_config()
  c.init.update(kind="hf", path="", dtype="float32")
  c.model.update(dtype="bfloat16", remat="full")
  c.task.name = "gsm8k"
  c.task.kwargs = dict(template="chat")
  c.data.update(prompt_len=448, completion_len=1024, answer_len=16, prompt_bucket=64)
  c.sft.steps = 0
  c.rl.update(steps=500, batch_size=64, group_size=4, temperature=1.0, max_new_tokens=1024,
              ppo_epochs=1, minibatches=1, microbatches=8)
  c.rl.optimizer.update(learning_rate=5e-7, warmup_steps=0, schedule="constant",
                        max_grad_norm=1.0, weight_decay=0.0)
  c.algorithm.update(advantage="prime", advantage_kw=dict(process_coef=5.0, outcome_coef=5.0),
                     policy_loss="ppo", policy_loss_kw=dict(clip_low=0.2, clip_high=0.2),
                     loss_agg="token-mean", terms=dict(entropy=dict(coef=0.001),
                                                       prime=dict(beta=0.05)),
                     dynamic_sampling="fill", oversample_factor=4)
  c.prime.optimizer.update(learning_rate=1e-6, warmup_steps=0, schedule="constant",
                           max_grad_norm=1.0, weight_decay=0.0)
  c.eval.update(every=50, num_prompts=256, batch_size=64)
  c.checkpoint.update(every=50, keep=3)
  return c
