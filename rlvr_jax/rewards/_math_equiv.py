"""Equivalence of two normalised answers; runs inside verifier worker processes only.

An answer is first split into structure: ``\\cup`` unions, ``\\{..\\}`` sets and bare comma
lists (unordered), parenthesised/bracketed tuples and intervals (ordered, brackets must agree),
``pmatrix``/``bmatrix`` matrices (a column vector also matches a ``(..)`` tuple), and ``a \\pm b``
(the set {a + b, a - b}). Scalars then compare as follows: words (a run of three letters) as
case-insensitive text; equations ``l = r`` up to a nonzero constant factor; expressions with
`_math_sympy.parse` -- exactly for rationals, to 40 significant digits for other constants, and at
seven generic rational points (four must be finite and all must agree) when symbols are free.
Undefined values (zoo from a division by zero, nan from 0/0) equal nothing, not even themselves.
Anything the parser rejects compares as text.
"""

from __future__ import annotations

import math
import re

import sympy

from rlvr_jax.rewards._math_sympy import ParseError, magnitude, parse

MAX_ITEMS = 100  # elements of a tuple, set or matrix
# Generic points (no 0, ±1, small integers) at which symbolic answers are compared.
_PROBES = [
  sympy.Rational(p, q)
  for p, q in ((13, 7), (-11, 9), (17, 5), (-23, 11), (29, 13), (31, 17), (-37, 19))
]


# ---------------------------------------------------------------------------------------------
# Answer structure: tuples, intervals, sets, matrices, equations
# ---------------------------------------------------------------------------------------------

_MATRIX = re.compile(r"\\begin\{([pb]?matrix)\}(.*)\\end\{\1\}", re.S)
_WORD = re.compile(r"[A-Za-z]{3,}")
_MACRO_NAME = re.compile(r"\\[A-Za-z]+")
_SINGLE_GROUP = re.compile(r"([_^])\{([A-Za-z0-9])\}")


def _split_top(text: str, separator: str) -> list[str]:
  """`text` split at each `separator` outside all brackets (``\\{`` counts as one)."""
  parts, depth, start, i = [], 0, 0, 0
  while i < len(text):
    if depth == 0 and text.startswith(separator, i):
      parts.append(text[start:i])
      i = start = i + len(separator)
      continue
    ch = text[i]
    if ch == "\\":
      depth += {"{": 1, "}": -1}.get(text[i + 1 : i + 2], 0)
      i += 2
      continue
    depth += 1 if ch in "([{" else -1 if ch in ")]}" else 0
    i += 1
  parts.append(text[start:])
  if len(parts) > MAX_ITEMS:
    raise ParseError("too many items")
  return parts


def _wrapped(text: str, width: int = 1) -> bool:
  """Whether the bracket opening `text` (`width` chars) is closed by its last `width` chars."""
  depth = 0
  for i, ch in enumerate(text):
    depth += 1 if ch in "([{" else -1 if ch in ")]}" else 0
    if depth == 0:
      return i >= len(text) - width
  return False


def _set_of(parts: list[str]) -> tuple:
  items = []
  for part in parts:
    item = _structure(part)
    items.extend(item[1] if item[0] == "set" else [item])  # {1 \pm 2, 5} has three elements
  return ("set", items)


def _structure(text: str) -> tuple:
  """("scalar", s) | ("set", items) | ("tuple", brackets, items) | ("matrix", rows)."""
  pieces = _split_top(text, "\\cup")
  if len(pieces) > 1:
    return _set_of(pieces)
  matrix = _MATRIX.fullmatch(text)
  if matrix:
    rows = _split_top(matrix.group(2), "\\\\")
    return ("matrix", [[_structure(cell) for cell in _split_top(row, "&")] for row in rows if row])
  if text.startswith("\\{") and text.endswith("\\}") and _wrapped(text[1:], 2):
    return _set_of(_split_top(text[2:-2], ","))
  if text[:1] in ("(", "[") and text[-1:] in (")", "]") and _wrapped(text):
    items = _split_top(text[1:-1], ",")
    if len(items) > 1:
      return ("tuple", text[0] + text[-1], [_structure(item) for item in items])
  items = _split_top(text, ",")
  if len(items) > 1:
    return _set_of(items)
  for macro in ("\\pm", "\\mp"):
    if text.count(macro) == 1:  # a \pm b -> {a + b, a - b}
      plus, minus = ("+", "-") if macro == "\\pm" else ("-", "+")
      return ("set", [("scalar", text.replace(macro, sign)) for sign in (plus, minus)])
  return ("scalar", text)


def _column(structure: tuple) -> list | None:
  rows = structure[1]
  if all(len(row) == 1 for row in rows):
    return [row[0] for row in rows]
  return rows[0] if len(rows) == 1 else None


def _same_sequence(a: list, b: list) -> bool:
  return len(a) == len(b) and all(_match(x, y) for x, y in zip(a, b))


def _same_multiset(a: list, b: list) -> bool:
  if len(a) != len(b):
    return False
  unused = list(b)
  for x in a:
    for k, y in enumerate(unused):
      if _match(x, y):
        del unused[k]
        break
    else:
      return False
  return True


