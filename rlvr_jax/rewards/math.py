"""Math answer extraction and verification with a hard time bound on every call.

`verify(response, gold)` extracts the final answer from a model response, normalises both
answers to canonical strings in this process, and returns True at once when the strings are
equal. Otherwise a worker process decides symbolic equivalence with sympy; a worker that
overruns `timeout_s` is killed and replaced, and that item scores False. Concurrent callers get
separate workers, so one caller's slow item never delays another's answer, and the workers die
with this process however it ends (`_math_pool`).

Why a hand-written LaTeX-subset parser (`_math_sympy`) and not math-verify or
`sympy.parsing` (`parse_expr`, `parse_latex`):
- No input string ever reaches `eval`/`exec`: the parser builds sympy objects node by node, and
  `parse_expr`/`sympify` end in `eval` whatever the transformation set.
- Every construct it accepts carries a size guard (digit runs, result size of `a^b`, factorial
  arguments), so sympy is never asked to build a 10^9-digit integer; the timeout catches the rest.
- math-verify covers more notation, but bounds time with `signal.alarm` (main thread only,
  while the trainer calls us from a `jax.pure_callback` thread) and pins the antlr4 runtime that
  its LaTeX grammar needs. The answer formats of GSM8K and MATH are a small, known subset.

Safety checks in the parent reject, before any sympy work: answers over `MAX_ANSWER_CHARS`,
NUL bytes, non-ASCII digits left after NFKC (``int()`` would read '٣' as 3), digit runs over
`MAX_DIGITS`, bracket nesting over `MAX_NESTING`, exponent towers of height >= 3 and LaTeX
macros outside a whitelist. Such answers score False.

Equivalence rules (in `_math_equiv`): numbers compare exactly (decimals are exact rationals, so
0.5 == 1/2 but 0.333 != 1/3); other constants must agree to 40 significant digits; expressions
with free symbols must agree at several rational points; equations match up to a nonzero
constant factor; parenthesised/bracketed tuples and intervals compare element-wise with the
same brackets; bare comma lists, ``\\{...\\}`` sets, ``a \\pm b`` and ``\\cup`` unions compare as
unordered collections; words compare case-insensitively. Undefined values (division by zero,
0/0) equal nothing, themselves included; only the string match above, which never evaluates,
accepts a response spelled exactly like its gold. Units, ``%`` and degree signs are
dropped, so ``50\\%`` matches 50 (not 0.5).
"""

from __future__ import annotations

import atexit
import collections
import itertools
import re
import threading
import unicodedata
from collections.abc import Sequence

import numpy as np

from rlvr_jax.rewards import _math_pool

MAX_ANSWER_CHARS = 1000  # longest MATH-500 gold is 53 chars; bounds parent regex work too
MAX_DIGITS = 100  # longest run of digits accepted in one number
MAX_NESTING = 50  # bracket depth; keeps the recursive-descent parser far from the stack limit
MAX_TOWER = 2  # a^{b^{c}} is fine, a^{b^{c^{d}}} is rejected outright
DEFAULT_TIMEOUT_S = 2.0

# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------

_BOX_MACROS = ("\\boxed", "\\fbox")
_BRACE = re.compile(r"\\.|([{}])", re.S)  # group 1 is "" for an escape, so \{ never counts
_DEPTH_STEP = {"{": 1, "}": -1, "": 0}
_ANSWER_IS = re.compile(r"answer is", re.I)
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_TEX_TOKEN = re.compile(r"[^\s$]+")


def last_boxed(text: str) -> str | None:
  """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` in `text`, nested braces kept.

  Also reads the brace-less TeX form ``\\boxed 5``. Returns None when there is no box or the
  last one is unbalanced (a truncated response). Linear time in ``len(text)``.
  """
  start = max(text.rfind(macro) for macro in _BOX_MACROS)
  if start < 0:
    return None
  i = start + (6 if text.startswith("\\boxed", start) else 5)
  while i < len(text) and text[i] in " \t":
    i += 1
  if i < len(text) and text[i] == "{":
    # Brace depth after each brace token, computed in C: a Python loop costs ~1 s per MB.
    depths = list(itertools.accumulate(map(_DEPTH_STEP.__getitem__, _BRACE.findall(text, i))))
    try:
      closing = depths.index(0)
    except ValueError:
      return None  # unbalanced: a truncated response
    end = next(itertools.islice(_BRACE.finditer(text, i), closing, None)).start()
    return text[i + 1 : end]
  match = _TEX_TOKEN.match(text, i)
  return match.group() if match else None


def _rest_of_line(text: str, start: int) -> str:
  end = text.find("\n", start)
  return text[start : end if end >= 0 else len(text)]


