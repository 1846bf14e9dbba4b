"""Per-device memory of the compiled RL step vs model size, from XLA's buffer assignment.

    python benchmarks/memory.py [--models smollm2-135m,qwen2.5-0.5b,qwen2.5-1.5b,qwen2.5-7b]
        [--batch 8 --group 4 --prompt 128 --completion 256 --microbatches 4] [--fsdp 8]
        [--out benchmarks/memory.json]
    # long completions: bf16 + remat full, one device and (--fsdp 8) eight, one row per micro-batch
    python benchmarks/memory.py --models qwen2.5-0.5b,qwen2.5-1.5b,qwen2.5-7b --batch 8 \
        --group 8 --prompt 256 --completions 1024,4096,8192,16384,32768 --microbatch-rows 1 \
        --fsdp 8 --out benchmarks/memory_long.json

Nothing is allocated: the state and batch are `jax.eval_shape` abstractions and each variant
is only lowered and compiled on CPU (`jit(rl_step).lower(...).compile().memory_analysis()`).
The step is the real one (`make_rl_step`: KV-cache sampling, old log-probs, advantages, AdamW
update) with a stand-in jittable reward. Peak per device = argument + output + temp - alias
bytes (alias: the donated state the outputs reuse). `--fsdp 8` forces 8 CPU devices and adds
each model at its best setting (bf16, full remat) on a ('data', 'fsdp', 'tensor') = (1, 8, 1)
mesh, sharded exactly as `Run` shards a run, with each `model.decode_weight_gather` ("once":
all layers' weights gathered before the decode loop; "per_layer": one layer at a time).

`--lora 16` measures LoRA instead: each model at bf16 + remat full, at each `--lora-settings`
devices:decode_weight_gather pair (default one device, and 8 with each gather; `--fsdp 8` makes
the 8 CPU devices), full fine-tuning and rank-16 adapters on every linear weight (alpha 32) side
by side; the adapters and their Adam moments are float32. The sampler runs on the adapters
unmerged (the default `lora.sampler`; `--override lora.sampler=merged` for the other).

`--completions` measures long completions instead: each model at its long-context setting (bf16,
remat full; over `--fsdp` devices with decode_weight_gather "per_layer", the memory floor) at every
length, then prints how the temporaries grow with length and the longest completion that fits
each device size. `--microbatch-rows` sets `rl.microbatches` to batch x group / rows, and
`--override rl.x=v` / `model.x=v` sets any other field of the step's config.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import json
import os
import sys
import time

if "--fsdp" in sys.argv and "xla_force_host_platform_device_count" not in os.environ.get(
    "XLA_FLAGS", ""):
  n = sys.argv[sys.argv.index("--fsdp") + 1]
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + f" --xla_force_host_platform_device_count={n}")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from rlvr_jax import models, parallel  # noqa: E402
from rlvr_jax.configs_base import base_config  # noqa: E402
from rlvr_jax.training.rl_step import make_rl_step  # noqa: E402
from rlvr_jax.models import lora  # noqa: E402
from rlvr_jax.training.state import create_state, make_optimizer, state_shardings  # noqa: E402

# Real architectures (HF config.json): layers, d_model, heads, kv heads, d_ff, vocab, tying.
MODELS = {
    "smollm2-135m": models.preset("smollm2-135m"),
    "qwen2.5-0.5b": models.preset("qwen2.5-0.5b"),
    "qwen2.5-1.5b": models.preset("qwen2.5-0.5b", d_model=1536, n_layers=28, n_heads=12,
                                  n_kv_heads=2, d_ff=8960),
    "qwen2.5-7b": models.preset("qwen2.5-0.5b", vocab_size=152064, d_model=3584, n_layers=28,
                                n_heads=28, n_kv_heads=4, d_ff=18944, tie_embeddings=False),
}
DEVICES_GIB = (16, 80, 141)  # GiB, as the cards' "16 / 80 / 141 GB" are


def _reward(tokens, mask, answer_ids, meta):
  """Stand-in for a task reward: any jittable [N] float32; its cost is negligible."""
  del tokens, answer_ids, meta
  return mask.mean(-1)


def _literal(text: str):
  """An override's value: a Python literal (1024, True, 'x', None), else the string itself."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def measure(model_config: models.ModelConfig, args, devices) -> dict:
  """Compiles one RL step for abstract inputs on `devices` (fsdp over all of them)."""
  config = base_config()
  config.rl.update(batch_size=args.batch, group_size=args.group,
                   max_new_tokens=args.completion, microbatches=args.microbatches)
  model_overrides = {}
  for item in getattr(args, "override", None) or ():
    key, value = item.split("=", 1)
    if key.startswith("model."):
      model_overrides[key[len("model."):]] = _literal(value)
    else:
      config.update_from_flattened_dict({key: _literal(value)})
  model_config = dataclasses.replace(model_config, **model_overrides)
  mesh = parallel.make_mesh(dict(data=1, fsdp=len(devices), tensor=1), devices)
  model_config = model_config.for_weight_shards(len(devices))  # as run.Run resolves it
  optimizer = make_optimizer(config.rl.optimizer, config.rl.steps)
  step = make_rl_step(config, model_config, _reward, optimizer, eos_id=1, pad_id=0)
  params = jax.eval_shape(functools.partial(models.init_params, model_config),
                          jax.random.key(0))
  rank = getattr(args, "lora_rank", 0)
  if rank:  # adapters on every linear weight; the optimizer and its moments hold them alone
    adapters = jax.eval_shape(functools.partial(
        lora.init, model_config, lora.LoraConfig(rank=rank, alpha=2.0 * rank,
                                                 sampler=config.lora.sampler)),
        jax.random.key(1))
    params = lora.attach(params, adapters)
  state = jax.eval_shape(functools.partial(create_state, optimizer=optimizer,
                                           with_reference=False), params)
  b, p = args.batch, args.prompt
  batch = dict(prompt_ids=jax.ShapeDtypeStruct((b, p), jnp.int32),
               prompt_mask=jax.ShapeDtypeStruct((b, p), jnp.int32),
               answer_ids=jax.ShapeDtypeStruct((b, 8), jnp.int32),
               meta=jax.ShapeDtypeStruct((b, 1), jnp.int32))
  rng = jax.eval_shape(lambda: jax.random.key(0))
  shardings = state_shardings(state, model_config, mesh, optimizer)
  jitted = jax.jit(parallel.traced_under_mesh(step, mesh),
                   in_shardings=(shardings, parallel.batch_sharding(mesh),
                                 parallel.replicated(mesh)),
                   out_shardings=(shardings, parallel.replicated(mesh)), donate_argnums=0)
  t0 = time.time()
  m = jitted.lower(state, batch, rng).compile().memory_analysis()
  return dict(
      params=sum(x.size for x in jax.tree.leaves(lora.base(params))),
      adapter_params=lora.size(params),
      argument=m.argument_size_in_bytes, output=m.output_size_in_bytes,
      temp=m.temp_size_in_bytes, alias=m.alias_size_in_bytes,
      peak=m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
      - m.alias_size_in_bytes, compile_s=time.time() - t0)


