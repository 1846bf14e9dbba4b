"""GRPO with LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models",
arXiv 2106.09685): rank-16 adapters on every linear weight of the policy, the base weights frozen.

    python -m rlvr_jax.main --config=configs/recipes/lora.py --workdir=/tmp/lora \
        --config.init.path=/path/to/Qwen2.5-0.5B-Instruct
    # :cpu needs an SFT policy to sit on: run the quickstart's warm start alone first
    python -m rlvr_jax.main --config=configs/quickstart.py --workdir=/tmp/qs_sft \
        --config.rl.steps=0
    python -m rlvr_jax.main --config=configs/recipes/lora.py:cpu --workdir=/tmp/lora_cpu \
        --config.sft.init_from=/tmp/qs_sft

Default: the GSM8K setup of configs/gsm8k_qwen25_05b.py (Qwen2.5-0.5B-Instruct, GRPO, no KL)
with `lora.rank=16`, `lora.alpha=32` (scale 2) on wq wk wv wo w_gate w_up w_down (PEFT's
q_proj … down_proj) and a learning rate of 1e-5, ten times the full fine-tuning one. Only the
adapters are trained, held by the optimizer and saved; a KL term's reference would be the base
weights (adapters off); the sampler runs on the adapters unmerged; `rlvr-export
--lora=adapter` writes a PEFT adapter directory (README, "LoRA adapters"). `cpu`: the
quickstart's scratchpad addition on
its tiny model, rank 8, learning rate 3e-3, on the SFT policy of an earlier run
(`sft.init_from`, required: an SFT phase inside a LoRA run would train the base, which its
checkpoints do not keep). Not measured here (no run recorded).

Deviations from the paper:
- The paper fine-tunes with supervised objectives (GPT-3, RoBERTa, DeBERTa); here the adapters
  are trained by GRPO with a verifiable reward.
- The paper adapts W_q and W_v only (its §7.1 finds that enough at rank 4–8); here every linear
  weight, as PEFT's "all-linear" and RL practice (PipelineRL, Tunix examples) do.
- No LoRA dropout (PEFT's lora_dropout; PipelineRL uses 0.05): not implemented here.
- Rank, alpha and the 10x learning rate are common RL-with-LoRA choices, not the paper's
  settings and not tuned here.
"""

import os

from rlvr_jax.config_rules import REQUIRED
from rlvr_jax.configs_base import load_config

_HERE = os.path.dirname(os.path.abspath(__file__))


def get_config(arg=None):
  if arg == "cpu":
    c = load_config(os.path.join(_HERE, "_base.py:cpu"))
    c.lora.update(rank=8, alpha=16.0)
    c.sft.update(steps=0, init_from=REQUIRED)
    c.rl.optimizer.learning_rate = 3e-3
    return c
  if arg is not None:
    raise ValueError(f"configs/recipes/lora.py: unknown variant {arg!r}; known: cpu")
  c = load_config(os.path.join(_HERE, "_base.py"))
  c.lora.update(rank=16, alpha=32.0)
  c.rl.optimizer.learning_rate = 1e-5
  return c
