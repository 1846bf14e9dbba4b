"""Inside the template process: isolation set up once, then one fork per program.

Runs in a fresh interpreter (`_pool.Template`) that imports only the standard library and this
module, with a clean environment. Per program it forks a *supervisor* (root, owns the limits,
pipes and deadline), which forks the *program* process; the program is `exec`'d by the forked,
already-started interpreter, so a check costs two forks instead of an interpreter start-up.

Isolation, "namespaces" (we are root and the kernel allows namespaces):
- once, in the template: a private mount namespace where every mount is remounted read-only, and
  an empty network namespace (loopback down: nothing to connect to, on any address);
- per program: a new PID namespace (the program is its init: when it exits or is killed, the
  kernel kills everything it started, double-forked daemons included), IPC namespace and mount
  namespace with a fresh size-bounded tmpfs on /tmp (its working directory: empty, private,
  gone when the namespace is) and its own /proc (it sees only its own processes);
- the program runs as a random unprivileged uid/gid with no supplementary groups and
  no_new_privs: it cannot read root-only files, signal any process outside its namespace, or gain
  privileges through a setuid binary, and RLIMIT_NPROC (which root ignores) bounds a fork bomb,
  counted for this program alone since no other process has that uid.

"rlimits" (not root, or namespaces refused): the same limits, process group and clean
environment, a temporary directory removed afterwards, and an audit hook that refuses sockets,
ctypes and new processes. Weaker: a program that escapes its process group outlives the
timeout, and the file system is writable wherever our uid may write. The result names it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import random
import resource
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from multiprocessing import connection

from rlvr_jax.rewards import _fork_server as fork_server

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 14, 1 << 18, 1 << 21, 1 << 24
_KEEP_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
               "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME,
               "strictatime": MS_STRICTATIME}
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
# Imported once by the template, so a program's `import` of them is free (HumanEval imports
# typing and math). In "rlimits" mode under a root-only home they are also the only modules a
# program can import besides those already loaded.
_PRELOAD = ("array", "bisect", "cmath", "collections", "copy", "dataclasses", "datetime",
            "decimal", "enum", "functools", "hashlib", "heapq", "itertools", "json", "math",
            "operator", "re", "string", "typing")
# Unprivileged ids drawn per program: far above any real account, so no other process shares one.
_UID_RANGE = (1 << 30, (1 << 31) - 2)
_WORKDIR = "/tmp"
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": _WORKDIR,
        "TMPDIR": _WORKDIR}
_DRAIN_S = 0.5  # after the program is dead, how long its pipes may take to close
_PID = fork_server.PID  # the template protocol (fork_server): supervisors are its children
# "rlimits" mode only (namespaces make these harmless): no network, no ctypes (it could call
# socket() or kill() directly), no new processes, no signals.
_BLOCKED_EVENTS = ("socket.", "ctypes.", "os.fork", "os.forkpty", "os.system", "os.exec",
                   "os.posix_spawn", "os.spawn", "subprocess.Popen", "os.kill", "os.killpg",
                   "signal.pthread_kill")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
  if ret != 0:
    errno = ctypes.get_errno()
    raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _unshare(flags: int) -> None:
  _check(_libc.unshare(flags), "unshare")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
  enc = lambda s: None if s is None else s.encode()  # noqa: E731
  _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
         f"mount {target}")


def _mount_points() -> list[tuple[str, int]]:
  """(mount point, per-mount flags to keep) from /proc/self/mountinfo, parents first."""
  points = []
  with open("/proc/self/mountinfo") as f:
    for line in f:
      fields = line.split()
      path = fields[4].encode().decode("unicode_escape")  # "\040" is a space
      keep = sum(_KEEP_FLAGS.get(o, 0) for o in fields[5].split(","))
      points.append((path, keep))
  return points


def _closed_ancestor(path: str) -> str | None:
  """The highest proper ancestor of `path` that other users cannot traverse, or None."""
  parts = os.path.realpath(path).split(os.sep)[1:-1]
  for i in range(1, len(parts) + 1):
    ancestor = os.sep + os.path.join(*parts[:i])
    if not os.stat(ancestor).st_mode & 0o001:
      return ancestor
  return None


def _expose_interpreter() -> None:
  """Makes the interpreter's own directories reachable by the program's uid.

  Python may live under a home only root may enter (pyenv in /root): the program could then
  import nothing that the template has not imported yet. Each such home is replaced by an empty
  tmpfs that holds bind mounts of those directories alone, which also hides the rest of it.
  """
  needed = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, *sys.path)
            if p and os.path.isdir(p)}
  masks: dict[str, list[tuple[str, int]]] = {}
  for path in needed:
    ancestor = _closed_ancestor(path)
    if ancestor is not None:
      masks.setdefault(ancestor, []).append((path, os.open(path, os.O_PATH)))
  for ancestor, binds in masks.items():
    _mount("tmpfs", ancestor, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
    for path, fd in sorted(binds):
      os.makedirs(path, exist_ok=True)
      _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
      os.close(fd)


def isolate_template(requested: str) -> str:
  """Enters the template's mount and network namespaces; returns the isolation level."""
  if requested == "rlimits" or os.geteuid() != 0:
    return "rlimits"
  try:
    _unshare(CLONE_NEWNS | CLONE_NEWNET)
  except OSError:
    return "rlimits"
  _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates to the host
  _expose_interpreter()
  for path, keep in _mount_points():
    try:
      _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)
    except OSError as e:
      if path == "/":
        raise RuntimeError(f"code sandbox: cannot make / read-only: {e}") from None
      # Shadowed or vanished mount points: whatever is visible at `path` was remounted.
  return "namespaces"


