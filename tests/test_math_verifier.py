"""Tests for rlvr_jax.rewards.math: extraction, equivalence, hostile input, self-agreement."""

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from rlvr_jax.data.math_datasets import Gsm8kSource, Math500Source
from rlvr_jax.rewards import _math_equiv, _math_pool, _math_sympy
from rlvr_jax.rewards import math as math_reward_lib
from rlvr_jax.rewards.math import (
  extract_answer,
  math_reward,
  normalize_answer,
  verify,
  verify_batch,
)

WALL_LIMIT_S = 2.5


@pytest.fixture(scope="module", autouse=True)
def warm_pool():
  # Two workers, so that a test killing one still finds the other ready.
  math_reward_lib.start_pool(num_workers=2)
  assert verify(r"\boxed{2/4}", "0.5")  # waits for a worker to import sympy
  yield
  math_reward_lib.shutdown_pool()


def boxed(answer: str) -> str:
  return f"so the result is $\\boxed{{{answer}}}$."


# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "text, expected",
  [
    (r"so \boxed{5}.", "5"),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"first \boxed{1}, finally \boxed{2}", "2"),
    (r"\fbox{7}", "7"),
    (r"\boxed 5$", "5"),
    (r"\boxed{\{1,2\}}", r"\{1,2\}"),
    (r"\boxed{\boxed{3}}", "3"),
    (r"The answer is 3. \boxed{4}", "4"),
    ("Janet makes 9 * 2 = $18.\n#### 18", "18"),
    ("#### 1,080\n", "1,080"),
    ("The answer is 42.", "42"),
    ("The final answer is $3.5$. I hope it is correct.", "3.5"),
    ("so the answer is: x+1", "x+1"),
    ("THE ANSWER IS 7", "7"),
    ("no final answer here", None),
    ("", None),
    (r"\boxed{1", None),
    (r"\boxed{}", None),
  ],
)
def test_extract_answer(text, expected):
  assert extract_answer(text) == expected


@pytest.mark.parametrize(
  "text",
  [
    "\\boxed{" + "{" * 1_000_000,
    "answer is 1 " * 100_000,
    "#" * 1_000_000,
    "\\boxed{" * 200_000,
    "\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
  ],
)
def test_extract_answer_is_linear_on_megabyte_inputs(text):
  start = time.perf_counter()
  extract_answer(text)
  assert time.perf_counter() - start < 2.0  # ~0.1-0.4 s; quadratic scanning would take hours


# ---------------------------------------------------------------------------------------------
# Normalisation and equivalence
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "answer, expected",
  [
    (r"\$1,080.", "1080"),
    (r"10,\!080", "10080"),
    (r"\left( 3, \dfrac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
    (r"90^\circ", "90"),
    (r"864 \mbox{ inches}^2", "864"),
    (r"\text{Evelyn}", "Evelyn"),
    ("12 dollars", "12"),
    (r"x \in [-2,7]", "[-2,7]"),
    ("y = 2x + 3", "2x+3"),
    (r"\text{(C)}", "C"),
    (r"\cot x", r"\cot x"),
    ("x²", "x^{2}"),
    ("−3", "-3"),
  ],
)
def test_normalize_answer(answer, expected):
  assert normalize_answer(answer) == expected


