"""Running untrusted Python programs (model completions) for code rewards.

    r = code.run("print(input()[::-1])", stdin="abc", timeout_s=2.0)   # r.stdout == "cba\\n"
    code.passes(solution, tests, "add")        # HumanEval style: solution + tests + check(add)
    code.passes_many(solutions, tests, entry_points, workers=4)

Each program runs in its own process with resource limits, a random unprivileged uid, an
empty private working directory, a clean environment, no network, and a wall-clock timeout at
which it is killed together with every process it started; output is read up to a cap. How
(namespaces, or rlimits only where the kernel or our uid refuse them) is in `_sandbox`'s
docstring, and each Result names the level it got.

Why a forked template instead of `subprocess.run([python, ...])` per program: an interpreter
start-up costs 40-100 ms on a busy 2-core machine, which caps throughput near 20 checks/s; a
fork of the started template costs a few ms (benchmarks/code_sandbox.py measures both).

Imports no JAX: a reward worker or a data script imports this in milliseconds.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import threading
from collections.abc import Sequence

from rlvr_jax.rewards.code._pool import Result, Sandbox

__all__ = ["Result", "Sandbox", "humaneval_program", "passes", "passes_many", "run", "run_many",
           "shutdown"]

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MEMORY_MB = 512
DEFAULT_MAX_PROCESSES = 8
DEFAULT_FILE_MB = 16
DEFAULT_OUTPUT_BYTES = 1 << 20
_MIN_MEMORY_MB = 128  # the forked interpreter alone maps ~30 MB; leave room to import a module

_lock = threading.Lock()
_shared: Sandbox | None = None


def _get_sandbox() -> Sandbox:
  global _shared
  with _lock:
    if _shared is None or not _shared.owned_by_this_process():
      _shared = Sandbox()  # a forked child must not share its parent's template
    return _shared


def shutdown() -> None:
  """Stops the shared sandbox's template (a later call starts a new one)."""
  global _shared
  with _lock:
    if _shared is not None and _shared.owned_by_this_process():
      _shared.close()
    _shared = None


atexit.register(shutdown)


def _job(program: str, stdin: str | bytes, timeout_s: float, memory_mb: int, max_processes: int,
         file_mb: int, output_bytes: int) -> dict:
  if not isinstance(program, str):
    raise TypeError(f"program must be str, got {type(program).__name__}")
  if not timeout_s > 0:
    raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
  if memory_mb < _MIN_MEMORY_MB:
    raise ValueError(f"memory_mb must be >= {_MIN_MEMORY_MB} (the interpreter's own address "
                     f"space counts), got {memory_mb}")
  if max_processes < 1 or file_mb < 1 or output_bytes < 1:
    raise ValueError(f"max_processes, file_mb and output_bytes must be >= 1, got "
                     f"{max_processes}, {file_mb}, {output_bytes}")
  return dict(program=program, stdin=stdin.encode() if isinstance(stdin, str) else bytes(stdin),
              timeout_s=float(timeout_s), memory_mb=int(memory_mb),
              max_processes=int(max_processes), file_mb=int(file_mb),
              output_bytes=int(output_bytes))


def run(program: str, *, stdin: str | bytes = "", timeout_s: float = DEFAULT_TIMEOUT_S,
        memory_mb: int = DEFAULT_MEMORY_MB, max_processes: int = DEFAULT_MAX_PROCESSES,
        file_mb: int = DEFAULT_FILE_MB, output_bytes: int = DEFAULT_OUTPUT_BYTES,
        sandbox: Sandbox | None = None) -> Result:
  """Runs the Python source `program` as a sandboxed `__main__` and returns its Result.

  Args:
    program: Python source, run like `python -c program` (a SyntaxError is its stderr, code 1).
    stdin: its standard input.
    timeout_s: wall-clock limit; past it the program and all it started are killed.
    memory_mb: address-space limit per process (RLIMIT_AS), the interpreter included.
    max_processes: processes and threads it may have at once (RLIMIT_NPROC), itself included.
    file_mb: largest file it may write (RLIMIT_FSIZE); its /tmp holds 4x this in all.
    output_bytes: cap on each of stdout and stderr; reaching it kills the program.
    sandbox: a `Sandbox` of your own; default: one shared per process, started on first use.
  """
  job = _job(program, stdin, timeout_s, memory_mb, max_processes, file_mb, output_bytes)
  return (sandbox or _get_sandbox()).run(job)


def run_many(programs: Sequence[str], *, stdins: Sequence[str | bytes] | None = None,
             workers: int = 2, **kwargs) -> list[Result]:
  """`[run(p, stdin=s, **kwargs) for p, s in zip(programs, stdins)]`, `workers` at a time."""
  stdins = [""] * len(programs) if stdins is None else list(stdins)
  if len(stdins) != len(programs):
    raise ValueError(f"{len(programs)} programs but {len(stdins)} stdins")
  if workers < 1:
    raise ValueError(f"workers must be >= 1, got {workers}")
  if workers == 1 or len(programs) <= 1:
    return [run(p, stdin=s, **kwargs) for p, s in zip(programs, stdins)]
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    return list(pool.map(lambda ps: run(ps[0], stdin=ps[1], **kwargs), zip(programs, stdins)))


def humaneval_program(solution: str, tests: str, entry_point: str | None = None) -> str:
  """HumanEval's check program: the solution, the tests, then ``check(entry_point)``."""
  program = f"{solution}\n\n{tests}\n"
  if entry_point is not None:
    if not entry_point.isidentifier():
      raise ValueError(f"entry_point must be an identifier, got {entry_point!r}")
    program += f"\ncheck({entry_point})\n"
  return program


def passes(solution: str, tests: str, entry_point: str | None = None, *,
           timeout_s: float = DEFAULT_TIMEOUT_S, **kwargs) -> bool:
  """Whether `solution` passes `tests`: the check program exits 0 within the limits.

  `tests` defines ``check(candidate)`` that asserts (HumanEval); with `entry_point` None,
  `tests` must call it itself (or be plain asserts).
  """
  return run(humaneval_program(solution, tests, entry_point), timeout_s=timeout_s, **kwargs).ok


def passes_many(solutions: Sequence[str], tests: Sequence[str],
                entry_points: Sequence[str | None] | None = None, *, workers: int = 2,
                timeout_s: float = DEFAULT_TIMEOUT_S, **kwargs) -> list[bool]:
  """`passes` for each (solution, tests, entry point), `workers` at a time."""
  entry_points = [None] * len(solutions) if entry_points is None else list(entry_points)
  if not len(solutions) == len(tests) == len(entry_points):
    raise ValueError(f"lengths differ: {len(solutions)} solutions, {len(tests)} tests, "
                     f"{len(entry_points)} entry points")
  programs = [humaneval_program(*x) for x in zip(solutions, tests, entry_points)]
  return [r.ok for r in run_many(programs, workers=workers, timeout_s=timeout_s, **kwargs)]
