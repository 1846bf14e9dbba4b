"""HumanEval through the code sandbox: every canonical solution passes, wrong ones fail, and the
`code_humaneval` task's jitted reward agrees with `verify`."""

import time

import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.data import humaneval, synthetic
from rlvr_jax.data.tasks import code_task
from rlvr_jax.rewards import code


@pytest.fixture(scope="module")
def problems():
  return humaneval.problems()


def test_bundled_file(problems):
  assert len(problems) == humaneval.NUM_PROBLEMS == 164
  assert [p.task_id for p in problems] == [f"HumanEval/{i}" for i in range(164)]
  assert all(p.entry_point.isidentifier() and "def check(" in p.test for p in problems)


def test_every_canonical_solution_passes(problems):
  start = time.monotonic()
  passed = code.passes_many([p.prompt + p.canonical_solution for p in problems],
                            [p.test for p in problems], [p.entry_point for p in problems],
                            workers=4, timeout_s=10.0)
  failed = [p.task_id for p, ok in zip(problems, passed) if not ok]
  assert failed == [], f"{len(failed)} canonical solutions failed: {failed}"
  print(f"164/164 canonical solutions in {time.monotonic() - start:.1f} s")


def test_wrong_solutions_fail(problems):
  wrong = [p.prompt + "    return None\n" for p in problems]
  passed = code.passes_many(wrong, [p.test for p in problems], [p.entry_point for p in problems],
                            workers=4, timeout_s=10.0)
  assert not any(passed), [p.task_id for p, ok in zip(problems, passed) if ok]
  add = problems[53]  # def add(x, y): return x + y
  assert add.entry_point == "add" and "return x + y" in add.canonical_solution
  off_by_one = add.prompt + add.canonical_solution.replace("x + y", "x + y + 1")
  assert not code.passes(off_by_one, add.test, add.entry_point)
  assert code.passes(add.prompt + add.canonical_solution, add.test, add.entry_point)


def test_plain_completion_is_cut_at_stop_sequences():
  body = "    return x + y\n"
  assert code_task.truncate_plain(body + "\n\ndef other():\n  pass\n") == body + "\n"
  assert code_task.truncate_plain(body + "\nif __name__ == '__main__':\n  while True: pass") == (
      body)
  assert code_task.last_code_block("Sure:\n```python\na = 1\n```\nor\n```py\nb = 2\n```") == "b = 2\n"
  assert code_task.last_code_block("def f(): pass") == "def f(): pass"


def test_task_examples_and_verify(problems):
  task = synthetic.make_task("code_humaneval")
  assert task.num_examples("train") + task.num_examples("test") == 164
  example = task.example(0, split="test", seed=0)
  problem = problems[task.num_train]
  assert (example.prompt, example.answer) == (problem.prompt, problem.task_id)
  assert task.verify(example.demo, example)
  assert task.verify(example.demo + "\ndef extra():\n  while True: pass\n", example)
  assert not task.verify("    return None\n", example)
  assert task.score([None, example.demo], [example.answer] * 2) == [False, True]


def test_chat_template_takes_the_last_code_block(problems):
  class Chat:
    def chat(self, messages):
      return "<user>" + messages[0]["content"] + "<assistant>"

  task = synthetic.make_task("code_humaneval", template="chat").bind_tokenizer(Chat())
  example = task.example(1, split="train", seed=0)
  assert problems[1].prompt in example.prompt and example.prompt.startswith("<user>")
  assert task.verify("Here it is:\n" + example.demo, example)
  # The prompt's imports are added: a reply that drops `from typing import List` still runs.
  no_import = example.demo.replace("from typing import List\n", "")
  assert "List" in no_import and task.verify(no_import, example)
  assert not task.verify("```python\ndef separate_paren_groups(s):\n  return []\n```", example)


def test_jitted_reward_agrees_with_verify():
  task = synthetic.make_task("code_humaneval")
  tokenizer = synthetic.build_tokenizer([task])
  example = task.example(3, split="train", seed=0)
  completions = [example.demo, "    return None\n"]
  width = max(len(tokenizer.encode(c)) for c in completions) + 1
  ids = np.zeros((2, width), np.int32)
  mask = np.zeros((2, width), np.float32)
  for row, text in enumerate(completions):
    tokens = tokenizer.encode(text) + [tokenizer.eos_id]
    ids[row, :len(tokens)], mask[row, :len(tokens)] = tokens, 1.0
  answer = np.asarray([tokenizer.encode(example.answer)] * 2, np.int32)
  rewards = task.reward_fn(tokenizer)(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(answer),
                                      jnp.zeros((2, 0), jnp.int32))
  assert rewards.tolist() == [1.0, 0.0]
