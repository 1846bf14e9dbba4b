"""Verifier worker processes with a kill-on-deadline per job, isolated between callers, that die
with the process that owns them.

- A *template* process (a fresh interpreter that imports only this module, sympy and `fn`)
  forks the workers. A fork of a process that has already imported sympy takes milliseconds, so
  a worker whose job overran is SIGKILLed and replaced by a fork, never by a second start-up.
- Concurrent `map` calls never share a worker: each call borrows up to `num_workers` workers of
  its own (idle ones first, new forks otherwise) and hands them back when done; `num_workers`
  idle ones are kept. A job that overruns kills only its own worker, so it cannot delay another
  caller's answer (a global lock used to queue them: 10 threads with one slow job each took
  5.3 s with 2 workers).
- Dying with the owner. The template blocks on its control socket; when the owner dies, SIGKILL
  included, the kernel closes the owner's end, and the template SIGKILLs its workers and exits
  (it also polls getppid(), in case a forked copy of the owner still holds the socket). Each
  worker sets PR_SET_PDEATHSIG(SIGKILL) on Linux, so it dies with the template even mid-job,
  and a thread polls getppid() as the fallback elsewhere. The template itself does not use
  PR_SET_PDEATHSIG: that fires when the *thread* that started the child exits, and the pool is
  created by whichever thread verifies first.

Why not `concurrent.futures.ProcessPoolExecutor`: it cannot stop the one worker whose job
overran (`Future.cancel` only drops queued jobs). Why `subprocess` for the template rather than a
multiprocessing "spawn"/"forkserver" `Process`: those re-import the parent's `__main__`, which
breaks scripts without an ``if __name__ == "__main__"`` guard and imports whatever the training
script imports (JAX). The multithreaded JAX parent itself never forks.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing import connection

from rlvr_jax.rewards import _fork_server as fork_server

DEFAULT_FN = "rlvr_jax.rewards._math_equiv:equivalent"
_START_TIMEOUT_S = 120.0  # interpreter start + importing sympy, generous for a loaded machine
_FORK_TIMEOUT_S = 30.0  # one fork; only a wedged template takes longer
_PARENT_POLL_S = fork_server.PARENT_POLL_S  # fallback check that the process above is there
_MEMORY_HEADROOM_BYTES = 2 << 30  # address space a worker may add after its imports
_BOOT = "from rlvr_jax.rewards._math_pool import main; main()"
# The template must import this very copy of the package, even when it is not installed.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_REQUEST, _PID = fork_server.REQUEST, fork_server.PID  # the template protocol (fork_server)


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


# ---------------------------------------------------------------------------------------------
# Inside the template and the workers
# ---------------------------------------------------------------------------------------------


def _exit_when_orphaned(parent_pid: int) -> None:
  while True:
    time.sleep(_PARENT_POLL_S)
    if os.getppid() != parent_pid:
      os._exit(0)


def _worker(sock: socket.socket, template_pid: int, fn: Callable, libc) -> None:
  """A forked worker: answers each job ``args`` with ``bool(fn(*args))``; an exception is False."""
  if libc is not None:
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # 0 on success; the thread below covers a -1
  if os.getppid() != template_pid:  # the template died before prctl took effect
    return
  threading.Thread(target=_exit_when_orphaned, args=(template_pid,), daemon=True).start()
  jobs = connection.Connection(sock.detach())
  while True:
    try:
      job = jobs.recv()
    except EOFError:  # the owner gave this worker up
      return
    try:
      ok = bool(fn(*job))
    except Exception:  # RecursionError, MemoryError, sympy internals: not verified
      ok = False
    jobs.send(ok)


def main() -> None:
  """Template entry point: ``python -c ... <control fd> <owner pid> <module:function>``."""
  control = socket.socket(fileno=int(sys.argv[1]))
  owner_pid, fn_path = int(sys.argv[2]), sys.argv[3]
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the owner, who may still verify
  module_name, fn_name = fn_path.split(":")
  fn = getattr(importlib.import_module(module_name), fn_name)
  libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
  _limit_memory()  # inherited by every fork
  control.sendall(_PID.pack(os.getpid()))
  fork_server.serve(control, owner_pid,
                    lambda sock, template_pid: _worker(sock, template_pid, fn, libc))


# ---------------------------------------------------------------------------------------------
# In the owner
# ---------------------------------------------------------------------------------------------


class _TemplateGone(RuntimeError):
  """The template process exited after it had started."""


class _Worker:
  def __init__(self, pid: int, conn: connection.Connection):
    self.pid, self.conn = pid, conn
    self.answered = False  # False until its first answer: a send failure then is not transient


class _Template:
  """The owner's handle on the template process; not thread-safe (`WorkerPool` locks it)."""

  def __init__(self, fn_path: str):
    control, child_end = socket.socketpair()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
    self.process = subprocess.Popen(
      [sys.executable, "-c", _BOOT, str(child_end.fileno()), str(os.getpid()), fn_path],
      pass_fds=(child_end.fileno(),),
      stdin=subprocess.DEVNULL,
      env=env,
    )
    child_end.close()
    self.control = control
    self.ready = False

  def _read_pid(self, timeout_s: float, what: str) -> int:
    if not connection.wait([self.control], timeout=timeout_s):
      raise RuntimeError(f"math verifier template did not {what} within {timeout_s:.0f} s")
    data = fork_server.recv_exact(self.control, _PID.size)
    if data is None:
      if self.ready:
        raise _TemplateGone("math verifier template exited")
      code = self.process.wait()
      raise RuntimeError(f"math verifier worker exited while starting (code {code})")
    return _PID.unpack(data)[0]

  def fork(self) -> _Worker:
    if not self.ready:
      self._read_pid(_START_TIMEOUT_S, "start")
      self.ready = True
    ours, theirs = socket.socketpair()
    try:
      socket.send_fds(self.control, [_REQUEST.pack(b"F", 0)], [theirs.fileno()])
    except OSError:
      ours.close()
      raise _TemplateGone("math verifier template exited") from None
    finally:
      theirs.close()
    try:
      pid = self._read_pid(_FORK_TIMEOUT_S, "fork")
    except BaseException:
      ours.close()
      raise
    return _Worker(pid, connection.Connection(ours.detach()))

  def end(self, worker: _Worker) -> None:
    worker.conn.close()
    # A gone template has already taken its workers with it (they die with it).
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
      self.control.sendall(_REQUEST.pack(b"E", worker.pid))

  def close(self) -> None:
    """EOF on the control socket: the template kills its workers and exits; SIGKILL after 1 s."""
    fork_server.close(self.control, self.process)


