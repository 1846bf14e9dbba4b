"""BroRL recipe: ProRL's algorithm with hundreds of samples a prompt (N = 512 instead of 16).

Hu et al. 2025, "BroRL: Scaling Reinforcement Learning via Broadened Exploration",
arXiv 2510.01180 (NVIDIA). The paper scales the number of rollouts per prompt N rather than the
number of steps: with large N the unsampled tokens' effect on the correct tokens' probability
mass vanishes (its mass-balance argument), fewer groups are all right or all wrong (fewer are
filtered by dynamic sampling), and generation becomes compute-bound. The update is ProRL's; BroRL
changes N, so this recipe is configs/recipes/prorl.py with N = 512 and what that N needs here:

- `rl.decode_refill` / `rl.decode_slots`: sampling in chunks of rows. Every prompt is prefilled
  once; `decode_slots` rows decode at once and a finished row's slot takes the next waiting
  (prompt, sample) row, copying its prompt's KV-cache row, so the KV cache holds the slots, not
  B·N rows (the same tokens as the fixed batch: tests/test_brorl.py).
- `rl.frozen_pass_chunks`: the gradient-free passes (behaviour log-probs for the 4 updates a
  step, the KL term's reference log-probs) in chunks of N / chunks samples of every prompt.
- `rl.minibatches` x `rl.microbatches`: the learn phase's rows per micro-batch (here 64, a
  share of one group; gradients summed over micro-batches are the mini-batch's).
- Group statistics at N = 512 are the usual ones (GRPO, unbiased std) in float32, checked
  against a float64 reference at G = 512.

    python -m rlvr_jax.main --config=configs/recipes/brorl.py --workdir=/tmp/brorl \
        --config.init.path=/path/to/Qwen2.5-0.5B-Instruct
    python -m rlvr_jax.main --config=configs/recipes/brorl.py:cpu --workdir=/tmp/brorl_cpu

Default variant (an accelerator; Qwen2.5-0.5B-Instruct on GSM8K, the mesh and prompts of
configs/gsm8k_qwen25_05b.py): everything of prorl.py (GRPO, clip ε_low 0.2 / ε_high 0.4, k3 KL
1e-4 to a reference reset on a held-out plateau, lr 2e-6 constant, T = 1.2, 4 updates a step)
with N = 512 samples of 8 prompts a step (4096 samples, ProRL recipe's 256 x 16), 512 rows
decoding at once, the frozen passes in 8 chunks (512 rows each), 64 rows a micro-batch.
Deviations:
- Settings the paper's text we could read does not give (ALGORITHMS.md §4 marks them
  unconfirmed): prompts a step, mini-batches, clip, learning rate and KL are ProRL's recipe's,
  and 8 prompts x 512 keeps ProRL's samples a step (our choice).
- Dynamic sampling: "mask" (zero-variance groups leave the loss) instead of ProRL's
  over-sample-and-refill ("fill", 3x), which at N = 512 would sample 12288 rows a step; the
  paper's point is that large-N groups are rarely all right or all wrong
  (`dynamic_sampling_kept_frac`, `solve_all_frac`, `solve_none_frac` are logged every step).
- The paper continues a model saturated by ~3k ProRL steps (DeepSeek-R1-Distill-Qwen-1.5B,
  8k-16k tokens, a math/code/reasoning mix); here any Qwen2.5-class HF model on GSM8K, 512 new
  tokens, 500 steps (as ProRL's recipe). To reproduce the "revival" run ProRL first
  (prorl.py) and start this recipe from its policy (`--config.init.path` of an exported
  checkpoint).
- No memory or speed of this variant was measured on an accelerator (benchmarks/MEMORY.md has
  compile-only CPU numbers at the quickstart's shapes).

`cpu` variant: prorl.py's `cpu` (scratchpad addition, the quickstart's tiny model, SFT warm
start to 50% held-out accuracy, lr 1e-4, KL 1e-3, resets every 20 steps or on a plateau) with
N = 256 samples of 2 prompts a step (512 samples; ProRL's `cpu` takes 16 x 8), 64 rows decoding
at once, the frozen passes in 4 chunks, 64 rows a micro-batch. Not measured: the N ∈ {16, 64,
256, 512} comparison at equal samples a step is experiments/brorl_n.py.
"""

import os

from rlvr_jax.configs_base import load_config

_HERE = os.path.dirname(os.path.abspath(__file__))


def _brorl(c, *, prompts, samples, slots, chunks, microbatches):
  c.rl.update(batch_size=prompts, group_size=samples, decode_refill=True, decode_slots=slots,
              frozen_pass_chunks=chunks, microbatches=microbatches)
  c.algorithm.dynamic_sampling = "mask"
  return c


def get_config(arg=None):
  if arg is None:
    c = load_config(os.path.join(_HERE, "prorl.py"))
    # 4096 rows: 4 minibatches of 1024, 16 micro-batches of 64 each
    return _brorl(c, prompts=8, samples=512, slots=512, chunks=8, microbatches=16)
  if arg == "cpu":
    c = load_config(os.path.join(_HERE, "prorl.py:cpu"))
    # 512 rows: 2 minibatches of 256, 4 micro-batches of 64 each
    return _brorl(c, prompts=2, samples=256, slots=64, chunks=4, microbatches=4)
  raise ValueError(f"configs/recipes/brorl.py: unknown variant {arg!r}; known: cpu")
