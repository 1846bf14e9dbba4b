"""What every ablation in experiments/ shares: one SFT per seed, variants trained from it, curves
aggregated over seeds (mean ± standard error), tables and shaded-band plots.

An ablation script defines its variants as config overrides and calls `run_ablation`:

    VARIANTS = {"grpo": {}, "rloo": {"algorithm.advantage": "rloo"}}
    results = common.run_ablation(args, base="configs/quickstart.py", variants=VARIANTS)

For each seed the base config (with `rl.steps = 0`) is trained once into
`<workdir>/seed<s>/sft`: that run's checkpoint 0 is the SFT policy every variant of the seed
starts from (`sft.init_from`), so variants differ only in what they override. Each variant's run
lives in `<workdir>/seed<s>/<variant>`; rerunning resumes finished or interrupted runs rather than
retraining them. `--tiny` shrinks everything to a smoke run (about a minute) that checks the
outputs are produced, not the science.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any, Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from absl import logging  # noqa: E402

from rlvr_jax.configs_base import load_config  # noqa: E402
from rlvr_jax.training import loop  # noqa: E402

# A smoke run: enough steps to produce every output, nothing more.
TINY = {"sft.steps": 30, "sft.target_accuracy": 0.0, "rl.steps": 4, "rl.batch_size": 8,
        "rl.group_size": 4, "rl.minibatches": 1, "eval.every": 2, "eval.num_prompts": 32,
        "eval.batch_size": 32, "checkpoint.every": 2}


def parser(description: str, *, out: str, seeds: str = "0,1,2") -> argparse.ArgumentParser:
  """The flags every ablation takes (scripts add their own)."""
  p = argparse.ArgumentParser(description=description)
  p.add_argument("--seeds", default=seeds)
  p.add_argument("--variants", default="", help="comma-separated subset; default: all")
  p.add_argument("--workdir", default="", help="default: /tmp/<ablation name>")
  p.add_argument("--out", default=out, help="where table.md, results.json and plots go")
  p.add_argument("--tiny", action="store_true", help="a ~1 minute smoke run (tests)")
  p.add_argument("--replot", action="store_true", help="redraw from --out/results.json only")
  return p


def seeds_of(args) -> list[int]:
  return [int(s) for s in str(args.seeds).split(",") if s != ""]


def config_for(base: str, overrides: dict[str, Any], seed: int, tiny: bool):
  """`base` ("configs/x.py[:variant]", relative to the repository) with `overrides`."""
  config = load_config(os.path.join(ROOT, base))
  if tiny:
    config.update_from_flattened_dict({k: v for k, v in TINY.items()
                                       if _has(config, k)})
  config.update_from_flattened_dict(overrides)
  config.seed = seed
  config.checkpoint.use_async = False
  return config


def _has(config, dotted: str) -> bool:
  node = config
  for part in dotted.split("."):
    if part not in node:
      return False
    node = node[part]
  return True


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def run_ablation(args, *, base: str, variants: dict[str, dict[str, Any]],
                 variant_base: dict[str, str] | None = None,
                 after_run: Callable[[loop.Run, str, dict], dict] | None = None,
                 name: str = "") -> list[dict[str, Any]]:
  """Trains every (seed, variant); returns one record a run.

  Args:
    base: config of the shared SFT (and of every variant unless `variant_base` names another
      config with the same model, e.g. "configs/pure_addition.py" for PRM variants).
    variants: name -> flattened config overrides.
    after_run: (run, workdir, record) -> extra fields, e.g. a pass@k evaluation of the final
      policy; called once a variant's training is done.

  Each record holds the variant, seed, wall-clock seconds, the run's summary and its metrics rows
  (`rows`), so tables and curves can be built from it without the workdir.
  """
  chosen = [v for v in (args.variants.split(",") if args.variants else variants)]
  unknown = sorted(set(chosen) - set(variants))
  if unknown:
    raise SystemExit(f"--variants: unknown {unknown}; known: {', '.join(variants)}")
  workdir = args.workdir or os.path.join("/tmp", name or "ablation")
  logging.set_verbosity(logging.WARNING)
  records = []
  for seed in seeds_of(args):
    sft_dir = os.path.join(workdir, f"seed{seed}", "sft")
    t0 = time.time()
    loop.train(config_for(base, {"rl.steps": 0}, seed, args.tiny), sft_dir, progress=False)
    sft_s = time.time() - t0
    for variant in chosen:
      spec = (variant_base or {}).get(variant, base)
      overrides = {**variants[variant], "sft.init_from": sft_dir}
      config = config_for(spec, overrides, seed, args.tiny)
      run_dir = os.path.join(workdir, f"seed{seed}", variant)
      t0 = time.time()
      summary = loop.train(config, run_dir, progress=False)
      record = {"variant": variant, "seed": seed, "wall_s": time.time() - t0,
                "sft_wall_s": sft_s, "summary": summary, "rows": read_metrics(run_dir)}
      if after_run is not None:
        record.update(after_run(loop.Run(config_for(spec, overrides, seed, args.tiny)),
                                run_dir, record))
      print(json.dumps({"variant": variant, "seed": seed, "wall_s": round(record["wall_s"], 1),
                        **{k: v for k, v in summary.items() if "accuracy" in k}}), flush=True)
      records.append(record)
  return records


# ---------------------------------------------------------------------------------------------
# Aggregation over seeds
# ---------------------------------------------------------------------------------------------
def mean_se(values) -> tuple[float, float, int]:
  """(mean, standard error of the mean, n) of the finite values; se is nan for n < 2."""
  x = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
  if x.size == 0:
    return math.nan, math.nan, 0
  se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan
  return float(x.mean()), se, int(x.size)


def fmt(values, digits: int = 3) -> str:
  """"mean ± se" over seeds, for tables."""
  m, se, n = mean_se(values)
  if n == 0:
    return "–"
  return f"{m:.{digits}f}" + (f" ± {se:.{digits}f}" if n > 1 else "")


def curve(records: list[dict], variant: str, key: str, phase: str = "rl"
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(steps, mean, se) of metric `key` over the seeds of `variant`, at the steps all seeds have
  (step 0, the shared SFT policy, included when the rows hold `key` there)."""
  per_seed = []
  for r in records:
    if r["variant"] != variant:
      continue
    per_seed.append({row["step"]: row[key] for row in r["rows"]
                     if key in row and row[key] is not None
                     and (row.get("phase") == phase or row["step"] == 0)})
  if not per_seed:
    return np.zeros(0), np.zeros(0), np.zeros(0)
  steps = sorted(set.intersection(*(set(s) for s in per_seed)))
  stats = [mean_se([s[t] for s in per_seed]) for t in steps]
  return (np.asarray(steps), np.asarray([m for m, _, _ in stats]),
          np.asarray([0.0 if math.isnan(se) else se for _, se, _ in stats]))


