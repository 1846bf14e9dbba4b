"""Process reward model for PURE: step segmentation, labels, the head read-out, training, and the
PURE estimators inside the one compiled RL step."""

import json
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import models
from rlvr_jax.checkpoints.manager import Checkpointer, abstract_like
from rlvr_jax.data import pipeline, synthetic
from rlvr_jax.models.config import tiny
from rlvr_jax.rewards import prm
from rlvr_jax.training import loop
from rlvr_jax.training.run import Run
from rlvr_jax.training.state import critic_from_policy, make_optimizer
from tests.helpers import load_config

TASK = synthetic.make_task("addition", digits=3, scratchpad=True)
TOKENIZER = synthetic.build_tokenizer([TASK])


def _examples(n, split="train", seed=0):
  return [TASK.example(i, split=split, seed=seed) for i in range(n)]


def _encode_completion(text, length):
  ids = TOKENIZER.encode(text) + [TOKENIZER.eos_id]
  tokens = np.full(length, TOKENIZER.pad_id, np.int32)
  mask = np.zeros(length, np.float32)
  tokens[:len(ids)], mask[:len(ids)] = ids, 1
  return tokens, mask


def _corrupt(demo, rng):
  """The demo with one digit of one scratchpad column changed; returns (text, column)."""
  columns = demo.split(",")
  k = rng.randrange(len(columns))
  col = columns[k]
  digit_positions = [i for i, ch in enumerate(col) if ch.isdigit()]
  i = rng.choice(digit_positions)
  col = col[:i] + str((int(col[i]) + rng.randint(1, 9)) % 10) + col[i + 1:]
  columns[k] = col
  return ",".join(columns), k


# --- segmentation and labels: against obvious host loops ------------------------------------
@pytest.mark.parametrize("delimiter", [",", "=1", "11", "1+1", "+0=1"])
def test_step_ends_match_a_loop_over_decoded_text(delimiter):
  """Single-token and multi-token delimiters, self-overlapping ones ("11": "111" ends twice)."""
  table = prm.step_end_table(TOKENIZER, delimiter)
  rng = np.random.default_rng(0)
  alphabet = [TOKENIZER.encode(ch)[0] for ch in "0123456789+=,#"]
  tokens = rng.choice(alphabet + [TOKENIZER.eos_id], size=(128, 24)).astype(np.int32)
  lengths = rng.integers(0, 25, size=128)
  mask = (np.arange(24) < lengths[:, None]).astype(np.float32)
  got = np.asarray(prm.step_ends(tokens, mask, table))
  want = np.zeros_like(got)
  for i in range(128):
    text = ""
    for t in range(lengths[i]):
      special = tokens[i, t] in (TOKENIZER.eos_id, TOKENIZER.pad_id)
      piece = "" if special else TOKENIZER.decode([int(tokens[i, t])])
      text += piece
      if (piece and text.endswith(delimiter)) or t == lengths[i] - 1:
        want[i, t] = 1
  np.testing.assert_array_equal(got, want)
  assert want[:, :-1].sum() > lengths.sum() / 50  # the delimiter does occur


def test_step_end_table_rejects_a_delimiter_no_token_ends_with():
  with pytest.raises(ValueError, match="config.prm.step_delimiter"):
    prm.step_end_table(TOKENIZER, "\n\n")  # the char-level tokenizer has no newline


def test_split_steps_and_gold_prefix_labels():
  assert prm.split_steps("7+5+0=12,3+8+1=12#122", ",") == ["7+5+0=12,", "3+8+1=12#122"]
  assert prm.split_steps("a\n\nb\n\n", "\n\n") == ["a\n\n", "b\n\n"]
  assert prm.split_steps("", ",") == [""]
  demo = "7+5+0=12,3+8+1=12#122"
  assert prm.gold_prefix_labels(["7+5+0=12,", "3+8+1=12#122"], demo, ",") == [True, True]
  # First error: every later step is wrong, even one that matches the gold text.
  assert prm.gold_prefix_labels(["7+5+0=13,", "3+8+1=12#122"], demo, ",") == [False, False]
  assert prm.gold_prefix_labels(["7+5+0=12,", "3+8+1=11#112"], demo, ",") == [True, False]
  assert prm.gold_prefix_labels(["7+5+0=12,", "3+8+1=12,", "1"], demo, ",") == [
      True, False, False]


