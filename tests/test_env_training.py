"""RL runs with an environment (config.data.env): host episodes + the compiled learn phase."""

import json
import os

import numpy as np
import pytest

from rlvr_jax.environments import Environment, StepResult, register_env
from rlvr_jax.training import loop
from tests.helpers import load_config


@register_env("test_count")
class CountEnv(Environment):
  """Two turns: observation "1+1=" after the first; reward 1.0 for an odd-length last turn.
  Episodes of prompts whose character codes sum to 0 mod 5 raise on their second step (a
  counted error)."""

  def __init__(self, task, *, fail_every: int = 5):
    super().__init__(task)
    self.fail_every = fail_every

  def reset(self, example):
    self.example, self.turn = example, 0
    return example.prompt

  def step(self, text):
    self.turn += 1
    if self.turn == 1:
      return StepResult("1+1=", 0.0, False, {"calls": 1})
    if sum(map(ord, self.example.prompt)) % self.fail_every == 0:
      raise RuntimeError("scripted failure")
    return StepResult(None, float(len(text) % 2), True, {"calls": 1})


def _env_config(tmp_path, **overrides):
  c = load_config("quickstart", "tiny")
  c.rl.steps, c.eval.every, c.checkpoint.every = 2, 2, 2
  c.rl.max_new_tokens = 12
  c.data.update(env="test_count", env_kw=dict(fail_every=2), max_turns=3, observation_len=6,
                turn_stop="=", env_workers=2, env_timeout_s=5.0)
  c.update_from_flattened_dict(overrides)
  return c


def test_tiny_env_run_trains_and_logs_episode_metrics(tmp_path):
  config = _env_config(tmp_path)
  summary = loop.train(config, str(tmp_path), progress=False)
  assert summary["rl_steps"] == 2
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  rl = [r for r in rows if r.get("phase") == "rl"]
  assert len(rl) == 2
  for r in rl:
    for k in ("reward_mean", "loss", "grad_norm", "env_errors", "env_timeouts", "turns_mean",
              "truncated_frac", "env_calls", "policy_tokens_mean", "observation_tokens_mean",
              "decode_steps", "decode_slot_utilisation", "loss_tokens_frac"):
      assert k in r and np.isfinite(r[k]), k
    assert 0 < r["loss_tokens_frac"] <= 1
  assert np.isfinite(rl[-1]["eval_accuracy"])  # greedy episodes on held-out prompts
  # what the greedy episodes did ("calls" is 1 a step, so an episode that stepped its env at all
  # has >= 1); the sft row (step 0) describes the starting policy the same way
  for r in (rows[0], rl[-1]):
    assert 0 < r["eval_env_calls_frac"] <= 1 and r["eval_env_calls"] >= r["eval_env_calls_frac"]
    assert 1.0 <= r["eval_turns_mean"] <= 3 and 0 <= r["eval_truncated_frac"] <= 1
    assert r["eval_env_errors"] >= 0
  assert max(r["turns_mean"] for r in rl) > 1  # some episodes took a second turn
  assert sum(r["env_errors"] for r in rl) > 0  # the scripted failures were counted, not fatal
  assert "example_index" not in rl[0]  # the index rows are for the envs, not metrics


def test_env_config_errors_name_the_field(tmp_path):
  with pytest.raises(ValueError, match="config.data.env: must be one of"):
    loop.Run(_env_config(tmp_path, **{"data.env": "test_cont"}))
  with pytest.raises(ValueError, match="env_kw.fail_evry: .*did you mean 'fail_every'"):
    loop.Run(_env_config(tmp_path, **{"data.env_kw": {"fail_evry": 2}}))
  with pytest.raises(ValueError, match="config.rl.partial_rollouts: is not supported"):
    loop.Run(_env_config(tmp_path, **{"rl.partial_rollouts": True}))
  with pytest.raises(ValueError, match="config.algorithm: a method that needs values"):
    loop.Run(_env_config(tmp_path, **{"algorithm.advantage": "gae",
                                       "algorithm.terms": {"value": {}}}))


def test_tool_gsm_tiny_runs_two_steps_with_the_calculator_env(tmp_path):
  config = load_config("tool_gsm", "tiny")
  summary = loop.train(config, str(tmp_path), progress=False)
  assert summary["rl_steps"] == 2
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    rl = [json.loads(line) for line in f if '"phase": "rl"' in line]
  assert [r["env_errors"] for r in rl] == [0.0, 0.0]
  assert all(np.isfinite(r["loss"]) and r["turns_mean"] >= 0 for r in rl)
