"""One-off A/B: group refill (the sampler at commit 6255a70, loaded from git) against row refill
(this tree) and the fixed batch, interleaved on the same batches, so both refills are timed
under the same machine load.

    git show 6255a70:rlvr_jax/sampling/sampler.py > /tmp/group_sampler_6255a70.py
    PYTHONPATH=. python experiments/results/decode_refill/group_vs_row_ab.py \
        --workdir /tmp/decode_refill --timing_batches 30

Needs the SFT policies of `experiments/decode_refill.py` in --workdir. Writes ab.json beside
this file and prints the table.
"""

import importlib.util
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
import common  # noqa: E402
import decode_refill  # noqa: E402

import jax  # noqa: E402

from rlvr_jax import sampling  # noqa: E402
from rlvr_jax.training import warm_start  # noqa: E402
from rlvr_jax.training.run import Run  # noqa: E402

spec = importlib.util.spec_from_file_location("group_sampler", "/tmp/group_sampler_6255a70.py")
group_sampler = importlib.util.module_from_spec(spec)
spec.loader.exec_module(group_sampler)


def main():
  p = common.parser(__doc__, out=HERE)
  p.add_argument("--timing_batches", type=int, default=30)
  args = p.parse_args()
  variants = {"fixed": (sampling, None), "group_s4": (group_sampler, 4),
              "group_s2": (group_sampler, 2), "row_r32": (sampling, 32),
              "row_r16": (sampling, 16), "row_r8": (sampling, 8)}
  out = {}
  for seed in common.seeds_of(args):
    config = common.config_for(decode_refill.BASE, {}, seed, args.tiny)
    run = Run(config)
    params, _ = warm_start.load_sft(run, os.path.join(args.workdir, f"seed{seed}", "sft"))
    rl = config.rl
    kw = dict(max_new_tokens=rl.max_new_tokens, temperature=rl.temperature, top_k=rl.top_k,
              top_p=rl.top_p, eos_id=run.tokenizer.eos_id, pad_id=run.tokenizer.pad_id,
              num_samples=rl.group_size)
    fns = {v: jax.jit(lambda prm, b, r, mod=mod, k=k: mod.generate_with_stats(
        run.model_config, prm, b["prompt_ids"], b["prompt_mask"], r, decode_slots=k, **kw))
           for v, (mod, k) in variants.items()}
    it = iter(run.rl_dataset())
    batches = [run.device_batch(next(it)) for _ in range(args.timing_batches + 2)]
    rec = {key: {v: [] for v in variants} for key in ("seconds", "decode_steps", "utilisation")}
    order = list(variants)
    loads = []
    for i, batch in enumerate(batches):
      rng = jax.random.key(1000 + i)
      masks = {}
      for v in (order if i % 2 == 0 else order[::-1]):
        t0 = time.perf_counter()
        comp, stats = jax.block_until_ready(fns[v](params, batch, rng))
        dt = time.perf_counter() - t0
        masks[v] = np.asarray(comp.mask)
        if i >= 2:
          rec["seconds"][v].append(dt)
          rec["decode_steps"][v].append(float(stats.decode_steps))
          rec["utilisation"][v].append(float(stats.slot_utilisation))
      assert all((m == masks["fixed"]).all() for m in masks.values())  # the same completions
      loads.append(os.getloadavg()[0])
    fixed = np.asarray(rec["seconds"]["fixed"])
    out[str(seed)] = {**rec, "load_avg_1min": loads,
                      "median_s": {v: float(np.median(s)) for v, s in rec["seconds"].items()},
                      "ratio_median": {v: float(np.median(np.asarray(s) / fixed))
                                       for v, s in rec["seconds"].items()}}
    print(json.dumps({"seed": seed, "ratio_median": out[str(seed)]["ratio_median"],
                      "load": [min(loads), max(loads)]}), flush=True)
  with open(os.path.join(HERE, "ab.json"), "w", encoding="utf-8") as f:
    json.dump({"timing": out, "machine": common.machine()}, f, indent=1)
  print("\n".join(decode_refill.timing_table(out)))


if __name__ == "__main__":
  main()
