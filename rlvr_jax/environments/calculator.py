"""A safe arithmetic evaluator for the calculator tool: numbers, + - * / // % **, parentheses.

Parsed with `ast` and evaluated node by node; nothing else (names, calls, attributes,
comprehensions) is accepted, and sizes are bounded so no input runs long or grows huge.
"""

from __future__ import annotations

import ast
import math
import operator

MAX_CHARS = 200
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e18

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class CalculatorError(ValueError):
  """An expression the calculator refuses or cannot evaluate (the message says why)."""


def evaluate(expression: str) -> int | float:
  """The value of an arithmetic expression, e.g. "3 * (4 + 5)" -> 27. Raises CalculatorError."""
  text = expression.strip().replace(",", "")
  if not text:
    raise CalculatorError("empty expression")
  if len(text) > MAX_CHARS:
    raise CalculatorError(f"expression longer than {MAX_CHARS} characters")
  try:
    tree = ast.parse(text, mode="eval")
  except SyntaxError:
    raise CalculatorError(f"not an arithmetic expression: {text!r}") from None
  return _eval(tree.body)


def _eval(node: ast.AST) -> int | float:
  if isinstance(node, ast.Constant) and type(node.value) in (int, float):
    return _bounded(node.value)
  if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
    return _UNARY[type(node.op)](_eval(node.operand))
  if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
    left, right = _eval(node.left), _eval(node.right)
    if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
      raise CalculatorError(f"exponent larger than {MAX_EXPONENT}")
    try:
      return _bounded(_BINARY[type(node.op)](left, right))
    except ZeroDivisionError:
      raise CalculatorError("division by zero") from None
    except (OverflowError, TypeError):
      raise CalculatorError("result out of range") from None
  raise CalculatorError(f"unsupported syntax: {type(node).__name__}")


def _bounded(value):
  if isinstance(value, complex) or not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
    raise CalculatorError("result out of range")
  return value


def format_value(value: int | float) -> str:
  """Integers (and integral floats) without a decimal point; other floats to 6 decimals."""
  if isinstance(value, float) and value.is_integer():
    value = int(value)
  if isinstance(value, int):
    return str(value)
  return f"{value:.6f}".rstrip("0").rstrip(".")