def variants(name: str, fsdp: int):
  """(label, model config, n devices): f32 / bf16 x remat none / full on one device, and the
  bf16 + full remat setting over `fsdp` devices."""
  base = MODELS[name]
  for dtype in ("float32", "bfloat16"):
    for remat in ("none", "full"):
      yield (dtype, remat, 1), dataclasses.replace(base, dtype=dtype, param_dtype=dtype,
                                                   remat=remat)
  if fsdp > 1:  # both ways the sampler can gather the sharded weights
    for gather in ("once", "per_layer"):
      yield ("bfloat16", "full", fsdp), dataclasses.replace(
          base, dtype="bfloat16", param_dtype="bfloat16", remat="full",
          decode_weight_gather=gather)


def long_variants(name: str, fsdp: int):
  """(label, model config, n devices) of the long-completion table: bf16 + remat full on one
  device and, with fsdp > 1, over fsdp devices gathering one layer's weights at a time."""
  base = dataclasses.replace(MODELS[name], dtype="bfloat16", param_dtype="bfloat16",
                             remat="full")
  yield ("bfloat16", "full", 1), base
  if fsdp > 1:
    yield ("bfloat16", "full", fsdp), dataclasses.replace(base, decode_weight_gather="per_layer")


def _long_table(args, gb: int) -> list[dict]:
  """Every model x length x device count; then the growth of temp with length and the longest
  completion that fits each device size."""
  rows = []
  lengths = [int(x) for x in args.completions.split(",")]
  print(f"B={args.batch} G={args.group} prompt={args.prompt} "
        f"rows per micro-batch={args.microbatch_rows or '-'}; GiB per device")
  print(f"{'model':14s} {'dev':>3s} {'completion':>10s} {'micro':>5s} {'args':>7s} {'temp':>7s} "
        f"{'peak':>7s} {'compile':>8s}")
  for name in args.models.split(","):
    for (dtype, remat, n), model_config in long_variants(name, args.fsdp):
      for length in lengths:
        run_args = argparse.Namespace(**vars(args))
        run_args.completion = length
        r = measure(model_config, run_args, jax.devices()[:n])
        r.update(model=name, dtype=dtype, remat=remat, devices=n, completion=length,
                 microbatches=run_args.microbatches,
                 decode_weight_gather=model_config.decode_weight_gather)
        rows.append(r)
        print(f"{name:14s} {n:3d} {length:10d} {run_args.microbatches:5d} "
              f"{r['argument'] / gb:7.2f} {r['temp'] / gb:7.2f} {r['peak'] / gb:7.2f} "
              f"{r['compile_s']:7.1f}s", flush=True)
  print("\nextra temp bytes per extra completion token between consecutive lengths (flat = "
        "linear growth; rising = super-linear):")
  for name in args.models.split(","):
    for n in sorted({r["devices"] for r in rows}):
      mine = sorted((r for r in rows if r["model"] == name and r["devices"] == n),
                    key=lambda r: r["completion"])
      print(f"  {name:14s} {n} device(s): " + ", ".join(
          f"{a['completion']}->{b['completion']}: "
          f"{(b['temp'] - a['temp']) / (b['completion'] - a['completion']) / 2**20:.2f} MiB"
          for a, b in zip(mine, mine[1:])))
  print("\nlongest completion that fits (peak per device <= device memory):")
  for name in args.models.split(","):
    for n in sorted({r["devices"] for r in rows}):
      mine = [r for r in rows if r["model"] == name and r["devices"] == n]
      fits = {cap: max((r["completion"] for r in mine if r["peak"] <= cap * gb), default=None)
              for cap in DEVICES_GIB[1:]}
      print(f"  {name:14s} {n} device(s): " + ", ".join(
          f"{cap} GiB: {fit if fit else f'none of {lengths}'}" for cap, fit in fits.items()))
  return rows


