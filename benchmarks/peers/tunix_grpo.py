"""Times Google's Tunix (google-tunix 0.1.7) doing GRPO steps on the sizes.py workloads, on CPU.

Run with the Tunix virtualenv, not ours:

  /work/peers/tunix/bin/python benchmarks/peers/tunix_grpo.py --size tiny --steps 3 --warmup 1 \
      --out /tmp/tunix_tiny.json

What runs is Tunix's own stack, unmodified: `tunix.models.qwen2.Qwen2` for the "qwen2" sizes (QKV
bias) and `tunix.models.llama3.Llama3` for the "llama" ones (SmolLM2: no QKV bias), randomly
initialised at the sizes.py dims, tied embeddings, fp32, `tunix.rl.rl_cluster.RLCluster` with the "vanilla"
rollout engine (Tunix's `generate.sampler.Sampler`), and `tunix.rl.grpo.grpo_learner.GRPOLearner`
driven through its normal `train()` loop (num_iterations=1, beta=0, one mini-batch of all
prompts x G rows, no gradient accumulation, optax AdamW, loss_agg_mode="token-mean").

Timing. `GRPOLearner.train` runs the whole loop itself, so this script only observes it:
  * step boundaries: the learner pulls exactly one batch of prompts from our dataset iterator at
    the start of every global step (in its data thread); on each pull we block until the actor's
    parameters and optimizer state are ready (i.e. the previous step's update has finished) and
    take a timestamp. The end of the last step is taken the same way when the learner calls
    `RLCluster.close()` after its step loop. Step i = time between consecutive boundaries, so it
    covers rollout + reward + advantage + update + Tunix's own per-step bookkeeping (metrics
    buffering/logging, the throttler, queue hand-off).
  * phases: `RLCluster.generate` (the rollout; its output tokens are already host numpy, so it
    is complete when it returns) and `RLCluster.update_actor` (the policy update; we block on the
    parameters before stopping the clock) are wrapped with timers on the instance. Whatever is left
    of a step (reward fn, advantages, padding/masks, metrics) is reported as "other".
The wrappers only add timestamps and a block_until_ready; they do not change what Tunix does.

Full-length completions: the tokenizer's EOS id (vocab+1) and pad id (vocab) lie outside the
model's vocabulary, so the sampler (categorical over `vocab` logits) can never emit either; EOS is
also passed explicitly as RolloutConfig.eos_tokens. Every rollout's completion lengths are checked.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sizes import SIZES, arch, describe  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from tunix.models.llama3 import model as llama3_lib  # noqa: E402
from tunix.models.qwen2 import model as qwen2_lib  # noqa: E402
from tunix.rl import rl_cluster as rl_cluster_lib  # noqa: E402
from tunix.rl.grpo import grpo_learner  # noqa: E402
from tunix.rl.rollout import base_rollout  # noqa: E402
from tunix.sft import metrics_logger as metrics_logger_lib  # noqa: E402
from tunix.utils import mesh as mesh_lib  # noqa: E402

TUNIX_VERSION = "0.1.7"


class BenchTokenizer:
  """Minimal offline tokenizer: a text is space-separated decimal token ids.

  Implements the methods Tunix's TokenizerAdapter requires (encode, decode, bos_id, eos_id,
  pad_id). Every id in [0, vocab) is a token. pad (= vocab) and eos (= vocab + 1) are outside the
  model's vocabulary, so they can never be sampled; no BOS is prepended (bos_id() is None).
  """

  def __init__(self, vocab: int):
    self.vocab = vocab

  def encode(self, text, **kwargs):
    return [int(t) for t in text.split()]

  def decode(self, ids, **kwargs):
    return " ".join(str(int(i)) for i in ids)

  def bos_id(self):
    return None

  def pad_id(self):
    return self.vocab

  def eos_id(self):
    return self.vocab + 1


def reward_fn(prompts, completions, **kwargs):
  """Cheap reward: fraction of completion tokens whose id is even."""
  out = []
  for c in completions:
    toks = c.split()
    out.append(sum(1 for t in toks if int(t) % 2 == 0) / max(len(toks), 1))
  return out


def build_model(size: str, seed: int):
  s, a = SIZES[size], arch(size)
  d, heads = s["d_model"], s["heads"]
  common = dict(num_layers=s["layers"], vocab_size=s["vocab"], embed_dim=d, hidden_dim=s["d_ff"],
                num_heads=heads, head_dim=d // heads, num_kv_heads=s["kv_heads"],
                rope_theta=a["rope_theta"], norm_eps=a["norm_eps"])
  if a["family"] == "qwen2":
    cfg = qwen2_lib.ModelConfig(**common, use_tied_embedding=True, dtype=jnp.float32,
                                param_dtype=jnp.float32)
    model = qwen2_lib.Qwen2(cfg, rngs=nnx.Rngs(seed))
  else:  # Tunix's Llama3 has no dtype fields: its parameters and compute are float32
    cfg = llama3_lib.ModelConfig(**common, weight_tying=True)
    model = llama3_lib.Llama3(cfg, rngs=nnx.Rngs(seed))
  # Tunix's constructors initialise the MLP kernels (and Qwen2's QKV biases) to zeros (they
  # expect a checkpoint to be loaded next). Give them random values too so this is a genuinely
  # random model; shapes, dtypes and therefore the compute are unchanged.
  # Qwen2's embedding init is N(0, 1), which with tied embeddings gives logits so large that
  # sampling at temperature 1 is effectively greedy: every group's G completions come out
  # identical, all GRPO advantages are 0 and the update is a no-op (grad_norm 0). Use the usual
  # N(0, 0.02) instead (for both families) so completions, rewards and gradients are
  # non-degenerate.
  key = jax.random.PRNGKey(seed + 1)
  key, k = jax.random.split(key)
  e = model.embedder.input_embedding.get_value()
  model.embedder.input_embedding.set_value(0.02 * jax.random.normal(k, e.shape, e.dtype))
  for layer in model.layers:
    for lin in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
      key, k = jax.random.split(key)
      w = lin.kernel.get_value()
      lin.kernel.set_value(jax.random.normal(k, w.shape, w.dtype) / np.sqrt(w.shape[0]))
    for name in ("q_bias", "k_bias", "v_bias") if a["qkv_bias"] else ():
      key, k = jax.random.split(key)
      p = getattr(layer.attn, name)
      b = p.get_value()
      p.set_value(0.02 * jax.random.normal(k, b.shape, b.dtype))
  return model, cfg


def read_dims(model):
  """Reads the dims back from the built model's parameters."""
  emb = model.embedder.input_embedding.get_value()
  attn = model.layers[0].attn
  q = attn.q_proj.w.get_value()  # [D, N, H]
  k = attn.k_proj.w.get_value()  # [D, K, H]
  gate = model.layers[0].mlp.gate_proj.kernel.get_value()  # [D, F]
  params = nnx.state(model, nnx.Param)
  leaves = jax.tree.leaves(params)
  return {
      "vocab": int(emb.shape[0]),
      "d_model": int(emb.shape[1]),
      "d_ff": int(gate.shape[1]),
      "layers": len(model.layers),
      "heads": int(q.shape[1]),
      "kv_heads": int(k.shape[1]),
      "head_dim": int(q.shape[2]),
      "tied_embeddings": not hasattr(model, "lm_head"),
      "qkv_bias": [int(getattr(attn, n).get_value().shape[0])
                   for n in ("q_bias", "k_bias", "v_bias") if hasattr(attn, n)],
      "param_dtype": str(emb.dtype),
      "n_params": int(sum(x.size for x in leaves)),
  }


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--warmup", type=int, default=2,
                  help="untimed steps; use >= 2: step 1 compiles, step 2 still compiles a small op")
  ap.add_argument("--out", default=None)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--lr", type=float, default=1e-5)
  ap.add_argument("--max-grad-norm", type=float, default=1.0, help="0 disables the clip")
  ap.add_argument("--verbose", action="store_true",
                  help="print a line at every step boundary (e.g. with JAX_LOG_COMPILES=1)")
  args = ap.parse_args()
  assert args.steps >= 1 and args.warmup >= 0

  s = SIZES[args.size]
  V, P, G = s["vocab"], s["prompts"], s["group"]
  N, L = s["new_tokens"], s["prompt_len"]
  total_steps = args.warmup + args.steps
  print(describe(args.size), f"| jax {jax.__version__} on {jax.devices()}", flush=True)

  mesh = mesh_lib.create_mesh((1, 1), ("fsdp", "tp"))  # Tunix's helper (Auto axis types)
  with jax.set_mesh(mesh):
    model, _ = build_model(args.size, args.seed)
  tokenizer = BenchTokenizer(V)

  rollout_config = base_rollout.RolloutConfig(
      max_tokens_to_generate=N,
      max_prompt_length=L,
      kv_cache_size=L + N,  # the sampler attends over the whole cache; make it exactly the need
      temperature=1.0,
      top_p=1.0,  # Tunix's plain categorical path (no sort) when top_p >= 1 and top_k is None
      top_k=None,
      eos_tokens=[tokenizer.eos_id()],
  )
  # AdamW with rlvr_jax's defaults (b1 0.9, b2 0.99, no weight decay, global-norm clip 1.0),
  # built the way Tunix's GRPO examples build theirs (optax.chain(clip, adamw)).
  optimizer = optax.adamw(learning_rate=args.lr, b1=0.9, b2=0.99, weight_decay=0.0)
  if args.max_grad_norm > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(args.max_grad_norm), optimizer)
  training_config = rl_cluster_lib.RLTrainingConfig(
      actor_optimizer=optimizer,
      eval_every_n_steps=10**9,
      max_steps=total_steps,
      mini_batch_size=None,  # = full batch: one optimizer update per step
      train_micro_batch_size=None,  # no gradient accumulation
      rollout_micro_batch_size=None,
      compute_logps_micro_batch_size=None,
  )
  cluster_config = rl_cluster_lib.ClusterConfig(
      role_to_mesh={
          rl_cluster_lib.Role.ACTOR: mesh,
          rl_cluster_lib.Role.REFERENCE: mesh,
          rl_cluster_lib.Role.ROLLOUT: mesh,
      },
      rollout_engine="vanilla",
      offload_to_cpu=False,
      training_config=training_config,
      rollout_config=rollout_config,
  )
  rl_cluster = rl_cluster_lib.RLCluster(
      actor=model, reference=None, tokenizer=tokenizer, cluster_config=cluster_config)
  grpo_config = grpo_learner.GRPOConfig(
      num_generations=G,
      num_iterations=1,
      beta=0.0,
      epsilon=0.2,
      loss_agg_mode="token-mean",
  )
  learner = grpo_learner.GRPOLearner(
      rl_cluster=rl_cluster, algo_config=grpo_config, reward_fns=reward_fn)

  actor_model = rl_cluster.actor_trainer.model
  dims = read_dims(actor_model)
  expect = {k: s[k] for k in ("vocab", "d_model", "d_ff", "layers", "heads", "kv_heads")}
  got = {k: dims[k] for k in expect}
  assert got == expect, (got, expect)
  assert dims["head_dim"] == s["d_model"] // s["heads"] and dims["tied_embeddings"]
  assert bool(dims["qkv_bias"]) == arch(args.size)["qkv_bias"], dims["qkv_bias"]
  dims["family"] = arch(args.size)["family"]

  emb0 = np.array(actor_model.embedder.input_embedding.get_value(), copy=True)

  def block_on_actor():
    jax.block_until_ready((nnx.state(actor_model), nnx.state(rl_cluster.actor_trainer.optimizer)))

  boundaries = []  # wall-clock step boundaries
  rollout_times, update_times, lengths_ok, rows_seen = [], [], [], []

  orig_generate = rl_cluster.generate
  orig_update = rl_cluster.update_actor
  orig_close = rl_cluster.close

  def timed_generate(*a, **kw):
    t0 = time.perf_counter()
    out = orig_generate(*a, **kw)
    jax.block_until_ready(out.tokens)  # already host numpy in the vanilla rollout
    rollout_times.append(time.perf_counter() - t0)
    lens = [len(t) for t in out.tokens]
    rows_seen.append(len(lens))
    lengths_ok.append(all(n == N for n in lens))
    if not lengths_ok[-1]:
      print(f"WARNING: completion lengths {sorted(set(lens))} != {N}", flush=True)
    return out

  def timed_update(*a, **kw):
    t0 = time.perf_counter()
    r = orig_update(*a, **kw)
    block_on_actor()
    update_times.append(time.perf_counter() - t0)
    return r

  def timed_close(*a, **kw):
    block_on_actor()
    boundaries.append(time.perf_counter())
    return orig_close(*a, **kw)

  rl_cluster.generate = timed_generate
  rl_cluster.update_actor = timed_update
  rl_cluster.close = timed_close

  rng = np.random.default_rng(args.seed)
  # Prompt batches are made up front so building them is not timed. An array (one pytree leaf),
  # as Tunix repeats every leaf G times with np.repeat.
  batches = [{"prompts": np.array([" ".join(map(str, row))
                                   for row in rng.integers(0, V, size=(P, L))])}
             for _ in range(total_steps)]

  class PromptBatches:
    """One batch of P random prompts (exactly L tokens each) per global step."""

    def __init__(self):
      self.i = 0

    def __iter__(self):
      return self

    def __next__(self):
      if self.i >= total_steps:
        raise StopIteration
      block_on_actor()  # the previous step's update has finished
      boundaries.append(time.perf_counter())
      self.i += 1
      if args.verbose:
        print(f"[tunix_grpo] step {self.i} begins", file=sys.stderr, flush=True)
      return batches[self.i - 1]

  t_start = time.perf_counter()
  learner.train(PromptBatches())
  t_total = time.perf_counter() - t_start

  n_updates = rl_cluster.actor_trainer.train_steps
  assert len(boundaries) == total_steps + 1, (len(boundaries), total_steps)
  assert n_updates == total_steps, (n_updates, total_steps)
  assert len(rollout_times) == total_steps and len(update_times) == total_steps
  assert all(r == P * G for r in rows_seen), rows_seen

  # The rollout must have sampled from the updated policy: its model shares the actor's weights.
  emb_actor = np.asarray(actor_model.embedder.input_embedding.get_value())
  emb_rollout = np.asarray(rl_cluster.rollout.model().embedder.input_embedding.get_value())
  params_changed = bool(not np.array_equal(emb0, emb_actor))
  rollout_shares = bool(np.array_equal(emb_actor, emb_rollout))
  assert params_changed and rollout_shares, (params_changed, rollout_shares)

  try:  # Tunix's own logged per-update gradient norms (in-memory metrics logger)
    grad_norms = [float(x) for x in np.ravel(rl_cluster.actor_trainer.metrics_logger
                                             .get_metric_history("actor", "grad_norm",
                                                                 metrics_logger_lib.Mode.TRAIN))]
  except Exception as e:  # pylint: disable=broad-except
    grad_norms = f"unavailable: {e!r}"

  step_all = list(np.diff(boundaries))
  w = args.warmup
  step_times = step_all[w:]
  roll, upd = rollout_times[w:], update_times[w:]
  other = [st - r - u for st, r, u in zip(step_times, roll, upd)]

  notes = [
      "Tunix's GRPOLearner.train drives the loop; step times are wall-clock between consecutive "
      "global-step starts (the learner pulling the next prompt batch) with the actor params and "
      "optimizer state blocked on; the last step ends when the learner calls RLCluster.close().",
      "Per-step work included as Tunix does it by default: rollout (prefill + while_loop decode "
      "over a KV cache of prompt_len+new_tokens), decode of token ids to text, reward fn, GRPO "
      "advantages, one nnx.jit train step (policy forward+backward, AdamW), in-memory metrics "
      "buffering/logging (no logging backends configured), data-queue hand-off via a thread.",
      "Tunix's sampler runs new_tokens decode-loop forwards after the prefill (checked: "
      "decoding_step goes prompt_len -> prompt_len+new_tokens), i.e. one more than needed; "
      "the last sampled token falls outside the token buffer and is dropped. Its prefill also "
      "computes logits for every prompt position.",
      "num_iterations=1 and beta=0: Tunix computes no old-policy log-probs (the loss uses "
      "stop_gradient(current logps) as 'old') and runs no reference forward; reference=None.",
      "Actor and rollout share one mesh and one model object, so no weight sync is done "
      f"(learner.should_sync_weights={learner.should_sync_weights}).",
      "EOS/pad ids lie outside the model vocab (pad=vocab, eos=vocab+1), so completions are "
      "always new_tokens long; checked on every rollout.",
      "Tunix's Qwen2 / Llama3 init leaves MLP kernels (and Qwen2's QKV biases) at zero; Qwen2 "
      "draws the (tied) embedding from N(0,1); the script overwrites MLP kernels "
      "(N(0,1/fan_in)), QKV biases where the family has them (N(0,0.02^2)) and the embedding "
      "(N(0,0.02^2)) so the random model samples diverse completions and gets non-zero "
      "advantages/gradients (same shapes/compute).",
      "Sampler seed: RolloutConfig.seed is left at its default (None), which makes Tunix's "
      "sampler use PRNGKey(0) on every rollout; does not affect timing.",
      "The training forward passes segment_ids (all ones) to Qwen2, which adds an extra "
      "attention where-mask; that is Tunix's default path.",
      "The policy loss also computes per-token entropy of the logits and some diagnostics "
      "(Tunix's default grpo_loss_fn).",
      f"Optimizer: optax.chain(clip_by_global_norm({args.max_grad_norm}), adamw(lr={args.lr}, "
      "b1=0.9, b2=0.99, weight_decay=0)) (clip omitted if 0), wrapped by Tunix's trainer.",
      "No XLA flags set; JAX CPU backend defaults.",
  ]
  result = {
      "framework": "tunix",
      "version": TUNIX_VERSION,
      "jax": jax.__version__,
      "flax": __import__("flax").__version__,
      "size": args.size,
      "step_times": [float(x) for x in step_times],
      "warmup_step_times": [float(x) for x in step_all[:w]],
      "phase_times": {
          "rollout": [float(x) for x in roll],
          "update": [float(x) for x in upd],
          "other": [float(x) for x in other],
      },
      "dims": dims,
      "rows": P * G,
      "prompts": P,
      "group": G,
      "new_tokens": N,
      "prompt_len": L,
      "completion_lengths_checked": bool(all(lengths_ok)),
      "n_updates": int(n_updates),
      "params_changed": params_changed,
      "rollout_uses_updated_params": rollout_shares,
      "grad_norms": grad_norms,
      "total_wall_s": float(t_total),
      "notes": " ".join(notes),
  }
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)

  med = float(np.median(step_times))
  print(
      f"tunix {TUNIX_VERSION} {args.size}: {len(step_times)} steps after {w} warm-up, "
      f"step median {med:.3f}s (min {min(step_times):.3f}, max {max(step_times):.3f}); "
      f"rollout median {np.median(roll):.3f}s, update median {np.median(upd):.3f}s, "
      f"other median {np.median(other):.3f}s; warm-up {[round(float(x), 2) for x in step_all[:w]]}; "
      f"rows {P * G} x {N} tokens, full-length completions: {all(lengths_ok)}",
      flush=True)


if __name__ == "__main__":
  main()
