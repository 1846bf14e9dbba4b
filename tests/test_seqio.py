"""The seqio adapter ([seqio] extra): seqio tasks read as records, and trained on as task "seqio".

The tasks are tiny and in memory (`seqio.FunctionDataSource`): no TFDS, no network.
"""

import subprocess
import sys

import numpy as np
import pytest
import seqio
import tensorflow as tf

from rlvr_jax.data import math_datasets, pipeline, seqio_source
from rlvr_jax.training.run import Run
from tests.helpers import ROOT, load_config

_QUESTIONS = {"train": [f"Tom has {i} apples and buys {i + 2} more. How many now?"
                        for i in range(5)],
              "validation": ["What is 7 times 6?", "What is 10 minus 4?"]}
_ANSWERS = {"train": [str(2 * i + 2) for i in range(5)], "validation": ["42", "6"]}


def _dataset_fn(split, shuffle_files, seed=None):
  del shuffle_files, seed
  return tf.data.Dataset.from_tensor_slices(
      {"question": _QUESTIONS[split], "answer": _ANSWERS[split],
       "worked": [f"The answer is {a}." for a in _ANSWERS[split]]})


def _rename(ds):
  return ds.map(lambda ex: {"inputs": ex["question"], "targets": ex["answer"],
                            "solution": ex["worked"]})


def _register():
  """A text task and two tokenized ones (one keeps `*_pretokenized`, one only token ids)."""
  source = seqio.FunctionDataSource(_dataset_fn, splits=("train", "validation"))
  vocab = seqio.ByteVocabulary()
  text = seqio.Feature(seqio.PassThroughVocabulary(1), dtype=tf.string, rank=0)
  tokens = seqio.Feature(vocab)
  tasks = {
      "rlvr_test_text": ([_rename], {"inputs": text, "targets": text}),
      "rlvr_test_tok": ([_rename, seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
                        {"inputs": tokens, "targets": tokens}),
      "rlvr_test_ids": ([_rename, lambda ds, output_features: seqio.preprocessors.tokenize(
          ds, output_features, copy_pretokenized=False)], {"inputs": tokens, "targets": tokens}),
  }
  for name, (preprocessors, features) in tasks.items():
    if name not in seqio.TaskRegistry.names():
      seqio.TaskRegistry.add(name, source=source, preprocessors=preprocessors,
                             output_features=features)


_register()  # also what `module="tests.test_seqio"` runs when a SeqioTask imports it


@pytest.mark.parametrize("task", ["rlvr_test_text", "rlvr_test_tok", "rlvr_test_ids"])
def test_records_in_order_whatever_the_encoding(task):
  source = seqio_source.SeqioSource(task, "train", solution_key="solution")
  assert len(source) == 5
  for i in range(5):
    assert source[i] == {"question": _QUESTIONS["train"][i], "answer": _ANSWERS["train"][i],
                         "solution": f"The answer is {_ANSWERS['train'][i]}."}
  source[0]["question"] = "changed"  # records are copies
  assert source[0]["question"] == _QUESTIONS["train"][0]
  head = seqio_source.SeqioSource(task, "validation", max_examples=1)
  assert [head[i] for i in range(len(head))] == [{"question": "What is 7 times 6?",
                                                  "answer": "42", "solution": "42"}]


def test_a_missing_feature_is_named():
  with pytest.raises(ValueError, match=r"rlvr_test_text.*example 0: no feature 'problem'"):
    seqio_source.SeqioSource("rlvr_test_text", "train", question_key="problem")


def test_a_seqio_task_trains_through_the_pipeline():
  """task.name="seqio" builds a run whose RL batches are the seqio examples, tokenized."""
  config = load_config()
  config.task.name = "seqio"
  config.task.kwargs = dict(task="rlvr_test_tok", module="tests.test_seqio", template="plain",
                            solution_key="solution", max_completion_chars=32)
  run = Run(config)
  assert run.task.num_examples("train") == 5 and run.task.num_examples("test") == 2
  batch = next(iter(run.rl_dataset()))
  prompts = {math_datasets.format_prompt(q, "plain"): a
             for q, a in zip(_QUESTIONS["train"], _ANSWERS["train"])}
  assert batch["prompt_ids"].shape == (config.rl.batch_size, run.shapes.prompt_len)
  for ids, mask, answer in zip(batch["prompt_ids"], batch["prompt_mask"], batch["answer_ids"]):
    prompt = run.tokenizer.decode([int(i) for i, m in zip(ids, mask) if m])
    assert prompt in prompts
    assert run.tokenizer.decode([int(i) for i in answer]) == prompts[prompt]
  example = run.task.example(3, split="train", seed=0)
  assert example.demo == "The answer is 8." and example.answer == "8"
  assert run.task.verify("so \\boxed{8}", example) and not run.task.verify("\\boxed{9}", example)
  eval_batch = run.eval_batches[0]
  assert np.asarray(eval_batch["prompt_mask"]).sum(-1).min() > 0


def test_seqio_task_without_a_name_says_which_field():
  from rlvr_jax.data import synthetic
  task = synthetic.make_task("seqio")
  with pytest.raises(ValueError, match="config.task.kwargs.task"):
    task.example(0, split="train", seed=0)


def test_the_core_package_does_not_import_tensorflow():
  # The modules that name the adapter; the rest of the package reaches it only through them.
  code = ("import sys; import rlvr_jax.data.synthetic, rlvr_jax.data.seqio_source; "
          "assert 'seqio' not in sys.modules and 'tensorflow' not in sys.modules")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        env={"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin"}, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]


def test_pipeline_reads_the_seqio_records_as_examples():
  task = seqio_source.SeqioTask(task="rlvr_test_text", template="plain")
  source = pipeline.TaskSource(task, "test", seed=0, size=2)
  assert [source[i].answer for i in range(2)] == ["42", "6"]
  assert source[1].prompt == math_datasets.format_prompt("What is 10 minus 4?", "plain")
