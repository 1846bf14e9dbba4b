"""docs/ALGORITHMS.md has an entry for every registered component, in its kind's section, naming
each of its hyperparameters with its default, what it needs, its paper and its reference code."""

import ast
import os
import re

import pytest

from rlvr_jax.algorithms import registry, rollout_correction
from tests.helpers import ROOT

SECTIONS = {"Advantage estimators": registry.ADVANTAGES, "Policy losses": registry.POLICY_LOSSES,
            "Loss terms": registry.TERMS, "Rollout corrections": rollout_correction.CORRECTIONS}


def _entries() -> dict[tuple[str, str], str]:
  """(section, name) -> the entry's text."""
  with open(os.path.join(ROOT, "docs", "ALGORITHMS.md"), encoding="utf-8") as f:
    text = f.read()
  out, section = {}, None
  for block in re.split(r"^(?=##+ )", text, flags=re.M):
    heading = block.split("\n", 1)[0]
    if heading.startswith("## "):
      section = heading[3:].strip()
    elif heading.startswith("### "):
      m = re.fullmatch(r"### `(\w+)`", heading.strip())
      if m:
        out[(section, m.group(1))] = block
  return out


# The library's own components (collecting tests/test_config_rules.py loads every configs/*.py,
# and configs/your_own_method.py registers a user's components too).
CASES = [(s, n) for s, reg in SECTIONS.items() for n in sorted(reg)
         if reg[n].builtin]


@pytest.mark.parametrize("section,name", CASES, ids=[f"{s}:{n}" for s, n in CASES])
def test_every_registered_component_has_an_entry(section, name):
  entries = _entries()
  assert (section, name) in entries, f"docs/ALGORITHMS.md: no '### `{name}`' under '## {section}'"
  entry = entries[(section, name)]
  for line in ("Hyperparameters:", "Needs:", "Paper:", "Reference code:"):
    assert line in entry, f"{name}: the entry has no '{line}' line"
  component = SECTIONS[section][name]
  documented = {k: ast.literal_eval(v) for k, v in
                re.findall(r"^- `(\w+)` \(default `([^`]*)`\)", entry, flags=re.M)}
  assert documented == component.hyperparameters, (
      f"{name}: the entry's '- `name` (default `value`)' lines differ from the function's keyword "
      f"defaults")
  for need in component.needs:
    assert need in entry.split("Needs:", 1)[1].split("\n\n", 1)[0], f"{name}: need {need} unnamed"


def test_no_entry_names_an_unregistered_component():
  for section, name in _entries():
    if section in SECTIONS:
      assert name in SECTIONS[section], f"docs/ALGORITHMS.md documents unregistered {name!r}"
