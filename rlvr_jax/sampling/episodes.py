"""Multi-turn episodes: the policy and its environments take turns, the KV cache carries the
conversation.

    sampler = EpisodeSampler(model_config, tokenizer, EpisodeSpec(...), prompt_len=p)
    episodes = sampler.sample(params, envs, examples, group_size, rng, runner)

1. The host resets every episode's environment (`runner`): its first observation is the prompt;
   each prompt is prefilled once for its group (`turns.start`).
2. Each turn is one jitted decode over the whole batch (`turns.decode_turn`): finished episodes
   take no tokens, a turn ends at EOS, at the turn's stop string, or at the turn / episode
   token budget.
3. The host decodes each turn's text and steps the environments in parallel with timeouts; their
   observations are tokenized and appended to the cache in one jitted call
   (`turns.append_observation`), never re-prefilling the history.
4. The result is per episode: the tokens after the prompt, as sampled (never re-tokenised), with
   observation tokens in between; `mask` 1 on every real token (what attention reads),
   `loss_mask` 1 on the policy's tokens only; the sampler's log-probs on policy tokens (0
   elsewhere); the episode reward (sum of the turns') and the per-turn rewards.

An episode is truncated (reward: what its environment gave so far) when a turn is cut before it
ends (the environment never sees unfinished text, as a single-turn reward scores a truncated
completion 0), when it runs out of turns, or when the next observation no longer fits its
token budget. The stop string is matched as text across token boundaries
(`stop_strings.StopMatcher`), however the model spells it.
Shapes: b prompts, G episodes each, n = b·G episodes, p prompt, t = episode_tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax import models
from rlvr_jax.data.tasks.base import decode_completion
from rlvr_jax.environments.runner import EnvRunner, EpisodeLog
from rlvr_jax.sampling import turns
from rlvr_jax.sampling.stop_strings import StopMatcher
from rlvr_jax.tokenizers import Tokenizer


@dataclasses.dataclass(frozen=True)
class EpisodeSpec:
  """What bounds an episode. turn_tokens: a turn's most tokens; episode_tokens: all tokens after
  the prompt (the policy's and the observations'); observation_len: an observation's most
  tokens (longer ones are cut, counted in `observations_cut`); stop: the turn's stop string
  ("" for EOS only)."""
  max_turns: int
  turn_tokens: int
  episode_tokens: int
  observation_len: int
  stop: str = ""
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0

  def cache_len(self, prompt_len: int) -> int:
    """Slots a batch of episodes may use: the prompt, every turn's longest row, the blocks."""
    return (prompt_len + self.max_turns * self.turn_tokens
            + (self.max_turns - 1) * self.observation_len)


@dataclasses.dataclass
class Episodes:
  """A batch of finished episodes (numpy). prompt_ids / prompt_mask [b, p] (the environments'
  first observations, left-padded); tokens [n, t] int32 (pad after the episode), mask [n, t]
  (1 on real tokens), loss_mask [n, t] (1 on policy tokens), logprobs / entropies [n, t];
  rewards [n], turn_rewards [n, max_turns], turns [n]; info [n]: each episode's sums of its
  steps' numeric `StepResult.info` values; metrics of the batch."""
  prompt_ids: np.ndarray
  prompt_mask: np.ndarray
  tokens: np.ndarray
  mask: np.ndarray
  loss_mask: np.ndarray
  logprobs: np.ndarray
  entropies: np.ndarray
  rewards: np.ndarray
  turn_rewards: np.ndarray
  turns: np.ndarray
  metrics: dict[str, float]
  info: list[dict[str, float]] = dataclasses.field(default_factory=list)


