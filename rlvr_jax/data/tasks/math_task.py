"""Math word problems for pretrained models with real tokenizers: GSM8K, MATH-500, GSM-style
synthetic arithmetic.

Prompts are rendered for the policy's tokenizer (`bind_tokenizer`): its chat template
(`template="chat"`, the default, for instruct models) or a plain "Question: ... Answer:" string.
Rewards cannot be traced: `reward_fn` decodes completions on the host inside `jax.pure_callback`
and scores them with the sandboxed, time-bounded `rlvr_jax.rewards.math.verify_batch`, so the RL
step stays one compiled program.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
import functools
import random
import re
import string
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax.data.math_datasets import Gsm8kSource, Math500Source, format_prompt
from rlvr_jax.data.tasks.base import SPLITS, Example, decode_completion, sample_in_split
from rlvr_jax.rewards import math as math_reward
from rlvr_jax.tokenizers import Tokenizer

TEMPLATES = ("chat", "plain")
EXTRACTIONS = ("strict", "flexible")
# Prompts and answers are English text; a char-level tokenizer (init.kind="scratch") maps any
# other character to unk. Real runs use the model's own tokenizer.
_ALPHABET = "".join(c for c in string.printable if c not in "\x0b\x0c")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")


# ---------------------------------------------------------------------------------------------
# Reward: host decoding + verification behind jax.pure_callback
# ---------------------------------------------------------------------------------------------
def make_host_reward_fn(tokenizer: Tokenizer,
                        score: Callable[[list[str | None], list[str]], list[bool]]) -> Callable:
  """Wraps a host scorer into the jittable task reward signature.

  The returned function maps completion_ids_nt int32 [N, T], completion_mask_nt float32 [N, T]
  (1 up to and incl. EOS), answer_ids_na int32 [N, A] (pad-filled), meta_nm int32 [N, M] to
  rewards_n float32 [N]: r_n = 1.0 iff the completion has an unmasked EOS and
  ``score([decode_completion(...)], [decode(answer)])`` accepts it. It calls back to the host
  once per batch (`vmap_method="broadcast_all"`: a vmapped call is still one callback).
  """
  vocab_size = tokenizer.vocab_size

  def host(ids_nt, mask_nt, answer_na):
    ids_nt, mask_nt, answer_na = (np.asarray(x) for x in (ids_nt, mask_nt, answer_na))
    lead = ids_nt.shape[:-1]  # [N], or [V, N] under vmap (broadcast_all: every input has it)
    ids_nt, mask_nt, answer_na = (x.reshape(-1, x.shape[-1]) for x in (ids_nt, mask_nt, answer_na))
    texts = [decode_completion(tokenizer, i_t, m_t) for i_t, m_t in zip(ids_nt, mask_nt)]
    golds = [tokenizer.decode([int(i) for i in a_a if 0 <= i < vocab_size]) for a_a in answer_na]
    return np.asarray(score(texts, golds), np.float32).reshape(lead)

  def reward_fn(completion_ids_nt, completion_mask_nt, answer_ids_na, meta_nm):
    del meta_nm
    out = jax.ShapeDtypeStruct(completion_ids_nt.shape[:-1], jnp.float32)
    return jax.pure_callback(host, out, completion_ids_nt, completion_mask_nt, answer_ids_na,
                             vmap_method="broadcast_all")

  return reward_fn


def last_number(text: str) -> str | None:
  """The last integer/decimal literal in `text` ("1,080" kept whole), or None."""
  numbers = _NUMBER.findall(text)
  return numbers[-1].rstrip(",") if numbers else None


# ---------------------------------------------------------------------------------------------
# Shared task machinery
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _MathTask:
  """Prompt rendering, verification and reward shared by the math tasks.

  Attributes:
    template: "chat" (the bound tokenizer's chat template) or "plain".
    extract: "strict" reads the final answer with `rewards.math.extract_answer` (\\boxed{},
      "####", "The answer is"); "flexible" falls back to the last number in the completion when
      none of those is present (lm-eval-harness's "flexible-extract" for GSM8K).
    timeout_s: per-item bound of the symbolic verifier.
    max_completion_chars: completion buffer for char-level tokenizers (init.kind="scratch").
    tokenizer: set by `bind_tokenizer`; renders chat prompts.
  """

  template: str = "chat"
  extract: str = "strict"
  timeout_s: float = math_reward.DEFAULT_TIMEOUT_S
  max_completion_chars: int = 512
  tokenizer: Tokenizer | None = dataclasses.field(default=None, repr=False, compare=False)

  meta_size: ClassVar[int] = 0

  def __post_init__(self):
    if self.template not in TEMPLATES:
      raise ValueError(f"{self.name}.template must be one of {TEMPLATES}, got {self.template!r}")
    if self.extract not in EXTRACTIONS:
      raise ValueError(f"{self.name}.extract must be one of {EXTRACTIONS}, got {self.extract!r}")
    if self.timeout_s <= 0:
      raise ValueError(f"{self.name}.timeout_s must be > 0, got {self.timeout_s}")

  # --- prompt wording and the question set; subclasses override ------------------------------
  def _messages(self, question: str) -> list[dict[str, str]]:
    return format_prompt(question, "chat")

  def _plain(self, question: str) -> str:
    return format_prompt(question, "plain")

  def _questions(self) -> Sequence[str]:
    """Every question the task can pose (sizes the char-level prompt buffer)."""
    raise NotImplementedError

  # --- the Task protocol ---------------------------------------------------------------------
  def bind_tokenizer(self, tokenizer: Tokenizer) -> _MathTask:
    """A copy that renders prompts for `tokenizer` (its chat template when template="chat")."""
    if self.template == "chat":
      try:
        tokenizer.chat([{"role": "user", "content": "1+1?"}])
      except NotImplementedError:
        raise ValueError(f"task {self.name!r}: template='chat' needs a tokenizer with a chat "
                         f"template; set config.task.kwargs.template='plain'") from None
    return dataclasses.replace(self, tokenizer=tokenizer)

  def render(self, question: str) -> str:
    """The model input for `question`: chat-template text (special tokens included) or plain."""
    if self.template == "plain":
      return self._plain(question)
    if self.tokenizer is None:
      raise ValueError(f"task {self.name!r} with template='chat' renders prompts with the "
                       f"policy's chat template: call bind_tokenizer(tokenizer) first")
    return self.tokenizer.chat(self._messages(question))

  @functools.cached_property
  def max_prompt_chars(self) -> int:
    return max(len(self.render(q)) for q in self._questions())

  def alphabet(self) -> str:
    return _ALPHABET

  def final_answer(self, completion: str | None) -> str | None:
    """Canonical final answer of a completion (for majority votes), or None."""
    if completion is None:
      return None
    answer = math_reward.extract_answer(completion)
    if answer is None and self.extract == "flexible":
      answer = last_number(completion)
    return None if answer is None else math_reward.normalize_answer(answer)

  def _scorable(self, completion: str | None) -> str:
    """The text `verify_batch` sees: in flexible mode a bare last number becomes a \\boxed{}."""
    if completion is None:
      return ""
    if self.extract == "flexible" and math_reward.extract_answer(completion) is None:
      number = last_number(completion)
      if number is not None:
        return f"\\boxed{{{number}}}"
    return completion

  def score(self, completions: Sequence[str | None], golds: Sequence[str]) -> list[bool]:
    """Host verification of decoded completions (None = truncated, scores False)."""
    texts = [self._scorable(c) for c in completions]
    return math_reward.verify_batch(texts, list(golds), timeout_s=self.timeout_s)

  def verify(self, completion: str, example: Example) -> bool:
    return self.score([completion], [example.answer])[0]

  def reward_fn(self, tokenizer: Tokenizer) -> Callable:
    """Jittable reward through `jax.pure_callback`; see `make_host_reward_fn`."""
    return make_host_reward_fn(tokenizer, self.score)


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _gsm8k_demo(solution: str, answer: str) -> str:
  body = _CALCULATOR_NOTE.sub("", solution[: solution.rfind("####")]).strip()
  return f"{body}\nThe final answer is \\boxed{{{answer}}}."


@functools.cache
def _gsm8k(split: str, path: str) -> Gsm8kSource:
  return Gsm8kSource(split, path=path or None)


@functools.cache
def _math500(path: str) -> Math500Source:
  return Math500Source(path=path or None)


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RowTask(_MathTask):
  """A math task over a row source per split (rows of "question", "answer", "solution"):
  `example(i, split, seed)` is row ``i mod len(split)`` (the seed is unused: the input pipeline
  shuffles). Subclasses give `_source(split)` and the demonstration `_demo(row)`."""

  def _source(self, split: str) -> Sequence[dict[str, str]]:
    raise NotImplementedError

  def _demo(self, row: dict[str, str]) -> str:
    raise NotImplementedError

  def num_examples(self, split: str) -> int:
    return len(self._source(split))

  def _questions(self) -> Sequence[str]:
    sources = [self._source(s) for s in SPLITS]
    return [source[i]["question"] for source in sources for i in range(len(source))]

  def example(self, index: int, *, split: str, seed: int) -> Example:
    del seed
    source = self._source(split)
    row = source[index % len(source)]
    return Example(prompt=self.render(row["question"]), answer=row["answer"],
                   demo=self._demo(row), meta=())


@dataclasses.dataclass(frozen=True)
class Gsm8kTask(RowTask):
  """GSM8K grade-school word problems (Cobbe et al., 2021); splits are GSM8K's train / test.

  `example(i, split, seed)` is row ``i mod len(split)`` (the seed is unused: the input pipeline
  shuffles). Answers are GSM8K's "#### " values; the prompt asks for \\boxed{}
  (`math_datasets.format_prompt`). `train_path` / `test_path` read other files of the same
  JSONL format.
  """

  train_path: str = ""
  test_path: str = ""

  name: ClassVar[str] = "gsm8k"

  def _source(self, split: str) -> Gsm8kSource:
    _check_split(split)
    return _gsm8k(split, self.train_path if split == "train" else self.test_path)

  def _demo(self, row: dict[str, str]) -> str:
    return _gsm8k_demo(row["solution"], row["answer"])


@dataclasses.dataclass(frozen=True)
class Math500Task(_MathTask):
  """MATH-500 (Lightman et al., 2023), which is a test set only.

  So that one task can both train and evaluate, its rows are split by position: "train" is the
  first 400 rows, "test" the last 100. Numbers on the "test" split are therefore NOT MATH-500
  scores (100 problems, not 500); use them for smoke runs and debugging. Row
  ``i mod len(split)``; the seed is unused.
  """

  path: str = ""

  name: ClassVar[str] = "math500"
  num_train: ClassVar[int] = 400

  def _rows(self, split: str) -> range:
    _check_split(split)
    n = len(_math500(self.path))
    return range(self.num_train) if split == "train" else range(self.num_train, n)

  def num_examples(self, split: str) -> int:
    return len(self._rows(split))

  def _questions(self) -> Sequence[str]:
    source = _math500(self.path)
    return [source[i]["question"] for i in range(len(source))]

  def example(self, index: int, *, split: str, seed: int) -> Example:
    del seed
    rows = self._rows(split)
    row = _math500(self.path)[rows[index % len(rows)]]
    return Example(prompt=self.render(row["question"]), answer=row["answer"],
                   demo=row["solution"], meta=())


# ---------------------------------------------------------------------------------------------
# Synthetic GSM-style arithmetic
# ---------------------------------------------------------------------------------------------
_NAMES = ("Tom", "Anna", "Ben", "Lily", "Sam", "Mia", "Leo", "Emma", "Max", "Zoe", "Jack", "Ava")
_ITEMS = ("apples", "pencils", "stickers", "marbles", "books", "cookies", "cards", "shells",
          "stamps", "toy cars", "balloons", "candies")
_ADD = ("{n} buys {b} more.", "{n} finds {b} more.", "A friend gives {n} {b} more.",
        "{n} gets {b} more as a gift.")
_SUB = ("{n} gives {b} away.", "{n} loses {b} of them.", "{n} gives {b} to a friend.",
        "{n} uses {b} of them.")
_QUESTION = ("How many {item} does {n} have now?", "How many {item} does {n} have in the end?")


@dataclasses.dataclass(frozen=True)
class GsmArithTask(_MathTask):
  """GSM-style arithmetic word problems with non-negative integer answers.

  "Mia has 7 stickers. Mia gives 3 away. How many stickers does Mia have now?" -> "4".
  A problem has `min_ops..max_ops` operations (uniform). The first is uniform over `ops`: "*"
  opens with a product ("Tom buys 4 boxes with 6 cards each."), "+" / "-" with a count and
  that update; the rest are additions / subtractions. Operands are in [1, max_value], factors
  in [2, min(max_value, 9)], and a subtraction never takes more than the running count.
  Train/test are disjoint by `split_of(question)`; examples are deterministic in
  (index, split, seed).

  The chat prompt is the bare question (the model's default system prompt applies), so a small
  instruct model answers in a sentence; `extract` defaults to "flexible" (the last number
  counts when there is no \\boxed{} / "The answer is"), because SmolLM2-135M-Instruct rarely
  uses an answer format unprompted and a strict reward would give RL no signal. `instruction`,
  when set, is appended to the question (e.g. "Put the answer in \\boxed{}.").

  `demo_format` shapes the SFT demonstration: "plain" ("7 - 3 = 4. The answer is \\boxed{4}.")
  or "tool", a whole calculator episode of the `tool` environment's default tags
  ("<tool>7 - 3</tool><result>4</result> The answer is 4."): the cold start of a tool-use run,
  where SFT teaches the call format and RL then trains the calls inside episodes.
  """

  min_ops: int = 1
  max_ops: int = 1
  max_value: int = 10
  ops: str = "+-*"
  instruction: str = ""
  extract: str = "flexible"
  max_completion_chars: int = 256
  demo_format: str = "plain"

  name: ClassVar[str] = "gsm_arith"

  def __post_init__(self):
    super().__post_init__()
    if not 1 <= self.min_ops <= self.max_ops:
      raise ValueError(f"gsm_arith needs 1 <= min_ops <= max_ops, got {self.min_ops}, "
                       f"{self.max_ops}")
    if self.max_value < 2:
      raise ValueError(f"gsm_arith.max_value must be >= 2, got {self.max_value}")
    if not self.ops or set(self.ops) - set("+-*"):
      raise ValueError(f"gsm_arith.ops must be a non-empty subset of '+-*', got {self.ops!r}")
    if self.max_ops > 1 and not set(self.ops) & set("+-"):
      raise ValueError("gsm_arith: max_ops > 1 needs '+' or '-' in ops (products only open)")
    if self.demo_format not in ("plain", "tool"):
      raise ValueError(f"gsm_arith.demo_format must be 'plain' or 'tool', got "
                       f"{self.demo_format!r}")

  def _messages(self, question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": self._question_text(question)}]

  def _plain(self, question: str) -> str:
    return f"Question: {self._question_text(question)}\nAnswer:"

  def _question_text(self, question: str) -> str:
    return f"{question}\n{self.instruction}" if self.instruction else question

  def _questions(self) -> Sequence[str]:
    # An upper bound on every question: longest words and sentences, widest numbers.
    n, item, big = max(_NAMES, key=len), max(_ITEMS, key=len), "9" * len(str(self.max_value))
    parts = [f"{n} buys {big} boxes with {big} {item} each."]
    parts += [max(_ADD + _SUB, key=len).format(n=n, b=big)] * self.max_ops
    return [" ".join(parts + [max(_QUESTION, key=len).format(n=n, item=item)])]

  def _draw(self, rng: random.Random) -> Example | None:
    n, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    op = rng.choice(self.ops)
    if op == "*":
      a, b = rng.randint(2, min(self.max_value, 9)), rng.randint(2, min(self.max_value, 9))
      value, expr = a * b, f"{a} * {b}"
      parts = [f"{n} buys {a} boxes with {b} {item} each."]
    else:
      value = rng.randint(1, self.max_value)
      expr, parts = str(value), [f"{n} has {value} {item}."]
    for i in range(rng.randint(self.min_ops, self.max_ops) - (op == "*")):
      if i > 0 or op == "*":
        allowed = [o for o in self.ops if o == "+" or (o == "-" and value >= 1)]
        if not allowed:
          return None  # only "-" is left and the count is 0: redraw
        op = rng.choice(allowed)
      if op == "+":
        b = rng.randint(1, self.max_value)
        value, expr = value + b, f"{expr} + {b}"
        parts.append(rng.choice(_ADD).format(n=n, b=b))
      else:
        b = rng.randint(1, min(value, self.max_value))
        value, expr = value - b, f"{expr} - {b}"
        parts.append(rng.choice(_SUB).format(n=n, b=b))
    parts.append(rng.choice(_QUESTION).format(n=n, item=item))
    answer = str(value)
    demo = f"{expr} = {answer}. The answer is \\boxed{{{answer}}}."
    if self.demo_format == "tool":
      demo = f"<tool>{expr}</tool><result>{answer}</result> The answer is {answer}."
    return Example(prompt=" ".join(parts), answer=answer, demo=demo, meta=())

  def example(self, index: int, *, split: str, seed: int) -> Example:
    # The split is decided on the bare question, so it does not depend on the template.
    raw = sample_in_split(self.name, self._draw, index, split, seed)
    return dataclasses.replace(raw, prompt=self.render(raw.prompt))