def wall_clock(record: dict, *, exclude_compile: bool = False) -> dict[int, float]:
  """Seconds of RL since the run started, at each RL step (sum of step_time_s). With
  `exclude_compile` the first RL step, which also traces and compiles the step (and is much
  faster when the XLA cache holds the program), counts the run's median step time instead."""
  rl = [row for row in record["rows"] if row.get("phase") == "rl"]
  median = float(np.median([row.get("step_time_s") or 0.0 for row in rl])) if rl else 0.0
  out, total = {}, 0.0
  for i, row in enumerate(rl):
    total += median if exclude_compile and i == 0 else (row.get("step_time_s") or 0.0)
    out[row["step"]] = total
  return out


def plot_bands(ax, records: list[dict], variants, key: str, *, label_fmt: str = "{}") -> None:
  """Mean over seeds as a line, ± one standard error as a shaded band, one colour a variant."""
  import matplotlib.pyplot as plt
  colours = plt.get_cmap("tab10").colors
  for i, v in enumerate(variants):
    steps, mean, se = curve(records, v, key)
    if steps.size == 0:
      continue
    n = len({r["seed"] for r in records if r["variant"] == v})
    ax.plot(steps, mean, color=colours[i % 10], marker=".", label=label_fmt.format(v) + f" (n={n})")
    ax.fill_between(steps, mean - se, mean + se, color=colours[i % 10], alpha=0.2, linewidth=0)


def plot_training_curves(records: list[dict], variants, path: str,
                         panels=(("eval_accuracy", "held-out greedy accuracy"),
                                 ("reward_mean", "train reward (T=1 samples)"),
                                 ("sample_entropy", "sample entropy (nats/token)"))) -> None:
  """One panel a metric over RL steps (`plot_bands`: mean ± SE over seeds), saved to `path`."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
  for ax, (key, label) in zip(np.atleast_1d(axes), panels):
    plot_bands(ax, records, variants, key)
    ax.set_xlabel("RL step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
  np.atleast_1d(axes)[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def save_results(out: str, records: list[dict], extra: dict | None = None) -> str:
  """Writes results.json (every record, rows included); merges with earlier (variant, seed)
  pairs in the file so runs of subsets add up."""
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, "results.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      earlier = json.load(f)
    done = {(r["variant"], r["seed"]) for r in records}
    records = [r for r in earlier.get("records", []) if (r["variant"], r["seed"]) not in done
               ] + records
  with open(path, "w", encoding="utf-8") as f:
    json.dump({"records": records, **(extra or {})}, f, indent=1, allow_nan=False,
              default=_json_default)
  return path


def load_results(out: str) -> list[dict]:
  with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
    return json.load(f)["records"]


def _json_default(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def machine() -> str:
  """One line naming the machine, for READMEs and the index."""
  import platform
  return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, " \
         f"{platform.system()} (no accelerator)"


def wall_curve(records: list[dict], variant: str, key: str = "eval_accuracy", *,
               exclude_compile: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(seconds, mean, se) of RL metric `key` over the seeds of `variant` against RL wall clock:
  at each step all seeds have, the seeds' mean `wall_clock` seconds (step 0, the SFT policy,
  at 0 s; compilation excluded unless `exclude_compile` is False)."""
  steps, mean, se = curve(records, variant, key)
  clocks = [wall_clock(r, exclude_compile=exclude_compile) for r in records
            if r["variant"] == variant]
  seconds = np.asarray([np.mean([c.get(int(t), 0.0) for c in clocks]) for t in steps])
  return seconds, mean, se
