"""Synthetic tasks: determinism, disjoint splits, demos, and jittable reward == verify."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.data import synthetic
from rlvr_jax.data.tasks import countdown
from rlvr_jax.tokenizers import SentencePieceTokenizer

CONFIGS = [
    ("addition", {}),
    ("addition", {"digits": 5, "scratchpad": True}),
    ("countdown", {}),
    ("countdown", {"num_numbers": 4, "max_number": 20}),
    ("sort", {}),
    ("sort", {"min_length": 1, "max_length": 4, "max_value": 30}),
    ("longtail_reverse", {}),
    ("longtail_reverse", {"max_length": 8, "alpha": 2.0}),
]
CONFIG_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in CONFIGS]


@pytest.fixture(scope="module")
def tokenizer():
  return synthetic.build_tokenizer(synthetic.make_task(name, **kw) for name, kw in CONFIGS)


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_examples_are_deterministic_valid_and_bounded(name, kwargs):
  task, again = synthetic.make_task(name, **kwargs), synthetic.make_task(name, **kwargs)
  alphabet = set(task.alphabet())
  for i in range(300):
    for split in ("train", "test"):
      example = task.example(i, split=split, seed=3)
      assert example == again.example(i, split=split, seed=3)
      assert task.verify(example.demo, example)
      assert len(example.meta) == task.meta_size
      assert len(example.prompt) <= task.max_prompt_chars
      assert len(example.answer) <= len(example.demo) <= task.max_completion_chars
      assert set(example.prompt + example.demo) <= alphabet
  other_seed = [task.example(i, split="train", seed=4) for i in range(50)]
  assert other_seed != [task.example(i, split="train", seed=3) for i in range(50)]


@pytest.mark.parametrize("name,kwargs", CONFIGS[::2], ids=CONFIG_IDS[::2])
def test_train_and_test_are_disjoint(name, kwargs):
  task = synthetic.make_task(name, **kwargs)
  train = {task.example(i, split="train", seed=s).prompt for i in range(1500) for s in (0, 1)}
  test = {task.example(i, split="test", seed=s).prompt for i in range(1500) for s in (0, 1)}
  assert not train & test
  assert len(test) > 100  # the test split is not degenerate
  assert {synthetic.split_of(p) for p in train} == {"train"}


def test_golden_examples():
  # Pins the samplers across processes and versions: changing them silently changes datasets.
  examples = {
      "addition": synthetic.Example("822+5=", "827", "2+5+0=7,2+0+0=2,8+0+0=8#827", ()),
      "countdown": synthetic.Example("6,3,9 to 36:", "9-3*6", "9-3*6", (6, 3, 9, 36)),
      "sort": synthetic.Example("sort 2,8,4,1=", "1,2,4,8", "1,2,4,8", ()),
  }
  assert synthetic.make_task("addition", scratchpad=True).example(
      0, split="train", seed=0) == examples["addition"]
  assert synthetic.make_task("countdown").example(0, split="test", seed=0) == examples["countdown"]
  assert synthetic.make_task("sort").example(0, split="train", seed=0) == examples["sort"]


def test_countdown_is_left_to_right():
  task = synthetic.make_task("countdown")
  example = synthetic.Example("3,5,2 to 16:", "3+5*2", "3+5*2", (3, 5, 2, 16))
  assert task.verify("3+5*2", example)
  assert task.verify("5+3*2", example)
  assert not task.verify("3*5+2", example)  # 17
  assert not task.verify("(3+5)*2", example)
  assert not task.verify("3+5*2 ", example)
  assert not task.verify("03+5*2", example)
  assert not task.verify("3+5+5*2", example)


def test_make_task_errors():
  with pytest.raises(ValueError, match="unknown task 'sudoku'"):
    synthetic.make_task("sudoku")
  with pytest.raises(ValueError, match=r"no argument\(s\) \['digit'\]"):
    synthetic.make_task("addition", digit=3)
  with pytest.raises(ValueError, match="addition.digits"):
    synthetic.make_task("addition", digits=0)
  with pytest.raises(ValueError, match="countdown.max_number"):
    synthetic.make_task("countdown", num_numbers=8, max_number=99)
  with pytest.raises(ValueError, match="sort.min_length"):
    synthetic.make_task("sort", min_length=5, max_length=4)
  with pytest.raises(ValueError, match="split"):
    synthetic.make_task("sort").example(0, split="valid", seed=0)


@dataclasses.dataclass(frozen=True)
class _EchoTask:
  """A user task as a notebook writes one: the sort task's machinery under a new name."""
  name = "echo_test_task"
  meta_size = 0
  max_prompt_chars = max_completion_chars = 8

  def example(self, index, *, split, seed):
    del seed
    return synthetic.Example(prompt=f"{index}=", answer=str(index), demo=str(index), meta=())


