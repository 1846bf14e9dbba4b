"""Long-sequence settings in the real RL step: forced small log-prob chunks and attention blocks
give the step of the default (one chunk, one block) paths, and configs/long_reasoning.py:cpu
trains with them and in-flight refill."""

import json
import os

import jax
import numpy as np

from rlvr_jax.training import loop
from tests.helpers import device_batches, load_config, rl_run


def _one_step(**model_overrides):
  """(metrics, new params) of one compiled RL step of quickstart:tiny from fixed params."""
  run = rl_run(load_config(), **{f"model.{k}": v for k, v in model_overrides.items()})
  state = run.make_rl_state(run.init_params())
  step = run.compile_step(run._rl_step, state, with_rng=True)
  state, metrics = step(state, device_batches(run, 1)[0], jax.random.key(3))
  return jax.device_get(metrics), jax.device_get(state.params)


def test_chunked_logprobs_and_blockwise_attention_give_the_plain_step():
  plain_metrics, plain_params = _one_step()
  chunked_metrics, chunked_params = _one_step(logprob_chunk=3, attention_chunk=2)
  assert plain_metrics.keys() == chunked_metrics.keys()
  # the sampled tokens are the same (prefill's blocks change logits by float32 rounding only)
  assert plain_metrics["completion_tokens"] == chunked_metrics["completion_tokens"]
  assert plain_metrics["reward_mean"] == chunked_metrics["reward_mean"]
  for key in plain_metrics:
    np.testing.assert_allclose(chunked_metrics[key], plain_metrics[key], rtol=1e-5, atol=1e-6,
                               err_msg=key)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               chunked_params, plain_params)


def test_long_reasoning_cpu_variant_trains(tmp_path):
  summary = loop.train(load_config("long_reasoning", "cpu"), str(tmp_path), progress=False)
  assert summary["rl_steps"] == 2
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    rl = [r for r in map(json.loads, f) if r.get("phase") == "rl"]
  assert len(rl) == 2
  for r in rl:
    assert np.isfinite(r["loss"]) and 0 < r["decode_slot_utilisation"] <= 1
