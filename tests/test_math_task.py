"""Math tasks (gsm8k, math500, gsm_arith): host-verified rewards through jax.pure_callback agree
with `verify`; chat/plain rendering; determinism; disjoint splits."""

import dataclasses

import jax
import numpy as np
import pytest
import tokenizers

from rlvr_jax.data import synthetic
from rlvr_jax.data.math_datasets import SYSTEM_PROMPT
from rlvr_jax.data.tasks.base import decode_completion
from rlvr_jax.data.tasks.math_task import last_number
from rlvr_jax.tokenizers.hf import HFTokenizer

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                 "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                 "{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tiny_bpe(texts, vocab_size=400) -> tokenizers.Tokenizer:
  """A byte-level BPE trained in-process; ids 0..2 are <|endoftext|>, <|im_start|>, <|im_end|>."""
  tok = tokenizers.Tokenizer(tokenizers.models.BPE())
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  trainer = tokenizers.trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=SPECIALS,
      initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(texts, trainer)
  return tok


@pytest.fixture(scope="module")
def hf_tokenizer() -> HFTokenizer:
  task = synthetic.make_task("gsm_arith", template="plain")
  texts = [task.example(i, split="train", seed=0).prompt for i in range(200)]
  texts += ["The answer is \\boxed{12}.", SYSTEM_PROMPT]
  return HFTokenizer(tiny_bpe(texts), eos_id=2, pad_id=0, chat_template=CHAT_TEMPLATE)


@pytest.fixture(scope="module")
def char_tokenizer():
  return synthetic.build_tokenizer([synthetic.make_task("gsm_arith")])


def _completions(example):
  """(text, has_eos) cases around one example: right and wrong, formatted and not, truncated."""
  wrong = str(int(example.answer) + 1) if example.answer.lstrip("-").isdigit() else "-1"
  return [
      (example.demo, True),
      (f"The answer is {example.answer}.", True),
      (f"The answer is \\boxed{{{wrong}}}.", True),
      (f"So there are {example.answer} left.", True),  # right only with flexible extraction
      (f"So there are {wrong} left.", True),
      ("I do not know.", True),
      ("", True),
      (f"The answer is \\boxed{{{example.answer}}}.", False),  # truncated: no EOS, reward 0
  ]


def _encode_batch(tokenizer, task, examples):
  """Token batches of `_completions` for each example, as the sampler lays them out."""
  cases = [(e, text, has_eos) for e in examples for text, has_eos in _completions(e)]
  rows = [tokenizer.encode(text) + ([tokenizer.eos_id] if has_eos else [])
          for _, text, has_eos in cases]
  length = max(map(len, rows)) + 2
  n = len(rows)
  ids = np.full((n, length), tokenizer.pad_id, np.int32)
  mask = np.zeros((n, length), np.float32)
  answers = np.full((n, 16), tokenizer.pad_id, np.int32)
  expected = np.zeros(n, np.float32)
  for i, ((example, _, has_eos), row) in enumerate(zip(cases, rows)):
    ids[i, :len(row)], mask[i, :len(row)] = row, 1
    if has_eos:  # a token after EOS, still unmasked: the reward must stop reading at EOS
      ids[i, len(row)] = tokenizer.encode("7")[0]
      mask[i, len(row)] = 1
    gold = tokenizer.encode(example.answer)
    answers[i, :len(gold)] = gold
    decoded = decode_completion(tokenizer, ids[i], mask[i])
    assert (decoded is None) == (not has_eos)
    expected[i] = decoded is not None and task.verify(decoded, example)
  return ids, mask, answers, np.zeros((n, 0), np.int32), expected


TASK_CASES = [("gsm_arith", {}), ("gsm_arith", {"extract": "strict"}),
              ("gsm8k", {"template": "plain"}), ("math500", {"template": "plain"})]


@pytest.mark.parametrize("name,kwargs", TASK_CASES,
                         ids=[f"{n}-{'-'.join(map(str, kw.values()))}" for n, kw in TASK_CASES])
def test_jitted_callback_reward_agrees_with_verify(name, kwargs, hf_tokenizer):
  task = synthetic.make_task(name, **kwargs).bind_tokenizer(hf_tokenizer)
  examples = [task.example(i, split="test", seed=0) for i in range(3)]
  ids, mask, answers, meta, expected = _encode_batch(hf_tokenizer, task, examples)
  reward_fn = jax.jit(task.reward_fn(hf_tokenizer))
  rewards = np.asarray(reward_fn(ids, mask, answers, meta))
  assert rewards.dtype == np.float32 and rewards.shape == (len(ids),)
  np.testing.assert_array_equal(rewards, expected)
  per_example = expected.reshape(len(examples), -1)
  assert per_example[:, 0].all() and per_example[:, 1].all()  # demo and "The answer is"
  assert not per_example[:, [2, 4, 5, 6, 7]].any()  # wrong, no answer, empty, truncated
  flexible = task.extract == "flexible"
  assert (per_example[:, 3] == flexible).all()
  # Under vmap the callback still runs once per call, on the stacked batch.
  vmapped = jax.jit(jax.vmap(task.reward_fn(hf_tokenizer)))(
      *(x.reshape(2, len(ids) // 2, *x.shape[1:]) for x in (ids, mask, answers, meta)))
  np.testing.assert_array_equal(np.asarray(vmapped).reshape(-1), expected)


def test_reward_with_char_tokenizer_and_out_of_vocab_ids(char_tokenizer):
  task = synthetic.make_task("gsm_arith", template="plain").bind_tokenizer(char_tokenizer)
  example = task.example(0, split="train", seed=0)
  ids, mask, answers, meta, expected = _encode_batch(char_tokenizer, task, [example])
  ids[1, 0] = char_tokenizer.vocab_size + 5  # an id past the tokenizer (padded embedding)
  decoded = decode_completion(char_tokenizer, ids[1], mask[1])
  expected[1] = task.verify(decoded, example)
  rewards = np.asarray(jax.jit(task.reward_fn(char_tokenizer))(ids, mask, answers, meta))
  np.testing.assert_array_equal(rewards, expected)


def test_chat_and_plain_rendering(hf_tokenizer):
  arith = synthetic.make_task("gsm_arith", template="plain")
  question = arith.example(4, split="train", seed=0).prompt
  assert question.startswith("Question: ") and question.endswith("\nAnswer:")
  bare = question[len("Question: "):-len("\nAnswer:")]
  chat = dataclasses.replace(arith, template="chat").bind_tokenizer(hf_tokenizer)
  prompt = chat.example(4, split="train", seed=0).prompt
  assert prompt == f"<|im_start|>user\n{bare}<|im_end|>\n<|im_start|>assistant\n"
  assert hf_tokenizer.encode(prompt)[0] == 1  # the template's special token is one id
  with_instruction = dataclasses.replace(chat, instruction="Use \\boxed{}.")
  assert f"{bare}\nUse \\boxed{{}}.<|im_end|>" in with_instruction.example(
      4, split="train", seed=0).prompt

  gsm8k = synthetic.make_task("gsm8k").bind_tokenizer(hf_tokenizer)
  row = gsm8k.example(0, split="test", seed=0)
  assert row.prompt.startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n")
  assert row.prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
  plain = synthetic.make_task("gsm8k", template="plain").bind_tokenizer(hf_tokenizer)
  assert plain.example(0, split="test", seed=0).prompt.startswith("Question: ")


def test_chat_needs_a_bound_tokenizer_with_a_template(char_tokenizer):
  task = synthetic.make_task("gsm_arith")
  with pytest.raises(ValueError, match="bind_tokenizer"):
    task.example(0, split="train", seed=0)
  with pytest.raises(ValueError, match="template='plain'"):
    task.bind_tokenizer(char_tokenizer)
  with pytest.raises(ValueError, match="unknown task"):
    synthetic.make_task("gsm9k")
  with pytest.raises(ValueError, match="no argument"):
    synthetic.make_task("gsm_arith", steps=2)
  for bad in (dict(min_ops=0), dict(min_ops=3, max_ops=2), dict(ops="/"), dict(max_value=1),
              dict(ops="*", max_ops=2), dict(template="json"), dict(extract="loose"),
              dict(demo_format="chat")):
    with pytest.raises(ValueError, match="gsm_arith"):
      synthetic.make_task("gsm_arith", **bad)


@pytest.mark.parametrize("kwargs", [{}, {"min_ops": 2, "max_ops": 3, "max_value": 50},
                                    {"ops": "-", "max_ops": 3}])
def test_gsm_arith_is_deterministic_valid_and_disjoint(kwargs):
  task = synthetic.make_task("gsm_arith", template="plain", **kwargs)
  again = synthetic.make_task("gsm_arith", template="plain", **kwargs)
  splits = {}
  for split in ("train", "test"):
    examples = [task.example(i, split=split, seed=3) for i in range(400)]
    assert examples == [again.example(i, split=split, seed=3) for i in range(400)]
    assert examples != [task.example(i, split=split, seed=4) for i in range(400)]
    for example in examples[:50]:
      assert int(example.answer) >= 0 and task.verify(example.demo, example)
      assert len(example.prompt) <= task.max_prompt_chars
      assert len(example.demo) <= task.max_completion_chars
    splits[split] = {e.prompt for e in examples}
  assert len(splits["train"]) > 300 and len(splits["test"]) > 300
  assert not splits["train"] & splits["test"]


def test_datasets_rows_splits_and_demos():
  gsm8k = synthetic.make_task("gsm8k", template="plain")
  assert (gsm8k.num_examples("train"), gsm8k.num_examples("test")) == (7473, 1319)
  train = {gsm8k.example(i, split="train", seed=0).prompt for i in range(7473)}
  test = {gsm8k.example(i, split="test", seed=0).prompt for i in range(1319)}
  assert not train & test
  assert gsm8k.example(7473 + 5, split="train", seed=1) == gsm8k.example(5, split="train", seed=0)
  math500 = synthetic.make_task("math500", template="plain")
  assert (math500.num_examples("train"), math500.num_examples("test")) == (400, 100)
  train = [math500.example(i, split="train", seed=0) for i in range(400)]
  test = [math500.example(i, split="test", seed=0) for i in range(100)]
  assert not {e.prompt for e in train} & {e.prompt for e in test}
  examples = [gsm8k.example(i, split="test", seed=0) for i in range(40)] + train[:20] + test[:20]
  assert all(e.meta == () for e in examples)
  assert "<<" not in examples[0].demo  # GSM8K calculator notes are dropped from demos
  task_of = [gsm8k] * 40 + [math500] * 40
  assert all(task.verify(e.demo, e) for task, e in zip(task_of, examples))


def test_final_answer_and_last_number():
  strict = synthetic.make_task("gsm8k", template="plain")
  flexible = synthetic.make_task("gsm_arith", template="plain")
  assert last_number("3 boxes, 1,080 apples, then 2.5") == "2.5"
  assert last_number("1,080 apples,") == "1,080" and last_number("none") is None
  assert strict.final_answer("so \\boxed{1,080}") == flexible.final_answer("1080 apples") == "1080"
  assert strict.final_answer("1080 apples") is None
  assert strict.final_answer(None) is None
  assert flexible.verify("He has 3 + 4 = 7 apples.", dataclasses.replace(
      flexible.example(0, split="train", seed=0), answer="7"))


def test_gsm_arith_tool_demos_are_calculator_episodes_the_tool_env_accepts():
  """demo_format="tool": the demo's first turn is a call whose result is the answer, and the
  rest is an answer turn the tool environment scores 1 after that observation."""
  from rlvr_jax.environments.tool import ToolEnv
  plain = synthetic.make_task("gsm_arith", template="plain", max_ops=2)
  task = synthetic.make_task("gsm_arith", template="plain", max_ops=2, demo_format="tool")
  for i in range(20):
    example = task.example(i, split="train", seed=0)
    assert example.prompt == plain.example(i, split="train", seed=0).prompt  # same problems
    call, rest = example.demo.split("</tool>")
    env = ToolEnv(task)
    env.reset(example)
    first = env.step(call + "</tool>")
    assert first.observation == f"<result>{example.answer}</result>" and not first.done
    assert rest.startswith(first.observation)
    last = env.step(rest[len(first.observation):])
    assert last.done and last.reward == 1.0