def test_label_batch_of_gold_and_corrupted_demos():
  rng = random.Random(0)
  examples = _examples(40)
  texts, first_bad = [], []
  for i, e in enumerate(examples):
    if i % 2:
      text, k = _corrupt(e.demo, rng)
    else:
      text, k = e.demo, None
    texts.append(text)
    first_bad.append(k)
  enc = [_encode_completion(t, 40) for t in texts]
  tokens, mask = np.stack([x[0] for x in enc]), np.stack([x[1] for x in enc])
  step_end = np.asarray(prm.step_ends(tokens, mask, prm.step_end_table(TOKENIZER, ",")))
  labels = prm.label_batch(TASK, TOKENIZER, examples, tokens, mask, step_end, ",")
  for i, e in enumerate(examples):
    ends = np.flatnonzero(step_end[i])
    n_steps = len(e.demo.split(","))
    assert len(ends) == n_steps
    assert ends[-1] == mask[i].sum() - 1  # the last step ends at EOS
    want = [first_bad[i] is None or k < first_bad[i] for k in range(n_steps)]
    np.testing.assert_array_equal(labels[i, ends], want)
    assert labels[i].sum() == sum(want)  # nothing off the step ends


# --- the PRM head ---------------------------------------------------------------------------
def _prm_setup(seed=0, d_model=32):
  config = tiny(TOKENIZER.vocab_size, d_model=d_model, d_ff=2 * d_model)
  policy = models.init_params(config, jax.random.key(seed))
  params = critic_from_policy(policy)
  params["head"]["w"] = 0.5 * jax.random.normal(jax.random.key(seed + 1), params["head"]["w"].shape)
  return config, params


def _batch(examples, texts, length=40):
  prompts = [pipeline.encode_example(e, TOKENIZER, pipeline.task_shapes(TASK, TOKENIZER),
                                     with_demo=False) for e in examples]
  enc = [_encode_completion(t, length) for t in texts]
  return dict(prompt_ids=np.stack([p["prompt_ids"] for p in prompts]),
              prompt_mask=np.stack([p["prompt_mask"] for p in prompts]),
              tokens=np.stack([x[0] for x in enc]), mask=np.stack([x[1] for x in enc]))


def test_step_reward_is_tanh_half_logit_and_ignores_later_tokens():
  config, params = _prm_setup()
  examples = _examples(8)
  table = prm.step_end_table(TOKENIZER, ",")
  b = _batch(examples, [e.demo for e in examples])
  end = prm.step_ends(b["tokens"], b["mask"], table)
  r = prm.step_rewards(config, params, b["prompt_ids"], b["prompt_mask"], b["tokens"], b["mask"],
                       end)
  h = prm.head_logits(config, params, b["prompt_ids"], b["prompt_mask"], b["tokens"], b["mask"])
  # p(+) - p(-) with p(+) = sigmoid(h)
  np.testing.assert_allclose(r, (2 * jax.nn.sigmoid(h) - 1) * end, atol=1e-6)
  assert np.all(np.abs(r) <= 1) and np.all(np.asarray(r)[np.asarray(end) == 0] == 0)
  # The score of the first step does not depend on anything after its ','.
  multi = [e for e in _examples(64) if "," in e.demo][:8]
  b = _batch(multi, [e.demo for e in multi])
  first, rest = zip(*(e.demo.split(",", 1) for e in multi))
  b2 = _batch(multi, [f + "," + r[::-1] + "9" for f, r in zip(first, rest)])
  h = prm.head_logits(config, params, b["prompt_ids"], b["prompt_mask"], b["tokens"], b["mask"])
  h2 = prm.head_logits(config, params, b2["prompt_ids"], b2["prompt_mask"], b2["tokens"],
                       b2["mask"])
  for i, f in enumerate(first):
    np.testing.assert_allclose(h2[i, :len(f) + 1], h[i, :len(f) + 1], atol=1e-5)
    assert not np.allclose(h2[i, len(f) + 1:], h[i, len(f) + 1:], atol=1e-5)


class _NoSevenRule:
  """A task whose step labels are a property a PRM can see within the step: no digit 7."""

  name = "addition-no-7"

  def step_labels(self, steps, example):
    del example
    return ["7" not in s for s in steps]


