"""Train state, the compiled RL step, the SFT step and the outer loop."""

from rlvr_jax.training.rl_step import (completion_logprobs, jit_rl_step, make_eval_step,
                                       make_rl_step)
from rlvr_jax.training.sft import make_sft_step
from rlvr_jax.training.state import TrainState, create_state, make_optimizer

__all__ = ["TrainState", "completion_logprobs", "create_state", "jit_rl_step", "make_eval_step",
           "make_optimizer", "make_rl_step", "make_sft_step"]
