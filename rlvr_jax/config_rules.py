"""Declarative rules for config leaves: a type with a range, a choice set, or a free-form dict.

`configs_base.RULES` maps every dotted leaf path of a run config to one rule; `violations` walks
a config and reports each leaf that breaks its rule or has none, so a new field cannot land
unvalidated. A rule's `check(value)` returns None for an allowed value, else the reason.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import ml_collections


class Rule(Protocol):
  def check(self, value: Any) -> str | None: ...


def _is_dict(v) -> bool:
  return isinstance(v, (Mapping, ml_collections.ConfigDict))


def _interval(ge, gt, le, lt) -> str:
  """'in [0, 1)', '>= 0', '> 1', or '' for no bound."""
  low = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else None
  high = f"{le}]" if le is not None else f"{lt})" if lt is not None else None
  if low and high:
    return f"in {low}, {high}"
  if low:
    return (">= " if ge is not None else "> ") + low[1:]
  if high:
    return ("<= " if le is not None else "< ") + high[:-1]
  return ""


def _out_of_range(v, ge, gt, le, lt) -> bool:
  return ((ge is not None and not v >= ge) or (gt is not None and not v > gt)
          or (le is not None and not v <= le) or (lt is not None and not v < lt))


@dataclasses.dataclass(frozen=True)
class Int:
  """An int (not a bool) in [ge, le]; None too when `optional`."""
  ge: int | None = None
  le: int | None = None
  optional: bool = False

  def check(self, v):
    if v is None and self.optional:
      return None
    bound = _interval(self.ge, None, self.le, None)
    if isinstance(v, bool) or not isinstance(v, int):
      return f"must be an int{' ' + bound if bound else ''}{' or None' * self.optional}, got {v!r}"
    if _out_of_range(v, self.ge, None, self.le, None):
      return f"must be {bound}{' or None' * self.optional}, got {v!r}"
    return None


@dataclasses.dataclass(frozen=True)
class Float:
  """A finite number (ints too, not bools) within the given bounds; None too when `optional`."""
  ge: float | None = None
  gt: float | None = None
  le: float | None = None
  lt: float | None = None
  optional: bool = False

  def check(self, v):
    if v is None and self.optional:
      return None
    bound = _interval(self.ge, self.gt, self.le, self.lt)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
      return (f"must be a finite number{' ' + bound if bound else ''}"
              f"{' or None' * self.optional}, got {v!r}")
    if _out_of_range(v, self.ge, self.gt, self.le, self.lt):
      return f"must be {bound}{' or None' * self.optional}, got {v!r}"
    return None


class Choice:
  """One of the listed values, compared with their types (True is not 1, 1 is not 1.0)."""

  def __init__(self, *values):
    self.values = tuple(values)

  def check(self, v):
    if any(type(v) is type(x) and v == x for x in self.values):
      return None
    return f"must be one of {', '.join(map(repr, self.values))}; got {v!r}"

  def __repr__(self):
    return f"Choice{self.values!r}"


@dataclasses.dataclass(frozen=True, eq=False)
class Registered:
  """A name in a registry, looked up when checked: entries registered after import count too;
  None too when `optional`."""
  registry: Mapping[str, Any]
  optional: bool = False

  def check(self, v):
    if (isinstance(v, str) and v in self.registry) or (v is None and self.optional):
      return None
    return (f"must be one of {', '.join(map(repr, sorted(self.registry)))}"
            f"{' or None' * self.optional}; got {v!r}")


@dataclasses.dataclass(frozen=True)
class Bool:
  def check(self, v):
    return None if isinstance(v, bool) else f"must be True or False, got {v!r}"


@dataclasses.dataclass(frozen=True)
class Str:
  """A string (non-empty when `nonempty`)."""
  nonempty: bool = False

  def check(self, v):
    if not isinstance(v, str):
      return f"must be a string, got {v!r}"
    if self.nonempty and not v:
      return "must be a non-empty string"
    return None


@dataclasses.dataclass(frozen=True)
class Dict:
  """A free-form mapping whose keys and values `checked_by` validates (it covers the subtree)."""
  checked_by: str

  def check(self, v):
    if not _is_dict(v):
      return f"must be a dict (checked by {self.checked_by}), got {v!r}"
    return None


def leaves(config: ml_collections.ConfigDict | Mapping, rules: Mapping[str, Rule], prefix: str = ""
           ) -> Iterator[tuple[str, Any]]:
  """(dotted path, value) of every leaf; a sub-dict with a rule of its own counts as a leaf."""
  for key, value in config.items():
    path = prefix + key
    if _is_dict(value) and path not in rules:
      yield from leaves(value, rules, path + ".")
    else:
      yield path, value


# A config file sets a string field to this when the user must supply it on the command line
# (e.g. the 1-shot RLVR recipe's data.one_shot_from). ml_collections' required placeholders
# cannot be used: config_flags reads every value while it locks the config, before overrides.
REQUIRED = "<required>"


def violations(config: ml_collections.ConfigDict | Mapping, rules: Mapping[str, Rule]
               ) -> list[str]:
  """'config.<path>: <reason>' for each leaf that breaks its rule or has no rule, or is still
  `REQUIRED`, in order."""
  out = []
  for path, value in leaves(config, rules):
    rule = rules.get(path)
    if isinstance(value, str) and value == REQUIRED:
      why = f"this config needs a value: pass --config.{path}=..."
    else:
      why = rule.check(value) if rule is not None else _no_rule(path, rules)
    if why is not None:
      out.append(f"config.{path}: {why}")
  return out


def _no_rule(path: str, rules: Mapping[str, Rule]) -> str:
  """Why a leaf without a rule is refused: a misspelt field (with the closest one) or a field
  added without its rule."""
  close = difflib.get_close_matches(path, list(rules), n=1, cutoff=0.8)
  if close:
    return f"is not a field of the run config (did you mean {close[0]!r}?)"
  return "is not a field of the run config, or has no validation rule in configs_base.RULES"
