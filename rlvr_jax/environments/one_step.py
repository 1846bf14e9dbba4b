"""Any task as a one-step environment: the prompt is the observation, one answer ends it.

Its reward is the task's verdict on the completion, the same number the task's `reward_fn`
gives for the same tokens (a completion cut before EOS never reaches `step`: the episode is
truncated with reward 0, as `reward_fn` scores a truncated completion). With no tool and one
turn, an environment run is then the single-turn run (tests/test_environments.py).
"""

from __future__ import annotations

from rlvr_jax.data.tasks.base import Example, Task
from rlvr_jax.environments.base import Environment, StepResult, register_env


@register_env("one_step")
class OneStepEnv(Environment):
  """reset -> example.prompt; step(text) -> reward float(task.verify(text, example)), done."""

  def __init__(self, task: Task):
    super().__init__(task)
    self.example: Example | None = None

  def reset(self, example: Example) -> str:
    self.example = example
    return example.prompt

  def step(self, assistant_text: str) -> StepResult:
    if self.example is None:
      raise RuntimeError("one_step: step before reset")
    return StepResult(None, float(self.task.verify(assistant_text, self.example)), True, {})
