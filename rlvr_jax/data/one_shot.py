"""1-shot RLVR (Wang et al. 2025, arXiv 2504.20571): pick one training example by its historical
variance score, then train on it alone.

The score needs a prior RL run over the whole pool with `data.record_example_accuracy=True`:
each RL step then writes, in its metrics.jsonl row, `example_index` (the train-source row of
every prompt of the batch) and `example_accuracy` (the fraction of its G samples that were
correct). The k-th time an example comes up is its k-th epoch, so its history is
s_i = (s_i1, ..., s_iE), and the score is the variance of that list,

    v_i = (1/E) sum_e (s_ie - mean_e s_ie)^2            (population variance, ddof = 0),

ranked from the largest down: pi_1 is the example of largest v_i. (The authors' selection script
ranks by np.std of the same lists, the same order; equal scores keep the smaller index first.)

    python -m rlvr_jax.data.one_shot --workdir=PRIOR_RUN [--top=10]

prints the ranking. A run with `--config.data.one_shot_from=PRIOR_RUN` (and
`data.one_shot_rank`, 1 = pi_1) trains on that one example, repeated to fill every batch, as the
paper duplicates pi_1 to the batch size.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable, Sequence

import numpy as np
from absl import app, flags

from rlvr_jax.data import pipeline
from rlvr_jax.data.tasks.base import Example, Task


def accuracy_history(rows: Iterable[dict]) -> dict[int, list[float]]:
  """{train-source index: its training accuracy at each occurrence, in step order}, from
  metrics rows (RL rows without `example_index` are skipped)."""
  history: dict[int, list[float]] = {}
  steps = sorted((r for r in rows if "example_index" in r), key=lambda r: r["step"])
  for row in steps:
    for index, accuracy in zip(row["example_index"], row["example_accuracy"], strict=True):
      history.setdefault(int(index), []).append(float(accuracy))
  return history


def historical_variance(history: dict[int, Sequence[float]]) -> list[tuple[int, float]]:
  """(index, v_i) for every example, largest v_i first (ties: smaller index first)."""
  # statistics.pvariance sums exactly: equal histories in any order tie exactly.
  scores = [(i, statistics.pvariance(s)) for i, s in history.items()]
  return sorted(scores, key=lambda item: (-item[1], item[0]))


def read_history(workdir: str) -> dict[int, list[float]]:
  """The accuracy history recorded in `workdir`/metrics.jsonl; ValueError naming the file when
  it holds none (the run did not set data.record_example_accuracy)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.isfile(path):
    raise ValueError(f"{path}: no such file (data.one_shot_from must be the --workdir of a run)")
  with open(path, encoding="utf-8") as f:
    history = accuracy_history(json.loads(line) for line in f if line.strip())
  if not history:
    raise ValueError(f"{path}: no per-example accuracy; the prior run needs "
                     "--config.data.record_example_accuracy=True")
  return history


def prior_config(workdir: str) -> dict:
  """The config the prior run wrote (config.json), as a dict."""
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    return json.loads(f.read())


def pick(workdir: str, rank: int) -> int:
  """The train-source index of pi_rank (rank 1: the largest historical variance)."""
  ranking = historical_variance(read_history(workdir))
  if not 1 <= rank <= len(ranking):
    raise ValueError(f"config.data.one_shot_rank: {rank} is not in [1, {len(ranking)}] (the "
                     f"examples with a recorded history in {workdir})")
  return ranking[rank - 1][0]


class OneExampleSource:
  """A grain source of one example: the 1-shot training set (repeat() fills the batches)."""

  def __init__(self, example: Example):
    self.example = example

  def __len__(self) -> int:
    return 1

  def __getitem__(self, index: int) -> Example:
    del index
    return self.example

  def __repr__(self) -> str:
    return f"OneExampleSource({self.example.prompt!r})"


def one_shot_source(task: Task, workdir: str, rank: int) -> OneExampleSource:
  """pi_rank of the prior run in `workdir`, rebuilt from its task and training seed.

  The task must be the prior run's (same name and arguments): the recorded indices are rows of
  its training stream.
  """
  prior = prior_config(workdir)
  name = getattr(task, "name", None)
  if prior["task"]["name"] != name:
    raise ValueError(f"config.task.name: {name!r}, but the prior run in {workdir} "
                     f"(data.one_shot_from) trained on {prior['task']['name']!r}")
  index = pick(workdir, rank)
  seed = pipeline.rl_stream_seed(prior["seed"])
  return OneExampleSource(task.example(index, split="train", seed=seed))


def main(argv):
  del argv
  workdir, top = flags.FLAGS.workdir, flags.FLAGS.top
  history = read_history(workdir)
  print(f"{'rank':>4} {'index':>7} {'variance':>9} {'mean acc':>8} {'epochs':>6}  "
        "accuracy by epoch")
  for rank, (index, score) in enumerate(historical_variance(history)[:top], start=1):
    s = history[index]
    shown = " ".join(f"{a:.2f}" for a in s[:12]) + (" ..." if len(s) > 12 else "")
    print(f"{rank:>4} {index:>7} {score:>9.4f} {np.mean(s):>8.3f} {len(s):>6}  {shown}")
  print(f"train on pi_1: --config.data.one_shot_from={workdir} --config.data.one_shot_rank=1")


if __name__ == "__main__":
  # Defined here, not at import: the training loop imports this module beside main's flags.
  flags.DEFINE_string("workdir", None, "A run's --workdir (with per-example accuracy).")
  flags.DEFINE_integer("top", 10, "How many of the highest-scoring examples to print.")
  flags.mark_flag_as_required("workdir")
  app.run(main)
