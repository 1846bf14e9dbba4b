"""Persistent pool of verifier worker processes with a kill-on-deadline per job.

Why not `concurrent.futures.ProcessPoolExecutor`: it cannot stop the one worker whose job overran
(`Future.cancel` only drops queued jobs), so a hung sympy call would hold a worker forever. Here
each worker owns a pair of pipes; at a job's deadline the parent SIGKILLs that process, scores
the job False and starts a replacement at once.

Why `subprocess` + `multiprocessing.connection` rather than a multiprocessing "spawn"/"forkserver"
`Process`: those re-import the parent's `__main__` in every worker, which breaks scripts without
an ``if __name__ == "__main__"`` guard and makes each (re)start import whatever the training script
imports (JAX). A fresh interpreter that imports only this module and sympy avoids both; like
spawn it never forks the multithreaded JAX parent.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing import connection

DEFAULT_FN = "rlvr_jax.rewards._math_equiv:equivalent"
_START_TIMEOUT_S = 120.0  # interpreter start + importing sympy, generous for a loaded machine
_MEMORY_HEADROOM_BYTES = 2 << 30  # address space a worker may add after its imports
_BOOT = "from rlvr_jax.rewards._math_pool import main; main()"
# The workers must import this very copy of the package, even when it is not installed.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _limit_memory() -> None:
  # A runaway sympy allocation then raises MemoryError in the worker instead of swapping the host.
  try:
    import resource

    with open("/proc/self/statm") as f:
      vm_bytes = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm_bytes + _MEMORY_HEADROOM_BYTES
    if hard == resource.RLIM_INFINITY or limit < hard:
      resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
  except (ImportError, OSError, ValueError):
    pass  # not Linux: the timeout still bounds the job


def main() -> None:
  """Worker entry point: ``python -c ... <read fd> <write fd> <module:function>``.

  Answers each job ``args`` with ``bool(function(*args))``; any exception means False.
  """
  read_fd, write_fd, fn_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
  jobs = connection.Connection(read_fd, writable=False)
  results = connection.Connection(write_fd, readable=False)
  module_name, fn_name = fn_path.split(":")
  fn = getattr(importlib.import_module(module_name), fn_name)
  _limit_memory()
  results.send("ready")
  while True:
    try:
      job = jobs.recv()
    except EOFError:  # the parent exited
      return
    try:
      ok = bool(fn(*job))
    except BaseException:  # RecursionError, MemoryError, sympy internals: not verified
      ok = False
    results.send(ok)


class _Worker:
  def __init__(self, fn_path: str):
    child_read, parent_write = os.pipe()
    parent_read, child_write = os.pipe()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
    self.process = subprocess.Popen(
      [sys.executable, "-c", _BOOT, str(child_read), str(child_write), fn_path],
      pass_fds=(child_read, child_write),
      stdin=subprocess.DEVNULL,
      env=env,
    )
    os.close(child_read)
    os.close(child_write)
    self.jobs = connection.Connection(parent_write, readable=False)
    self.conn = connection.Connection(parent_read, writable=False)  # results, and "ready"
    self.ready = False
    self.start_deadline = time.monotonic() + _START_TIMEOUT_S

  def kill(self) -> None:
    self.process.kill()
    self.process.wait()
    self.jobs.close()
    self.conn.close()


class WorkerPool:
  """`num_workers` processes, each computing ``fn(*job) -> bool`` for one job at a time.

  `fn_path` is ``"module:function"``, imported inside the workers only (the parent never
  imports sympy). Thread-safe: concurrent `map` calls run one after another.
  """

  def __init__(self, num_workers: int | None = None, fn_path: str = DEFAULT_FN):
    self._fn_path = fn_path
    self._pid = os.getpid()
    self._lock = threading.Lock()
    count = num_workers or min(4, os.cpu_count() or 1)
    self._workers = [_Worker(fn_path) for _ in range(count)]

  def owned_by_this_process(self) -> bool:
    return os.getpid() == self._pid

  def _restart(self, index: int) -> None:
    self._workers[index].kill()
    self._workers[index] = _Worker(self._fn_path)

  def map(self, jobs: Sequence[tuple], timeout_s: float) -> list[bool]:
    """``[bool(fn(*job)) for job in jobs]``, in parallel across the workers.

    A job still running `timeout_s` after it was handed to a worker scores False and its
    worker is killed and replaced. Waiting for a worker to start does not count against
    `timeout_s`; raises RuntimeError if a worker cannot start at all.
    """
    results = [False] * len(jobs)
    queue = collections.deque(range(len(jobs)))
    running: dict[int, tuple[int, float]] = {}  # worker index -> (job index, deadline)
    with self._lock:
      if not self._workers:
        raise RuntimeError("WorkerPool is closed")
      try:
        while queue or running:
          self._dispatch(jobs, queue, running, timeout_s)
          self._collect(running, results)
      except BaseException:
        for w in running:  # a busy worker would answer a job of the next call
          self._restart(w)
        raise
    return results

  def _dispatch(
    self, jobs: Sequence[tuple], queue: collections.deque, running: dict, timeout_s: float
  ) -> None:
    for w, worker in enumerate(self._workers):
      if queue and worker.ready and w not in running:
        job = queue.popleft()
        try:
          worker.jobs.send(jobs[job])
        except OSError:  # died while idle: run the job on its replacement
          queue.appendleft(job)
          self._restart(w)
          continue
        running[w] = (job, time.monotonic() + timeout_s)

  def _collect(self, running: dict, results: list) -> None:
    """Waits for the next message or deadline; records results, kills overdue workers."""
    watched = {w: x for w, x in enumerate(self._workers) if w in running or not x.ready}
    deadlines = [running[w][1] if w in running else x.start_deadline for w, x in watched.items()]
    conns = {worker.conn: w for w, worker in watched.items()}
    for conn in connection.wait(list(conns), timeout=max(0.0, min(deadlines) - time.monotonic())):
      w = conns[conn]
      try:
        message = conn.recv()
      except (EOFError, OSError):  # crashed, e.g. killed by the OOM killer
        if not self._workers[w].ready:
          code = self._workers[w].process.wait()
          raise RuntimeError(f"math verifier worker exited while starting (code {code})") from None
        running.pop(w, None)  # its job scores False
        self._restart(w)
        continue
      if message == "ready":
        self._workers[w].ready = True
      else:
        job, _ = running.pop(w)
        results[job] = message
    now = time.monotonic()
    for w, (_, deadline) in list(running.items()):
      if now >= deadline:
        del running[w]  # its job scores False
        self._restart(w)
    if any(not worker.ready and now >= worker.start_deadline for worker in self._workers):
      raise RuntimeError(f"math verifier worker did not start within {_START_TIMEOUT_S:.0f} s")

  def close(self) -> None:
    """Stops the workers: EOF on their job pipes, then SIGKILL for any still alive after 1 s."""
    with self._lock:
      for worker in self._workers:
        worker.jobs.close()
      deadline = time.monotonic() + 1.0
      for worker in self._workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
          worker.process.wait(timeout=max(0.0, deadline - time.monotonic()) if worker.ready else 0)
        worker.kill()
      self._workers = []
