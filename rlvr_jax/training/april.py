"""APRIL: active partial rollouts (Zhou et al. 2025, "APRIL: Active Partial Rollouts in
Reinforcement Learning to Tame Long-tail Generation", arXiv 2509.18521), inside the one step.

    pool    = buffer (c groups, carried) ++ the batch's b fresh groups      # k x b groups
    pool    = sampling.resume(pool) until b groups are done                 # abort the rest
    train   = the first b done groups of the pool; buffer = the other c     # c = (k - 1) b

Group semantics, as the paper's implementation (slime) does it: the unit of over-provisioning,
of completion and of the buffer is the GRPO group of G samples of one prompt. A group is done
when all G of its samples are (stop token or the n-token budget); only done groups are trained,
so every advantage sees a full group of G rewards. An unfinished group goes back into the buffer
whole, its finished samples included, and is resumed (prefill of prompt + partial completion,
then decode) in the next step, before any fresh prompt (the pool lists the buffer first and the
first b done groups in pool order are taken, so older groups win ties). Every sample keeps the
per-token log-probs of the policy that drew each of its tokens: the update's importance ratio
uses them for tokens of an earlier step (`stale`), not ratio 1. The paper aborts requests on a
server; here the static-shape counterpart is a decode loop that exits early.

The buffer has a fixed size c = (k - 1) x rl.batch_size groups (k = rl.partial_rollouts_factor)
and lives in `TrainState.rollouts`, so it is checkpointed and a resume is exact. Before RL
step 1 the outer loop fills it with (k - 1) batches of fresh prompts (`fresh_groups`); after
that each step takes b fresh prompts and trains b groups, so the pool stays k x b groups and
data is read at the same rate as without APRIL.

Costs: every decode step runs k x b groups (k times the rows of a plain step); resumed rows are
prefilled over prompt + n completion slots, and their KV cache holds p + 2n slots
(`sampling.resume`). What falls is the number of decode steps: the loop no longer waits for the
longest of the b groups. The last groups trained may have tokens up to a few updates old
(metric `april_policy_lag_max`); the PPO ratio against their stored log-probs clips them.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from rlvr_jax import models, sampling
from rlvr_jax.algorithms import losses
from rlvr_jax.sampling import partial


@flax.struct.dataclass
class RolloutBuffer:
  """Groups of the rollout pool (c groups of G rows; n = max_new_tokens).

  Attributes:
    prompt_ids, prompt_mask: int32 [c, p], left-padded prompts.
    answer_ids: int32 [c, a]; meta: int32 [c, m] (what the reward reads), None when m = 0
      (orbax cannot save zero-size arrays).
    part: `sampling.PartialCompletions` [c * G, n], the group's rows consecutive.
    born: int32 [c]; `TrainState.step` when the group entered the pool (its policy lag is
      step - born).
  """

  prompt_ids: jax.Array
  prompt_mask: jax.Array
  answer_ids: jax.Array
  meta: jax.Array | None
  part: partial.PartialCompletions
  born: jax.Array

  def take(self, groups: jax.Array, group_size: int) -> RolloutBuffer:
    """The groups at int indices `groups` [k], in that order."""
    rows = group_rows(groups, group_size)
    return RolloutBuffer(prompt_ids=self.prompt_ids[groups], prompt_mask=self.prompt_mask[groups],
                         answer_ids=self.answer_ids[groups],
                         meta=None if self.meta is None else self.meta[groups],
                         part=jax.tree.map(lambda x: x[rows], self.part), born=self.born[groups])

  def batch(self) -> dict[str, jax.Array]:
    """The groups' prompts, answers and meta as a data batch."""
    b = self.prompt_ids.shape[0]
    return dict(prompt_ids=self.prompt_ids, prompt_mask=self.prompt_mask,
                answer_ids=self.answer_ids,
                meta=jnp.zeros((b, 0), jnp.int32) if self.meta is None else self.meta)


def group_rows(groups: jax.Array, group_size: int) -> jax.Array:
  """int32 [k * G]: the rows of the groups at indices `groups` [k], G consecutive per group."""
  return (groups[:, None] * group_size + jnp.arange(group_size)).reshape(-1)


