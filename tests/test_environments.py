"""Environments on the host: the interface, the registry, the tool env, the runner's failures."""

import threading
import time

import pytest

from rlvr_jax.data.synthetic import make_task
from rlvr_jax.environments import (EnvRunner, Environment, EpisodeLog, StepResult, make_env,
                                   register_env)
from rlvr_jax.environments import calculator


def test_calculator_evaluates_arithmetic_and_refuses_everything_else():
  assert calculator.evaluate("3 * (4 + 5)") == 27
  assert calculator.evaluate("1,080 / 4") == 270
  assert calculator.format_value(calculator.evaluate("7 / 2")) == "3.5"
  assert calculator.format_value(calculator.evaluate("6 / 2")) == "3"
  assert calculator.evaluate("-2 ** 3") == -8
  for bad in ("__import__('os').system('ls')", "x + 1", "(1).__class__", "2 ** 1000",
              "9" * 300, "1 / 0", "", "[1, 2]", "10 ** 10 * 10 ** 10"):
    with pytest.raises(calculator.CalculatorError):
      calculator.evaluate(bad)


def test_tool_env_answers_calls_and_verifies_the_answer():
  task = make_task("gsm_arith", template="plain")
  example = task.example(0, split="train", seed=0)
  env = make_env("tool", task, max_tool_calls=1)
  assert env.reset(example) == example.prompt
  r = env.step("Let me compute. <tool>2 + 3 * 4</tool>")
  assert r == StepResult("<result>14</result>", 0.0, False, {"tool_calls": 1, "tool_errors": 0})
  r = env.step("<tool>1 +</tool>")  # past max_tool_calls
  assert r.observation.startswith("<result>error") and r.info["tool_errors"] == 1
  r = env.step(f"The answer is {example.answer}.")
  assert (r.reward, r.done) == (1.0, True)
  env.reset(example)
  assert env.step("The answer is -1.").reward == 0.0
  assert env.step("<tool>import os</tool>").observation.startswith("<result>error")


def test_make_env_names_unknown_environments_and_arguments():
  task = make_task("addition", digits=2)
  with pytest.raises(ValueError, match="did you mean 'tool'"):
    make_env("tol", task)
  with pytest.raises(ValueError, match=r"env_kw.max_tool_call: .*did you mean 'max_tool_calls'"):
    make_env("tool", task, max_tool_call=2)
  with pytest.raises(ValueError, match="env_kw.tool must be one of"):
    make_env("tool", task, tool="shell")
  one = make_env("one_step", task)
  ex = task.example(0, split="train", seed=0)
  assert one.reset(ex) == ex.prompt
  assert one.step(ex.demo).reward == float(task.verify(ex.demo, ex))


class _Scripted(Environment):
  """step behaves as its `mode` says: ok, raise, hang, wrong_type, bad_reward."""

  def __init__(self, task=None, mode="ok"):
    super().__init__(task)
    self.mode, self.release = mode, threading.Event()

  def reset(self, example):
    return 42 if self.mode == "bad_reset" else "prompt"

  def step(self, text):
    if self.mode == "raise":
      raise RuntimeError("boom")
    if self.mode == "hang":
      self.release.wait(30)
    if self.mode == "wrong_type":
      return (None, 1.0, True, {})
    if self.mode == "bad_reward":
      return StepResult(None, float("nan"), True, {})
    return StepResult(None, 1.0, True, {"calls": 2})


def test_runner_ends_failing_episodes_with_reward_zero_and_counts_them():
  modes = ["ok", "raise", "hang", "wrong_type", "bad_reward", "ok", "hang", "ok"]
  envs = [_Scripted(mode=m) for m in modes]
  runner = EnvRunner(workers=2, timeout_s=0.3)
  t0 = time.monotonic()
  outcomes = runner.step(envs, ["text"] * len(envs))
  elapsed = time.monotonic() - t0
  assert elapsed < 2.0  # two hung calls cost one timeout each, in parallel with the rest
  log = EpisodeLog(len(envs))
  for i, o in enumerate(outcomes):
    log.apply_step(i, o)
  rewards = [log.reward(i) for i in range(len(envs))]
  assert rewards == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0]
  m = log.metrics()
  assert m["env_errors"] == 5 and m["env_timeouts"] == 2 and m["env_calls"] == 6 / 8
  assert "RuntimeError: boom" in log.error[1] and "StepResult" in log.error[3]
  assert "finite" in log.error[4]
  resets = runner.reset([_Scripted(mode="bad_reset"), _Scripted()], [None, None])
  assert "str" in resets[0].error and resets[1].value == "prompt"
  for env in envs:
    env.release.set()


def test_register_env_refuses_a_taken_name_and_takes_the_same_class_again():
  @register_env("scripted_test")
  class Scripted(_Scripted):
    pass

  register_env("scripted_test")(Scripted)
  with pytest.raises(ValueError, match="already registered"):
    register_env("scripted_test")(_Scripted)