class EpisodeSampler:
  """Runs batches of episodes; its three device calls are jitted once per shape."""

  def __init__(self, model_config: models.ModelConfig, tokenizer: Tokenizer, spec: EpisodeSpec,
               *, prompt_len: int, env_name: str = "env"):
    for field in ("max_turns", "turn_tokens", "episode_tokens", "observation_len"):
      if getattr(spec, field) < 1:
        raise ValueError(f"EpisodeSpec.{field} must be >= 1, got {getattr(spec, field)}")
    self.c, self.tokenizer, self.spec, self.prompt_len = model_config, tokenizer, spec, prompt_len
    self.env_name = env_name
    self.stop = StopMatcher.for_tokenizer(spec.stop, tokenizer) if spec.stop else None
    self._start = jax.jit(functools.partial(turns.start, model_config),
                          static_argnames=("group", "cache_len"))
    self._decode = jax.jit(functools.partial(
        turns.decode_turn, model_config, max_new_tokens=spec.turn_tokens,
        temperature=spec.temperature, top_k=spec.top_k, top_p=spec.top_p,
        eos_id=tokenizer.eos_id, stop=self.stop, pad_id=tokenizer.pad_id),
        donate_argnums=1)
    self._append = jax.jit(functools.partial(turns.append_observation, model_config),
                           donate_argnums=1)

  # --- host helpers ------------------------------------------------------------------------
  def _prompts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """Left-padded [b, p] prompt rows of `texts`, and whether each fits."""
    b, p, pad = len(texts), self.prompt_len, self.tokenizer.pad_id
    ids_bp, mask_bp, fits = np.full((b, p), pad, np.int32), np.zeros((b, p), np.int32), []
    for j, text in enumerate(texts):
      ids = self.tokenizer.encode(text)
      fits.append(0 < len(ids) <= p)
      ids = ids[-p:] or [pad]
      ids_bp[j, p - len(ids):], mask_bp[j, p - len(ids):] = ids, 1
    return ids_bp, mask_bp, fits

  def _reset(self, envs, examples, group: int, runner: EnvRunner, log: EpisodeLog):
    """Resets every episode; a group's prompt is its first successful reset's text (every other
    reset of the group must give the same text: its episodes share one prefill)."""
    outcomes = runner.reset(envs, [examples[i // group] for i in range(len(envs))])
    texts = []
    for j, example in enumerate(examples):
      group_outcomes = outcomes[j * group:(j + 1) * group]
      text = next((o.value for o in group_outcomes if o.error is None), example.prompt)
      for i, o in enumerate(group_outcomes, start=j * group):
        if o.error is not None:
          log.fail(i, o.error, o.timed_out, what="reset")
        elif o.value != text:
          log.fail(i, f"reset gave another first observation than episode {j * group} of its "
                   f"group (resets must be deterministic in the example)", what="reset")
      texts.append(text)
    ids_bp, mask_bp, fits = self._prompts(texts)
    for j, ok in enumerate(fits):
      for i in range(j * group, (j + 1) * group):
        if not ok and log.error[i] is None:
          log.fail(i, f"the first observation is empty or longer than data.prompt_len "
                   f"({self.prompt_len} tokens)", what="reset")
    return ids_bp, mask_bp

  def _text(self, ids: list[int], ended: int) -> str:
    """A turn's text as the environment sees it: EOS excluded, a stop string included."""
    eos = self.tokenizer.eos_id
    text = decode_completion(self.tokenizer, ids if ended == turns.EOS else ids + [eos],
                             [1] * (len(ids) + (ended != turns.EOS)))
    return text or ""

  # --- the episode loop --------------------------------------------------------------------
  def sample(self, params: models.Params, envs: Sequence[Any], examples: Sequence[Any],
             group_size: int, rng: jax.Array, runner: EnvRunner) -> Episodes:
    """Runs len(envs) = len(examples) x group_size episodes (a group's envs consecutive)."""
    spec, n, t = self.spec, len(envs), self.spec.episode_tokens
    if n != len(examples) * group_size:
      raise ValueError(f"{n} environments for {len(examples)} examples x {group_size} episodes")
    log = EpisodeLog(n, self.env_name)
    timer = {"env_time_s": 0.0, "decode_time_s": 0.0}
    t0 = time.monotonic()
    prompt_ids, prompt_mask = self._reset(envs, examples, group_size, runner, log)
    timer["env_time_s"] += time.monotonic() - t0
    cache_len = spec.cache_len(self.prompt_len)
    carry = self._start(params, prompt_ids, prompt_mask, group=group_size, cache_len=cache_len)
    slot, used = self.prompt_len, np.zeros(n, np.int64)
    segments: list[list[tuple]] = [[] for _ in range(n)]
    decode_steps, cut_observations, generated = 0, 0, 0
    for turn in range(spec.max_turns):
      live = np.asarray([log.live(i) for i in range(n)])
      if not live.any():
        break
      t0 = time.monotonic()
      # turn 0 draws from `rng` itself: one turn samples what `generate(rng)` samples
      turn_rng = rng if turn == 0 else jax.random.fold_in(rng, turn)
      carry, out = self._decode(params, carry, jnp.int32(slot), jnp.asarray(live),
                                jnp.asarray(t - used, jnp.int32), turn_rng)
      out = jax.device_get(out)
      timer["decode_time_s"] += time.monotonic() - t0
      slot += int(out["steps"])
      decode_steps += int(out["steps"])
      stepped, texts = [], []
      for i in np.flatnonzero(live):
        k = int(out["mask"][i].sum())
        ids = out["tokens"][i, :k].tolist()
        segments[i].append((ids, 1.0, out["logprobs"][i, :k], out["entropies"][i, :k]))
        used[i] += k
        generated += k
        log.turns[i] += 1
        if out["ended"][i] == turns.CUT:
          log.truncated[i] = True
        else:
          stepped.append(i)
          texts.append(self._text(ids, int(out["ended"][i])))
      t0 = time.monotonic()
      outcomes = runner.step([envs[i] for i in stepped], texts)
      timer["env_time_s"] += time.monotonic() - t0
      block: dict[int, list[int]] = {}
      for i, outcome in zip(stepped, outcomes):
        observation = log.apply_step(i, outcome)
        if observation is None:
          continue
        ids = self.tokenizer.encode(observation) if observation else []
        if len(ids) > spec.observation_len:
          ids, cut_observations = ids[:spec.observation_len], cut_observations + 1
        if turn == spec.max_turns - 1 or used[i] + len(ids) >= t:
          log.truncated[i] = True  # out of turns, or no room left to answer the observation
        elif ids:
          block[i] = ids
      if block:
        carry = self._append_block(params, carry, block, n, slot)
        slot += spec.observation_len
        for i, ids in block.items():
          zeros = np.zeros(len(ids), np.float32)
          segments[i].append((ids, 0.0, zeros, zeros))
          used[i] += len(ids)
    return self._assemble(prompt_ids, prompt_mask, segments, log, dict(
        timer, decode_steps=float(decode_steps), observations_cut=float(cut_observations),
        # every episode's row runs each decode step, finished or not (as the fixed batch's)
        decode_slot_utilisation=generated / max(decode_steps * n, 1)))

  def _append_block(self, params, carry, block: dict[int, list[int]], n: int, slot: int):
    l, pad = self.spec.observation_len, self.tokenizer.pad_id
    tokens_nl, mask_nl = np.full((n, l), pad, np.int32), np.zeros((n, l), np.int32)
    for i, ids in block.items():
      tokens_nl[i, l - len(ids):], mask_nl[i, l - len(ids):] = ids, 1
    return self._append(params, carry, jnp.asarray(tokens_nl), jnp.asarray(mask_nl),
                        jnp.int32(slot))

  def _assemble(self, prompt_ids, prompt_mask, segments, log: EpisodeLog, extra) -> Episodes:
    n, t, turns_max = len(segments), self.spec.episode_tokens, self.spec.max_turns
    tokens = np.full((n, t), self.tokenizer.pad_id, np.int32)
    mask, loss_mask, logprobs, entropies = (np.zeros((n, t), np.float32) for _ in range(4))
    for i, segs in enumerate(segments):
      at = 0
      for ids, is_policy, lp, ent in segs:
        span = slice(at, at + len(ids))
        tokens[i, span], mask[i, span], loss_mask[i, span] = ids, 1.0, is_policy
        logprobs[i, span], entropies[i, span] = lp, ent
        at += len(ids)
    turn_rewards = np.zeros((n, turns_max), np.float32)
    for i, rs in enumerate(log.turn_rewards):
      turn_rewards[i, :len(rs)] = 0.0 if log.error[i] else rs
    rewards = np.asarray([log.reward(i) for i in range(n)], np.float32)
    metrics = dict(log.metrics(), **extra, episode_tokens_mean=float(mask.sum(-1).mean()),
                   policy_tokens_mean=float(loss_mask.sum(-1).mean()),
                   observation_tokens_mean=float((mask - loss_mask).sum(-1).mean()))
    return Episodes(prompt_ids=prompt_ids, prompt_mask=prompt_mask, tokens=tokens, mask=mask,
                    loss_mask=loss_mask, logprobs=logprobs, entropies=entropies, rewards=rewards,
                    turn_rewards=turn_rewards, turns=np.asarray(log.turns, np.int32),
                    metrics=metrics, info=[dict(d) for d in log.episode_info])