def _lora_table(args, gb: int) -> list[dict]:
  """Every model at bf16 + remat full, one device and `--fsdp` devices (each gather), full
  fine-tuning vs LoRA rank `--lora` on every linear weight."""
  rows = []
  print(f"B={args.batch} G={args.group} prompt={args.prompt} completion={args.completion} "
        f"microbatches={args.microbatches}; bf16, remat full; GiB per device")
  print(f"{'model':14s} {'dev':>3s} {'gather':9s} {'train':9s} {'adapters':>9s} {'args':>7s} "
        f"{'temp':>7s} {'peak':>7s} {'compile':>8s}")
  sampler = next((o.split("=", 1)[1] for o in args.override if o.startswith("lora.sampler=")),
                 "unmerged")
  for name in args.models.split(","):
    base = dataclasses.replace(MODELS[name], dtype="bfloat16", param_dtype="bfloat16",
                               remat="full")
    settings = [(int(n), gather) for n, gather in
                (item.split(":") for item in args.lora_settings.split(","))]
    for n, gather in settings:
      for rank in ((args.lora,) if args.lora_only else (0, args.lora)):
        run_args = argparse.Namespace(**vars(args), lora_rank=rank)
        model_config = dataclasses.replace(base, decode_weight_gather=gather)
        r = measure(model_config, run_args, jax.devices()[:n])
        label = f"LoRA r{rank}" if rank else "full"
        r.update(model=name, dtype="bfloat16", remat="full", devices=n, lora_rank=rank,
                 decode_weight_gather=gather, lora_sampler=sampler if rank else None)
        rows.append(r)
        print(f"{name:14s} {n:3d} {gather if n > 1 else '-':9s} {label:9s} "
              f"{r['adapter_params'] / 1e6:8.1f}M {r['argument'] / gb:7.2f} "
              f"{r['temp'] / gb:7.2f} {r['peak'] / gb:7.2f} {r['compile_s']:7.1f}s", flush=True)
  return rows


