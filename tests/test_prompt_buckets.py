"""Prompts of varying length (GSM8K) are cut to a few bucket widths, so 20 RL steps compile the
step once per bucket and never again, and trimming left padding changes no number."""

import jax
import numpy as np

from rlvr_jax.data import pipeline
from rlvr_jax.training.run import Run
from tests.helpers import load_config


def _gsm8k_run(bucket: int) -> Run:
  config = load_config()
  config.task.name = "gsm8k"
  config.task.kwargs = dict(template="plain")
  config.data.prompt_bucket = bucket
  config.rl.update(max_new_tokens=4, batch_size=4, group_size=2)
  config.model.update(d_model=16, n_heads=2, n_kv_heads=1, d_ff=32)
  return Run(config)


def test_twenty_gsm8k_steps_compile_once_per_bucket():
  run = _gsm8k_run(bucket=256)
  state = run.make_rl_state(run.init_params())
  step = run.compile_step(run._rl_step, state, with_rng=True)
  it = iter(run.dataset("train", 4, seed=0, shuffle=True, size=7473))
  widths, compiles_at_first_sight = [], []
  for i in range(20):
    batch = run.device_batch(next(it))
    width = batch["prompt_ids"].shape[1]
    new = width not in widths
    widths.append(width)
    state, _ = step(state, batch, jax.random.key(i))
    compiles_at_first_sight.append((new, step._cache_size()))
  buckets = sorted(set(widths))
  full = run.shapes.prompt_len
  assert len(buckets) >= 2, buckets  # GSM8K questions do vary in length
  assert all(w % 256 == 0 or w == full for w in buckets), buckets
  assert len(buckets) <= -(-full // 256)
  # a new program exactly when a new bucket first appears, none after
  assert step._cache_size() == len(buckets)
  seen = 0
  for new, size in compiles_at_first_sight:
    seen += new
    assert size == seen


def test_trimming_left_padding_changes_no_number():
  run = _gsm8k_run(bucket=0)
  state = run.make_rl_state(run.init_params())
  host = next(iter(run.dataset("train", 4, seed=0, shuffle=True, size=7473)))
  width = pipeline.prompt_width(host["prompt_mask"], 64)
  assert width < host["prompt_ids"].shape[1]
  full = run.device_batch(host)
  cut = run.device_batch(pipeline.trim_prompts(host, width))
  sample = jax.jit(run._rl_step.phases.sample)
  a, _ = sample(state, full, jax.random.key(0))
  b, _ = sample(state, cut, jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
  np.testing.assert_allclose(np.asarray(a.logprobs), np.asarray(b.logprobs), atol=1e-5)
