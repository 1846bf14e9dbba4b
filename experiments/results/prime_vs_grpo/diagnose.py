"""Splits PRIME's returns into the process and the outcome part at one checkpoint of a
configs/prime_addition.py run: python diagnose.py WORKDIR STEP (from the repository root)."""
import sys, numpy as np, jax, jax.numpy as jnp
from rlvr_jax.configs_base import load_config
from rlvr_jax.training.run import Run
from rlvr_jax.training.rl_step import completion_logprobs
from rlvr_jax.checkpoints.manager import Checkpointer, abstract_like
from rlvr_jax.algorithms import advantages as A
c = load_config("configs/prime_addition.py"); c.rl.steps = 150
run = Run(c)
ck = Checkpointer(sys.argv[1] + "/checkpoints", read_only=True)
state = ck.restore(int(sys.argv[2]), abstract_like(run.make_rl_state(run.init_params())))[0]
it = iter(run.dataset("train", 32, seed=5, shuffle=True, size=1000))
batch = run.device_batch(next(it))
ph = run._rl_step.phases
comp, _ = jax.jit(ph.sample)(state, batch, jax.random.key(3))
rew, _ = jax.jit(ph.score)(batch, comp, None)
g = 8; P = (jnp.repeat(batch["prompt_ids"], g, 0), jnp.repeat(batch["prompt_mask"], g, 0))
lp = lambda p: completion_logprobs(run.model_config, p, *P, comp.tokens, comp.mask, 1.0)[0]
m = np.asarray(comp.mask); r = 0.05 * (np.asarray(lp(state.prime_params)) - np.asarray(lp(state.ref_params))) * m
R = r.sum(-1); y = np.asarray(rew).reshape(-1)
print("reward", y.mean(), "score mean correct/wrong", R[y > 0].mean() if (y>0).any() else None, R[y <= 0].mean())
print("token r: mean", r[m > 0].mean(), "std", r[m > 0].std(), "min", r.min(), "max", r.max())
b = 32; T = m.shape[1]
proc = 5 * A.token_rloo(r.reshape(b, g, T), m.reshape(b, g, T))
out = 5 * A.token_rloo(A.outcome_token_rewards(np.asarray(rew), m.reshape(b, g, T)), A.last_token_onehot(m.reshape(b, g, T)))
rp = np.asarray(A.discounted_returns(proc, m.reshape(b, g, T))); ro = np.asarray(A.discounted_returns(out, m.reshape(b, g, T)))
mm = m.reshape(b, g, T) > 0
print("process-return std", rp[mm].std(), "outcome-return std", ro[mm].std(), "corr", np.corrcoef(rp[mm], ro[mm])[0, 1])
# per position: mean process return at first token for correct vs wrong
print("first-token process return: correct", rp[..., 0][np.asarray(rew) > 0].mean() if (y>0).any() else None, "wrong", rp[..., 0][np.asarray(rew) <= 0].mean())
