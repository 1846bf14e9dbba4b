"""Fixed-work RL steps for speed benchmarks (benchmarks/peers/, benchmarks/train_step.py).

    python benchmarks/peers/run.py --size larger

One GRPO step = G sampled completions per prompt, every one `max_new_tokens` long (EOS ignored),
scored by the addition task's jittable reward, then one PPO update (1 epoch, 1 minibatch, no KL),
fp32, on a randomly initialised model with tied embeddings whose vocabulary is padded to a fixed
size so the model matches the peers' dims whatever the tokenizer. No SFT.
Variants (the sizes of issues 9 and 21):
  tiny:    Qwen2-like (QKV bias), vocab 512, d 128, ffn 384, 2 layers, 4q/2kv heads;
           8 prompts x G=4 x 32 tokens, 16-token prompts.
  larger:  Qwen2-like (QKV bias), vocab 2048, d 512, ffn 1536, 4 layers, 8q/4kv heads;
           8 prompts x G=8 x 64 tokens, 16-token prompts.
  smollm2: SmolLM2-135M's shape, Llama-like (no QKV bias), vocab 49152, d 576, ffn 1536,
           30 layers, 9q/3kv heads (head dim 64); 4 prompts x G=4 x 64 tokens, 32-token prompts.
  smoke:   the tiny shapes cut down further, for tests.
"""

from rlvr_jax.configs_base import base_config

SIZES = {
    "tiny": dict(model=dict(vocab_size=512, d_model=128, d_ff=384, n_layers=2, n_heads=4,
                            n_kv_heads=2), batch_size=8, group_size=4, new_tokens=32),
    "larger": dict(model=dict(vocab_size=2048, d_model=512, d_ff=1536, n_layers=4, n_heads=8,
                              n_kv_heads=4), batch_size=8, group_size=8, new_tokens=64),
    "smollm2": dict(model=dict(vocab_size=49152, d_model=576, d_ff=1536, n_layers=30, n_heads=9,
                               n_kv_heads=3, qkv_bias=False, rope_theta=100_000.0, norm_eps=1e-5),
                    batch_size=4, group_size=4, new_tokens=64, prompt_len=32),
    "smoke": dict(model=dict(vocab_size=128, d_model=32, d_ff=64, n_layers=1, n_heads=2,
                             n_kv_heads=1), batch_size=2, group_size=2, new_tokens=8),
}


def get_config(arg=None):
  if arg not in SIZES:
    raise ValueError(f"configs/bench.py: unknown variant {arg!r}; known: {sorted(SIZES)}")
  size = SIZES[arg]
  c = base_config()
  c.task.name = "addition"
  c.task.kwargs = dict(digits=3)
  # Unrolled layers, as the peers' models run them (and ~5% faster steps here than a scan).
  c.model.update({"qkv_bias": True, "tie_embeddings": True, "unroll_layers": True,
                  **size["model"]})
  c.data.update(prompt_len=size.get("prompt_len", 16), completion_len=size["new_tokens"],
                answer_len=8)
  c.sft.steps = 0
  c.rl.update(steps=20, batch_size=size["batch_size"], group_size=size["group_size"],
              max_new_tokens=size["new_tokens"], ignore_eos=True, temperature=1.0,
              ppo_epochs=1, minibatches=1, microbatches=1)
  c.algorithm.update(advantage="grpo", policy_loss="ppo")
  c.mesh.update(data=1)
  c.checkpoint.use_async = False
  return c