def fresh_groups(batch: dict[str, jax.Array], rng: jax.Array, step: jax.Array, *,
                 group_size: int, max_new_tokens: int, pad_id: int) -> RolloutBuffer:
  """The batch's prompts as groups with nothing sampled yet. Row uniforms are
  uniform(rng, (n, b * G)) transposed: the layout `sampling.generate` draws."""
  b = batch["prompt_ids"].shape[0]
  uniforms = jax.random.uniform(rng, (max_new_tokens, b * group_size), jnp.float32).T
  return RolloutBuffer(prompt_ids=batch["prompt_ids"],
                       prompt_mask=batch["prompt_mask"].astype(jnp.int32),
                       answer_ids=batch["answer_ids"],
                       meta=batch["meta"] if batch["meta"].shape[-1] else None,
                       part=partial.fresh(uniforms, pad_id),
                       born=jnp.full((b,), step, jnp.int32))


def empty(capacity: int, prompt_len: int, answer_len: int, meta_size: int, *, group_size: int,
          max_new_tokens: int, pad_id: int) -> RolloutBuffer:
  """A buffer of `capacity` groups without prompts: the template a checkpoint is restored into;
  the outer loop fills it (`fresh_groups`) before RL step 1."""
  zeros = lambda width: jnp.zeros((capacity, width), jnp.int32)
  batch = dict(prompt_ids=zeros(prompt_len) + pad_id, prompt_mask=zeros(prompt_len),
               answer_ids=zeros(answer_len) + pad_id, meta=zeros(meta_size))
  return fresh_groups(batch, jax.random.key(0), jnp.int32(0), group_size=group_size,
                      max_new_tokens=max_new_tokens, pad_id=pad_id)


def concat(a: RolloutBuffer, b: RolloutBuffer) -> RolloutBuffer:
  return jax.tree.map(lambda x, y: jnp.concatenate([x, y]), a, b)


def split(done_g: jax.Array, b: int) -> tuple[jax.Array, jax.Array]:
  """Group indices (train [b]: the first b done groups in pool order; kept [k - b]: every other
  group in pool order), for a pool whose done groups `done_g` (bool [k]) number at least b."""
  train_g = done_g & (jnp.cumsum(done_g) <= b)
  k = done_g.shape[0]
  return (jnp.argsort(~train_g, stable=True)[:b], jnp.argsort(train_g, stable=True)[:k - b])


def rollout(model_config: models.ModelConfig, params: models.Params, buffer: RolloutBuffer,
            batch: dict[str, jax.Array], rng: jax.Array, step: jax.Array, *, group_size: int,
            sample_kw: dict):
  """One APRIL rollout: resume the buffer and the batch's fresh groups until b are done.

  Args:
    buffer: the carried groups [c]; batch: b fresh prompts; rng: their rows' uniforms;
    step: `TrainState.step`; sample_kw: `sampling.generate`'s keyword arguments.

  Returns:
    (train: the b done groups, buffer: the c others, stale: float32 [b * G, n], 1 on the train
    rows' tokens sampled in earlier steps, decode_steps: int32 scalar).
  """
  b = batch["prompt_ids"].shape[0]
  kw = dict(sample_kw)
  n = kw.pop("max_new_tokens")
  pool = concat(buffer, fresh_groups(batch, rng, step, group_size=group_size,
                                     max_new_tokens=n, pad_id=kw["pad_id"]))
  part, decode_steps = sampling.resume(model_config, params, pool.prompt_ids, pool.prompt_mask,
                                       pool.part, group_size=group_size, min_groups_done=b, **kw)
  train_g, kept_g = split(partial.groups_done(part.done, group_size), b)
  stale = pool.part.mask[group_rows(train_g, group_size)]
  pool = pool.replace(part=part)
  return pool.take(train_g, group_size), pool.take(kept_g, group_size), stale, decode_steps


def metrics(train: RolloutBuffer, buffer: RolloutBuffer, stale: jax.Array, step: jax.Array,
            decode_steps: jax.Array, carried: RolloutBuffer) -> dict[str, jax.Array]:
  """decode_steps; decode_slot_utilisation: tokens this rollout generated / (decode_steps x
  pool rows), the pool being `carried` (the buffer it started from) + the fresh groups; the
  share of trained tokens (and groups) sampled in earlier steps; the largest policy lag
  (updates between a trained group's first token and this update); the mean tokens already
  sampled per buffered row."""
  mask = train.part.mask
  generated = mask.sum() + buffer.part.mask.sum() - carried.part.mask.sum()
  rows = mask.shape[0] + buffer.part.mask.shape[0]
  return dict(
      decode_steps=decode_steps,
      decode_slot_utilisation=generated / jnp.maximum(decode_steps * rows, 1),
      april_stale_token_frac=losses.masked_mean(stale, mask),
      april_resumed_group_frac=jnp.mean(stale.reshape(train.born.shape[0], -1).max(-1)),
      april_policy_lag_max=jnp.max(step - train.born),
      april_buffer_tokens=jnp.mean(buffer.part.mask.sum(-1)))
