"""1-shot RLVR: per-example training accuracy, the historical variance score, training on pi_1."""

import json
import random

import numpy as np
import pytest

from rlvr_jax import configs_base
from rlvr_jax.data import one_shot, pipeline
from rlvr_jax.training import loop
from rlvr_jax.training.run import Run
from tests.helpers import load_config


def _reference_ranking(rows):
  """From the paper's definition, slowly: each example's accuracies in step order, their
  population variance (mean of squared deviations), ranked largest first, ties by index."""
  history = {}
  for row in sorted(rows, key=lambda r: r["step"]):
    if "example_index" not in row:
      continue
    for k in range(len(row["example_index"])):
      history.setdefault(row["example_index"][k], []).append(row["example_accuracy"][k])
  scores = []
  for index, accs in history.items():
    mean = sum(accs) / len(accs)
    scores.append((index, sum((a - mean) ** 2 for a in accs) / len(accs)))
  ranked = []
  while scores:  # selection sort: the largest score, the smallest index among equals
    best = scores[0]
    for s in scores[1:]:
      if s[1] > best[1] + 1e-12 or (abs(s[1] - best[1]) <= 1e-12 and s[0] < best[0]):
        best = s
    ranked.append(best)
    scores.remove(best)
  return history, ranked


def _random_rows(rng, pool, batch, steps, group):
  rows = [{"step": 0, "phase": "sft", "eval_accuracy": 0.5}]
  for step in range(1, steps + 1):
    index = [rng.randrange(pool) for _ in range(batch)]  # repeats within a batch allowed
    rows.append({"step": step, "phase": "rl", "example_index": index,
                 "example_accuracy": [rng.randrange(group + 1) / group for _ in index]})
  rng.shuffle(rows)  # the score reads steps in order, not file order
  return rows


@pytest.mark.parametrize("seed", range(5))
def test_historical_variance_matches_the_definition(seed):
  rng = random.Random(seed)
  rows = _random_rows(rng, pool=rng.randrange(3, 20), batch=rng.randrange(1, 6),
                      steps=rng.randrange(5, 30), group=rng.choice([2, 4, 8]))
  history, ranked = _reference_ranking(rows)
  assert one_shot.accuracy_history(rows) == history
  got = one_shot.historical_variance(one_shot.accuracy_history(rows))
  assert [i for i, _ in got] == [i for i, _ in ranked]
  np.testing.assert_allclose([v for _, v in got], [v for _, v in ranked], rtol=1e-12, atol=1e-15)
  # The authors' script ranks by np.std: the same order where no two scores tie.
  stds = {i: np.std(history[i]) for i in history}
  assert all(stds[a] >= stds[b] for (a, _), (b, _) in zip(got, got[1:]))


def test_an_example_that_flips_outranks_a_steady_one():
  rows = [{"step": s, "example_index": [0, 1, 2],
           "example_accuracy": [1.0, [0.0, 1.0][s % 2], 0.5]} for s in range(1, 7)]
  ranking = one_shot.historical_variance(one_shot.accuracy_history(rows))
  assert ranking[0] == (1, 0.25) and {i for i, v in ranking[1:]} == {0, 2}


def test_with_index_rows_cover_every_source_row_once_per_epoch():
  config = load_config()
  run = Run(config)
  size, batch = 6, 3
  source = pipeline.TaskSource(run.task, "train", 5, size)
  ds = pipeline.make_dataset(source, run.tokenizer, run.shapes, batch, seed=5, with_demo=False,
                             with_index=True)
  it = iter(ds)
  batches = [next(it) for _ in range(4 * size // batch)]
  index = np.concatenate([b["index"] for b in batches]).reshape(4, size)
  assert all(sorted(epoch) == list(range(size)) for epoch in index)
  for b in batches:  # each row is the example of its index
    for row, i in enumerate(b["index"]):
      want = pipeline.encode_example(source[int(i)], run.tokenizer, run.shapes, with_demo=False)
      np.testing.assert_array_equal(b["prompt_ids"][row], want["prompt_ids"])


def _one_shot_config(prior, **overrides):
  config = load_config()
  config.data.update(one_shot_from=str(prior), **overrides)
  return config


def test_record_rank_then_train_on_pi_1(tmp_path):
  """A run records each example's accuracy; a 1-shot run from it trains only on pi_1."""
  config = load_config()
  config.data.update(rl_train_size=4, record_example_accuracy=True)
  config.rl.update(steps=4, batch_size=4)
  loop.train(config, str(tmp_path / "prior"), progress=False)
  with open(tmp_path / "prior" / "metrics.jsonl") as f:
    rl = [r for r in map(json.loads, f) if r["phase"] == "rl"]
  assert len(rl) == 4
  for row in rl:  # batch 4 over a pool of 4: every step is one epoch
    assert sorted(row["example_index"]) == [0, 1, 2, 3]
    np.testing.assert_allclose(np.mean(row["example_accuracy"]), row["reward_mean"], atol=1e-6)
    assert all(a * config.rl.group_size == round(a * config.rl.group_size)
               for a in row["example_accuracy"])  # a count of correct samples out of G
  history = one_shot.read_history(str(tmp_path / "prior"))
  assert {i: len(s) for i, s in history.items()} == {0: 4, 1: 4, 2: 4, 3: 4}

  for rank in (1, 2):
    run = Run(_one_shot_config(tmp_path / "prior", one_shot_rank=rank))
    pick = one_shot.historical_variance(history)[rank - 1][0]
    prior_source = pipeline.TaskSource(run.task, "train", pipeline.rl_stream_seed(config.seed), 4)
    want = pipeline.encode_example(prior_source[pick], run.tokenizer, run.shapes,
                                   with_demo=False)
    it = iter(run.rl_dataset())
    for _ in range(3):
      batch = next(it)
      assert (batch["prompt_ids"] == want["prompt_ids"]).all()
      assert (batch["answer_ids"] == want["answer_ids"]).all()


def test_one_shot_errors_name_the_field(tmp_path):
  with pytest.raises(ValueError, match=r"config\.data\.one_shot_from: .* holds no metrics.jsonl"):
    configs_base.validate(_one_shot_config(tmp_path))
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.write(json.dumps({"step": 1, "phase": "rl", "example_index": [0, 1],
                        "example_accuracy": [0.5, 1.0]}) + "\n")
  with open(tmp_path / "config.json", "w") as f:
    json.dump({"seed": 0, "task": {"name": "addition"}}, f)
  with pytest.raises(ValueError, match=r"config\.data\.one_shot_rank: 3 is not in \[1, 2\]"):
    Run(_one_shot_config(tmp_path, one_shot_rank=3)).rl_dataset()
  config = _one_shot_config(tmp_path)
  config.task.name, config.task.kwargs = "sort", {}
  with pytest.raises(ValueError, match=r"config\.task\.name: 'sort', but the prior run"):
    Run(config).rl_dataset()
  (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "phase": "rl"}) + "\n")
  with pytest.raises(ValueError, match="record_example_accuracy=True"):
    one_shot.read_history(str(tmp_path))
