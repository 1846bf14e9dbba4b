"""The RL step of a run with an environment (`config.data.env`): episodes on the host, then the
compiled learn phase.

    episodes = sampler.sample(state.params, envs, examples, G, rng)   # jitted turns + envs
    state, metrics = learn(state, batch, episodes, rewards, rng)      # one jax.jit, traced once

The episodes' turns are jitted decodes over the whole batch (`sampling.episodes`); between them
the environments run on the host. `learn` is the single-turn step's own learn phase
(`rl_step.phases.learn`): the episode's tokens are its completions, its reward the outcome, and
`policy_mask` keeps observation tokens out of the loss while attention reads them. Without an
environment the run keeps the one-program step (`Run.compile_rl_step`).
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import numpy as np

from rlvr_jax import environments, parallel, sampling
from rlvr_jax.data import pipeline
from rlvr_jax.sampling.episodes import EpisodeSampler, EpisodeSpec


def episode_spec(config, *, temperature: float | None = None) -> EpisodeSpec:
  """The episode bounds of `config.data` (episode_tokens 0: max_turns full turns and blocks)."""
  d, rl = config.data, config.rl
  full = d.max_turns * rl.max_new_tokens + (d.max_turns - 1) * d.observation_len
  return EpisodeSpec(max_turns=d.max_turns, turn_tokens=rl.max_new_tokens,
                     episode_tokens=d.episode_tokens or full, observation_len=d.observation_len,
                     stop=d.turn_stop, top_k=rl.top_k, top_p=rl.top_p,
                     temperature=rl.temperature if temperature is None else temperature)


class EpisodeRollouts:
  """The episode machinery of one run: samplers (training and greedy evaluation), the
  environments' runner, and the sources its batches' `index` rows point into."""

  def __init__(self, run):
    c = run.config
    self.run, self.env_name, self.env_kw = run, c.data.env, dict(c.data.env_kw)
    environments.make_env(self.env_name, run.task, **self.env_kw)  # bad env_kw fail now
    prompt_len = run.shapes.prompt_len
    self.sampler = EpisodeSampler(run.model_config, run.tokenizer, episode_spec(c),
                                  prompt_len=prompt_len, env_name=self.env_name)
    self.greedy = EpisodeSampler(run.model_config, run.tokenizer,
                                 episode_spec(c, temperature=0.0), prompt_len=prompt_len,
                                 env_name=self.env_name)
    self.runner = environments.EnvRunner(c.data.env_workers, c.data.env_timeout_s)

  def envs(self, n: int) -> list[environments.Environment]:
    return [environments.make_env(self.env_name, self.run.task, **self.env_kw)
            for _ in range(n)]

  def step_fn(self, template_state):
    """`step(state, batch, rng) -> (state, metrics)`: a batch of episodes (the batch's `index`
    rows name the examples), then the compiled learn phase, traced once."""
    run = self.run
    g = run.config.rl.group_size
    shardings = jax.tree.map(lambda x: x.sharding, template_state)
    learn = run._rl_step.phases.learn

    def learn_fn(state, batch, comp, rewards, rng, policy_mask):
      return learn(state, batch, comp, rewards, None, rng, policy_mask=policy_mask)

    learn_jit = jax.jit(parallel.traced_under_mesh(learn_fn, run.mesh), donate_argnums=0,
                        out_shardings=(shardings, parallel.replicated(run.mesh)))
    source = run.rl_source()
    keep_index = run.config.data.record_example_accuracy

    def step(state, batch: dict[str, Any], rng: jax.Array):
      t0 = time.monotonic()
      rng_sample, rng_learn = jax.random.split(rng)
      examples = [source[int(i)] for i in np.asarray(batch["index"])]
      ep = self.sampler.sample(state.params, self.envs(len(examples) * g), examples, g,
                               rng_sample, self.runner)
      rollout_s = time.monotonic() - t0
      learn_batch = {k: v for k, v in batch.items() if k != "index" or keep_index}
      learn_batch.update(prompt_ids=ep.prompt_ids, prompt_mask=ep.prompt_mask)
      comp = sampling.Completions(tokens=ep.tokens, logprobs=ep.logprobs,
                                  entropies=ep.entropies, mask=ep.mask)
      state, metrics = learn_jit(state, learn_batch, comp, ep.rewards.reshape(-1, g), rng_learn,
                                 ep.loss_mask)
      return state, {**metrics, **ep.metrics, "episode_rollout_time_s": rollout_s}

    return step

  @functools.cached_property
  def _eval_examples(self) -> list:
    ev = self.run.config.eval
    source = pipeline.TaskSource(self.run.task, "test", self.run.config.data.eval_seed,
                                 ev.num_prompts)
    return [source[i] for i in range(len(source))]

  def evaluate(self, params) -> float:
    """Mean episode reward of one greedy episode a held-out prompt (eval.num_prompts of them,
    eval.batch_size at a time)."""
    return self.evaluate_all(params)["eval_accuracy"]

  def evaluate_all(self, params) -> dict[str, float]:
    """`evaluate`'s greedy episodes, described: eval_accuracy (mean episode reward), and for
    every numeric info key k the environments report (e.g. the tool's `tool_calls`,
    `tool_errors`): eval_env_k (its mean per episode) and eval_env_k_frac (the fraction of
    episodes where it is > 0), plus eval_turns_mean, eval_truncated_frac, eval_env_errors."""
    examples, bs = self._eval_examples, self.run.config.eval.batch_size
    rewards, info, turns, truncated, errors = [], [], [], 0.0, 0.0
    for lo in range(0, len(examples), bs):
      chunk = examples[lo:lo + bs]
      ep = self.greedy.sample(params, self.envs(len(chunk)), chunk, 1, jax.random.key(0),
                              self.runner)
      rewards.extend(ep.rewards.tolist())
      info.extend(ep.info)
      turns.extend(ep.turns.tolist())
      truncated += ep.metrics["truncated_frac"] * len(chunk)
      errors += ep.metrics["env_errors"]
    n = len(rewards)
    out = {"eval_accuracy": float(np.mean(rewards)), "eval_turns_mean": float(np.mean(turns)),
           "eval_truncated_frac": truncated / n, "eval_env_errors": errors}
    for key in sorted({k for d in info for k in d}):
      values = np.asarray([d.get(key, 0.0) for d in info])
      out[f"eval_env_{key}"] = float(values.mean())
      out[f"eval_env_{key}_frac"] = float((values > 0).mean())
    return out
