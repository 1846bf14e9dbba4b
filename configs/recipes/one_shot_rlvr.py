"""1-shot RLVR (Wang et al. 2025, "Reinforcement Learning for Reasoning in Large Language Models
with One Training Example", arXiv 2504.20571; reference: the authors' verl scripts and
data/data_selection.py).

Two runs. First GRPO over the whole pool, recording every example's training accuracy at every
epoch; then 1-shot training on pi_1, the example whose accuracy varied most across those epochs
(the historical variance score, `rlvr_jax.data.one_shot`), duplicated to fill each batch:

    python -m rlvr_jax.main --config=configs/recipes/one_shot_rlvr.py:history --workdir=/tmp/hist \
        --config.init.path=/path/to/Qwen2.5-Math-1.5B
    python -m rlvr_jax.data.one_shot --workdir=/tmp/hist          # the ranking
    python -m rlvr_jax.main --config=configs/recipes/one_shot_rlvr.py --workdir=/tmp/pi1 \
        --config.init.path=/path/to/Qwen2.5-Math-1.5B --config.data.one_shot_from=/tmp/hist

On CPU (sized for minutes on an idle 2-core machine): the same with `:cpu_history` and `:cpu`
(no init.path). The 1-shot variants require `data.one_shot_from`: without it the run stops before
anything is compiled, naming the field (it would otherwise train on the whole pool).

The paper's hyperparameters (Qwen2.5-Math-1.5B, verl): GRPO, 128 prompts a batch x 8 samples,
one optimizer step per batch (PPO mini-batch 128), learning rate 1e-6, temperature 0.6, up to
3072 generated and 1024 prompt tokens, KL loss 0.001 (k3, verl's low_var_kl), entropy bonus
0.001, clip 0.2, token-mean loss; 2000 steps on pi_1. The history comes from 500 steps of the
same GRPO on the 1209-example pool (DSR-sub).

Deviations (accelerator variants):
  - Pool: the first 1209 GSM8K train problems (`data.rl_train_size`, the size of DSR-sub, which is
    not bundled), so pi_1 is a GSM8K problem, not the paper's pi_1.
  - Template: the policy's chat template with a step-by-step / \\boxed{} system prompt.
  - Evaluation: greedy accuracy on 256 GSM8K test problems (the paper: MATH500 and five other
    benchmarks at temperature 0.6).
  - Gradient accumulation (`rl.microbatches`) and the FSDP mesh are ours (memory).
`cpu` variants: the quickstart's task (3-digit addition with a scratchpad), model and SFT warm
start (the paper starts from a pretrained model, ours from scratch needs SFT); a pool of 64
problems, 16 prompts x 8 samples, 40 history steps (10 epochs), 60 1-shot steps, learning rate
3e-4; the algorithm fields (KL, entropy bonus, temperature, clip, aggregation) are the paper's.
"""

import os

from rlvr_jax.config_rules import REQUIRED
from rlvr_jax.configs_base import base_config, load_config

_QUICKSTART = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "quickstart.py")
VARIANTS = (None, "history", "cpu", "cpu_history")


def _paper_algorithm(c):
  c.algorithm.update(advantage="grpo", policy_loss="ppo", loss_agg="token-mean",
                     policy_loss_kw=dict(clip_low=0.2, clip_high=0.2),
                     terms=dict(kl=dict(coef=0.001, kind="k3"), entropy=dict(coef=0.001)))
  c.rl.update(group_size=8, temperature=0.6, top_p=1.0, ppo_epochs=1, minibatches=1)
  c.rl.optimizer.update(schedule="constant", warmup_steps=0)
  return c


def _accelerator(history: bool):
  c = base_config()
  c.init.update(kind="hf", path="", dtype="float32")
  c.model.update(dtype="bfloat16", remat="full")
  c.mesh.update(data=1, fsdp=-1, tensor=1)
  c.task.name = "gsm8k"
  c.task.kwargs = dict(template="chat")
  c.data.update(rl_train_size=1209, prompt_len=1024, completion_len=3072, answer_len=16,
                prompt_bucket=64, record_example_accuracy=history)
  c.sft.steps = 0
  c.rl.update(steps=500 if history else 2000, batch_size=128, max_new_tokens=3072,
              microbatches=8)
  c.rl.optimizer.update(learning_rate=1e-6, weight_decay=0.0)
  c.eval.update(every=20, num_prompts=256, batch_size=64)
  c.checkpoint.update(every=20, keep=3)
  return _paper_algorithm(c)


def _cpu(history: bool):
  c = load_config(_QUICKSTART)
  c.data.update(rl_train_size=64, record_example_accuracy=history)
  c.rl.update(steps=40 if history else 60, batch_size=16)
  c.rl.optimizer.learning_rate = 3e-4
  c.eval.update(every=20, num_prompts=512)
  c.checkpoint.every = 20
  return _paper_algorithm(c)


def get_config(arg=None):
  if arg not in VARIANTS:
    raise ValueError(f"configs/recipes/one_shot_rlvr.py: unknown variant {arg!r}; known: "
                     f"{', '.join(v for v in VARIANTS if v)}")
  history = arg in ("history", "cpu_history")
  c = _cpu(history) if arg in ("cpu", "cpu_history") else _accelerator(history)
  if not history:  # the 1-shot runs: the example comes from a history run's ranking
    c.data.one_shot_from = REQUIRED
  return c