def test_prm_training_fits_step_labels_read_at_step_ends():
  """The loss, its read-out at step-end tokens and the update fit held-out step labels (given
  through a task's `step_labels`). Verifying arithmetic from a random trunk takes far longer;
  the loop starts the PRM from the warm-started policy instead."""
  config, params = _prm_setup(d_model=32)
  params["head"]["w"] = jnp.zeros_like(params["head"]["w"])
  table = prm.step_end_table(TOKENIZER, ",")
  optimizer = make_optimizer(load_config().prm.optimizer, 150)
  step = jax.jit(prm.make_prm_step(config, optimizer))

  def labelled(examples):
    b = _batch(examples, [e.demo for e in examples])
    b["step_end"] = np.asarray(prm.step_ends(b["tokens"], b["mask"], table))
    b["labels"] = prm.label_batch(_NoSevenRule(), TOKENIZER, examples, b["tokens"], b["mask"],
                                  b["step_end"], ",")
    return b

  test = labelled(_examples(256, "test", seed=5))
  assert 0.3 < test["labels"].sum() / test["step_end"].sum() < 0.9  # both classes present
  evaluate = jax.jit(lambda p: prm.prm_loss(config, p, test)[1])
  before = jax.device_get(evaluate(params))
  carry = (params, optimizer.init(params))
  train = _examples(32 * 150)
  for i in range(150):
    carry, _ = step(carry, labelled(train[32 * i:32 * (i + 1)]))
  after = jax.device_get(evaluate(carry[0]))
  assert before["prm_balanced_accuracy"] == pytest.approx(0.5)  # zero head: one class for all
  assert after["prm_loss"] < 0.5 * before["prm_loss"], (before, after)
  assert after["prm_balanced_accuracy"] > 0.9, after


# --- PURE inside the compiled step, and through the loop ------------------------------------
@pytest.mark.parametrize("advantage", ["pure_min", "pure_min_strict", "pure_sum"])
def test_pure_estimators_run_inside_the_compiled_step(advantage):
  config = load_config("pure_addition", "tiny")
  config.algorithm.advantage = advantage
  run = Run(config)
  state = run.make_rl_state(run.init_params())
  assert state.prm_params is not None
  head = state.prm_params["head"]  # an untrained PRM scores every step 0: give it opinions
  prm_params = dict(state.prm_params, head=dict(
      head, w=jax.random.normal(jax.random.key(7), head["w"].shape)))
  state = state.replace(prm_params=jax.device_put(prm_params, jax.tree.map(
      lambda x: x.sharding, state.prm_params)))
  step = run.compile_step(run._rl_step, state, with_rng=True)
  it = iter(run.dataset("train", config.rl.batch_size, seed=0, shuffle=True, size=100))
  prm_before = jax.tree.map(np.asarray, state.prm_params)
  for i in range(2):
    state, metrics = step(state, run.device_batch(next(it)), jax.random.key(i))
  assert step._cache_size() == 1
  m = jax.device_get(metrics)
  for k, v in m.items():
    assert np.all(np.isfinite(v)), (advantage, k)
  assert m["steps_per_completion"] >= 1
  assert m["adv_abs_mean"] > 0
  # The PRM is frozen during RL.
  jax.tree.map(np.testing.assert_array_equal, prm_before, jax.device_get(state.prm_params))


def test_pure_run_trains_prm_then_checkpoints_it(tmp_path):
  config = load_config("pure_addition", "tiny")
  config.checkpoint.use_async = False
  summary = loop.train(config, str(tmp_path), progress=False)
  assert summary["rl_steps"] == config.rl.steps
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert rows[0]["prm_steps"] == config.prm.steps
  for k in ("prm_eval_loss", "prm_eval_balanced_accuracy", "prm_train_loss"):
    assert np.isfinite(rows[0][k]), k
  assert all("prm_step_reward_mean" in r for r in rows[1:])
  run = Run(load_config("pure_addition", "tiny"))
  template = run.make_rl_state(run.init_params())
  ckpt = Checkpointer(str(tmp_path / "checkpoints"), use_async=False)
  try:
    state0, _, _ = ckpt.restore(0, abstract_like(template))
    step, last, _, _ = ckpt.restore_latest(abstract_like(template))
  finally:
    ckpt.close()
  assert step == config.rl.steps
  # The trained head (non-zero after its update steps) is what every checkpoint carries.
  assert np.any(np.asarray(state0.prm_params["head"]["w"]) != 0)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state0.prm_params),
               jax.device_get(last.prm_params))


@pytest.mark.parametrize("path,value,field", [
    ("prm.steps", 0, "prm.steps"),
    ("prm.step_delimiter", "", "prm.step_delimiter"),
    ("prm.batch_size", 0, "prm.batch_size"),
])
def test_bad_prm_config_names_the_field(path, value, field):
  config = load_config("pure_addition", "tiny")
  section, leaf = path.split(".")
  config[section][leaf] = value
  with pytest.raises(ValueError, match=field.replace(".", r"\.")):
    Run(config)
