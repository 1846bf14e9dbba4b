"""GRPO on SmolLM2-135M-Instruct for GSM-style arithmetic, on CPU: train, then tabulate.

    python experiments/smollm2_arithmetic.py --workdir /tmp/smollm2_arith [--steps 20]
        [--eval_n 4 --eval_prompts 32] [--skip_train]

Runs `python -m rlvr_jax.main --config=configs/smollm2_arithmetic.py` (whose in-loop eval gives
the held-out greedy accuracy at step 0 = the base model, and at the end), optionally
`python -m rlvr_jax.evaluate` for sampled pass@k of the base and trained policies, and writes
to experiments/results/smollm2_arithmetic/: copies of the run's metrics.jsonl, config.json and
eval_*.json, curve.csv (the per-step reward curve), summary.json, and curve.png when matplotlib
is installed.
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/smollm2_arithmetic.py"
RESULTS = os.path.join(ROOT, "experiments", "results", "smollm2_arithmetic")
CURVE_FIELDS = ("step", "reward_mean", "reward_std", "solve_none_frac", "solve_all_frac",
                "completion_tokens", "sample_entropy", "loss", "grad_norm", "step_time_s",
                "eval_accuracy")


def _module(module: str, *args: str) -> None:
  cmd = [sys.executable, "-m", module, f"--config={CONFIG}", *args, "--noprogress"]
  print("+", " ".join(cmd), flush=True)
  subprocess.run(cmd, cwd=ROOT, check=True)


def _plot(rows: list[dict], greedy: dict[int, float], path: str) -> bool:
  """Reward and held-out greedy accuracy (in-loop evals plus `greedy` {step: acc} from
  rlvr_jax.evaluate) over RL steps, and completion length; False without matplotlib."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return False
  rl = [r for r in rows if r.get("phase") == "rl"]
  accuracy = {r["step"]: r["eval_accuracy"] for r in rows if "eval_accuracy" in r} | greedy
  steps = [r["step"] for r in rl]
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
  top.plot(steps, [r["reward_mean"] for r in rl], ".-", label="train reward (T=0.7)")
  top.plot(sorted(accuracy), [accuracy[s] for s in sorted(accuracy)], "o-",
           label="held-out greedy accuracy")
  top.set_ylim(0, 1)
  top.legend()
  top.set_title("SmolLM2-135M-Instruct, GRPO on gsm_arith (2-core CPU)")
  bottom.plot(steps, [r["completion_tokens"] for r in rl], ".-", color="gray")
  bottom.set_ylabel("completion tokens")
  bottom.set_xlabel("RL step")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  return True


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--eval_n", type=int, default=0, help="samples per prompt; 0 = skip")
  parser.add_argument("--eval_prompts", type=int, default=32)
  parser.add_argument("--skip_train", action="store_true", help="only tabulate an existing run")
  args = parser.parse_args()

  t0 = time.time()
  if not args.skip_train:
    _module("rlvr_jax.main", f"--workdir={args.workdir}", f"--config.rl.steps={args.steps}")
  train_s = time.time() - t0
  evaluated, eval_files = {}, []
  if args.eval_n:
    ks = ",".join(str(k) for k in (1, args.eval_n))
    for checkpoint in ("none", "latest"):
      _module("rlvr_jax.evaluate", f"--workdir={args.workdir}", f"--checkpoint={checkpoint}",
              f"--n={args.eval_n}", f"--k={ks}", f"--num_prompts={args.eval_prompts}",
              "--temperature=0.7")
  for name in sorted(os.listdir(args.workdir)):  # every rlvr_jax.evaluate result of the run
    if name.startswith("eval_") and name.endswith(".json"):
      with open(os.path.join(args.workdir, name)) as f:
        result = json.load(f)
      evaluated[result["checkpoint"]] = {k: result[k] for k in (
          "table", "num_prompts", "n", "temperature", "mean_completion_tokens",
          "truncated_frac", "samples")}
      eval_files.append(name)

  os.makedirs(RESULTS, exist_ok=True)
  for name in ["metrics.jsonl", "config.json"] + eval_files:
    shutil.copy(os.path.join(args.workdir, name), RESULTS)
  with open(os.path.join(RESULTS, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  rl = [r for r in rows if r.get("phase") == "rl"]
  with open(os.path.join(RESULTS, "curve.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, CURVE_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  evals = {r["step"]: r["eval_accuracy"] for r in rows if "eval_accuracy" in r}
  times = sorted(r["step_time_s"] for r in rl[1:])  # step 1 includes compilation
  half = len(rl) // 2
  with open(os.path.join(args.workdir, "config.json")) as f:
    eval_prompts = json.load(f)["eval"]["num_prompts"]
  summary = {
      "config": CONFIG,
      "held_out_greedy_accuracy": evals,
      "eval_prompts": eval_prompts,
      "reward_mean_first_half": sum(r["reward_mean"] for r in rl[:half]) / max(half, 1),
      "reward_mean_second_half": sum(r["reward_mean"] for r in rl[half:]) / max(len(rl) - half, 1),
      "rl_steps": len(rl),
      "median_step_time_s": times[len(times) // 2] if times else None,
      "first_step_time_s": rl[0]["step_time_s"] if rl else None,
      "train_wall_clock_s": train_s if not args.skip_train else None,
      "evaluate": evaluated,
  }
  with open(os.path.join(RESULTS, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  greedy = {int(c): e["table"][0]["mean@k"] for c, e in evaluated.items()
            if c != "none" and e["temperature"] == 0}
  plotted = _plot(rows, greedy, os.path.join(RESULTS, "curve.png"))
  print(json.dumps(summary, indent=2))
  print(f"wrote {RESULTS}" + ("" if plotted else " (no matplotlib: curve.csv only)"))


if __name__ == "__main__":
  main()
