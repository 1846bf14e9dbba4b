"""Fixed batch vs APRIL vs in-flight refill on heavy-tailed answer lengths (issue 21, item 3).

    python experiments/decode_refill.py [--seeds 0,1,2 --steps 60 --timing_batches 8]
    python experiments/decode_refill.py --timing_only --workdir /tmp/decode_refill  # no RL runs

`configs/april_longtail.py` (`longtail_reverse`: answer lengths P(L) ∝ L^-1.2 on [1, 24]),
one SFT a seed, then three RL runs from it: the fixed batch (every row decodes until the longest
ends), APRIL (`rl.partial_rollouts`, factor 2) and refill (`rl.decode_refill`, `rl.decode_slots`
rows decoding at once). The runs' metrics give decode_steps and decode_slot_utilisation per RL
step and held-out greedy accuracy. Sampling time is measured apart from the runs, on each
seed's SFT policy: the jitted sampling phase of each variant (APRIL: its rollout, carrying its
buffer from call to call) on the same batches, interleaved in ABBA order (fixed, refill, APRIL,
then the reverse), median seconds a call and the per-batch ratio to the fixed batch.
Writes results.json, table.md and README numbers into --out. --timing_only: only the sampling
timing (refill at a half to a sixteenth of the rows, no APRIL), from the SFT policies already in
--workdir (trained when missing), into timing_rows.json and timing_rows.md.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jax  # noqa: E402

from rlvr_jax import sampling  # noqa: E402
from absl import logging  # noqa: E402

from rlvr_jax.training import april, loop, warm_start  # noqa: E402
from rlvr_jax.training.run import Run  # noqa: E402

BASE = "configs/april_longtail.py"
VARIANTS = {"fixed": {}, "april": {"rl.partial_rollouts": True},
            "refill": {"rl.decode_refill": True}}


def _sampler(run: Run, state, params, slots):
  """A jitted `sample(batch, rng) -> (mask [rows, n], decode_steps, utilisation)` of the
  variant: the fixed batch (slots None), refill with `slots` rows decoding at once, or
  ("april") APRIL's rollout, which carries its buffer between calls."""
  rl = run.config.rl
  kw = dict(max_new_tokens=rl.max_new_tokens, temperature=rl.temperature, top_k=rl.top_k,
            top_p=rl.top_p, eos_id=run.tokenizer.eos_id, pad_id=run.tokenizer.pad_id)
  if slots != "april":
    fn = jax.jit(lambda p, b, r: sampling.generate_with_stats(
        run.model_config, p, b["prompt_ids"], b["prompt_mask"], r, num_samples=rl.group_size,
        decode_slots=slots, **kw))

    def sample(batch, rng):
      comp, stats = fn(params, batch, rng)
      return comp.mask, stats.decode_steps, stats.slot_utilisation

    return sample
  @jax.jit
  def roll(params, before, batch, rng):
    train, buffer, stale, steps = april.rollout(run.model_config, params, before, batch, rng,
                                                state.step, group_size=rl.group_size,
                                                sample_kw=kw)
    m = april.metrics(train, buffer, stale, state.step, steps, before)
    return train.part.mask, buffer, m["decode_steps"], m["decode_slot_utilisation"]

  carried = {"buffer": state.rollouts}

  def sample(batch, rng):
    mask, carried["buffer"], steps, util = roll(params, carried["buffer"], batch, rng)
    return mask, steps, util

  return sample


