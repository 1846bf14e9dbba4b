"""The environment interface: an episode is a chat between the policy and an environment.

    env = make_env(config.data.env, task, **config.data.env_kw)   # one instance per episode
    text = env.reset(example)                   # the first observation: the policy's prompt
    result = env.step(assistant_text)           # StepResult(observation, reward, done, info)

`reset` returns the prompt text; each `step` gets the text of one assistant turn (the tokens the
policy sampled that turn, decoded; EOS excluded, a turn's stop string included) and returns the
next observation (appended to the conversation, never trained on), the turn's reward, whether
the episode is over, and an info dict of counts for metrics. The episode's reward is the sum of
its turns' rewards. A single-turn task is the one-step environment (`one_step.OneStepEnv`).

Environments run on the host, each call in a worker thread with a timeout (`runner`): one that
raises, returns a wrong type or hangs ends its episode with reward 0 and a counted error.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from rlvr_jax.data.tasks.base import Example, Task


@dataclasses.dataclass(frozen=True)
class StepResult:
  """What one environment step returns.

  Attributes:
    observation: text appended to the conversation after the assistant's turn (None or "": none).
    reward: this turn's reward; the episode's is the sum over its turns.
    done: the episode is over (the observation, if any, is then dropped).
    info: counts for metrics, e.g. {"tool_calls": 1}: numeric values are summed over episodes
      and logged as `env_<key>` means.
  """
  observation: str | None
  reward: float
  done: bool
  info: dict = dataclasses.field(default_factory=dict)


class Environment:
  """Base class of environments (subclass it and decorate with `@register_env("name")`).

  The constructor receives the run's task (`task=`, e.g. for its `verify`) and the keyword
  arguments of `config.data.env_kw`. One instance serves one episode at a time; `reset` starts
  a new one.
  """

  def __init__(self, task: Task):
    self.task = task

  def reset(self, example: Example) -> str:
    """The first observation (the policy's prompt) of an episode on `example`."""
    raise NotImplementedError

  def step(self, assistant_text: str) -> StepResult:
    """The environment's answer to one assistant turn."""
    raise NotImplementedError


class EnvRegistry(dict):
  """Name -> environment class; an unknown name raises ValueError naming the closest one."""

  def __missing__(self, name):
    close = difflib.get_close_matches(str(name), list(self), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"config.data.env: unknown environment {name!r}{hint}; valid: "
                     f"{', '.join(sorted(self))}")


ENVS: EnvRegistry = EnvRegistry()


def register_env(name: str) -> Callable[[type], type]:
  """Class decorator: `config.data.env = name` selects the class. Registering the same class
  again (a notebook cell or config file run twice) replaces it; another class under a taken name
  raises."""

  def decorator(cls: type) -> type:
    known = dict.get(ENVS, name)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__,
                                                                      cls.__qualname__):
      raise ValueError(f"environment {name!r} is already registered "
                       f"({known.__module__}.{known.__qualname__})")
    ENVS[name] = cls
    cls.env_name = name
    return cls

  return decorator


def env_keywords(name: str) -> dict[str, Any]:
  """The keyword arguments (and defaults) the environment `name` takes besides `task`."""
  params = inspect.signature(ENVS[name]).parameters
  return {k: p.default for k, p in params.items()
          if k != "task" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def make_env(name: str, task: Task, **env_kw) -> Environment:
  """ENVS[name](task=task, **env_kw), refusing unknown keywords with the valid ones."""
  cls = ENVS[name]
  known = env_keywords(name)
  for key in env_kw:
    if key not in known:
      close = difflib.get_close_matches(key, list(known), n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      raise ValueError(f"config.data.env_kw.{key}: environment {name!r} takes no such "
                       f"argument{hint}; valid: {', '.join(sorted(known)) or 'none'}")
  return cls(task=task, **env_kw)


def check_step_result(result: Any) -> StepResult:
  """`result` if it is a well-formed StepResult, else TypeError / ValueError saying which field
  is wrong (the runner counts it as the episode's error)."""
  if not isinstance(result, StepResult):
    raise TypeError(f"step must return a StepResult, got {type(result).__name__}")
  if result.observation is not None and not isinstance(result.observation, str):
    raise TypeError(f"StepResult.observation must be str or None, got "
                    f"{type(result.observation).__name__}")
  if (isinstance(result.reward, bool) or not isinstance(result.reward, numbers.Real)
      or not math.isfinite(result.reward)):
    raise ValueError(f"StepResult.reward must be a finite number, got {result.reward!r}")
  if not isinstance(result.done, bool):
    raise TypeError(f"StepResult.done must be a bool, got {type(result.done).__name__}")
  if not isinstance(result.info, Mapping):
    raise TypeError(f"StepResult.info must be a dict, got {type(result.info).__name__}")
  return result


def check_reset(text: Any) -> str:
  if not isinstance(text, str):
    raise TypeError(f"reset must return the first observation as str, got "
                    f"{type(text).__name__}")
  return text
