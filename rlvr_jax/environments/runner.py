"""Host side of episodes: environment calls in worker threads with timeouts, and the episodes'
bookkeeping (rewards, turns, errors, truncation).

`EnvRunner.map` runs calls `workers` at a time in daemon threads and waits for each at most
`timeout_s` from when it started: a call still running then is abandoned (its thread is left
to finish or hang on its own, and a fresh worker takes its place), so one hung environment costs
one timeout, never the run. Threads, not processes: environments that wait on subprocesses (the
code sandbox) or I/O run in parallel; pure-Python CPU work is serialised by the GIL.

Any failure (an exception, a wrong return type, a timeout) ends that episode with reward 0 and
is counted (`env_errors`, `env_timeouts`) and logged; the other episodes go on.
"""

from __future__ import annotations

import collections
import dataclasses
import numbers
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from absl import logging

from rlvr_jax.environments.base import StepResult, check_reset, check_step_result

_MAX_LOGGED = 3  # errors logged in full per call batch; the rest are counted


@dataclasses.dataclass
class Outcome:
  """One call's result: its value, or `error` (a message) and whether it `timed_out`."""
  value: Any = None
  error: str | None = None
  timed_out: bool = False


class _Call:

  def __init__(self, fn: Callable[[], Any]):
    self.fn, self.done = fn, threading.Event()
    self.started: float | None = None
    self.abandoned = False
    self.outcome = Outcome()

  def run(self) -> None:
    try:
      self.outcome.value = self.fn()
    except BaseException as e:  # noqa: BLE001 (an environment's failure is data, not a crash)
      self.outcome.error = f"{type(e).__name__}: {e}"
    self.done.set()


class EnvRunner:
  """Runs zero-argument calls in `workers` threads, each bounded by `timeout_s` seconds."""

  def __init__(self, workers: int = 4, timeout_s: float = 10.0):
    if workers < 1:
      raise ValueError(f"config.data.env_workers must be >= 1, got {workers}")
    if not timeout_s > 0:
      raise ValueError(f"config.data.env_timeout_s must be > 0, got {timeout_s}")
    self.workers, self.timeout_s = workers, timeout_s

  def map(self, fns: Sequence[Callable[[], Any]]) -> list[Outcome]:
    """The outcomes of `fns`, in order; returns within about timeout_s x ceil(len / workers)."""
    calls = [_Call(fn) for fn in fns]
    pending = collections.deque(calls)
    lock = threading.Lock()

    def worker():
      while True:
        with lock:
          if not pending:
            return
          call = pending.popleft()
          call.started = time.monotonic()
        call.run()
        with lock:
          if call.abandoned:  # the caller gave up on us and started a replacement
            return

    def start_worker():
      threading.Thread(target=worker, daemon=True, name="env-worker").start()

    for _ in range(min(self.workers, len(calls))):
      start_worker()
    for call in calls:
      while not call.done.is_set():
        with lock:
          started = call.started
        if started is None:  # queued behind running calls
          call.done.wait(0.01)
          continue
        left = started + self.timeout_s - time.monotonic()
        if call.done.wait(max(left, 0.0)):
          break
        with lock:
          if not call.done.is_set():
            call.abandoned = True
            call.outcome = Outcome(error=f"timed out after {self.timeout_s:g} s", timed_out=True)
        if call.abandoned:
          start_worker()
          break
    return [c.outcome for c in calls]

  def reset(self, envs: Sequence[Any], examples: Sequence[Any]) -> list[Outcome]:
    """env.reset(example) for each pair; a value that is not a str is an error."""
    return self.map([lambda e=e, x=x: check_reset(e.reset(x)) for e, x in zip(envs, examples)])

  def step(self, envs: Sequence[Any], texts: Sequence[str]) -> list[Outcome]:
    """env.step(text) for each pair; a value that is not a well-formed StepResult is an error."""
    return self.map([lambda e=e, t=t: check_step_result(e.step(t)) for e, t in zip(envs, texts)])


class EpisodeLog:
  """What happened to n episodes so far: per-turn rewards, turns, errors, truncation, info sums.

  An episode's reward is the sum of its turns' rewards; an error sets it to 0. `live` episodes
  are neither done (by the environment), failed, nor truncated (out of turns or tokens)."""

  def __init__(self, n: int, env_name: str = "env"):
    self.n, self.env_name = n, env_name
    self.turn_rewards: list[list[float]] = [[] for _ in range(n)]
    self.turns = [0] * n
    self.done = [False] * n
    self.error: list[str | None] = [None] * n
    self.timed_out = [False] * n
    self.truncated = [False] * n
    self.info: dict[str, float] = collections.defaultdict(float)
    self.episode_info: list[dict[str, float]] = [collections.defaultdict(float) for _ in range(n)]
    self._logged = 0

  def live(self, i: int) -> bool:
    return not (self.done[i] or self.error[i] or self.truncated[i])

  def reward(self, i: int) -> float:
    return 0.0 if self.error[i] else float(sum(self.turn_rewards[i]))

  def fail(self, i: int, error: str, timed_out: bool = False, what: str = "step") -> None:
    self.error[i], self.timed_out[i] = error, timed_out
    if self._logged < _MAX_LOGGED:
      logging.warning("environment %r: episode %d's %s failed (%s); the episode ends with "
                      "reward 0", self.env_name, i, what, error)
      self._logged += 1

  def apply_step(self, i: int, outcome: Outcome) -> str | None:
    """Records episode i's step outcome; returns its observation when the episode goes on.
    (`turns` counts the policy's turns, env-stepped or cut: the sampler adds them.)"""
    if outcome.error is not None:
      self.fail(i, outcome.error, outcome.timed_out)
      return None
    result: StepResult = outcome.value
    self.turn_rewards[i].append(float(result.reward))
    for key, value in result.info.items():
      if isinstance(value, numbers.Real):
        self.info[key] += float(value)
        self.episode_info[i][key] += float(value)
    if result.done:
      self.done[i] = True
      return None
    return result.observation or ""

  def metrics(self) -> dict[str, float]:
    """Means over the n episodes: env_errors and env_timeouts are counts (not means)."""
    n = max(self.n, 1)
    out = dict(env_errors=float(sum(e is not None for e in self.error)),
               env_timeouts=float(sum(self.timed_out)),
               turns_mean=sum(self.turns) / n, turns_max=float(max(self.turns, default=0)),
               episode_done_frac=sum(self.done) / n, truncated_frac=sum(self.truncated) / n)
    out.update({f"env_{k}": v / n for k, v in sorted(self.info.items())})
    return out
