"""What every ablation in experiments/ shares: one SFT per seed, variants trained from it, curves
aggregated over seeds (mean ± standard error), tables and shaded-band plots.

An ablation script defines its variants as config overrides and calls `run_ablation`:

    VARIANTS = {"grpo": {}, "rloo": {"algorithm.advantage": "rloo"},
                "gae": {"algorithm.advantage": "gae", "algorithm.advantage_kw": {"lam": 0.95},
                        "algorithm.terms": {"value": {}}}}
    results = common.run_ablation(args, base="configs/quickstart.py", variants=VARIANTS)

Overrides are flattened config paths. A component's hyperparameters live in
`algorithm.advantage_kw`, `algorithm.policy_loss_kw` and `algorithm.terms` (docs/ALGORITHMS.md):
a dict value replaces the whole block (so the `gae` variant above turns on the `value` term and
drops any term the base config lists), a dotted path sets one key and keeps the rest
(`"algorithm.advantage_kw.verifiable_coef": 1.0`, `"algorithm.terms.kl.coef": 0.01` where the
base lists `kl`).

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
# The curve math and plots live in rlvr_jax.plotting (shared with `rlvr-plot`); ablations call
# them as common.X.
from rlvr_jax.plotting import (curve, mean_se, plot_bands, plot_training_curves,  # noqa: E402,F401
                               read_metrics, wall_clock, wall_curve)
from rlvr_jax.training import loop  # noqa: E402
from rlvr_jax.training.run import Run  # noqa: E402

# A smoke run: enough steps to produce every output, nothing more.
TINY = {"sft.steps": 30, "sft.target_accuracy": 0.0, "rl.steps": 4, "rl.batch_size": 8,
        "rl.group_size": 4, "rl.minibatches": 1, "eval.every": 2, "eval.num_prompts": 32,
        "eval.batch_size": 32, "checkpoint.every": 2}


def parser(description: str, *, out: str, seeds: str = "0,1,2",
           variants: str = "") -> argparse.ArgumentParser:
  """The flags every ablation takes (scripts add their own)."""
  p = argparse.ArgumentParser(description=description)
  p.add_argument("--seeds", default=seeds)
  p.add_argument("--variants", default=variants,
                 help=f"comma-separated subset; default: {variants or 'all'}")
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


def run_ablation(args, *, base: str, variants: dict[str, dict[str, Any]],
                 variant_base: dict[str, str] | None = None,
                 after_run: Callable[[Run, str, dict], dict] | None = None,
                 prepare: Callable[[int, str], dict[str, dict[str, Any]]] | None = None,
                 name: str = "") -> list[dict[str, Any]]:
  """Trains every (seed, variant); returns one record a run.

  Args:
    base: config of the shared SFT (and of every variant unless `variant_base` names another
      config with the same model, e.g. "configs/pure_addition.py" for PRM variants).
    variants: name -> flattened config overrides.
    after_run: (run, workdir, record) -> extra fields, e.g. a pass@k evaluation of the final
      policy; called once a variant's training is done.
    prepare: (seed, sft_dir) -> {variant: extra overrides}, called once a seed after its SFT,
      for more that the seed's variants share (PURE trains one PRM a seed and points each PRM
      variant at it with prm.init_from). Its wall clock goes in each record as `prepare_wall_s`.

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
    t0 = time.time()
    shared = prepare(seed, sft_dir) if prepare is not None else {}
    prepare_s = time.time() - t0
    for variant in chosen:
      spec = (variant_base or {}).get(variant, base)
      overrides = {**variants[variant], **shared.get(variant, {}), "sft.init_from": sft_dir}
      config = config_for(spec, overrides, seed, args.tiny)
      run_dir = os.path.join(workdir, f"seed{seed}", variant)
      t0 = time.time()
      summary = loop.train(config, run_dir, progress=False)
      record = {"variant": variant, "seed": seed, "wall_s": time.time() - t0,
                "sft_wall_s": sft_s, "summary": summary, "rows": read_metrics(run_dir)}
      if prepare is not None:
        record["prepare_wall_s"] = prepare_s
      if after_run is not None:
        record.update(after_run(Run(config_for(spec, overrides, seed, args.tiny)),
                                run_dir, record))
      print(json.dumps({"variant": variant, "seed": seed, "wall_s": round(record["wall_s"], 1),
                        **{k: v for k, v in summary.items() if "accuracy" in k}}), flush=True)
      records.append(record)
  return records


# ---------------------------------------------------------------------------------------------
# Aggregation over seeds
# ---------------------------------------------------------------------------------------------
def fmt(values, digits: int = 3) -> str:
  """"mean ± se" over seeds, for tables."""
  m, se, n = mean_se(values)
  if n == 0:
    return "–"
  return f"{m:.{digits}f}" + (f" ± {se:.{digits}f}" if n > 1 else "")


def curve_table(records: list[dict], variants: list[str], metric: str, figure: str) -> list[str]:
  """Markdown lines: `metric` per evaluation step, mean ± SE over seeds, one column per variant
  (the numbers behind `figure`); steps are those of the first variant."""
  curves = {v: curve(records, v, metric) for v in variants}
  lines = ["", f"Held-out greedy accuracy curve (mean ± SE over seeds; the numbers behind "
           f"{figure}):", "", "| step | " + " | ".join(variants) + " |",
           "|---|" + "---|" * len(variants)]
  for t in curves[variants[0]][0]:
    cells = []
    for v in variants:
      s, m, se = curves[v]
      j = np.flatnonzero(s == t)
      cells.append(f"{m[j[0]]:.3f} ± {se[j[0]]:.3f}" if j.size else "–")
    lines.append(f"| {t} | " + " | ".join(cells) + " |")
  return lines


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
