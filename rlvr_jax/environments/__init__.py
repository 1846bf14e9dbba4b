"""Environments: multi-turn episodes where the verifier is an environment (tools, dialogs).

`base` holds the interface (`Environment`, `StepResult`, `register_env`, `make_env`); `runner`
runs a batch of episodes' environments on the host in worker threads with timeouts; `one_step`
makes any task a one-step environment; `tool` is the calculator / Python tool environment. The
episode rollout that samples turns with the KV cache is `rlvr_jax.sampling.episodes`.
"""

from rlvr_jax.environments.base import (ENVS, Environment, StepResult, env_keywords, make_env,
                                        register_env)
from rlvr_jax.environments.one_step import OneStepEnv
from rlvr_jax.environments.runner import EnvRunner, EpisodeLog, Outcome
from rlvr_jax.environments.tool import ToolEnv

__all__ = ["ENVS", "EnvRunner", "Environment", "EpisodeLog", "OneStepEnv", "Outcome",
           "StepResult", "ToolEnv", "env_keywords", "make_env", "register_env"]
