"""DPH-RL (Li et al. 2025, "The Choice of Divergence: A Neglected Key to Mitigating Diversity
Collapse in Reinforcement Learning with Verifiable Reward", arXiv 2509.07430; reference code
seamoke/DPH-RL, scripts/llama/js_kl.sh): GRPO on the prompts the initial policy π₀ does not
always solve, plus coef · JS generator (`js_low_var`) to π₀ on π₀'s stored correct samples of the
prompts it does (`algorithm.terms.dph`, docs/ALGORITHMS.md).

Two commands: the split (π₀ = the policy this config's RL starts from), then training on it.

    python -m rlvr_jax.prepare_dph --config=configs/recipes/dph.py:cpu \
        --out=/tmp/dph_cpu/split.npz
    python -m rlvr_jax.main --config=configs/recipes/dph.py:cpu --workdir=/tmp/dph_cpu/run \
        --config.data.stored_samples=/tmp/dph_cpu/split.npz

(`rlvr-prepare-dph` is the first command.) The split runs the config's SFT warm start as training
does (the same program and seed, so the same π₀; the first update's `dph_divergence` is 0 when
it is); `--config.sft.init_from=DIR` in both commands shares one warm start instead. Without
`data.stored_samples` the run stops before anything is compiled, naming the field.

Default: Qwen2.5-0.5B-Instruct on GSM8K (configs/gsm8k_qwen25_05b.py via _base.py) with the
reference script's settings that exist here: GRPO advantages, PPO clip 0.2 / 0.28, token-mean,
no KL, no entropy bonus, lr 1e-6, 128 prompts × 16, mini-batch 64 prompts (2 updates a rollout),
`js_low_var` with coef 0.01 (the script's `sft_loss_coeff`), 256 stored rows a step (its chunk),
split from 8 samples with all correct (its README; `--samples=4` is its script). `cpu`: the same
method on the quickstart's scratchpad addition (tiny model, SFT warm start), 512 RL prompts
split, 16 stored rows a step, 100 steps; not measured.

Deviations from the paper / reference code:
- Model and data: Qwen2.5-0.5B-Instruct on GSM8K (the reference: Llama-3.1-8B-Instruct on
  BIRD/Spider SQL; the paper also has math).
- The stored rows are added, an equal share per update, to the RL loss of every mini-batch; the
  reference concatenates its 256-row chunk after the RL rows, where at its sizes it forms a
  mini-batch of its own (a separate optimizer step on coef·L_f).
- Stored rows are drawn each step from the reshuffled file (the reference triples the file and
  cuts it into shuffled 256-row chunks); one fresh π₀ sample per always-solved prompt, as its
  `get_correct_data_tensor.sh` (`rollout.n=1`).
- 5 epochs over D_exp in the reference; here 300 steps of 128 prompts (about 5 passes over
  GSM8K's D_exp when π₀ always solves a fifth of the 7473 train problems; not checked).
- Micro-batches and the mesh are this repository's GSM8K settings (exact accumulation).
- Evaluation: greedy accuracy on held-out GSM8K (the paper reports pass@k and OOD sets; use
  `rlvr-eval --n=... --k=...` on the checkpoints).
"""

import os

from rlvr_jax import config_rules
from rlvr_jax.configs_base import load_config

_HERE = os.path.dirname(os.path.abspath(__file__))


def _dph(c, *, rl_train_size: int, stored_per_step: int):
  c.algorithm.update(advantage="grpo", policy_loss="ppo", loss_agg="token-mean",
                     policy_loss_kw=dict(clip_low=0.2, clip_high=0.28),
                     terms=dict(dph=dict(coef=0.01, divergence="js_low_var")),
                     dynamic_sampling="none", overlong_filter=False)
  c.data.update(rl_train_size=rl_train_size, stored_samples=config_rules.REQUIRED,
                stored_samples_per_step=stored_per_step)
  return c


def get_config(arg=None):
  if arg == "cpu":
    c = load_config(os.path.join(_HERE, "_base.py:cpu"))
    return _dph(c, rl_train_size=512, stored_per_step=16)
  if arg is not None:
    raise ValueError(f"configs/recipes/dph.py: unknown variant {arg!r}; known: cpu")
  c = load_config(os.path.join(_HERE, "_base.py"))
  c.rl.update(steps=300, batch_size=128, group_size=16, minibatches=2, microbatches=8)
  c.rl.optimizer.update(learning_rate=1e-6)
  return _dph(c, rl_train_size=7473, stored_per_step=256)  # GSM8K's train split
