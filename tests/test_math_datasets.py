"""Tests for rlvr_jax.data.math_datasets: bundled files, row validation, determinism, prompts."""

import json
import pickle

import grain.python as grain
import pytest

from rlvr_jax.data.math_datasets import Gsm8kSource, Math500Source, format_prompt


@pytest.fixture(scope="module")
def sources():
  return {
    "gsm8k_train": Gsm8kSource("train"),
    "gsm8k_test": Gsm8kSource("test"),
    "math500": Math500Source(),
  }


def test_row_counts(sources):
  assert {name: len(source) for name, source in sources.items()} == {
    "gsm8k_train": 7473,
    "gsm8k_test": 1319,
    "math500": 500,
  }


def test_records_have_question_answer_solution(sources):
  for source in sources.values():
    for index in (0, len(source) // 2, len(source) - 1):
      record = source[index]
      assert set(record) == {"question", "answer", "solution"}
      assert all(isinstance(value, str) and value for value in record.values())


def test_gold_answers(sources):
  assert sources["gsm8k_test"][0]["answer"] == "18"
  assert sources["gsm8k_test"][0]["solution"].endswith("#### 18")
  assert sources["gsm8k_train"][0]["answer"] == "72"
  math500 = sources["math500"]
  assert math500[0]["answer"] == r"\left( 3, \frac{\pi}{2} \right)"
  assert math500[99]["answer"] == r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}"
  # The bundled MATH-500 repeats the gold after "The answer is: "; the boxed one must agree.
  for record in math500:
    assert record["solution"].endswith("The answer is: " + record["answer"])


def test_deterministic_and_copies(sources):
  again = Math500Source()
  assert [again[i] for i in range(len(again))] == [sources["math500"][i] for i in range(500)]
  record = sources["gsm8k_test"][5]
  record["answer"] = "changed"
  assert sources["gsm8k_test"][5]["answer"] != "changed"
  assert sources["gsm8k_test"][-1] == sources["gsm8k_test"][1318]


def test_grain_and_pickle(sources):
  source = sources["math500"]
  dataset = grain.MapDataset.source(source)
  assert len(dataset) == 500 and dataset[7] == source[7]
  restored = pickle.loads(pickle.dumps(source))  # grain worker processes pickle sources
  assert restored[42] == source[42]


def _write(path, lines):
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return path


GOOD_GSM8K = json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"})
GOOD_MATH = json.dumps({"question": "1+1?", "answer": r"It is $\boxed{2}$."})


@pytest.mark.parametrize(
  "bad_line, message",
  [
    ('{"question": "q", "answer": ', "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"answer": "#### 2"}), "field 'question'"),
    (json.dumps({"question": "q", "answer": 2}), "field 'answer'"),
    (json.dumps({"question": "q", "answer": "no marker 2"}), "no gold answer"),
    (json.dumps({"question": "q", "answer": "#### "}), "no gold answer"),
  ],
)
def test_gsm8k_malformed_row_names_file_and_line(tmp_path, bad_line, message):
  path = _write(tmp_path / "bad.jsonl", [GOOD_GSM8K, "", bad_line, GOOD_GSM8K])
  with pytest.raises(ValueError, match=rf"bad\.jsonl:3: .*{message}"):
    Gsm8kSource("test", path=path)


def test_math500_malformed_row_names_file_and_line(tmp_path):
  path = _write(tmp_path / "bad.jsonl", [GOOD_MATH, json.dumps({"question": "q", "answer": "4"})])
  with pytest.raises(ValueError, match=r"bad\.jsonl:2: no gold answer"):
    Math500Source(path=path)
  unbalanced = json.dumps({"question": "q", "answer": r"\boxed{4"})
  path = _write(tmp_path / "unbalanced.jsonl", [unbalanced])
  with pytest.raises(ValueError, match=r"unbalanced\.jsonl:1: no gold answer"):
    Math500Source(path=path)


@pytest.mark.parametrize("content", [b"", b"\n  \n\n"])
def test_file_without_rows_names_file_and_line(tmp_path, content):
  path = tmp_path / "empty.jsonl"
  path.write_bytes(content)
  with pytest.raises(ValueError, match=r"empty\.jsonl:1: no rows"):
    Gsm8kSource("train", path=path)
  assert path.read_bytes() == content  # read, never rewritten


def test_non_utf8_byte_names_file_and_line(tmp_path):
  content = (GOOD_GSM8K + "\n" + GOOD_GSM8K + "\n").encode() + b'{"question": "caf\xe9?"}\n'
  path = tmp_path / "latin1.jsonl"
  path.write_bytes(content)
  with pytest.raises(ValueError,
                     match=r"latin1\.jsonl:3: not UTF-8 text \(byte 0xe9 at column 18\)"):
    Gsm8kSource("train", path=path)
  assert path.read_bytes() == content


def test_missing_file_is_named(tmp_path):
  with pytest.raises(ValueError, match=r"nope\.jsonl: no such file"):
    Math500Source(path=tmp_path / "nope.jsonl")


def test_custom_path(tmp_path):
  source = Math500Source(path=_write(tmp_path / "ok.jsonl", [GOOD_MATH, GOOD_MATH]))
  assert len(source) == 2 and source[1]["answer"] == "2"


def test_unknown_split():
  with pytest.raises(ValueError, match="split"):
    Gsm8kSource("validation")


def test_format_prompt():
  plain = format_prompt("What is 1+1?")
  assert plain.startswith("Question: What is 1+1?\n") and plain.endswith("Answer:")
  assert r"\boxed{}" in plain and "The answer is" in plain
  chat = format_prompt("What is 1+1?", "chat")
  assert [message["role"] for message in chat] == ["system", "user"]
  assert chat[1]["content"] == "What is 1+1?" and r"\boxed{}" in chat[0]["content"]
  with pytest.raises(ValueError, match="unknown prompt template"):
    format_prompt("q", "fancy")