EQUIVALENT = [
  ("0.5", r"\frac12"),
  (r"\dfrac{1}{2}", r"\frac{1}{2}"),
  (r"\tfrac{3}{4}", "0.75"),
  ("1/2", r"\frac{1}{2}"),
  ("2/4", "0.5"),
  (".5", "0.5"),
  ("007", "7"),
  ("18.00", "18"),
  ("3.", "3"),
  ("1,080", "1080"),
  (r"\$1,080.00", "1,080"),
  ("1{,}000", "1000"),
  (r"10,\!080", "10080"),
  (r"50\%", "50"),
  ("90^{\\circ}", "90"),
  ("90°", "90"),
  (r"5\text{ cm}", "5"),
  ("12 dollars", "12"),
  (r"\!\,5\;", "5"),
  ("−3", "-3"),
  ("½", "0.5"),
  ("１８", "18"),
  (r"\text{east}", "East"),
  (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
  ("(1, 2]", r"\left(1,2\right]"),
  (r"\frac{\sqrt{3}}{3}", r"\frac{1}{\sqrt{3}}"),
  (r"\sqrt2", r"\sqrt{2}"),
  (r"2\sqrt{2}", r"\sqrt{8}"),
  (r"\sqrt[3]{27}", "3"),
  (r"\pi/2", r"\frac{\pi}{2}"),
  (r"2\frac{1}{2}", r"\frac52"),
  (r"137 \frac{1}{2}", "137.5"),
  (r"\frac{270}7\text{ degrees}", r"\frac{270}{7}"),
  ("x=5", "5"),
  ("y = 2x + 3", "3 + 2x"),
  ("x^2+2x+1", "(x+1)^2"),
  ("2k+2", "2(k+1)"),
  (r"\frac{x^2-1}{x-1}", "x+1"),
  (r"\sin^2 x + \cos^2 x", "1"),
  (r"e^{i\pi}", "-1"),
  ("10!", "3628800"),
  (r"\log_2 8", "3"),
  ("2^{10}", "1024"),
  ("6 - 5i", r"6-5\cdot i"),
  ("5x-7y+11z+4=0", "10x-14y+22z+8=0"),
  (r"1 \pm \sqrt{19}", r"1+\sqrt{19}, 1-\sqrt{19}"),
  (r"\{1\pm\sqrt{5},-2\}", r"-2, 1-\sqrt5, 1+\sqrt5"),
  ("3, 5, 7", "7, 3, 5"),
  (r"\{1,2\}", r"\{2,1\}"),
  (r"\begin{pmatrix} 1/5 \\ -18/5 \end{pmatrix}", "(0.2, -3.6)"),
  (r"\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}", r"\begin{bmatrix}-1&0\\0&-1\end{bmatrix}"),
  (r"(-\infty, 0] \cup (1, \infty)", r"(1,\infty)\cup(-\infty,0]"),
  (r"x \in [-2,7]", "[-2, 7]"),
  ("52_{8}", "52_8"),
  (r"\text{(C)}", "C"),
  ("(C)", r"\text{(C)}"),
]

NOT_EQUIVALENT = [
  ("0.333", r"\frac13"),
  ("3.14", r"\pi"),
  ("1.4142", r"\sqrt2"),
  ("(3,4]", "(3,4)"),
  ("[1,2]", "(1,2)"),
  ("1,2", "(1,2)"),
  ("42", "52_8"),
  ("x+1", "x-1"),
  (r"\sqrt{x^2}", "x"),
  ("3R^2", "3r^2"),
  (r"\text{even}", r"\text{odd}"),
  ("1, 2", "1, 2, 3"),
  (r"1 \pm 2", "3"),
  ("5x", "x=5"),
  ("5x-7y+11z+4=0", "5x-7y+11z-4=0"),
  ("1,000", "1,000,000"),
  (r"1\frac{1}{2}", r"\frac{1}{2}"),
  (r"\infty", r"-\infty"),
  ("-18", "18"),
  ("18", "1.8"),
  ("6+5i", "6-5i"),
  (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", "(2, 1)"),
  ("", "5"),
  (r"5 \text{ and } 6", "56"),
  (r"50\%", "0.5"),
  (r"\frac{1}{0}", r"\frac{2}{0}"),
  ("1/0", r"\frac{1}{0}"),
  ("0/0", r"\frac{0}{0}"),
  (r"\log 0", r"\tan(\pi/2)"),
  ("0^{-1}", "1/(1-1)"),
  ("(1/0, 2)", "(2/0, 2)"),
  ("x=1/0", "x=2/0"),
  (r"\frac{x}{0}", r"\frac{y}{0}"),
]


@pytest.mark.parametrize("pred, gold", EQUIVALENT)
def test_equivalent(pred, gold):
  assert verify(boxed(pred), gold)
  assert verify(boxed(gold), pred)


@pytest.mark.parametrize("pred, gold", NOT_EQUIVALENT)
def test_not_equivalent(pred, gold):
  assert not verify(boxed(pred), gold)
  assert not verify(boxed(gold), pred)


@pytest.mark.parametrize(
  "answer", [r"\frac{1}{0}", "0/0", r"\log 0", "1/(1-1)", "(1/0, 2)", r"\{1/0\}", "x=1/0"]
)
def test_undefined_is_not_equal_to_itself(answer):
  """Division by zero, 0/0, complex infinity: no value, so not even equal to itself."""
  assert not _math_equiv.equivalent(answer, answer)
  assert _math_equiv.equivalent(r"(-\infty,0]", r"(-\infty,0]")  # ±oo is a value; it is equal


def test_verify_reads_gsm8k_and_answer_is_formats():
  assert verify("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18", "18")
  assert verify("So the answer is $18.00.", "18")
  assert not verify("no answer given, 18", "18")


# ---------------------------------------------------------------------------------------------
# Hostile input: each call returns False within the time bound and the verifier keeps working
# ---------------------------------------------------------------------------------------------

HOSTILE = {
  "1MB response without an answer": ("x" * 1_000_000, "1"),
  "1MB boxed answer": ("\\boxed{" + "1" * 1_000_000 + "}", "1"),
  "1MB answer-is line": ("The answer is " + "1+" * 500_000, "1"),
  "10^6-digit number": ("\\boxed{" + "9" * 1_000_000 + "}", "9" * 1_000_000),
  "150-digit number": ("\\boxed{" + "7" * 150 + "}", "7" * 150),
  "power tower 9^9^9^9": (r"\boxed{9^9^9^9}", "1"),
  "braced power tower": (r"\boxed{9^{9^{9^{9}}}}", "1"),
  "double-superscript tower": (r"\boxed{9^{9}^{9}^{9}}", "1"),
  "parenthesised power tower": (r"\boxed{9^(9^(9^9))}", "1"),
  "height-2 tower 9^{9^9}": (r"\boxed{9^{9^9}}", "1"),
  "huge power 10^{10^{10}}": (r"\boxed{10^{10^{10}}}", "1"),
  "huge factorial": (r"\boxed{(10^{50})!}", "1"),
  "10,000 nested braces": ("\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}", "1"),
  "200 nested parentheses": ("\\boxed{" + "(" * 200 + "1" + ")" * 200 + "}", "1"),
  "arabic-indic digits": (r"\boxed{١٨}", "18"),
  "devanagari digits": (r"\boxed{१८}", "18"),
  "mixed look-alike digit": (r"\boxed{1٨}", "18"),
  "NUL byte in answer": ("\\boxed{18\x00}", "18"),
  "NUL byte in gold": (r"\boxed{18}", "18\x00"),
  "unknown macro input": (r"\boxed{\input{/etc/passwd}}", "1"),
  "unknown macro def": (r"\boxed{\def\x{5}\x}", "5"),
  "unknown macro write18": (r"\boxed{\immediate\write18{rm -rf /}5}", "5"),
  "unknown macro foo": (r"\boxed{\foo 5}", "5"),
  "python code": (r"\boxed{__import__('os').system('true')}", "0"),
}


@pytest.mark.parametrize("response, gold", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_input_is_false_and_fast(response, gold):
  start = time.perf_counter()
  assert verify(response, gold) is False
  assert time.perf_counter() - start < WALL_LIMIT_S
  assert verify(boxed(r"\frac{3}{6}"), "0.5")


def test_input_is_never_executed(tmp_path):
  target = tmp_path / "pwned"
  for code in (f"open('{target}','w')", f"__import__('pathlib').Path('{target}').touch()"):
    assert not verify(boxed(code), "1")
  assert not target.exists()


def test_timeout_kills_worker_and_verifier_keeps_working():
  slow = "1000!" * 199  # passes every pre-check; about 1 s of sympy work
  start = time.perf_counter()
  assert verify(boxed(slow), "1", timeout_s=0.05) is False
  assert time.perf_counter() - start < WALL_LIMIT_S
  assert verify(boxed("1/2"), "0.5")
  assert verify_batch([boxed("1/2"), boxed("2^{-1}")], ["0.5", "0.5"]) == [True, True]


def _pool_job(action: str, seconds: float = 0.0) -> bool:
  """Worker function for the pool tests (imported by the workers from this module)."""
  if action == "sleep":
    time.sleep(seconds)
  elif action == "crash":
    os._exit(3)
  elif action == "raise":
    raise RecursionError
  return True


@pytest.fixture(scope="module")
def test_pool():
  # The directory from which this module imports as `__name__` ("tests.x" or "x").
  root = pathlib.Path(__file__).resolve().parents[__name__.count(".")]
  with pytest.MonkeyPatch.context() as patch:  # lets the workers import this module
    patch.setenv("PYTHONPATH", str(root))
    pool = _math_pool.WorkerPool(2, fn_path=f"{__name__}:_pool_job")
  yield pool
  pool.close()


def test_pool_per_item_timeouts_run_in_parallel(test_pool):
  assert test_pool.map([("ok",)], timeout_s=60) == [True]  # both workers may still be starting
  test_pool.map([("ok",), ("ok",)], timeout_s=60)
  start = time.perf_counter()
  results = test_pool.map([("sleep", 30), ("sleep", 30), ("ok",)], timeout_s=0.5)
  assert results == [False, False, True]
  assert time.perf_counter() - start < 20  # killed at 0.5 s each, not 30 s; includes a restart
  assert test_pool.map([("ok",)] * 3, timeout_s=60) == [True] * 3


def test_pool_survives_crashes_and_exceptions(test_pool):
  assert test_pool.map([("crash",), ("raise",), ("ok",)], timeout_s=60) == [False, False, True]
  assert test_pool.map([("ok",), ("ok",)], timeout_s=60) == [True, True]


def test_pool_callers_are_isolated_from_each_others_timeouts(test_pool):
  """Ten callers, each with a job that times out and one that does not, on a 2-worker pool:
  every caller has its answers within its own time bound (they used to queue: 5.3 s)."""
  assert test_pool.map([("ok",)], timeout_s=60) == [True]  # the template may still be starting
  timeout_s = 0.5
  answers = {}

  def call(k, jobs):
    start = time.perf_counter()
    answers[k] = (test_pool.map(jobs, timeout_s=timeout_s), time.perf_counter() - start)

  threads = [threading.Thread(target=call, args=(k, [("sleep", 30), ("ok",)])) for k in range(10)]
  threads += [threading.Thread(target=call, args=(k, [("ok",)] * 3)) for k in range(10, 13)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  for k in range(13):
    results, seconds = answers[k]
    assert results == ([False, True] if k < 10 else [True] * 3), k
    assert seconds < 3 * timeout_s, (k, seconds)


def _alive(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rpartition(")")[2].split()[0] != "Z"  # a zombie has already exited
  except FileNotFoundError:
    return False


def _wait_dead(pids, seconds: float = 5.0) -> list[int]:
  deadline = time.monotonic() + seconds
  while time.monotonic() < deadline and any(map(_alive, pids)):
    time.sleep(0.05)
  return [pid for pid in pids if _alive(pid)]


_OWNER = """
import threading, time
from rlvr_jax.rewards import _math_pool
pool = _math_pool.WorkerPool(2, fn_path="time:sleep")
pool.map([(0,)], 120)
threading.Thread(target=pool.map, args=([(600,), (600,)], 600), daemon=True).start()
while len(pool.pids()) < 3:
  time.sleep(0.01)
time.sleep(0.2)  # both workers are inside time.sleep(600)
print(*pool.pids(), flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_workers_die_with_a_killed_owner():
  """SIGKILL the process that owns a pool while its workers are mid-job: none outlives it."""
  root = pathlib.Path(_math_pool.__file__).resolve().parents[2]
  env = {**os.environ, "PYTHONPATH": str(root)}
  owner = subprocess.Popen([sys.executable, "-c", _OWNER], stdout=subprocess.PIPE, text=True,
                           env=env)
  try:
    pids = [int(pid) for pid in owner.stdout.readline().split()]
    assert len(pids) == 3 and all(map(_alive, pids)), pids
  finally:
    owner.kill()
    owner.wait()
  assert _wait_dead(pids) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_workers_die_with_their_template_and_the_pool_recovers():
  pool = _math_pool.WorkerPool(1, fn_path="time:sleep")
  try:
    assert pool.map([(0,)], timeout_s=120) == [False]  # time.sleep returns None
    answer = []
    thread = threading.Thread(target=lambda: answer.append(pool.map([(600,)], timeout_s=600)))
    thread.start()
    time.sleep(0.3)
    template, worker = pool.pids()
    os.kill(template, signal.SIGKILL)
    thread.join(timeout=5)
    assert answer == [[False]]  # answered at once, not after 600 s
    assert _wait_dead([template, worker]) == []
    assert pool.map([(0,)] * 2, timeout_s=120) == [False, False]  # a new template
    assert template not in pool.pids()
  finally:
    pool.close()


# ---------------------------------------------------------------------------------------------
# Batch API
# ---------------------------------------------------------------------------------------------


def test_verify_batch_and_math_reward():
  responses = [boxed("1/2"), boxed("0.4"), "no answer", boxed("1/2"), "#### 1,000"]
  golds = ["0.5", "0.5", "0.5", "0.5", "1000"]
  assert verify_batch(responses, golds) == [True, False, False, True, True]
  rewards = math_reward(responses, golds)
  assert rewards.dtype == np.float32 and rewards.shape == (5,)
  np.testing.assert_array_equal(rewards, [1, 0, 0, 1, 1])
  assert verify_batch([], []) == []
  with pytest.raises(ValueError, match="2 responses but 1 golds"):
    verify_batch(["a", "b"], ["a"])
  with pytest.raises(TypeError):
    verify_batch([b"\\boxed{1}"], ["1"])


def test_verify_batch_is_thread_safe():
  responses = [boxed(f"{k}/{2 * k}") for k in range(1, 21)]
  results = []

  def run():
    results.append(verify_batch(responses, ["0.5"] * 20))

  threads = [threading.Thread(target=run) for _ in range(3)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert results == [[True] * 20] * 3


# ---------------------------------------------------------------------------------------------
# Agreement with the data sets
# ---------------------------------------------------------------------------------------------


def _agreement(source) -> tuple[float, list[int]]:
  records = [source[i] for i in range(len(source))]
  results = verify_batch([r["solution"] for r in records], [r["answer"] for r in records])
  return float(np.mean(results)), [i for i, ok in enumerate(results) if not ok]


@pytest.mark.parametrize(
  "source", [Math500Source, lambda: Gsm8kSource("test")], ids=["math500", "gsm8k"]
)
def test_reference_solutions_verify_against_their_gold(source):
  rate, misses = _agreement(source())
  assert rate >= 0.99, misses


def _render(structure: tuple) -> str:
  """An answer structure re-written in sympy's own LaTeX: an independent spelling of it."""
  import sympy  # here, so that pool workers importing this module for `_pool_job` start fast

  kind = structure[0]
  if kind == "scalar":
    if _math_equiv._is_text(structure[1]):
      return structure[1]
    try:
      return sympy.latex(_math_sympy.parse(structure[1]))
    except _math_sympy.ParseError:
      return structure[1]
  if kind == "set":
    return ", ".join(_render(item) for item in reversed(structure[1]))
  if kind == "tuple":
    inner = ", ".join(_render(item) for item in structure[2])
    return f"\\left{structure[1][0]} {inner} \\right{structure[1][1]}"
  rows = " \\\\ ".join(" & ".join(_render(cell) for cell in row) for row in structure[1])
  return f"\\begin{{pmatrix}} {rows} \\end{{pmatrix}}"


def test_math500_gold_matches_its_sympy_rendering():
  golds = [record["answer"] for record in Math500Source()]
  rendered = [_render(_math_equiv._structure(normalize_answer(gold))) for gold in golds]
  assert sum(r != normalize_answer(g) for r, g in zip(rendered, golds)) > 40  # symbolic path used
  results = verify_batch([f"The final answer is ${r}$." for r in rendered], golds)
  assert np.mean(results) >= 0.99, [i for i, ok in enumerate(results) if not ok]


def test_gsm8k_gold_matches_reformatted_numbers():
  golds = [record["answer"] for record in Gsm8kSource("test")]
  responses = [f"The answer is \\${float(gold.replace(',', '')):,.2f}." for gold in golds]
  assert responses[0] == "The answer is \\$18.00."
  assert np.mean(verify_batch(responses, golds)) >= 0.99