@pytest.fixture
def restore_tasks():
  before = dict(synthetic.TASKS)
  yield
  synthetic.TASKS.clear()
  synthetic.TASKS.update(before)


def test_register_task(restore_tasks):
  from rlvr_jax import configs_base
  config = configs_base.base_config()
  config.task.update(name=_EchoTask.name, kwargs={})
  with pytest.raises(ValueError, match="task.name"):
    configs_base.validate(config)
  assert synthetic.register_task(_EchoTask) is _EchoTask
  configs_base.validate(config)  # the config rule sees tasks registered after import
  assert synthetic.make_task(_EchoTask.name).example(7, split="train", seed=0).answer == "7"
  # A notebook cell run again: a new class object, same module and qualified name.
  redefined = type("_EchoTask", (_EchoTask,), {"__module__": _EchoTask.__module__,
                                               "__qualname__": _EchoTask.__qualname__})
  synthetic.register_task(redefined)
  assert synthetic.TASKS[_EchoTask.name] is redefined
  impostor = type("Impostor", (), {"name": "sort"})
  with pytest.raises(ValueError, match="'sort' is already registered"):
    synthetic.register_task(impostor)
  assert synthetic.TASKS["sort"] is synthetic.SortTask


# ----------------------------------------------------------------------------------------------
# Reward agreement: reward_fn(ids) == verify(decode_completion(ids)) on right and wrong completions.


def _mutate_digit(text, rng):
  positions = [i for i, c in enumerate(text) if c.isdigit()]
  if not positions:
    return text
  i = rng.choice(positions)
  return text[:i] + str((int(text[i]) + rng.integers(1, 10)) % 10) + text[i + 1:]


def _countdown_variants(example, rng):
  """Right and wrong expressions: random orders/ops (some hit the target), bad number usage."""
  *numbers, _ = example.meta
  numbers = [str(x) for x in numbers]
  order = list(rng.permutation(numbers))
  ops = list(rng.choice(list(countdown.OPS), len(numbers)))  # one spare for "used twice"

  def expr(xs):
    return "".join(f"{x}{op}" for x, op in zip(xs, ops[: len(xs) - 1])) + xs[-1]

  solutions = [expr(list(p)) for p in itertools.islice(itertools.permutations(numbers), 6)]
  return [
      *solutions,
      expr(order),
      expr(order[:-1]),  # a number unused
      expr(order + [order[0]]),  # a number used twice
      expr([str(int(order[0]) + 1)] + order[1:]),  # a wrong number
      expr(["0" + order[0]] + order[1:]),  # leading zero
      expr(order) + ops[0],  # trailing operator
      ops[0] + expr(order),
      expr(order).replace(order[-1], order[-1] + " ", 1),
      example.demo.replace("*", "**", 1),
  ]


def _completions(task, example, tokenizer, rng):
  """Completion texts for `example` (each later gets EOS, or not, and junk)."""
  alphabet = task.alphabet()
  demo, answer = example.demo, example.answer
  random_text = "".join(rng.choice(list(alphabet), rng.integers(0, 12)))
  texts = [
      demo, answer, "", _mutate_digit(demo, rng), _mutate_digit(answer, rng),
      demo[: rng.integers(0, len(demo) + 1)], demo + random_text, random_text + demo,
      demo + demo[-1], "0" + demo, demo[1:], random_text,
  ]
  if task.name == "addition":
    texts += ["#" + answer, demo + "#", "1#2" + random_text + "#" + answer, answer + "#" + answer]
  if task.name == "countdown":
    texts += _countdown_variants(example, rng)
  return texts


def _token_rows(texts, tokenizer, rng):
  """(ids, mask) rows from texts: EOS or not, specials/out-of-vocab ids inside, junk after EOS."""
  vocab = tokenizer.vocab_size
  rows = []
  for text in texts:
    ids = tokenizer.encode(text)
    kind = rng.integers(0, 8)
    if kind == 1 and ids:  # specials and out-of-vocab ids in the middle
      ids.insert(rng.integers(0, len(ids) + 1),
                 rng.choice([tokenizer.pad_id, tokenizer.bos_id, 3, vocab, vocab + 5, -1]))
    if kind == 2:  # truncated: no EOS
      rows.append((ids, [1.0] * len(ids)))
      continue
    if kind == 3:  # random ids over the whole vocabulary, EOS included
      ids = list(rng.integers(0, vocab, rng.integers(0, 10)))
    junk = list(rng.integers(0, vocab, rng.integers(0, 4)))
    ids = ids + [tokenizer.eos_id] + junk
    live = len(ids) if kind == 4 else len(ids) - len(junk)  # junk after EOS live or masked
    rows.append((ids, [1.0] * live + [0.0] * (len(ids) - live)))
  return rows