def extract_answer(text: str) -> str | None:
  """The final answer stated in `text`, or None.

  In order of preference: the content of the last ``\\boxed{}``/``\\fbox{}``; the rest of the
  line after the last GSM8K ``####``; the rest of the sentence after the last "answer is"
  ("The answer is 5.", "The final answer is: $5$"), without ``$`` or a final period.
  Linear time, no backtracking regex.
  """
  boxed = last_boxed(text)
  if boxed is not None:
    return boxed.strip() or None
  hashes = text.rfind("####")
  if hashes >= 0:
    return _rest_of_line(text, hashes + 4).strip() or None
  last = collections.deque(_ANSWER_IS.finditer(text), maxlen=1)
  if not last:
    return None
  answer = _rest_of_line(text, last[0].end()).lstrip(" \t:")
  end = _SENTENCE_END.search(answer)
  answer = answer[: end.start()] if end else answer
  return answer.strip().strip("$").strip().rstrip(".").strip() or None


# ---------------------------------------------------------------------------------------------
# Normalisation and safety checks
# ---------------------------------------------------------------------------------------------

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")
_SUPERSCRIPT_RUN = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹]+")
_UNICODE_SYMBOLS = {
  "−": "-", "–": "-", "×": "\\times ", "⋅": "\\cdot ", "·": "\\cdot ", "÷": "\\div ",
  "π": "\\pi ", "√": "\\sqrt", "∞": "\\infty ", "°": "\\circ ", "≤": "\\le ", "≥": "\\ge ",
  "≠": "\\ne ", "∪": "\\cup ", "±": "\\pm ", "⁄": "/",
}  # fmt: skip
_UNICODE_SYMBOL = re.compile("|".join(_UNICODE_SYMBOLS))

_TEXT_MACROS = r"\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm|mathbf|mathit|mathsf)"
_TEXT_GROUP = re.compile(_TEXT_MACROS + r"\s*\{([^{}]*)\}")
_UNIT_TEXT = re.compile(
  _TEXT_MACROS + r"\s*\{\s*[A-Za-z][A-Za-z. ]*\}(?:\s*\^\s*\{?\s*[23]\s*\}?)?\s*$"
)
_UNIT_WORDS = frozenset(
  "unit units cm centimeter centimeters mm millimeter millimeters meter meters km kilometer "
  "kilometers inch inches feet foot ft yard yards mile miles mph gram grams kg kilogram "
  "kilograms pound pounds lb lbs ounce ounces oz liter liters litre litres ml gallon gallons "
  "second seconds sec minute minutes min hour hours hr hrs day days week weeks month months "
  "year years dollar dollars cent cents degree degrees sq square cubic per".split()
)
_CLEANUPS = (
  (re.compile(r"\\\$|\$"), ""),
  (re.compile(r"\\[()\[\]]"), ""),
  (re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])"), ""),
  (re.compile(r"\\[dtc]frac(?![A-Za-z])"), r"\\frac"),
  (re.compile(r"\\(?:left|right)(?![A-Za-z])\.?|\\(?:[bB]igg?[lr]?|displaystyle)(?![A-Za-z])"), ""),
  (re.compile(r"\\[!,;: ]|\\q?quad(?![A-Za-z])|~"), " "),
  (re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![A-Za-z])|\\degree(?![A-Za-z])"), ""),
  (re.compile(r"\\?%"), ""),
  (re.compile(r"\{,\}"), ""),
)
_SPACES = re.compile(r"\s+")
_LONE_SPACE = re.compile(r"(?<![A-Za-z]) | (?![A-Za-z])")  # keep "\cot x", drop "2 x"
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SYMBOL_PREFIX = re.compile(r"[A-Za-z](?:=|\\in(?![A-Za-z]))")
_CHOICE = re.compile(r"\(([A-Za-z])\)")

_KNOWN_MACROS = frozenset(
  "frac sqrt pi infty cdot times div pm mp le leq ge geq lt gt ne neq in cup cap emptyset "
  "varnothing dots ldots cdots sin cos tan sec csc cot arcsin arccos arctan sinh cosh tanh "
  "log ln exp begin end alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota "
  "kappa lambda mu nu xi rho sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta "
  "Lambda Xi Sigma Phi Psi Omega".split()
) | {"{", "}", "\\"}
_MACRO = re.compile(r"\\([A-Za-z]+|.)", re.S)
_ENVIRONMENT = re.compile(r"\\(?:begin|end)(?![A-Za-z])(\{[a-z]*\})?")
_MATRIX_ENVIRONMENTS = frozenset({"{pmatrix}", "{bmatrix}", "{matrix}"})
_DIGIT_RUN = re.compile(rf"\d{{{MAX_DIGITS + 1}}}")
_EXPONENT_TOKEN = re.compile(r"\d+|[A-Za-z]|\\[A-Za-z]+")


