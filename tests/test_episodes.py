"""Multi-turn episodes on the KV cache: the same numbers as a teacher-forced forward of the whole
conversation, observations kept exactly, and the one-step environment equal to `generate`."""

import jax
import numpy as np
import pytest

from rlvr_jax import models, sampling
from rlvr_jax.data import synthetic
from rlvr_jax.environments import EnvRunner, Environment, StepResult, make_env
from rlvr_jax.sampling.episodes import EpisodeSampler, EpisodeSpec

P, G = 8, 4


class _Echo(Environment):
  """Three turns: observations "+1=" then "=2+", rewards 0.25 a turn, then done with 1.0."""

  def __init__(self, task=None):
    super().__init__(task)
    self.heard, self.said = [], []

  def reset(self, example):
    return example.prompt

  def step(self, text):
    self.heard.append(text)
    if len(self.heard) == 3:
      return StepResult(None, 1.0, True, {"calls": 1})
    self.said.append(["+1=", "=2+"][len(self.heard) - 1])
    return StepResult(self.said[-1], 0.25, False, {"calls": 1})


def _setup(seed=0, gather="once"):
  task = synthetic.make_task("addition", digits=2)
  tok = synthetic.build_tokenizer([task])
  c = models.ModelConfig.from_config(dict(vocab_size=tok.vocab_size, d_model=32, n_layers=2,
                                          n_heads=4, n_kv_heads=2, d_ff=64,
                                          decode_weight_gather=gather))
  params = models.init_params(c, jax.random.key(seed))
  examples = [task.example(i, split="train", seed=0) for i in range(2)]
  return task, tok, c, params, examples


def _teacher_forced_logp(c, params, prompt_ids, prompt_mask, tokens, mask):
  seq, seq_mask = models.join_prompt(prompt_ids, prompt_mask, tokens, mask)
  logits = models.forward(c, params, seq, seq_mask)[:, P - 1:-1]
  logp = jax.nn.log_softmax(logits, -1)
  return np.take_along_axis(np.asarray(logp), tokens[..., None], -1)[..., 0]


@pytest.mark.parametrize("gather", ["once", "per_layer"])  # per-layer / stacked cache layouts
def test_episodes_match_a_teacher_forced_forward_of_the_conversation(gather):
  task, tok, c, params, examples = _setup(gather=gather)
  spec = EpisodeSpec(max_turns=3, turn_tokens=24, episode_tokens=64, observation_len=4,
                     stop="=")
  sampler = EpisodeSampler(c, tok, spec, prompt_len=P)
  envs = [_Echo() for _ in range(len(examples) * G)]
  ep = sampler.sample(params, envs, examples, G, jax.random.key(1), EnvRunner(2, 10.0))
  n = len(envs)
  assert ep.tokens.shape == (n, 64) and ep.prompt_ids.shape == (2, P)
  assert max(ep.turns) == 3 and ep.metrics["env_errors"] == 0  # some episodes went the distance
  assert np.all(ep.loss_mask <= ep.mask) and np.all(ep.logprobs[ep.loss_mask == 0] == 0)
  # the policy's tokens over the row-steps the turns' decode loops ran
  assert ep.metrics["decode_slot_utilisation"] == pytest.approx(
      ep.loss_mask.sum() / (ep.metrics["decode_steps"] * n))
  assert 0 < ep.metrics["decode_slot_utilisation"] <= 1
  # log-probs of the policy's tokens: the decode path == a forward of the whole conversation
  tf = _teacher_forced_logp(c, params, np.repeat(ep.prompt_ids, G, 0),
                            np.repeat(ep.prompt_mask, G, 0), ep.tokens, ep.mask)
  np.testing.assert_allclose(tf[ep.loss_mask > 0], ep.logprobs[ep.loss_mask > 0], atol=2e-5)
  for i, env in enumerate(envs):
    # segments in order: policy turn, observation, policy turn, ...
    row = ep.tokens[i][ep.mask[i] > 0].tolist()
    policy = ep.loss_mask[i][ep.mask[i] > 0]
    cuts = np.flatnonzero(np.diff(policy)) + 1
    segs = np.split(np.asarray(row), cuts)
    obs = [tok.decode(s.tolist()) for s, flag in zip(segs, policy[np.r_[0, cuts]]) if not flag]
    assert obs == env.said[:len(obs)]  # observation tokens exact
    heard = [tok.decode([t for t in s.tolist() if t != tok.eos_id])
             for s, flag in zip(segs, policy[np.r_[0, cuts]]) if flag]
    assert heard[:len(env.heard)] == env.heard  # the env saw the tokens as sampled
    expected = sum([0.25, 0.25, 1.0][:len(env.heard)]) if ep.turns[i] == 3 and len(
        env.heard) == 3 else 0.25 * min(len(env.heard), 2)
    assert ep.rewards[i] == pytest.approx(expected)
    assert ep.turn_rewards[i].sum() == pytest.approx(ep.rewards[i])


def test_one_step_env_is_the_single_turn_sampler_and_reward():
  task, tok, c, params, examples = _setup(seed=3)
  n_new = 12
  spec = EpisodeSpec(max_turns=1, turn_tokens=n_new, episode_tokens=n_new, observation_len=1)
  sampler = EpisodeSampler(c, tok, spec, prompt_len=P)
  envs = [make_env("one_step", task) for _ in range(len(examples) * G)]
  rng = jax.random.key(7)
  ep = sampler.sample(params, envs, examples, G, rng, EnvRunner(2, 10.0))
  comp = sampling.generate(c, params, ep.prompt_ids, ep.prompt_mask, rng,
                           max_new_tokens=n_new, eos_id=tok.eos_id, pad_id=tok.pad_id,
                           num_samples=G)
  np.testing.assert_array_equal(ep.tokens, np.asarray(comp.tokens))
  np.testing.assert_array_equal(ep.mask, np.asarray(comp.mask))
  # the same distribution; XLA fuses the two programs differently (1 ulp)
  np.testing.assert_allclose(ep.logprobs, np.asarray(comp.logprobs), atol=1e-6)
  answers = np.stack([np.pad(tok.encode(ex.answer), (0, 4 - len(tok.encode(ex.answer))))
                      for ex in examples for _ in range(G)]).astype(np.int32)
  meta = np.stack([np.asarray(ex.meta, np.int32) for ex in examples for _ in range(G)])
  expected = task.reward_fn(tok)(comp.tokens, comp.mask, answers, meta)
  np.testing.assert_array_equal(ep.rewards, np.asarray(expected))
