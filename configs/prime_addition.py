"""PRIME (online implicit process rewards) on the quickstart's scratchpad addition.

    python -m rlvr_jax.main --config=configs/prime_addition.py --workdir=/tmp/prime_addition
    python -m rlvr_jax.main --config=configs/prime_addition.py:smollm2 --workdir=/tmp/prime_smollm2

Same task, model, SFT warm start and RL budget as configs/quickstart.py (whose GRPO run is the
comparison: `--config.algorithm.advantage=grpo`). After SFT the implicit PRM π_φ and the frozen
reference are copies of the SFT policy; every RL step scores the rollouts with
r_φ = β·log(π_φ/π_ref), takes one AdamW step of π_φ on the verifier's 0/1 labels
(cross-entropy on σ(Σ_t r_φ)) and forms PRIME's advantage (RLOO of each source, weights 5 and 5,
returns, whitened) from the pre-update rewards. β = 0.05; the PRM's learning rate is a tenth
of the policy's: at the recipe's ratio (PRM twice the policy, 1e-6 / 5e-7 there; 6e-4 here) the
PRM drifted within 25 steps and the policy collapsed (held-out 0.592 -> 0.000), at 3e-5 it
stayed within 0.03 of GRPO (0.781 vs 0.811 at step 150; experiments/results/prime_vs_grpo/).
Variants: `smollm2` = the same on SmolLM2-135M-Instruct and `gsm_arith`
(configs/smollm2_arithmetic.py's setup, no SFT);
`tiny` = seconds, for tests.
"""

import os

from rlvr_jax.configs_base import load_config

_HERE = os.path.dirname(os.path.abspath(__file__))
_BASES = {None: "quickstart.py", "tiny": "quickstart.py:tiny",
          "smollm2": "smollm2_arithmetic.py"}


def get_config(arg=None):
  if arg not in _BASES:
    raise ValueError(f"configs/prime_addition.py: unknown variant {arg!r}; known: "
                     f"{', '.join(k for k in _BASES if k)}")
  c = load_config(os.path.join(_HERE, _BASES[arg]))
  c.algorithm.update(advantage="prime", advantage_kw=dict(process_coef=5.0, outcome_coef=5.0),
                     terms=dict(prime=dict(beta=0.05)))
  # A tenth of the policy's learning rate (3e-4 / 2e-5).
  c.prime.optimizer.update(learning_rate=2e-6 if arg == "smollm2" else 3e-5,
                           warmup_steps=c.rl.optimizer.warmup_steps, schedule="constant")
  return c