class WorkerPool:
  """Worker processes computing ``fn(*job) -> bool``, one job at a time each.

  `fn_path` is ``"module:function"``, imported by the template process only (the owner never
  imports sympy). Thread-safe; concurrent `map` calls run in parallel on separate workers, each
  with up to `num_workers` of them.
  """

  def __init__(self, num_workers: int | None = None, fn_path: str = DEFAULT_FN):
    self._fn_path = fn_path
    self._pid = os.getpid()
    self._num_workers = num_workers or min(4, os.cpu_count() or 1)
    self._lock = threading.Lock()  # guards everything below
    self._template: _Template | None = _Template(fn_path)
    self._idle: list[_Worker] = []
    self._live: set[_Worker] = set()

  def owned_by_this_process(self) -> bool:
    return os.getpid() == self._pid

  def pids(self) -> list[int]:
    """Process ids of the template and of every live worker (for monitoring and tests)."""
    with self._lock:
      template = [self._template.process.pid] if self._template else []
      return template + [worker.pid for worker in self._live]

  def _borrow(self) -> _Worker:
    with self._lock:
      if self._template is None:
        raise RuntimeError("WorkerPool is closed")
      if self._idle:
        return self._idle.pop()
      try:
        worker = self._template.fork()
      except _TemplateGone:  # e.g. the OOM killer: start a new one once, then give up
        self._template.close()
        self._template = _Template(self._fn_path)
        self._live.clear()  # the old workers died with the old template
        worker = self._template.fork()
      self._live.add(worker)
      return worker

  def _give_back(self, worker: _Worker) -> None:
    with self._lock:
      if self._template is not None and len(self._idle) < self._num_workers:
        self._idle.append(worker)
        return
    self._end(worker)

  def _end(self, worker: _Worker) -> None:
    with self._lock:
      self._live.discard(worker)
      if self._template is not None:
        self._template.end(worker)
      else:
        worker.conn.close()

  def map(self, jobs: Sequence[tuple], timeout_s: float) -> list[bool]:
    """``[bool(fn(*job)) for job in jobs]``, in parallel across up to `num_workers` workers.

    A job still running `timeout_s` after it was handed to a worker scores False and its worker
    is killed. Waiting for the template to start (the first call) does not count against
    `timeout_s`; raises RuntimeError if it cannot start at all.
    """
    results = [False] * len(jobs)
    queue = collections.deque(range(len(jobs)))
    free: list[_Worker] = []  # borrowed by this call and idle
    running: dict[connection.Connection, tuple[_Worker, int, float]] = {}
    try:
      while queue or running:
        while queue and len(running) < self._num_workers:
          worker = free.pop() if free else self._borrow()
          job = queue.popleft()
          try:
            worker.conn.send(jobs[job])
          except OSError:  # died while idle (e.g. the OOM killer): run the job on another
            self._end(worker)
            if not worker.answered:
              raise RuntimeError("math verifier worker exited before its first job") from None
            queue.appendleft(job)
            continue
          running[worker.conn] = (worker, job, time.monotonic() + timeout_s)
        self._collect(running, results, free)
    finally:
      for worker, _, _ in running.values():  # busy: it would answer a job of the next call
        self._end(worker)
      for worker in free:
        self._give_back(worker)
    return results

  def _collect(self, running: dict, results: list, free: list) -> None:
    """Waits for the next answer or deadline; records answers, kills overdue workers."""
    deadline = min(d for _, _, d in running.values())
    for conn in connection.wait(list(running), timeout=max(0.0, deadline - time.monotonic())):
      worker, job, _ = running.pop(conn)
      try:
        results[job] = conn.recv()
      except (EOFError, OSError):  # crashed, e.g. os._exit in fn: its job scores False
        self._end(worker)
        continue
      worker.answered = True
      free.append(worker)
    now = time.monotonic()
    for conn, (worker, _, deadline) in list(running.items()):
      if now >= deadline:
        del running[conn]  # its job scores False
        self._end(worker)

  def close(self) -> None:
    """Stops the template and every worker, including those of calls still running."""
    with self._lock:
      template, self._template = self._template, None
      idle, self._idle = self._idle, []
      self._live.clear()
    for worker in idle:
      worker.conn.close()
    if template is not None:
      template.close()
