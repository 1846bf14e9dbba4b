"""The benchmark workloads, shared by every framework's script (plain Python: each peer runs in
its own virtualenv and imports this file by path).

One GRPO step = `prompts` prompts x `group` completions, every completion exactly `new_tokens`
long (EOS never ends one early), temperature 1.0, no top-k / top-p, one reward per completion,
then ONE policy update on all prompts x group rows (one PPO/GRPO iteration, one minibatch, no
gradient accumulation, no KL / reference model), token-mean loss, fp32, AdamW. Prompts are
`prompt_len` tokens (left-padded buffer of that length). The model is RMSNorm, RoPE, grouped-query
attention, SwiGLU, tied input/output embeddings, of the size's `family`: "qwen2" has biases on the
Q, K and V projections, "llama" (SmolLM2) has none. Every framework builds that family's model
(`qkv_bias` below), so all three do the same work.
"""

SIZES = {
    "tiny": dict(vocab=512, d_model=128, d_ff=384, layers=2, heads=4, kv_heads=2,
                 prompts=8, group=4, new_tokens=32, prompt_len=16),
    "larger": dict(vocab=2048, d_model=512, d_ff=1536, layers=4, heads=8, kv_heads=4,
                   prompts=8, group=8, new_tokens=64, prompt_len=16),
    # SmolLM2-135M's shape (head dim 576 / 9 = 64; rope theta 1e5, RMSNorm eps 1e-5 as in its
    # config.json; neither changes the work).
    "smollm2": dict(vocab=49152, d_model=576, d_ff=1536, layers=30, heads=9, kv_heads=3,
                    prompts=4, group=4, new_tokens=64, prompt_len=32, family="llama"),
}
FAMILIES = {"qwen2": dict(qkv_bias=True, rope_theta=1_000_000, norm_eps=1e-6),
            "llama": dict(qkv_bias=False, rope_theta=100_000, norm_eps=1e-5)}
# The keys every framework's script checks against the model it built (family is not a dim).
DIMS = ("vocab", "d_model", "d_ff", "layers", "heads", "kv_heads", "prompts", "group",
        "new_tokens", "prompt_len")


def family(name: str) -> str:
  return SIZES[name].get("family", "qwen2")


def arch(name: str) -> dict:
  """The size's family settings: qkv_bias, rope_theta, norm_eps."""
  return dict(FAMILIES[family(name)], family=family(name))


def describe(name: str) -> str:
  s = SIZES[name]
  a = arch(name)
  return (f"{name}: {a['family']} ({'QKV bias' if a['qkv_bias'] else 'no QKV bias'}), "
          f"vocab {s['vocab']}, d {s['d_model']}, ffn {s['d_ff']}, {s['layers']} layers, "
          f"{s['heads']}q/{s['kv_heads']}kv heads (head dim {s['d_model'] // s['heads']}); "
          f"{s['prompts']} prompts x G={s['group']} x {s['new_tokens']} tokens, "
          f"prompt {s['prompt_len']}")


def _forward_flops_per_token(s: dict, context: float) -> float:
  """Matmul FLOPs of one token's forward pass attending to `context` keys: projections, MLP,
  the (tied) vocabulary projection, and attention's QK^T and PV."""
  head_dim = s["d_model"] // s["heads"]
  per_layer = (s["d_model"] * head_dim * (2 * s["heads"] + 2 * s["kv_heads"])
               + 3 * s["d_model"] * s["d_ff"] + 2 * s["heads"] * head_dim * context)
  return 2 * (s["layers"] * per_layer + s["d_model"] * s["vocab"])


def step_flops(name: str) -> dict[str, float]:
  """FLOPs of the work every framework must do in one step (matmuls only):
  sample: prefill of the prompt (causal: mean context p/2) and `new_tokens` decode steps, for
  every row (a framework that prefills each prompt once per group does less; this counts the
  usual per-row prefill); learn: one teacher-forced forward of prompt + completion for every row
  and its backward (2x the forward)."""
  s = SIZES[name]
  rows, p, n = s["prompts"] * s["group"], s["prompt_len"], s["new_tokens"]
  sample = rows * (p * _forward_flops_per_token(s, p / 2)
                   + sum(_forward_flops_per_token(s, p + i) for i in range(n)))
  learn = 3 * rows * (p + n) * _forward_flops_per_token(s, (p + n) / 2)
  return {"sample": sample, "learn": learn, "step": sample + learn}
