"""Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective",
arXiv 2503.20783; reference: the authors' train_zero_math.py on Oat).

    python -m rlvr_jax.main --config=configs/recipes/dr_grpo.py --workdir=/tmp/dr_grpo \
        --config.init.path=/path/to/Qwen2.5-Math-1.5B
    python -m rlvr_jax.main --config=configs/recipes/dr_grpo.py:cpu --workdir=/tmp/dr_grpo_cpu

The method: GRPO without its two biases. The advantage is R_i - mean(R) (no division by the
group's std: `algorithm.advantage="dr_grpo"`), and the loss sums each response's token losses and
divides by a constant, the generation budget, never by the response's own length
(`loss_agg="seq-mean-token-sum-norm"`, `max_len` = 3000 = the budget). No KL term (beta = 0),
PPO clip 0.2, one pass over each rollout. Truncated responses score 0 (our verifiers give no
reward without EOS).

The paper's hyperparameters (its README command for Qwen2.5-Math-1.5B): learning rate 1e-6,
constant; 128 prompts a rollout x 8 samples; temperature 1.0, top-p 1; up to 3000 generated
tokens; prompts up to 1024 tokens; Oat's train_batch_size 128, i.e. 8 optimizer steps over the
1024 responses of a rollout (`rl.minibatches=8`); greedy evaluation.

Deviations (accelerator variant):
  - Questions: GSM8K train (bundled), not MATH levels 3-5 (not bundled). The paper reports that
    GSM8K as the question set also works for Qwen2.5-Math-1.5B with the Qwen-Math template.
  - Template: the policy's chat template with a system prompt asking for step-by-step reasoning
    and a \\boxed{} answer (`math_datasets.format_prompt`); the paper's Qwen-Math template puts
    that sentence in the user turn.
  - Evaluation: greedy accuracy on 256 GSM8K test problems, not the paper's five benchmarks.
  - Steps: 500 (our choice; the paper trains for a budget of prompt epochs over MATH).
  - Gradient accumulation (`rl.microbatches=4`) and the FSDP mesh are ours (memory); the
    aggregation is exact under accumulation.
`cpu` variant (sized for minutes on an idle 2-core CPU; measured in configs/recipes/README.md):
the quickstart's task (3-digit addition with a scratchpad), model and SFT warm start, 16
prompts x 8 samples, 2 optimizer steps per rollout, learning rate 3e-4 (a 2-layer model from
scratch, not a pretrained 1.5B), 100 steps; the algorithm fields are the paper's.
"""

import os

from rlvr_jax.configs_base import base_config, load_config

_QUICKSTART = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "quickstart.py")


def _dr_grpo(c, max_len):
  c.algorithm.update(advantage="dr_grpo", policy_loss="ppo", loss_agg="seq-mean-token-sum-norm",
                     max_len=max_len, policy_loss_kw=dict(clip_low=0.2, clip_high=0.2), terms={})
  c.rl.update(group_size=8, temperature=1.0, top_p=1.0, ppo_epochs=1)
  c.rl.optimizer.update(schedule="constant", warmup_steps=0)
  return c


def get_config(arg=None):
  if arg == "cpu":
    c = load_config(_QUICKSTART)
    c.rl.update(steps=100, batch_size=16, minibatches=2)
    c.rl.optimizer.learning_rate = 3e-4
    return _dr_grpo(c, max_len=None)  # None: the completion buffer, the task's budget
  if arg is not None:
    raise ValueError(f"configs/recipes/dr_grpo.py: unknown variant {arg!r}; known: cpu")
  c = base_config()
  c.init.update(kind="hf", path="", dtype="float32")
  c.model.update(dtype="bfloat16", remat="full")
  c.mesh.update(data=1, fsdp=-1, tensor=1)
  c.task.name = "gsm8k"
  c.task.kwargs = dict(template="chat")
  c.data.update(prompt_len=1024, completion_len=3000, answer_len=16, prompt_bucket=64)
  c.sft.steps = 0
  c.rl.update(steps=500, batch_size=128, max_new_tokens=3000, minibatches=8, microbatches=4)
  c.rl.optimizer.update(learning_rate=1e-6, weight_decay=0.0)
  c.eval.update(every=16, num_prompts=256, batch_size=64)
  c.checkpoint.update(every=16, keep=3)
  return _dr_grpo(c, max_len=3000)