def time_sampling(args, seed: int, sft_dir: str) -> dict:
  """Per sampling variant on the seed's SFT policy, ABBA-interleaved over
  `args.timing_batches` batches: median seconds a call, the median per-batch ratio to the fixed
  batch's, mean decode steps and slot utilisation."""
  config = common.config_for(BASE, {"rl.partial_rollouts": True}, seed, args.tiny)
  run = Run(config)
  params, _ = warm_start.load_sft(run, sft_dir)
  it = iter(run.rl_dataset())
  state = run.prime_rollouts(run.make_rl_state(params), it)
  batches = [run.device_batch(next(it)) for _ in range(args.timing_batches + 2)]
  rows = config.rl.batch_size * config.rl.group_size
  fractions = (2, 4, 8, 16) if args.timing_only else (4, 8)
  refill = {sampling.auto_slots(rows)} | {rows // f for f in fractions}
  variants = {"fixed": None, **({} if args.timing_only else {"april": "april"}),
              **{f"refill_r{k}": k for k in sorted(refill - {0}, reverse=True)}}
  samplers = {v: _sampler(run, state, params, slots) for v, slots in variants.items()}
  order = list(variants)
  out = {key: {v: [] for v in order} for key in ("seconds", "decode_steps", "utilisation")}
  for i, batch in enumerate(batches):
    rng = jax.random.key(1000 + i)
    for v in (order if i % 2 == 0 else order[::-1]):
      t0 = time.perf_counter()
      _, steps, util = jax.block_until_ready(samplers[v](batch, rng))
      if i >= 2:  # the first two calls compile and (APRIL) bring its buffer to steady state
        out["seconds"][v].append(time.perf_counter() - t0)
        out["decode_steps"][v].append(float(steps))
        out["utilisation"][v].append(float(util))
  fixed = np.asarray(out["seconds"]["fixed"])
  return {**out, "load_avg": os.getloadavg(),
          "median_s": {v: float(np.median(s)) for v, s in out["seconds"].items()},
          "ratio_median": {v: float(np.median(np.asarray(s) / fixed))
                           for v, s in out["seconds"].items()}}


def _rl_mean(record: dict, key: str) -> float:
  vals = [r[key] for r in record["rows"] if r.get("phase") == "rl" and key in r]
  return float(np.mean(vals)) if vals else float("nan")


def _final_acc(record: dict) -> float:
  return [r["eval_accuracy"] for r in record["rows"] if "eval_accuracy" in r][-1]


def table(records: list[dict], timing: dict) -> list[str]:
  variants = list(VARIANTS)
  lines = ["| | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
  for label, fn in [
      ("decode_slot_utilisation, mean over RL steps", lambda r: _rl_mean(r, "decode_slot_utilisation")),
      ("decode_steps per RL step, mean", lambda r: _rl_mean(r, "decode_steps")),
      ("median wall time per RL step (s)", lambda r: r["summary"]["median_step_time_s"]),
      ("held-out greedy accuracy, final", _final_acc)]:
    cells = [common.fmt([fn(r) for r in records if r["variant"] == v]) for v in variants]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  return lines + [""] + timing_table(timing)


def timing_table(timing: dict) -> list[str]:
  timing_variants = list(next(iter(timing.values()))["median_s"])
  lines = ["Sampling phase alone, on each seed's SFT policy (ABBA-interleaved, mean ± SE "
            "over seeds of the per-seed medians / means):", "",
            "| | " + " | ".join(timing_variants) + " |",
            "|---|" + "---|" * len(timing_variants)]
  for label, key, agg in [("seconds per call, median", "median_s", None),
                          ("time / fixed batch's, median per batch", "ratio_median", None),
                          ("decode_steps, mean", "decode_steps", np.mean),
                          ("decode_slot_utilisation, mean", "utilisation", np.mean)]:
    cells = [common.fmt([t[key][v] if agg is None else agg(t[key][v]) for t in timing.values()])
             for v in timing_variants]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  return lines


def timing_only(args):
  """The sampling timing of `time_sampling` per seed, without the RL runs."""
  workdir = args.workdir or "/tmp/decode_refill"
  logging.set_verbosity(logging.WARNING)
  timing = {}
  for seed in common.seeds_of(args):
    sft_dir = os.path.join(workdir, f"seed{seed}", "sft")
    loop.train(common.config_for(BASE, {"rl.steps": 0}, seed, args.tiny), sft_dir,
               progress=False)  # resumes: a no-op when the SFT is done
    timing[str(seed)] = time_sampling(args, seed, sft_dir)
    print(json.dumps({"seed": seed, **{k: timing[str(seed)][k] for k in
                                       ("median_s", "ratio_median", "load_avg")}}), flush=True)
  with open(os.path.join(args.out, "timing_rows.json"), "w", encoding="utf-8") as f:
    json.dump({"timing": timing, "machine": common.machine(), "load_avg_end": os.getloadavg()},
              f, indent=1)
  lines = timing_table(timing)
  with open(os.path.join(args.out, "timing_rows.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


def main():
  p = common.parser(__doc__, out="experiments/results/decode_refill")
  p.add_argument("--steps", type=int, default=60, help="RL steps a run")
  p.add_argument("--timing_batches", type=int, default=8)
  p.add_argument("--timing_only", action="store_true",
                 help="only the sampling timing, from the SFT policies in --workdir")
  args = p.parse_args()
  if args.timing_only:
    timing_only(args)
    return
  if args.replot:
    data = json.load(open(os.path.join(args.out, "results.json"), encoding="utf-8"))
    records, timing = data["records"], data["timing"]
  else:
    variants = {v: {**o, "rl.steps": args.steps} for v, o in VARIANTS.items()}
    timing = {}

    def prepare(seed, sft_dir):
      timing[str(seed)] = time_sampling(args, seed, sft_dir)
      print(json.dumps({"seed": seed, **{k: timing[str(seed)][k] for k in
                                                ("median_s", "ratio_median", "load_avg")}}),
            flush=True)
      return {}

    records = common.run_ablation(args, base=BASE, variants=variants, prepare=prepare,
                                  name="decode_refill")
    common.save_results(args.out, records, {"timing": timing, "machine": common.machine(),
                                            "load_avg_end": os.getloadavg()})
  lines = table(records, timing)
  with open(os.path.join(args.out, "table.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