def _unicode_to_latex(text: str) -> str | None:
  if text.isascii():
    return text
  text = _SUPERSCRIPT_RUN.sub(lambda m: "^{" + m.group().translate(_SUPERSCRIPTS) + "}", text)
  text = unicodedata.normalize("NFKC", text)
  if any(ch.isdigit() and not ch.isascii() for ch in text):
    return None  # look-alike digits that NFKC does not fold ('٣', '३', ...)
  return _UNICODE_SYMBOL.sub(lambda m: _UNICODE_SYMBOLS[m.group()], text)


def _drop_unit_text(match: re.Match[str]) -> str:
  # "5 \text{ cm}^2" -> "5": words ending a value are a unit; a lone "\text{east}" is the answer.
  return "" if match.string[: match.start()].strip() else match.group()


def _strip_unit_words(text: str) -> str:
  words = text.split(" ")
  while len(words) > 1 and re.sub(r"\^\d$", "", words[-1].lower().rstrip(".")) in _UNIT_WORDS:
    words.pop()
  kept = " ".join(words)
  return kept if kept.rstrip()[-1:].isdigit() or kept.rstrip().endswith("}") else text


def _strip_wrappers(text: str) -> str:
  text = text.rstrip(".").strip()
  if _THOUSANDS.fullmatch(text):
    text = text.replace(",", "")
  prefix = _SYMBOL_PREFIX.match(text)  # "x=5", "y=2x+3", "x\in[1,2]"; not "x=1,y=2"
  if prefix and text.count("=") == (1 if prefix.group().endswith("=") else 0):
    text = text[prefix.end() :]
  if text.startswith("{") and _closing_index(text, 0) == len(text) - 1:
    text = text[1:-1]
  choice = _CHOICE.fullmatch(text)
  return choice.group(1) if choice else text


def _closing_index(text: str, start: int) -> int:
  """Index of the bracket closing the one at `start`, or -1."""
  depth = 0
  for i in range(start, len(text)):
    if text[i] in "{([":
      depth += 1
    elif text[i] in "})]":
      depth -= 1
      if depth == 0:
        return i
  return -1


def _nesting_depth(text: str) -> int:
  depth = best = 0
  for ch in text:
    if ch in "{([":
      depth += 1
      best = max(best, depth)
    elif ch in "})]":
      depth -= 1
  return best


def _tower_height(text: str) -> int:
  """Deepest nesting of exponents: 1 for ``2^3``, 2 for ``2^{3^4}``, ``2^3^4`` and ``2^{3}^{4}``."""
  best = level = 0
  restore: list[int] = []  # exponent level to return to at each closing bracket
  resume = None  # level to return to after a power whose base is a group: "{x}^2", "x^{2}^{3}"
  i, n = 0, len(text)
  while i < n:
    ch = text[i]
    if ch in "{(":
      restore.append(level)
    elif ch in "})":
      outer = restore.pop() if restore else 0
      if text[i + 1 : i + 2] == "^":
        resume = outer  # the group is a base: its exponent nests inside its level
      else:
        level = outer
    elif ch == "^":
      base = level if resume is None else resume
      resume = None
      while i < n and text[i] == "^":  # a chain a^b^c nests to the right
        level += 1
        best = max(best, level)
        i += 1
        while i < n and text[i] == " ":
          i += 1
        if i < n and text[i] in "{(":
          restore.append(base)  # the group is the exponent; its end leaves the power
          break
        token = _EXPONENT_TOKEN.match(text, i)
        i = token.end() if token else i
      else:
        level = base
        continue
    i += 1
  return best


def _is_safe(text: str) -> bool:
  for match in _MACRO.finditer(text):
    if match.group(1) not in _KNOWN_MACROS:
      return False
  for match in _ENVIRONMENT.finditer(text):
    if match.group(1) not in _MATRIX_ENVIRONMENTS:
      return False
  return (
    not _DIGIT_RUN.search(text)
    and _nesting_depth(text) <= MAX_NESTING
    and _tower_height(text) <= MAX_TOWER
  )


