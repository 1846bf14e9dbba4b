"""A LaTeX-subset parser from normalised answers to sympy; runs in verifier workers only.

The parser is recursive descent over a token list and builds sympy objects directly; nothing is
passed to `eval`, `sympify` or `parse_expr`. Grammar (loosest first)::

  expr   := term (('+' | '-') term)*
  term   := factor (('*' | \\cdot | \\times | '/' | \\div) factor | factor)*   (juxtaposition: *)
  factor := ('-' | '+') factor | postfix ('^' exponent)?
  postfix:= atom '!'*
  atom   := number | letter ('_' arg)? | (expr) | [expr] | {expr} | |expr| | \\frac arg arg
      | \\sqrt ([expr])? arg | \\pi | \\infty | greek | function (^exponent)? argument

``i`` is the imaginary unit and ``e`` Euler's number; ``2\\frac{1}{2}`` is the mixed number 5/2;
``52_8`` (a base) is not parsed, so it compares as text. Every numeric construct is size-guarded.
"""

from __future__ import annotations

import math
import re

import sympy

MAX_DIGITS = 100  # per number literal
MAX_RESULT_DIGITS = 2000  # size of an evaluated power a^b
MAX_EXPONENT = 1000  # |b| in a^b when a is symbolic
MAX_FACTORIAL = 1000

_FUNCTIONS = {
  "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "sec": sympy.sec, "csc": sympy.csc,
  "cot": sympy.cot, "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
  "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh, "ln": sympy.log,
  "log": sympy.log, "exp": sympy.exp,
}  # fmt: skip
_GREEK = frozenset(
  "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu "
  "xi rho sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Phi "
  "Psi Omega".split()
)
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*|\.\d+)|(\\[A-Za-z]+|\\.)|([A-Za-z])|(\S))", re.S)


class ParseError(ValueError):
  """The string is outside the supported subset (or over a size guard)."""


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


def _tokenize(text: str) -> list[tuple[str, str]]:
  tokens, pos = [], 0
  while pos < len(text):
    match = _TOKEN.match(text, pos)
    if match is None:  # only trailing whitespace is left
      break
    kind = ("num", "macro", "letter", "sym")[match.lastindex - 1]
    tokens.append((kind, match.group(match.lastindex)))
    pos = match.end()
  return tokens


def magnitude(value: sympy.Expr) -> float:
  try:
    return abs(complex(value))
  except (OverflowError, TypeError):
    return math.inf