def _match(a: tuple, b: tuple) -> bool:
  # No shortcut on identical structures: "1/0" must not equal "1/0" (see `_exprs_equal`).
  kinds = (a[0], b[0])
  if kinds == ("scalar", "scalar"):
    return _scalars_equal(a[1], b[1])
  if kinds == ("set", "set"):
    return _same_multiset(a[1], b[1])
  if kinds == ("tuple", "tuple"):
    return a[1] == b[1] and _same_sequence(a[2], b[2])
  if kinds == ("matrix", "matrix"):
    return len(a[1]) == len(b[1]) and all(_same_sequence(r, s) for r, s in zip(a[1], b[1]))
  if set(kinds) == {"matrix", "tuple"}:  # a vector written as (x, y, z)
    matrix, vector = (a, b) if a[0] == "matrix" else (b, a)
    column = _column(matrix)
    return vector[1] == "()" and column is not None and _same_sequence(column, vector[2])
  if a[0] == "set" and len(a[1]) == 1:  # {5} vs 5
    return _match(a[1][0], b)
  if b[0] == "set" and len(b[1]) == 1:
    return _match(a, b[1][0])
  return False


# ---------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------


def _is_text(text: str) -> bool:
  return bool(_WORD.search(_MACRO_NAME.sub(" ", text)))


def _text_key(text: str) -> str:
  key = _SINGLE_GROUP.sub(r"\1\2", text).replace(" ", "")
  return key.lower() if _is_text(text) else key


def _close(a: sympy.Expr, b: sympy.Expr, digits: int, tolerance: float) -> bool | None:
  """|a - b| <= tolerance * max(1, |a|, |b|) at `digits` precision; None if not finite."""
  va, vb = a.evalf(digits), b.evalf(digits)
  if not (va.is_number and vb.is_number):
    return None
  ma, mb, md = magnitude(va), magnitude(vb), magnitude((va - vb).evalf(digits))
  if not all(map(math.isfinite, (ma, mb, md))):
    return None
  return md <= tolerance * max(1.0, ma, mb)


_NON_FINITE = (sympy.oo, -sympy.oo, sympy.zoo, sympy.nan)
# Division by zero gives zoo (complex infinity), 0/0 gives nan: no value, so never equal to
# anything, themselves included (\frac{1}{0} is not \frac{2}{0}, nor \frac{1}{0}).
_UNDEFINED = (sympy.zoo, sympy.nan)


def _undefined(*exprs: sympy.Expr) -> bool:
  return any(e.has(*_UNDEFINED) for e in exprs)


def _exprs_equal(a: sympy.Expr, b: sympy.Expr) -> bool:
  if _undefined(a, b):
    return False
  if a == b:
    return True
  if a.has(*_NON_FINITE) or b.has(*_NON_FINITE):  # ±oo: equal only if identical
    return False
  difference = a - b
  if difference == 0:
    return True
  if difference.is_Rational:  # exact numbers that differ
    return False
  symbols = sorted(difference.free_symbols, key=str)
  if not symbols:
    return bool(_close(a, b, 60, 1e-40))
  # Equal at several generic rational points: enough for the expressions answers contain.
  agreed = 0
  for trial in range(len(_PROBES)):
    point = {s: _PROBES[(trial + 3 * j) % len(_PROBES)] for j, s in enumerate(symbols)}
    close = _close(a.xreplace(point), b.xreplace(point), 30, 1e-12)
    if close is False:
      return False
    agreed += close is True
  return agreed >= 4


def _equations_equal(x: list[sympy.Expr], y: list[sympy.Expr]) -> bool:
  """``l1 = r1`` and ``l2 = r2`` are the same equation up to a nonzero constant factor."""
  if _undefined(*x, *y):
    return False
  e1, e2 = x[0] - x[1], y[0] - y[1]
  if e1 == e2 or e1 == -e2:
    return True
  symbols = sorted((e1.free_symbols | e2.free_symbols), key=str)
  for trial in range(len(_PROBES)):
    point = {s: _PROBES[(trial + 3 * j) % len(_PROBES)] for j, s in enumerate(symbols)}
    denominator = e2.xreplace(point)
    if denominator.is_number and denominator != 0 and math.isfinite(magnitude(denominator)):
      ratio = e1.xreplace(point) / denominator
      return bool(ratio != 0) and _exprs_equal(e1, ratio * e2)
  return False


def _scalars_equal(x: str, y: str) -> bool:
  if _is_text(x) or _is_text(y):
    return _text_key(x) == _text_key(y)
  sides_x, sides_y = _split_top(x, "="), _split_top(y, "=")
  if len(sides_x) != len(sides_y) or len(sides_x) > 2:
    return False
  try:
    if len(sides_x) == 2:
      return _equations_equal([parse(s) for s in sides_x], [parse(s) for s in sides_y])
    return _exprs_equal(parse(x), parse(y))
  except ParseError:
    return _text_key(x) == _text_key(y)
  except ZeroDivisionError:  # a division by zero inside sympy: undefined, never equal
    return False


def equivalent(pred: str, gold: str) -> bool:
  """Whether two answers, already normalised by `rlvr_jax.rewards.math.normalize_answer`,
  are mathematically equal. May be slow on hostile input: run it under a deadline."""
  return _match(_structure(pred), _structure(gold))
