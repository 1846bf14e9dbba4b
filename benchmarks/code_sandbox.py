"""Sandboxed checks per second on HumanEval's canonical solutions, and the hostile cases' wall time.

    python benchmarks/code_sandbox.py [--rounds 3] [--pools 1,2,4]

Rows: the forked-template sandbox ("namespaces" where allowed, and the "rlimits" fallback) at
each pool size, and, for comparison, what a new interpreter per check costs (`python -I -c`
under `subprocess.run`, no isolation at all: a lower bound on the cost of any start-up-per-check
design). Each row is the median of `--rounds` passes over the 164 problems. Then each hostile
program from tests/test_code_sandbox.py runs with a 1 s timeout; the worst wall time is the
bound on how long one bad completion holds a worker.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rlvr_jax.data import humaneval  # noqa: E402
from rlvr_jax.rewards import code  # noqa: E402

HOSTILE = {
    "infinite loop": "while True:\n  pass",
    "fork bomb": "import os\nwhile True:\n  try:\n    os.fork()\n  except OSError:\n    pass\n",
    "memory bomb": "x = []\nwhile True:\n  x.append(bytearray(1 << 20))",
    "stdout flood": "import sys\nwhile True:\n  sys.stdout.write('x' * 65536)",
    "daemon": ("import os, time\nif os.fork() == 0:\n  os.setsid()\n  if os.fork() == 0:\n"
               "    time.sleep(60)\n  os._exit(0)\ntime.sleep(60)"),
}


def cpu_model() -> str:
  with open("/proc/cpuinfo") as f:
    for line in f:
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  return platform.processor()


def fresh_interpreter(program: str, timeout_s: float) -> bool:
  try:
    return subprocess.run([sys.executable, "-I", "-c", program], capture_output=True,
                          timeout=timeout_s, env={"PATH": "/usr/bin:/bin"}).returncode == 0
  except subprocess.TimeoutExpired:
    return False


def checks_per_s(check, programs: list[str], workers: int, rounds: int) -> tuple[float, int]:
  rates, passed = [], 0
  for _ in range(rounds):
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      passed = sum(pool.map(check, programs))
    rates.append(len(programs) / (time.perf_counter() - start))
  return statistics.median(rates), passed


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--pools", default="1,2,4")
  args = parser.parse_args()
  pools = [int(p) for p in args.pools.split(",")]
  problems = humaneval.problems()
  programs = [code.humaneval_program(p.prompt + p.canonical_solution, p.test, p.entry_point)
              for p in problems]
  print(f"machine: {cpu_model()}, nproc {os.cpu_count()}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
  print(f"{len(programs)} HumanEval canonical solutions, median of {args.rounds} rounds")
  for isolation in ("auto", "rlimits"):
    box = code.Sandbox(isolation)
    name = box.isolation
    check = lambda p: code.run(p, timeout_s=10.0, sandbox=box).ok  # noqa: E731
    check(programs[0])  # template start-up is not a check
    for workers in pools:
      rate, passed = checks_per_s(check, programs, workers, args.rounds)
      print(f"  sandbox {name:10s} pool {workers}: {rate:6.1f} checks/s ({passed}/{len(programs)} pass)")
    if isolation == "auto":
      worst = 0.0
      for label, program in HOSTILE.items():
        start = time.perf_counter()
        result = code.run(program, timeout_s=1.0, memory_mb=256, sandbox=box)
        wall = time.perf_counter() - start
        worst = max(worst, wall)
        print(f"  hostile {label:13s}: {wall:5.2f} s (timeout 1 s; timed_out={result.timed_out}, "
              f"returncode={result.returncode})")
      print(f"  worst hostile wall time: {worst:.2f} s")
    box.close()
  check = lambda p: fresh_interpreter(p, 10.0)  # noqa: E731
  for workers in pools:
    rate, passed = checks_per_s(check, programs, workers, args.rounds)
    print(f"  new interpreter per check (no isolation) pool {workers}: {rate:6.1f} checks/s "
          f"({passed}/{len(programs)} pass)")


if __name__ == "__main__":
  main()