def normalize_answer(answer: str) -> str | None:
  """Canonical string of an extracted answer, or None if it fails a safety check.

  Drops ``$``, ``\\(``, ``\\boxed``, ``\\left``/``\\right``, spacing macros, degree marks,
  ``%``, thousands separators, units (``\\text{ cm}^2`` after a value, or trailing unit words),
  a leading ``x =`` or ``x \\in``, and a final period; unwraps ``\\text{}``/``\\mbox{}``; maps
  ``\\dfrac``/``\\tfrac`` to ``\\frac`` and unicode math symbols to LaTeX; keeps a space only
  between two letters. Equal outputs mean equal answers; unequal ones may still be
  equivalent (``\\frac12`` vs ``0.5``), which the worker decides.
  """
  if len(answer) > MAX_ANSWER_CHARS or "\x00" in answer:
    return None
  text = _unicode_to_latex(answer)
  if text is None:
    return None
  # A TeX line break "\\" must not be read as "\" followed by the spacing macro "\ ".
  text = text.replace("\\\\", "\x00")
  for pattern, replacement in _CLEANUPS:
    text = pattern.sub(replacement, text)
  text = _UNIT_TEXT.sub(_drop_unit_text, text)
  while True:  # innermost groups first; each pass removes one level
    unwrapped = _TEXT_GROUP.sub(r"\1", text)
    if unwrapped == text:
      break
    text = unwrapped
  text = _SPACES.sub(" ", text).strip()
  text = _strip_unit_words(text)
  text = _LONE_SPACE.sub("", text)
  for _ in range(3):  # wrappers can nest: "{x = 5.}"
    text = _strip_wrappers(text)
  text = text.replace("\x00", "\\\\")
  return text if text and _is_safe(text) else None


# ---------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------

# The pool is a process-wide resource (worker processes), created on first use; it is the only
# module state and holds no results.
_pool_lock = threading.Lock()
_pool: _math_pool.WorkerPool | None = None


def start_pool(num_workers: int | None = None) -> None:
  """(Re)starts the verifier worker processes now rather than on the first `verify` call.

  Call once at start-up so the first training step does not wait ~1 s for the template process
  to import sympy. `num_workers` (per concurrent call) defaults to ``min(4, os.cpu_count())``.
  """
  global _pool
  with _pool_lock:
    if _pool is not None:
      _pool.close()
    _pool = _math_pool.WorkerPool(num_workers)


def shutdown_pool() -> None:
  """Stops the worker processes; the next `verify` call starts new ones."""
  global _pool
  with _pool_lock:
    if _pool is not None:
      _pool.close()
    _pool = None


atexit.register(shutdown_pool)


def _get_pool() -> _math_pool.WorkerPool:
  global _pool
  with _pool_lock:
    if _pool is None or not _pool.owned_by_this_process():
      _pool = _math_pool.WorkerPool(None)  # a forked child must not share its parent's pipes
    return _pool


def verify_batch(
  responses: Sequence[str], golds: Sequence[str], *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[bool]:
  """`verify` for each ``(response, gold)`` pair, run in parallel across the worker processes.

  Each item gets `timeout_s` of worker time once a worker picks it up; the batch takes at most
  about ``ceil(n_symbolic / num_workers) * timeout_s``, where only items whose normalised
  answers differ as strings count, whatever other threads are verifying at the same time.
  Duplicate pairs (common within a GRPO group) run once.
  """
  if len(responses) != len(golds):
    raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
  results = [False] * len(responses)
  gold_cache: dict[str, str | None] = {}
  symbolic: dict[tuple[str, str], list[int]] = {}
  for i, (response, gold) in enumerate(zip(responses, golds)):
    if not isinstance(response, str) or not isinstance(gold, str):
      raise TypeError(f"item {i}: response and gold must be str")
    if gold not in gold_cache:
      gold_cache[gold] = normalize_answer(gold)
    gold_norm = gold_cache[gold]
    extracted = extract_answer(response)
    pred_norm = normalize_answer(extracted) if extracted is not None else None
    if gold_norm is None or pred_norm is None:
      continue
    if pred_norm == gold_norm:
      results[i] = True
    else:
      symbolic.setdefault((pred_norm, gold_norm), []).append(i)
  if symbolic:
    pairs = list(symbolic)
    for pair, ok in zip(pairs, _get_pool().map(pairs, timeout_s)):
      for i in symbolic[pair]:
        results[i] = ok
  return results


def verify(response: str, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
  """Whether the final answer in `response` is mathematically equal to the answer `gold`.

  `response` is model output (see `extract_answer`; no extractable answer scores False);
  `gold` is a bare final answer such as ``"\\frac{1}{2}"`` or ``"1,080"``. Never evaluates
  input as code. Symbolic work beyond a string match runs in a worker process and is killed
  after `timeout_s` seconds (the item then scores False); the very first call also waits for
  the workers to start unless `start_pool` ran before. Raises RuntimeError only if the worker
  processes cannot start at all.
  """
  return verify_batch([response], [gold], timeout_s=timeout_s)[0]


def math_reward(
  responses: Sequence[str], golds: Sequence[str], *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> np.ndarray:
  """Outcome rewards ``r_n = 1.0 if verify(responses[n], golds[n]) else 0.0``: float32 [N]."""
  return np.asarray(verify_batch(responses, golds, timeout_s=timeout_s), dtype=np.float32)