def _model_table(args, gb: int) -> list[dict]:
  """Every model x dtype x remat (x devices) at one completion length; then the largest model
  that fits each device size."""
  rows = []
  print(f"B={args.batch} G={args.group} prompt={args.prompt} completion={args.completion} "
        f"microbatches={args.microbatches}; GiB per device")
  print(f"{'model':14s} {'params':>7s} {'dtype':9s} {'remat':5s} {'dev':>3s} {'gather':9s} "
        f"{'args':>7s} {'temp':>7s} {'peak':>7s} {'compile':>8s}")
  for name in args.models.split(","):
    for (dtype, remat, n), model_config in variants(name, args.fsdp):
      r = measure(model_config, args, jax.devices()[:n])
      gather = model_config.decode_weight_gather
      r.update(model=name, dtype=dtype, remat=remat, devices=n, decode_weight_gather=gather)
      rows.append(r)
      print(f"{name:14s} {r['params'] / 1e9:6.2f}B {dtype:9s} {remat:5s} {n:3d} "
            f"{gather if n > 1 else '-':9s} {r['argument'] / gb:7.2f} {r['temp'] / gb:7.2f} "
            f"{r['peak'] / gb:7.2f} {r['compile_s']:7.1f}s", flush=True)
  print("\nlargest model that fits (peak per device <= device memory):")
  for n in sorted({r["devices"] for r in rows}):
    for cap in DEVICES_GIB:
      fits = [r for r in rows if r["devices"] == n and r["peak"] <= cap * gb]
      best = max(fits, key=lambda r: (r["params"], -r["peak"]), default=None)
      label = (f"{best['model']} ({best['dtype']}, remat {best['remat']}"
               + (f", decode_weight_gather {best['decode_weight_gather']})" if n > 1 else ")")
               if best else "none")
      print(f"  {n} device(s) of {cap} GiB: {label}")
  return rows



def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--batch", type=int, default=8, help="prompts per step")
  parser.add_argument("--group", type=int, default=4, help="completions per prompt (G)")
  parser.add_argument("--prompt", type=int, default=128)
  parser.add_argument("--completion", type=int, default=256)
  parser.add_argument("--microbatches", type=int, default=4)
  parser.add_argument("--fsdp", type=int, default=1)
  parser.add_argument("--out", default="")
  parser.add_argument("--completions", default="",
                      help="comma-separated completion lengths: the long-completion table")
  parser.add_argument("--microbatch-rows", type=int, default=0,
                      help="rows per micro-batch (sets --microbatches to batch x group / rows)")
  parser.add_argument("--lora", type=int, default=0,
                      help="LoRA rank: the full fine-tuning vs LoRA table")
  parser.add_argument("--lora-only", action="store_true",
                      help="the LoRA table without its full fine-tuning rows")
  parser.add_argument("--lora-settings", default="1:once,8:once,8:per_layer",
                      help="devices:decode_weight_gather pairs of the LoRA table")
  parser.add_argument("--override", action="append", default=[],
                      help="rl.x=v / algorithm.x=v / model.x=v, repeatable")
  args = parser.parse_args()
  gb = 2**30
  if args.microbatch_rows:
    if (args.batch * args.group) % args.microbatch_rows:
      parser.error(f"--microbatch-rows {args.microbatch_rows} does not divide batch x group "
                   f"= {args.batch * args.group}")
    args.microbatches = args.batch * args.group // args.microbatch_rows
  table = _long_table if args.completions else _lora_table if args.lora else _model_table
  rows = table(args, gb)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(dict(settings=vars(args), rows=rows), f, indent=1)


if __name__ == "__main__":
  main()
