"""The RL step's phase timings of this checkout against another commit, interleaved in one session.

    python benchmarks/compare_commits.py --base 2ded13a [--rounds 3] [--steps 10]
        [--config configs/bench.py:larger] [--base-config configs/bench.py:larger]

Checks the base commit out into a temporary git worktree, then runs `benchmarks/phases.py`
alternately from the base and from this checkout (`--rounds` times each, the order alternating
round by round: base first, then this first, ...), each run
in its own process importing its own `rlvr_jax`, and prints every run's medians and the ratio
base / this of the medians over rounds (> 1: this checkout is faster). Run it on a quiet machine:
the two sides share it, so noise hits both, but not equally.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LINE = re.compile(r"^(sample|score|learn|fused step)\s+median\s+([\d.]+) ms", re.M)


def phases(checkout: str, config: str, steps: int) -> dict[str, float]:
  """Median milliseconds of each phase, from one `benchmarks/phases.py` run in `checkout`."""
  proc = subprocess.run(
      [sys.executable, os.path.join(checkout, "benchmarks", "phases.py"), "--config", config,
       "--steps", str(steps)], cwd=checkout, env={**os.environ, "PYTHONPATH": checkout},
      capture_output=True, text=True, check=False)
  if proc.returncode:
    raise RuntimeError(f"phases.py failed in {checkout}:\n{proc.stderr[-3000:]}")
  return {name: float(ms) for name, ms in _LINE.findall(proc.stdout)}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--base", required=True, help="the commit to compare against")
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--config", default="configs/bench.py:larger")
  ap.add_argument("--base-config", default="", help="the base's config (default: --config)")
  args = ap.parse_args()
  head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=True,
                        capture_output=True, text=True).stdout.strip()
  with tempfile.TemporaryDirectory() as tmp:
    base_dir = os.path.join(tmp, "base")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", base_dir, args.base],
                   check=True, capture_output=True)
    try:
      runs = {"base": [], "this": []}
      sides = [("base", base_dir, args.base_config or args.config), ("this", ROOT, args.config)]
      for r in range(args.rounds):  # ABBA: the order alternates, so a drift hits both sides
        for side, checkout, config in (sides if r % 2 == 0 else sides[::-1]):
          runs[side].append(phases(checkout, config, args.steps))
          print(f"round {r + 1} {side:4s}: " + "  ".join(
              f"{k} {v:.1f} ms" for k, v in runs[side][-1].items()), flush=True)
    finally:
      subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", base_dir], check=False)
  print(f"\nbase {args.base} vs this checkout ({head}, uncommitted changes included), "
        f"{args.rounds} interleaved rounds x {args.steps} steps, medians over rounds:")
  for name in runs["base"][0]:
    base = statistics.median(r[name] for r in runs["base"])
    this = statistics.median(r[name] for r in runs["this"])
    print(f"  {name:11s} base {base:8.1f} ms  this {this:8.1f} ms  base/this {base / this:5.3f}")


if __name__ == "__main__":
  main()
