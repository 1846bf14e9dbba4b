"""Memory of G = 512 samples a prompt (BroRL) at the quickstart's shapes, compile-only.

    python benchmarks/brorl_memory.py [--batch 32 --group 512] [--out benchmarks/brorl_memory.json]

The quickstart's model and buffers (configs/quickstart.py: d 96, 2 layers, 4/2 heads, d_ff 256,
vocabulary 18; prompt 8 and completion 32 tokens; 4 minibatches a step) at `--group` samples of
`--batch` prompts, measured with `benchmarks/memory.py`'s `measure` (the real `make_rl_step`,
`jit(...).lower(...).compile().memory_analysis()` on CPU: nothing is allocated) for the fixed
batch and each chunking added in turn:

  fixed          every row decodes at once over one B·G-row KV cache; one frozen pass; the
                 quickstart's learn phase (a minibatch's rows in one micro-batch)
  + micro        `rl.microbatches`: the learn phase's rows a micro-batch
  + frozen       `rl.frozen_pass_chunks`: the behaviour log-prob pass in chunks
  + refill       `rl.decode_refill`, `rl.decode_slots` rows decoding at once

and the sampler alone (`jax.jit(sampling.generate)`: its temporaries are the KV cache and the
decode loop's buffers) at each slot count. Peak = argument + output + temp − alias bytes.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import memory  # noqa: E402
from rlvr_jax import models, sampling  # noqa: E402
from rlvr_jax.configs_base import load_config  # noqa: E402
from rlvr_jax.training.run import Run  # noqa: E402

MIB = 2**20


def quickstart():
  """(model config, prompt length, completion length, minibatches) of configs/quickstart.py."""
  run = Run(load_config(os.path.join(ROOT, "configs", "quickstart.py")))
  return (run.model_config, run.shapes.prompt_len, run.config.rl.max_new_tokens,
          run.config.rl.minibatches)


def step_rows(args, minibatches):
  """(label, microbatches, overrides) of the RL step variants, each chunking added in turn."""
  rows = args.batch * args.group
  slots = args.slots or rows // 16
  micro = lambda rows_each: rows // minibatches // rows_each  # noqa: E731
  frozen = [f"rl.frozen_pass_chunks={args.chunks}"]
  refill = ["rl.decode_refill=True", f"rl.decode_slots={slots}"]
  yield f"G={args.group}, nothing chunked", 1, []
  yield f"+ micro ({args.micro_rows} rows)", micro(args.micro_rows), []
  yield f"+ frozen ({args.chunks} chunks)", micro(args.micro_rows), frozen
  yield f"+ refill ({slots} slots)", micro(args.micro_rows), frozen + refill
  yield f"  with micro ({args.micro_rows // 4} rows)", micro(args.micro_rows // 4), frozen + refill


def sampler_temp(model_config, batch, group, prompt, completion, slots) -> int:
  """Temp bytes of the jitted sampler alone (eos on, so the loop can exit early)."""
  params = jax.eval_shape(functools.partial(models.init_params, model_config), jax.random.key(0))
  ids = jax.ShapeDtypeStruct((batch, prompt), jnp.int32)
  key = jax.eval_shape(lambda: jax.random.key(0))
  fn = jax.jit(functools.partial(sampling.generate, model_config, max_new_tokens=completion,
                                 eos_id=1, pad_id=0, num_samples=group, decode_slots=slots))
  return fn.lower(params, ids, ids, key).compile().memory_analysis().temp_size_in_bytes


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=32, help="prompts a step (the quickstart's 32)")
  p.add_argument("--group", type=int, default=512, help="samples a prompt (G)")
  p.add_argument("--slots", type=int, default=0, help="rows decoding at once (0: rows / 16)")
  p.add_argument("--chunks", type=int, default=16, help="rl.frozen_pass_chunks")
  p.add_argument("--micro-rows", type=int, default=256, help="rows a learn micro-batch")
  p.add_argument("--out", default="")
  args = p.parse_args()
  model_config, prompt, completion, minibatches = quickstart()
  rows = args.batch * args.group
  print(f"quickstart shapes: {model_config.d_model=} {model_config.n_layers=} "
        f"{model_config.vocab_size=}; prompt {prompt}, completion {completion}; "
        f"B={args.batch} G={args.group} ({rows} rows), {minibatches} minibatches; MiB")
  out = {"settings": dict(vars(args), prompt=prompt, completion=completion,
                          minibatches=minibatches), "step": [], "sampler": []}
  print(f"{'RL step':34s} {'micro':>5s} {'args':>8s} {'temp':>9s} {'peak':>9s}")
  shipped = argparse.Namespace(batch=args.batch, group=8, prompt=prompt, completion=completion,
                               microbatches=1, override=[f"rl.minibatches={minibatches}"])
  r = memory.measure(model_config, shipped, jax.devices()[:1])
  out["quickstart_g8"] = r
  print(f"{'the quickstart as shipped, G=8':34s} {1:5d} {r['argument'] / MIB:8.1f} "
        f"{r['temp'] / MIB:9.1f} {r['peak'] / MIB:9.1f}", flush=True)
  for label, microbatches, override in step_rows(args, minibatches):
    ns = argparse.Namespace(batch=args.batch, group=args.group, prompt=prompt,
                            completion=completion, microbatches=microbatches,
                            override=[f"rl.minibatches={minibatches}", *override])
    r = memory.measure(model_config, ns, jax.devices()[:1])
    r.update(label=label, microbatches=microbatches, override=ns.override)
    out["step"].append(r)
    print(f"{label:34s} {microbatches:5d} {r['argument'] / MIB:8.1f} "
          f"{r['temp'] / MIB:9.1f} {r['peak'] / MIB:9.1f}", flush=True)
  print(f"\n{'sampler alone':34s} {'temp':>9s}")
  for slots in (None, rows // 4, rows // 16, rows // 64, rows // 256):
    temp = sampler_temp(model_config, args.batch, args.group, prompt, completion, slots)
    label = "fixed batch" if slots is None else f"refill, {slots} slots"
    out["sampler"].append(dict(label=label, slots=slots, temp=temp))
    print(f"{label:34s} {temp / MIB:9.1f}", flush=True)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