def _pow(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
  """``base ** exponent``, refusing results too large to build (9^9^9 has 3.7e8 digits)."""
  if exponent.is_number:
    size = magnitude(exponent)
    if base.is_Rational:
      # sympy evaluates p/q ** n exactly: about n * log10(max(|p|, q)) digits.
      bits = max(abs(int(base.p)).bit_length(), int(base.q).bit_length())
      if bits > 1 and size * bits * math.log10(2) > MAX_RESULT_DIGITS:
        raise ParseError("power too large")
    elif size > MAX_EXPONENT:
      raise ParseError("exponent too large")
  return sympy.Pow(base, exponent)


class _Parser:
  def __init__(self, text: str):
    self.tokens = _tokenize(text)
    self.pos = 0

  def peek(self) -> tuple[str, str]:
    return self.tokens[self.pos] if self.pos < len(self.tokens) else ("eof", "")

  def take(self) -> tuple[str, str]:
    token = self.peek()
    self.pos += 1
    return token

  def expect(self, text: str) -> None:
    if self.take()[1] != text:
      raise ParseError(f"expected {text!r}")

  def parse(self) -> sympy.Expr:
    expr = self.expr()
    if self.peek()[0] != "eof":
      raise ParseError(f"unexpected {self.peek()[1]!r}")
    return expr

  def expr(self) -> sympy.Expr:
    value = self.term()
    while self.peek()[1] in ("+", "-"):
      sign = self.take()[1]
      value = value + self.term() if sign == "+" else value - self.term()
    return value

  def _starts_atom(self) -> bool:
    kind, text = self.peek()
    if kind in ("num", "letter") or text in ("(", "{", "\\frac", "\\sqrt", "\\pi", "\\infty"):
      return True
    return kind == "macro" and (text[1:] in _FUNCTIONS or text[1:] in _GREEK)

  def term(self) -> sympy.Expr:
    value = self.factor()
    while True:
      text = self.peek()[1]
      if text in ("*", "\\cdot", "\\times"):
        self.take()
        value = value * self.factor()
      elif text in ("/", "\\div"):
        self.take()
        value = value / self.factor()
      elif self._starts_atom():
        value = value * self.factor()
      else:
        return value

  def factor(self) -> sympy.Expr:
    if self.peek()[1] in ("-", "+"):
      negative = self.take()[1] == "-"
      value = self.factor()
      return -value if negative else value
    base = self.postfix()
    if self.peek()[1] == "^":
      self.take()
      return _pow(base, self.exponent())
    return base

  def exponent(self) -> sympy.Expr:
    kind, text = self.peek()
    if text in ("-", "+"):
      self.take()
      value = self.exponent()
      return -value if text == "-" else value
    # A digit run is one exponent: plain-text 2^10 means 2^{10}.
    value = self.number(self.take()[1]) if kind == "num" else self.atom()
    if self.peek()[1] == "^":  # a^b^c = a^(b^c)
      self.take()
      return _pow(value, self.exponent())
    return value

  def postfix(self) -> sympy.Expr:
    value = self.atom()
    while self.peek()[1] == "!":
      self.take()
      if not (value.is_Integer and 0 <= value <= MAX_FACTORIAL):
        raise ParseError("factorial of a non-integer or too large a number")
      value = sympy.factorial(value)
    return value

  def number(self, text: str) -> sympy.Expr:
    if sum(ch.isdigit() for ch in text) > MAX_DIGITS:
      raise ParseError("number too long")
    return sympy.Rational(text)  # exact: 0.1 + 0.2 == 3/10

  def arg(self) -> sympy.Expr:
    """A TeX macro argument: a {group}, or one character/token (``\\frac12``)."""
    kind, text = self.peek()
    if text == "{":
      self.take()
      value = self.expr()
      self.expect("}")
      return value
    if kind == "num":  # TeX takes one digit: \frac123 = \frac{1}{2}3
      if len(text) > 1:
        self.tokens[self.pos] = ("num", text[1:])
      else:
        self.take()
      if text[0] == ".":
        raise ParseError("bare '.' argument")
      return sympy.Integer(int(text[0]))
    if kind in ("letter", "macro"):
      return self.atom()
    raise ParseError(f"bad argument {text!r}")

  def atom(self) -> sympy.Expr:
    kind, text = self.take()
    if kind == "num":
      value = self.number(text)
      if self.peek()[1] == "_":
        raise ParseError("number with a base subscript")
      if value.is_Integer and self.peek()[1] == "\\frac":  # mixed number 2\frac{1}{2}
        start = self.pos
        self.take()
        fraction = self.arg() / self.arg()
        if fraction.is_Rational and fraction > 0 and fraction < 1:
          return value + fraction if value >= 0 else value - fraction
        self.pos = start
      return value
    if kind == "letter":
      if self.peek()[1] == "_":
        self.take()
        sub_kind, sub = self.take()
        if sub == "{":
          start = self.pos
          while self.peek()[1] not in ("}", ""):
            self.take()
          sub = "".join(t for _, t in self.tokens[start : self.pos])
          self.expect("}")
        elif sub_kind not in ("num", "letter"):
          raise ParseError("bad subscript")
        return sympy.Symbol(f"{text}_{sub}")
      return sympy.I if text == "i" else sympy.E if text == "e" else sympy.Symbol(text)
    if text in ("(", "[", "{"):
      value = self.expr()
      self.expect({"(": ")", "[": "]", "{": "}"}[text])
      return value
    if text == "|":
      value = self.expr()
      self.expect("|")
      return sympy.Abs(value)
    if kind == "macro":
      return self.macro(text[1:])
    raise ParseError(f"unexpected {text!r}")

  def macro(self, name: str) -> sympy.Expr:
    if name == "frac":
      numerator = self.arg()
      return numerator / self.arg()
    if name == "sqrt":
      if self.peek()[1] == "[":
        self.take()
        index = self.expr()
        self.expect("]")
        if not (index.is_Integer and 2 <= index <= 100):
          raise ParseError("bad root index")
        return _pow(self.arg(), 1 / index)
      return sympy.sqrt(self.arg())
    if name == "pi":
      return sympy.pi
    if name == "infty":
      return sympy.oo
    if name in _GREEK:
      return sympy.Symbol(name)
    if name in _FUNCTIONS:
      base = None
      if name == "log" and self.peek()[1] == "_":  # \log_2 8
        self.take()
        base = self.arg()
      power = None
      if self.peek()[1] == "^":  # \sin^2 x
        self.take()
        power = self.exponent()
      argument = self.atom() if self.peek()[1] in ("(", "{") else self.postfix()
      value = _FUNCTIONS[name](argument) if base is None else sympy.log(argument, base)
      return _pow(value, power) if power is not None else value
    raise ParseError(f"unsupported macro \\{name}")


def parse(text: str) -> sympy.Expr:
  """sympy expression of a normalised LaTeX/plain-text scalar; raises ParseError."""
  return _Parser(text).parse()

