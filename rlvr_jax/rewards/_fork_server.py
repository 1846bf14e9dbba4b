"""The fork-server protocol both pre-forking templates speak (the math verifier's worker pool,
`_math_pool`, and the code sandbox, `code._sandbox` / `code._pool`).

A template process, started once and already holding its imports, serves its owner over a
control socket: `REQUEST` b"F" with one file descriptor attached forks a child that talks over
that descriptor, answered with the child's pid (`PID`); b"E" pid SIGKILLs and reaps a child it
forked. EOF on the control socket (the owner closed it or died), or the owner gone from
getppid(), ends the template and every child it still has. Standard library only: the sandbox
imports it in an interpreter that must start fast.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
from collections.abc import Callable
from multiprocessing import connection

PARENT_POLL_S = 0.5  # fallback check that the owner is still there
REQUEST = struct.Struct("<cq")  # b"F" (fork a child; one fd attached) or b"E" (end pid)
PID = struct.Struct("<q")  # the template's answers: its own pid when ready, then each fork's


def recv_exact(sock: socket.socket, size: int) -> bytes | None:
  """Exactly `size` bytes from `sock`, or None at EOF."""
  data = b""
  while len(data) < size:
    chunk = sock.recv(size - len(data))
    if not chunk:
      return None
    data += chunk
  return data


def serve(control: socket.socket, owner_pid: int, start_child: Callable[[socket.socket, int], None],
          *, reap_exited: bool = False) -> None:
  """The template's loop until its owner goes: each b"F" forks a child that closes the control
  socket and runs `start_child(its socket, template pid)`, then exits; b"E" kills one. With
  `reap_exited`, children that exited on their own are reaped every turn (so a later b"E" for
  their pid, possibly reused, is ignored). Children still alive at the end are SIGKILLed."""
  children: set[int] = set()  # forked and not yet reaped
  while True:
    while reap_exited and children:
      pid, _ = os.waitpid(-1, os.WNOHANG)
      if pid == 0:
        break
      children.discard(pid)
    if not connection.wait([control], timeout=PARENT_POLL_S):
      if os.getppid() != owner_pid:
        break
      continue
    message, fds, _, _ = socket.recv_fds(control, REQUEST.size, 1)
    rest = recv_exact(control, REQUEST.size - len(message)) if message else None
    if rest is None:  # EOF: the owner closed the template or died
      break
    op, pid = REQUEST.unpack(message + rest)
    if op == b"F":
      template_pid = os.getpid()
      child = os.fork()
      if child == 0:
        try:
          control.close()
          start_child(socket.socket(fileno=fds[0]), template_pid)
        finally:
          os._exit(0)
      os.close(fds[0])
      children.add(child)
      control.sendall(PID.pack(child))
    elif op == b"E" and pid in children:  # only pids not yet reaped, so never a reused one
      os.kill(pid, signal.SIGKILL)
      os.waitpid(pid, 0)
      children.discard(pid)
  for pid in children:
    os.kill(pid, signal.SIGKILL)


def close(control: socket.socket, process: subprocess.Popen) -> None:
  """The owner's side of the end: EOF on the control socket, so the template kills its children
  and exits; SIGKILL if it has not within 1 s."""
  control.close()
  try:
    process.wait(timeout=1.0)
  except subprocess.TimeoutExpired:
    process.kill()
    process.wait()
