"""A tool-use environment: the policy may call a calculator (or Python) before it answers.

    policy: "Tom has 17 boxes of 23 pens. <tool>17*23</tool>"     (the turn stops at "</tool>")
    env:    "<result>391</result>"                                  (observation, loss mask 0)
    policy: " He has 391 pens. The answer is 391." EOS              (a turn without a call:
                                                                     the answer, verified)

A turn whose text ends with a call (`open_tag` expression `close_tag`, the run's
`data.turn_stop` being `close_tag`) gets the tool's output as the observation and reward 0; a
turn without one is the final answer, scored by the task's `verify` (reward 1.0 or 0.0), and
ends the episode. `max_tool_calls` calls at most: a call past them is answered with an error
observation. Tools: "calculator" (`calculator.evaluate`, never executes code) or "python" (the
sandbox's `rlvr_jax.rewards.code.run`; the call's body is a program, its stdout the result).
info counts `tool_calls` and `tool_errors` for metrics.
"""

from __future__ import annotations

from rlvr_jax.data.tasks.base import Example, Task
from rlvr_jax.environments import calculator
from rlvr_jax.environments.base import Environment, StepResult, register_env

TOOLS = ("calculator", "python")


@register_env("tool")
class ToolEnv(Environment):
  """Word problems with a tool; see the module docstring."""

  def __init__(self, task: Task, *, tool: str = "calculator", max_tool_calls: int = 4,
               open_tag: str = "<tool>", close_tag: str = "</tool>",
               result_format: str = "<result>{}</result>", timeout_s: float = 2.0,
               max_result_chars: int = 200):
    super().__init__(task)
    if tool not in TOOLS:
      raise ValueError(f"config.data.env_kw.tool must be one of {TOOLS}, got {tool!r}")
    if max_tool_calls < 0:
      raise ValueError(f"config.data.env_kw.max_tool_calls must be >= 0, got {max_tool_calls}")
    if not open_tag or not close_tag:
      raise ValueError("config.data.env_kw.open_tag and close_tag must be non-empty")
    if "{}" not in result_format:
      raise ValueError(f"config.data.env_kw.result_format must hold '{{}}', got "
                       f"{result_format!r}")
    self.tool, self.max_tool_calls = tool, max_tool_calls
    self.open_tag, self.close_tag, self.result_format = open_tag, close_tag, result_format
    self.timeout_s, self.max_result_chars = timeout_s, max_result_chars
    self.example: Example | None = None
    self.calls = 0

  def reset(self, example: Example) -> str:
    self.example, self.calls = example, 0
    return example.prompt

  def call(self, text: str) -> str | None:
    """The tool call that ends `text` (its body), or None when the turn makes no call."""
    body = text.rstrip()
    if not body.endswith(self.close_tag):
      return None
    body = body[:-len(self.close_tag)]
    start = body.rfind(self.open_tag)
    return None if start < 0 else body[start + len(self.open_tag):]

  def step(self, assistant_text: str) -> StepResult:
    if self.example is None:
      raise RuntimeError("tool: step before reset")
    body = self.call(assistant_text)
    if body is None:  # the answer
      reward = float(self.task.verify(assistant_text, self.example))
      return StepResult(None, reward, True, {"tool_calls": 0, "tool_errors": 0})
    self.calls += 1
    if self.calls > self.max_tool_calls:
      result, ok = f"error: at most {self.max_tool_calls} tool calls", False
    else:
      result, ok = self._run(body)
    observation = self.result_format.format(result[:self.max_result_chars])
    return StepResult(observation, 0.0, False, {"tool_calls": 1, "tool_errors": int(not ok)})

  def _run(self, body: str) -> tuple[str, bool]:
    """(the tool's output, whether it succeeded)."""
    if self.tool == "calculator":
      try:
        return calculator.format_value(calculator.evaluate(body)), True
      except calculator.CalculatorError as e:
        return f"error: {e}", False
    from rlvr_jax.rewards import code  # local: the sandbox starts only when a run uses it
    r = code.run(body, timeout_s=self.timeout_s)
    if r.ok:
      return r.stdout.strip(), True
    last = (r.stderr.strip().splitlines() or ["timed out" if r.timed_out else "failed"])[-1]
    return f"error: {last}", False
