"""Code tasks scored by running the completion against unit tests in `rlvr_jax.rewards.code`'s
sandbox: `code_humaneval` (HumanEval, 164 problems).

The reward is 1.0 iff the check program (solution, tests, ``check(entry_point)``) exits 0
within the limits. Like the math tasks, `reward_fn` decodes on the host inside
`jax.pure_callback` (`math_task.make_host_reward_fn`), so the RL step stays one compiled program.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import functools
import re
import string
from typing import ClassVar

from rlvr_jax.data import humaneval
from rlvr_jax.data.tasks.base import SPLITS, Example
from rlvr_jax.data.tasks.math_task import make_host_reward_fn
from rlvr_jax.rewards import code
from rlvr_jax.tokenizers import Tokenizer

TEMPLATES = ("plain", "chat")
# Where the Codex paper cuts a "plain" completion: past the function body the model goes on to
# write other top-level code, which is not part of the answer.
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
_ALPHABET = "".join(c for c in string.printable if c not in "\x0b\x0c")
_CODE_BLOCK = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)```", re.S)
_INSTRUCTION = ("Complete the following Python function. Reply with the whole function, "
                "imports included, in one ```python code block.\n\n```python\n{prompt}```")


def truncate_plain(completion: str) -> str:
  """The completion up to the first of `STOP_SEQUENCES`."""
  cut = min((i for i in (completion.find(s) for s in STOP_SEQUENCES) if i >= 0),
            default=len(completion))
  return completion[:cut]


def last_code_block(text: str) -> str:
  """The last fenced code block of a chat reply, or the whole reply when it has none."""
  blocks = _CODE_BLOCK.findall(text)
  return blocks[-1] if blocks else text


def _imports(prompt: str) -> str:
  return "".join(line + "\n" for line in prompt.splitlines()
                 if line.startswith(("import ", "from ")))


@dataclasses.dataclass(frozen=True)
class HumanEvalTask:
  """HumanEval (Chen et al., 2021), a test set only.

  Prompt: the problem's imports, signature and docstring, as is ("plain": the completion is
  the function body, cut at `STOP_SEQUENCES`) or inside a chat request for the whole function
  ("chat": the last ```python block counts, after the prompt's import lines). The example's
  `answer` is the task id ("HumanEval/12"), not the tests: answers reach the reward as
  pad-filled token ids, and an id is short and survives any tokenizer byte-exactly; the host
  reward looks the tests up.

  So that one task can train and evaluate, problems are split by position like math500's:
  "train" is the first `num_train` (132), "test" the last 32. Numbers on "test" are NOT
  HumanEval pass@1 (32 problems, not 164). Row ``i mod len(split)``; the seed is unused.

  Attributes:
    template: "plain" or "chat".
    timeout_s: wall-clock limit of one check program.
    memory_mb: its address-space limit.
    workers: checks run at once.
    max_completion_chars: completion buffer for char-level tokenizers.
    path: another JSONL(.gz) of HumanEval's format instead of the bundled file.
    tokenizer: set by `bind_tokenizer`; renders chat prompts.
  """

  template: str = "plain"
  timeout_s: float = 5.0
  memory_mb: int = code.DEFAULT_MEMORY_MB
  workers: int = 2
  max_completion_chars: int = 1024
  path: str = ""
  tokenizer: Tokenizer | None = dataclasses.field(default=None, repr=False, compare=False)

  name: ClassVar[str] = "code_humaneval"
  meta_size: ClassVar[int] = 0
  num_train: ClassVar[int] = 132

  def __post_init__(self):
    if self.template not in TEMPLATES:
      raise ValueError(f"{self.name}.template must be one of {TEMPLATES}, got {self.template!r}")
    if self.timeout_s <= 0 or self.workers < 1:
      raise ValueError(f"{self.name}: timeout_s must be > 0 and workers >= 1, got "
                       f"{self.timeout_s}, {self.workers}")

  @property
  def problems(self) -> tuple[humaneval.Problem, ...]:
    return humaneval.problems(self.path or None)

  @functools.cached_property
  def _by_id(self) -> dict[str, humaneval.Problem]:
    return {p.task_id: p for p in self.problems}

  def _rows(self, split: str) -> range:
    if split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    n = len(self.problems)
    return range(min(self.num_train, n)) if split == "train" else range(min(self.num_train, n), n)

  def num_examples(self, split: str) -> int:
    return len(self._rows(split))

  def bind_tokenizer(self, tokenizer: Tokenizer) -> HumanEvalTask:
    """A copy that renders chat prompts with `tokenizer`'s chat template."""
    return dataclasses.replace(self, tokenizer=tokenizer)

  def render(self, prompt: str) -> str:
    if self.template == "plain":
      return prompt
    if self.tokenizer is None:
      raise ValueError(f"task {self.name!r} with template='chat' renders prompts with the "
                       f"policy's chat template: call bind_tokenizer(tokenizer) first")
    return self.tokenizer.chat([{"role": "user", "content": _INSTRUCTION.format(prompt=prompt)}])

  @functools.cached_property
  def max_prompt_chars(self) -> int:
    return max(len(self.render(p.prompt)) for p in self.problems)

  def alphabet(self) -> str:
    return _ALPHABET

  def _demo(self, problem: humaneval.Problem) -> str:
    if self.template == "plain":
      return problem.canonical_solution
    return f"```python\n{problem.prompt}{problem.canonical_solution}```"

  def example(self, index: int, *, split: str, seed: int) -> Example:
    del seed
    rows = self._rows(split)
    problem = self.problems[rows[index % len(rows)]]
    return Example(prompt=self.render(problem.prompt), answer=problem.task_id,
                   demo=self._demo(problem), meta=())

  def program(self, completion: str, task_id: str) -> str:
    """The check program for `completion` to problem `task_id`."""
    problem = self._by_id.get(task_id)
    if problem is None:
      raise ValueError(f"{self.name}: unknown task id {task_id!r}")
    if self.template == "plain":
      solution = problem.prompt + truncate_plain(completion)
    else:
      solution = _imports(problem.prompt) + last_code_block(completion)
    return code.humaneval_program(solution, problem.test, problem.entry_point)

  def score(self, completions: Sequence[str | None], task_ids: Sequence[str]) -> list[bool]:
    """Whether each completion passes its problem's tests (None = truncated, scores False)."""
    live = [i for i, c in enumerate(completions) if c is not None]
    programs = [self.program(completions[i], task_ids[i]) for i in live]
    results = code.run_many(programs, workers=self.workers, timeout_s=self.timeout_s,
                            memory_mb=self.memory_mb)
    passed = [False] * len(completions)
    for i, result in zip(live, results):
      passed[i] = result.ok
    return passed

  def verify(self, completion: str, example: Example) -> bool:
    return self.score([completion], [example.answer])[0]

  def reward_fn(self, tokenizer: Tokenizer):
    """Jittable reward through `jax.pure_callback`; see `math_task.make_host_reward_fn`."""
    return make_host_reward_fn(tokenizer, self.score)
