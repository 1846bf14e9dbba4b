"""GSM8K and MATH-500 as grain random-access sources, plus math prompt templates.

The data ships inside the package (`rlvr_jax/data/files/`, provenance and licences in its
README). Every row is validated when a source is built, so a bad file fails before training
starts, with the file and the 1-based line number in the error.

Each record is ``{"question": str, "answer": str, "solution": str}``: `answer` is the gold final
answer (GSM8K: the text after ``#### ``, e.g. ``"1,080"``; MATH-500: the content of the last
``\\boxed{}``), ready for `rlvr_jax.rewards.math.verify`; `solution` is the reference solution
verbatim (GSM8K keeps its ``<<48/2=24>>`` calculator notes and ``#### `` line; MATH-500 ends
with ``The answer is: ...``).
"""

from __future__ import annotations

import importlib.resources
import json
import os
import pathlib
from collections.abc import Callable

from rlvr_jax.rewards.math import last_boxed

Record = dict[str, str]

_FILES = importlib.resources.files("rlvr_jax.data") / "files"
GSM8K_SPLITS = ("train", "test")


def _gsm8k_answer(solution: str) -> str | None:
  marker = solution.rfind("#### ")
  if marker < 0:
    return None
  return solution[marker + 5 :].strip() or None


def _math_answer(solution: str) -> str | None:
  boxed = last_boxed(solution)
  if boxed is None:
    return None
  return boxed.strip() or None


def _decode(raw: bytes, where: str) -> str:
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise ValueError(f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                     f"{e.start + 1})") from None


def _load_jsonl(
  path, gold_answer: Callable[[str], str | None], gold_rule: str
) -> tuple[Record, ...]:
  """Rows of a ``{"question", "answer"}`` JSONL file as records; ValueError naming the file and
  line on a bad row, a non-UTF-8 byte, or a file without rows."""
  records = []
  try:
    f = path.open("rb")  # bytes: a bad byte is reported with its line, not the whole file's
  except FileNotFoundError:
    raise ValueError(f"{path}: no such file") from None
  with f:
    for line_number, raw in enumerate(f, start=1):
      where = f"{path}:{line_number}"
      line = _decode(raw, where)
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{where}: invalid JSON ({e.msg})") from None
      if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
      for field in ("question", "answer"):
        if not isinstance(row.get(field), str) or not row[field].strip():
          raise ValueError(f"{where}: field {field!r} missing or not a non-empty string")
      gold = gold_answer(row["answer"])
      if gold is None:
        raise ValueError(f"{where}: no gold answer ({gold_rule}) in field 'answer'")
      records.append({"question": row["question"], "answer": gold, "solution": row["answer"]})
  if not records:
    raise ValueError(f"{path}:1: no rows (the file is empty or blank); expected one JSON object "
                     "per line")
  return tuple(records)


class _JsonlSource:
  """Deterministic random access over validated records (grain `RandomAccessDataSource`)."""

  def __init__(self, path, gold_answer: Callable[[str], str | None], gold_rule: str):
    self._path = str(path)
    self._records = _load_jsonl(path, gold_answer, gold_rule)

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> Record:
    return dict(self._records[index])  # a copy: callers may mutate it

  def __repr__(self) -> str:
    return f"{type(self).__name__}(path={self._path!r}, rows={len(self)})"


class Gsm8kSource(_JsonlSource):
  """GSM8K (Cobbe et al., 2021): `split` "train" (7473 rows) or "test" (1319 rows).

  `path` reads another file in the same format instead of the bundled one.
  """

  def __init__(self, split: str = "train", *, path: str | os.PathLike | None = None):
    if split not in GSM8K_SPLITS:
      raise ValueError(f"GSM8K split must be one of {GSM8K_SPLITS}, got {split!r}")
    source = _FILES / "gsm8k" / f"{split}.jsonl" if path is None else pathlib.Path(path)
    super().__init__(source, _gsm8k_answer, "a final line '#### <answer>'")


class Math500Source(_JsonlSource):
  """MATH-500 (Hendrycks et al., 2021; split of Lightman et al., 2023): 500 test problems.

  `path` reads another file in the same format instead of the bundled one.
  """

  def __init__(self, *, path: str | os.PathLike | None = None):
    source = _FILES / "math500" / "test.jsonl" if path is None else pathlib.Path(path)
    super().__init__(source, _math_answer, "a \\boxed{...}")


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
_PLAIN = (
  "Question: {question}\n"
  "Reason step by step. Put the final answer within \\boxed{{}}, "
  'or end with "The answer is <answer>."\n'
  "Answer:"
)
PROMPT_TEMPLATES = ("plain", "chat")


def format_prompt(question: str, template: str = "plain") -> str | list[dict[str, str]]:
  """The prompt for `question`.

  "plain": one string ending in ``Answer:``, for base models. "chat": messages
  ``[{"role": "system", ...}, {"role": "user", "content": question}]`` for a tokenizer's chat
  template. Both ask for ``\\boxed{}``, which `rlvr_jax.rewards.math.extract_answer` reads.
  """
  if template == "plain":
    return _PLAIN.format(question=question.strip())
  if template == "chat":
    return [
      {"role": "system", "content": SYSTEM_PROMPT},
      {"role": "user", "content": question.strip()},
    ]
  raise ValueError(f"unknown prompt template {template!r}; expected one of {PROMPT_TEMPLATES}")
