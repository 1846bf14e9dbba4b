"""rlvr_jax vs Tunix vs TRL on the same GRPO workload, interleaved, one table of ratios.

    bash benchmarks/peers/setup.sh                      # once: each peer in its own virtualenv
    python benchmarks/peers/run.py --size larger        # then on a quiet machine

Each round runs every framework once, as its own process in its own virtualenv (warm-up steps,
then timed steps); the order rotates between rounds so no framework always runs first after a
pause. Medians are over all timed steps of all rounds. FLOP/s use the analytic FLOPs of
`sizes.step_flops` (the same work for all three) against the f32 matmul peak rlvr_jax's process
measured in the same run. Results: benchmarks/peers/results/<size>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import sizes  # noqa: E402

SCRIPTS = {"rlvr_jax": "rlvr_jax_grpo.py", "tunix": "tunix_grpo.py", "trl": "trl_grpo.py"}


def python_for(framework: str, peers_dir: str) -> str:
  if framework == "rlvr_jax":
    return sys.executable
  path = os.path.join(peers_dir, framework, "bin", "python")
  if not os.path.exists(path):
    raise SystemExit(f"{path} is missing: run `bash benchmarks/peers/setup.sh {peers_dir}`")
  return path


def run_once(framework: str, args, round_index: int) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "r.json")
    cmd = [python_for(framework, args.peers_dir), os.path.join(HERE, SCRIPTS[framework]),
           "--size", args.size, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--out", out]
    if framework == "rlvr_jax" and round_index == 0 and args.phases:
      cmd.append("--phases")
    env = dict(os.environ, PYTHONPATH=ROOT)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=args.timeout)
    if proc.returncode != 0:
      raise SystemExit(f"{framework} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                       f"{proc.stderr[-4000:]}")
    with open(out) as f:
      result = json.load(f)
  print(f"  round {round_index}: {framework:9s} median {np.median(result['step_times']):.3f} s "
        f"(process {time.time() - t0:.0f} s)", flush=True)
  return result


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--size", default="larger", choices=sorted(sizes.SIZES))
  ap.add_argument("--rounds", type=int, default=4)
  ap.add_argument("--steps", type=int, default=5, help="timed steps per process")
  ap.add_argument("--warmup", type=int, default=2)
  ap.add_argument("--frameworks", default="rlvr_jax,tunix,trl")
  ap.add_argument("--peers-dir", default=os.environ.get(
      "RLVR_PEERS_DIR", os.path.expanduser("~/.cache/rlvr_jax_peers")))
  ap.add_argument("--timeout", type=int, default=1800)
  ap.add_argument("--no-phases", dest="phases", action="store_false")
  args = ap.parse_args()
  frameworks = args.frameworks.split(",")
  load = os.getloadavg()[0]
  print(f"{sizes.describe(args.size)}; load average {load:.2f}"
        + ("  (WARNING: machine busy; ratios will be off)" if load > 0.7 else ""), flush=True)
  results: dict[str, list[dict]] = {f: [] for f in frameworks}
  for r in range(args.rounds):
    order = frameworks[r % len(frameworks):] + frameworks[:r % len(frameworks)]
    for fw in order:
      results[fw].append(run_once(fw, args, r))
  flops = sizes.step_flops(args.size)
  peak = next((x["matmul_peak_flops"] for x in results.get("rlvr_jax", [])), None)
  summary = {"size": args.size, "workload": sizes.describe(args.size), "rounds": args.rounds,
             "steps_per_round": args.steps, "load_average_at_start": load,
             "matmul_peak_flops": peak, "step_gflop": flops["step"] / 1e9, "frameworks": {}}
  for fw, runs in results.items():
    times = [t for run in runs for t in run["step_times"]]
    med = float(np.median(times))
    entry = {"median_s": med, "min_s": float(min(times)), "max_s": float(max(times)),
             "round_medians_s": [float(np.median(run["step_times"])) for run in runs],
             "achieved_gflops": flops["step"] / med / 1e9,
             "version": runs[0].get("version"), "notes": runs[0].get("notes", ""),
             "completion_lengths_checked": runs[0].get("completion_lengths_checked")}
    if peak:
      entry["fraction_of_peak"] = flops["step"] / med / peak
    phases = runs[0].get("phase_times") or {}
    entry["phase_medians_s"] = {k: float(np.median(v)) for k, v in phases.items() if v}
    summary["frameworks"][fw] = entry
  os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
  path = os.path.join(HERE, "results", f"{args.size}.json")
  with open(path, "w") as f:
    json.dump(summary, f, indent=1)
  base = summary["frameworks"].get("rlvr_jax", {}).get("median_s")
  print(f"\n| framework | median s/step | rounds' medians | GFLOP/s | % of peak | "
        f"rlvr_jax speed-up |\n|---|---|---|---|---|---|")
  for fw, e in summary["frameworks"].items():
    pct = f"{100 * e['fraction_of_peak']:.0f}%" if "fraction_of_peak" in e else "-"
    ratio = f"{e['median_s'] / base:.2f}x" if base else "-"
    rounds = ", ".join(f"{x:.3f}" for x in e["round_medians_s"])
    print(f"| {fw} | {e['median_s']:.3f} | {rounds} | {e['achieved_gflops']:.0f} | {pct} | "
          f"{ratio} |")
  if peak:
    print(f"\nmatmul peak (rlvr_jax process, f32 1024^2): {peak / 1e9:.0f} GFLOP/s; "
          f"step work {flops['step'] / 1e9:.1f} GFLOP; written {path}")


if __name__ == "__main__":
  main()
