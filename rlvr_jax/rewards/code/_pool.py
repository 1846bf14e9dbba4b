"""The owner's side of the code sandbox: one template process, one forked supervisor per program.

The template (`_sandbox.main`) is a fresh interpreter started with `subprocess` (the
multithreaded JAX parent never forks) and an environment of four fixed variables, so nothing of
ours is inherited by the programs. It dies with us: it blocks on its control socket, which the
kernel closes when we die (SIGKILL included), and it polls getppid(). Supervisors die with the
template (PR_SET_PDEATHSIG) and programs with their supervisor, so a timed-out job that its
supervisor fails to end is ended by killing the supervisor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import struct
import subprocess
import sys
import threading
from multiprocessing import connection

from rlvr_jax.rewards import _fork_server as fork_server

_START_TIMEOUT_S = 60.0  # interpreter start-up on a loaded machine
_FORK_TIMEOUT_S = 30.0
_GRACE_S = 2.0  # past the program's timeout, how long the supervisor may take to answer
_BOOT = ("import sys; sys.path.insert(0, sys.argv.pop(4)); "
         "from rlvr_jax.rewards.code._sandbox import main; main()")
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
_REQUEST, _PID = fork_server.REQUEST, fork_server.PID  # the template protocol
_READY = struct.Struct("<q16s")  # the template's pid and its isolation level


@dataclasses.dataclass(frozen=True)
class Result:
  """What one sandboxed program did.

  Attributes:
    returncode: exit status; negative for a signal (-9 when killed at the timeout or for too
      much output); None if the sandbox lost the program (its supervisor died).
    stdout, stderr: the output, decoded as UTF-8 (undecodable bytes replaced), at most the cap.
    timed_out: killed at the wall-clock timeout.
    isolation: how it was isolated: "namespaces" or "rlimits" (see `_sandbox`).
    truncated: an output reached its cap, and the program was killed there.
  """

  returncode: int | None
  stdout: str
  stderr: str
  timed_out: bool
  isolation: str
  truncated: bool = False

  @property
  def ok(self) -> bool:
    return self.returncode == 0 and not self.timed_out and not self.truncated


class _Template:
  """The handle on the template process; not thread-safe (`Sandbox` locks it)."""

  def __init__(self, isolation: str):
    control, child_end = socket.socketpair()
    self.process = subprocess.Popen(
        [sys.executable, "-I", "-c", _BOOT, str(child_end.fileno()), str(os.getpid()), isolation,
         _PACKAGE_ROOT],
        pass_fds=(child_end.fileno(),), stdin=subprocess.DEVNULL, env=_ENV, cwd="/")
    child_end.close()
    self.control = control
    self.isolation: str | None = None

  def _read(self, size: int, timeout_s: float, what: str) -> bytes:
    if not connection.wait([self.control], timeout=timeout_s):
      raise RuntimeError(f"code sandbox template did not {what} within {timeout_s:.0f} s")
    data = b""
    while len(data) < size:
      chunk = self.control.recv(size - len(data))
      if not chunk:
        code = self.process.poll()
        raise RuntimeError(f"code sandbox template exited (code {code}) while it should {what}")
      data += chunk
    return data

  def ready(self) -> str:
    """Waits for the template to start (once); returns its isolation level."""
    if self.isolation is None:
      _, isolation = _READY.unpack(self._read(_READY.size, _START_TIMEOUT_S, "start"))
      self.isolation = isolation.rstrip().decode()
    return self.isolation

  def fork(self) -> tuple[int, connection.Connection]:
    self.ready()
    ours, theirs = socket.socketpair()
    try:
      socket.send_fds(self.control, [_REQUEST.pack(b"F", 0)], [theirs.fileno()])
      (pid,) = _PID.unpack(self._read(_PID.size, _FORK_TIMEOUT_S, "fork"))
    except BaseException:
      ours.close()
      raise
    finally:
      theirs.close()
    return pid, connection.Connection(ours.detach())

  def end(self, pid: int) -> None:
    with contextlib.suppress(OSError):
      self.control.sendall(_REQUEST.pack(b"E", pid))

  def close(self) -> None:
    """EOF on the control socket: the template kills its supervisors and exits."""
    fork_server.close(self.control, self.process)


ISOLATIONS = ("auto", "rlimits")


class Sandbox:
  """Runs programs in the sandbox; thread-safe, every `run` call in parallel with the others.

  `isolation`: "auto" takes the strongest level the kernel and our uid allow; "rlimits" forces
  the weaker fallback (to test it, or to compare costs).
  """

  def __init__(self, isolation: str = "auto"):
    if isolation not in ISOLATIONS:
      raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
    self._requested = isolation
    self._pid = os.getpid()
    self._lock = threading.Lock()
    self._template: _Template | None = _Template(isolation)

  def owned_by_this_process(self) -> bool:
    return os.getpid() == self._pid

  @property
  def isolation(self) -> str:
    """The isolation level; waits for the template to start."""
    with self._lock:
      return self._live_template().ready()

  def _live_template(self) -> _Template:
    if self._template is None:
      raise RuntimeError("code Sandbox is closed")
    if self._template.process.poll() is not None:  # e.g. the OOM killer: start another
      self._template.close()
      self._template = _Template(self._requested)
    return self._template

  def run(self, job: dict) -> Result:
    """Runs one job (see `code.run` for its fields) and returns its Result."""
    with self._lock:
      template = self._live_template()
      pid, conn = template.fork()
      isolation = template.isolation
    try:
      try:
        conn.send(job)
        if conn.poll(job["timeout_s"] + _GRACE_S):
          code, out, err, timed_out, truncated = conn.recv()
          return Result(code, _text(out), _text(err), timed_out, isolation, truncated)
        timed_out = True
      except (EOFError, OSError):  # the supervisor died (killed, or the template went away)
        timed_out = False
      with self._lock:
        if self._template is template:
          template.end(pid)
      return Result(-9 if timed_out else None, "", "", timed_out, isolation)
    finally:
      conn.close()

  def close(self) -> None:
    with self._lock:
      template, self._template = self._template, None
    if template is not None:
      template.close()


def _text(data: bytes) -> str:
  return data.decode("utf-8", errors="replace")