def _pad(rows, width, fill, dtype):
  out = np.full((len(rows), width), fill, dtype)
  for i, row in enumerate(rows):
    out[i, : len(row)] = row
  return out


def _check_agreement(task, tokenizer, count):
  rng = np.random.default_rng(0)
  ids, masks, answers, metas, expected = [], [], [], [], []
  for i in range(count):
    example = task.example(i, split="test" if i % 4 == 0 else "train", seed=0)
    for row_ids, row_mask in _token_rows(_completions(task, example, tokenizer, rng), tokenizer,
                                         rng):
      text = synthetic.decode_completion(tokenizer, row_ids, row_mask)
      expected.append(text is not None and task.verify(text, example))
      ids.append(row_ids)
      masks.append(row_mask)
      answers.append(tokenizer.encode(example.answer))
      metas.append(list(example.meta))
  width = max(map(len, ids))
  ids_nt = jnp.asarray(_pad(ids, width, tokenizer.pad_id, np.int32))
  mask_nt = jnp.asarray(_pad(masks, width, 0.0, np.float32))
  answer_na = jnp.asarray(_pad(answers, max(map(len, answers)), tokenizer.pad_id, np.int32))
  meta_nm = jnp.asarray(np.array(metas, np.int64).reshape(len(metas), task.meta_size), jnp.int32)
  rewards_n = jax.jit(task.reward_fn(tokenizer))(ids_nt, mask_nt, answer_na, meta_nm)
  expected_n = np.array(expected, np.float32)
  assert rewards_n.dtype == jnp.float32 and rewards_n.shape == expected_n.shape
  mismatches = np.flatnonzero(np.asarray(rewards_n) != expected_n)
  assert not mismatches.size, [(ids[i], masks[i], expected[i]) for i in mismatches[:5]]
  assert 0.05 < expected_n.mean() < 0.95, expected_n.mean()  # both outcomes well covered
  return ids_nt, mask_nt, answer_na, meta_nm, rewards_n


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_reward_fn_agrees_with_verify(name, kwargs, tokenizer):
  _check_agreement(synthetic.make_task(name, **kwargs), tokenizer, count=250)


MULTI_CHAR_SYMBOLS = {
    "addition": ["+0=", "1#", "#1", "9,", "12", "=1"],
    "countdown": ["*1", "2-", "10", "+1", "3*"],
}


@pytest.mark.parametrize("name,kwargs", [CONFIGS[1], CONFIGS[3]], ids=CONFIG_IDS[1:4:2])
def test_reward_fn_agrees_with_verify_for_multi_char_tokens(name, kwargs):
  task = synthetic.make_task(name, **kwargs)
  symbols = MULTI_CHAR_SYMBOLS[name]
  # One character a sentence: symbols must not swallow the only occurrence of a character.
  tokenizer = SentencePieceTokenizer.train(list(task.alphabet()), user_defined_symbols=symbols)
  assert all(len(tokenizer.encode(c)) == 1 for c in task.alphabet())
  assert {tokenizer.decode([i]) for i in range(tokenizer.vocab_size)} >= set(symbols)
  _check_agreement(task, tokenizer, count=100)


def test_reward_fn_takes_leading_batch_axes(tokenizer):
  task = synthetic.make_task("countdown")
  ids_nt, mask_nt, answer_na, meta_nm, rewards_n = _check_agreement(task, tokenizer, count=20)
  n = ids_nt.shape[0] // 2 * 2
  grouped = jax.jit(task.reward_fn(tokenizer))(
      *(x[:n].reshape(n // 2, 2, *x.shape[1:]) for x in (ids_nt, mask_nt, answer_na, meta_nm)))
  np.testing.assert_array_equal(grouped.reshape(n), rewards_n[:n])


def test_example_is_frozen():
  example = synthetic.make_task("sort").example(0, split="train", seed=0)
  with pytest.raises(dataclasses.FrozenInstanceError):
    example.answer = "0"