# ---------------------------------------------------------------------------------------------
# The program process
# ---------------------------------------------------------------------------------------------


def _limit(job: dict) -> None:
  cpu = int(job["timeout_s"]) + 1  # a backstop: the supervisor's wall clock kills first
  limits = {
      resource.RLIMIT_CPU: cpu,
      resource.RLIMIT_AS: job["memory_mb"] << 20,
      resource.RLIMIT_FSIZE: job["file_mb"] << 20,
      resource.RLIMIT_NPROC: job["max_processes"],
      resource.RLIMIT_NOFILE: 64,
      resource.RLIMIT_CORE: 0,
      resource.RLIMIT_MEMLOCK: 0,
      resource.RLIMIT_MSGQUEUE: 0,
  }
  for what, value in limits.items():
    resource.setrlimit(what, (value, value))


def _refuse(event: str, _args) -> None:
  if event.startswith(_BLOCKED_EVENTS):
    raise PermissionError(f"sandbox: {event} is not allowed")


def _program(job: dict, isolation: str, uid: int, workdir: str, fds: tuple[int, int, int]) -> int:
  """Becomes the program: limits, identity, stdio, environment; runs it; returns its exit code."""
  os.setsid()
  for i, fd in enumerate(fds):
    os.dup2(fd, i)
  os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
  if isolation == "namespaces":
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
  _limit(job)
  if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
  _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
  _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
  os.chdir(workdir)
  os.environ.clear()
  os.environ.update(_ENV, HOME=workdir, TMPDIR=workdir)
  signal.signal(signal.SIGINT, signal.default_int_handler)
  random.seed()  # the template's state is every fork's: reseed from urandom as a new process would
  sys.stdin = sys.__stdin__ = open(0, closefd=False)
  sys.stdout = sys.__stdout__ = open(1, "w", closefd=False)
  sys.stderr = sys.__stderr__ = open(2, "w", closefd=False, errors="backslashreplace")
  sys.argv = ["<program>"]
  if isolation != "namespaces":
    sys.addaudithook(_refuse)
  program = job["program"]
  del job
  code = 0
  try:
    exec(compile(program, "<program>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
  except SystemExit as e:
    if e.code is None or isinstance(e.code, int):
      code = e.code or 0
    else:
      print(e.code, file=sys.stderr)
      code = 1
  except BaseException as e:  # the program's own error: report it like the interpreter would
    traceback.print_exception(type(e), e, e.__traceback__.tb_next)
    code = 1
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except BaseException:  # a closed or broken pipe: the output is what it is
      pass
  return code & 0xFF


# ---------------------------------------------------------------------------------------------
# The supervisor
# ---------------------------------------------------------------------------------------------


def _workdir(isolation: str, job: dict, uid: int) -> str:
  if isolation == "namespaces":
    _unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC)
    _mount("tmpfs", _WORKDIR, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={job['file_mb'] * 4}m,nr_inodes=4096,mode=0700,uid={uid},gid={uid}")
    return _WORKDIR
  path = tempfile.mkdtemp(prefix="rlvr_sandbox_")
  if os.geteuid() == 0:
    os.chown(path, uid, uid)
  return path


def _kill(pidfd: int, pid: int, reaped: bool, isolation: str, uid: int) -> None:
  """Kills the program and everything it started; never a reused pid."""
  if not reaped:
    with contextlib.suppress(ProcessLookupError):
      signal.pidfd_send_signal(pidfd, signal.SIGKILL)
      if isolation != "namespaces":  # a namespace's init takes the rest with it
        os.killpg(pid, signal.SIGKILL)
  if isolation == "namespaces" or os.geteuid() != 0:
    return
  # What left its process group still has its uid, which nothing else has.
  helper = os.fork()
  if helper == 0:
    try:
      os.setgid(uid)
      os.setuid(uid)
      os.kill(-1, signal.SIGKILL)  # every process this uid may signal, but not the caller
    finally:
      os._exit(0)
  os.waitpid(helper, 0)


def _supervise(conn: connection.Connection, isolation: str) -> None:
  """Runs one job received on `conn` and sends back its result tuple."""
  job = conn.recv()
  uid = random.SystemRandom().randint(*_UID_RANGE)
  workdir = _workdir(isolation, job, uid)
  pipes = [os.pipe() for _ in range(3)]
  pid = os.fork()
  if pid == 0:
    try:
      conn.close()
      code = _program(job, isolation, uid, workdir, (pipes[0][0], pipes[1][1], pipes[2][1]))
    except BaseException:
      traceback.print_exc()
      code = 125
    os._exit(code)
  for fd in (pipes[0][0], pipes[1][1], pipes[2][1]):
    os.close(fd)
  deadline = time.monotonic() + job["timeout_s"]
  kill = lambda pidfd, reaped: _kill(pidfd, pid, reaped, isolation, uid)  # noqa: E731
  status, timed_out, truncated, outputs = _watch(pid, job, pipes[0][1], pipes[1][0], pipes[2][0],
                                                 deadline, kill)
  if isolation != "namespaces":
    shutil.rmtree(workdir, ignore_errors=True)
  code = os.waitstatus_to_exitcode(status) if status is not None else None
  conn.send((code, outputs[0], outputs[1], timed_out, truncated))


def _watch(pid: int, job: dict, stdin_fd: int, out_fd: int, err_fd: int, deadline: float,
           kill_all: Callable[[int, bool], None]) -> tuple[int, bool, bool, list[bytes]]:
  """Feeds stdin and reads both outputs up to the cap; kills the program at the deadline or when
  an output overflows. Returns (wait status, timed out, truncated, [stdout, stderr])."""
  cap, pending = job["output_bytes"], job["stdin"]
  streams, outputs = {out_fd: 0, err_fd: 1}, [bytearray(), bytearray()]
  pidfd = os.pidfd_open(pid)
  os.set_blocking(stdin_fd, False)
  status, timed_out, truncated, killed_at = None, False, False, None

  def kill() -> None:
    nonlocal killed_at
    kill_all(pidfd, status is not None)
    killed_at = killed_at or time.monotonic()

  while not (status is not None and not streams):
    now = time.monotonic()
    if killed_at is not None and now >= killed_at + _DRAIN_S:
      break  # in "rlimits" mode an escaped grandchild may hold the pipes open: stop reading
    if killed_at is None and now >= deadline:
      timed_out = True
      kill()
      continue
    readers = list(streams) + ([pidfd] if status is None else [])
    writers = [stdin_fd] if pending and stdin_fd >= 0 else []
    if not pending and stdin_fd >= 0:
      os.close(stdin_fd)
      stdin_fd = -1
    end = killed_at + _DRAIN_S if killed_at is not None else deadline
    ready, writable, _ = select.select(readers, writers, [], max(0.0, end - now))
    if writable:
      try:
        pending = pending[os.write(stdin_fd, pending[:65536]):]
      except OSError:  # the program closed its stdin
        pending = b""
    for fd in ready:
      if fd == pidfd:
        status = os.waitpid(pid, 0)[1]
        if streams:  # whatever still holds its pipes (a namespace has no survivors)
          kill()
        continue
      data = os.read(fd, 65536)
      if not data:
        os.close(fd)
        del streams[fd]
        continue
      out = outputs[streams[fd]]
      out += data
      if len(out) > cap:
        del out[cap:]
        truncated = True
        kill()
  if status is None:
    kill_all(pidfd, False)
    status = os.waitpid(pid, 0)[1]
  elif killed_at is None:
    kill_all(pidfd, True)  # it exited: in "rlimits" mode, whatever it left behind must go too
  for fd in [pidfd, *streams] + ([stdin_fd] if stdin_fd >= 0 else []):
    os.close(fd)
  return status, timed_out, truncated, [bytes(o) for o in outputs]


# ---------------------------------------------------------------------------------------------
# The template
# ---------------------------------------------------------------------------------------------


def _start_supervisor(sock: socket.socket, template_pid: int, isolation: str) -> None:
  _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
  if os.getppid() != template_pid:  # the template died before prctl took effect
    return
  conn = connection.Connection(sock.detach())
  try:
    _supervise(conn, isolation)
  except (EOFError, OSError):  # the owner gave up on this job
    pass


def main() -> None:
  """Template entry point: ``python -I -c ... <control fd> <owner pid> <"auto" | "rlimits">``."""
  control = socket.socket(fileno=int(sys.argv[1]))
  owner_pid, requested = int(sys.argv[2]), sys.argv[3]
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the owner
  for name in _PRELOAD:
    importlib.import_module(name)
  try:
    isolation = isolate_template(requested)
  except RuntimeError as e:
    print(e, file=sys.stderr)
    sys.exit(1)
  control.sendall(_PID.pack(os.getpid()) + isolation.encode().ljust(16))
  # supervisors end on their own when their program does: reap them as they go
  fork_server.serve(control, owner_pid,
                    lambda sock, template_pid: _start_supervisor(sock, template_pid, isolation),
                    reap_exited=True)
