"""rlvr_jax.evaluation (`python -m rlvr_jax.evaluate`): restores a quickstart:tiny run and writes
a pass@k / maj@k / mean@k table; checks its inputs before sampling, streams per-prompt results
and resumes from them."""

import glob
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.helpers import ROOT, load_config
from rlvr_jax.evaluation import evaluate
from rlvr_jax.training.run import Run


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("quickstart_tiny"))
  proc = subprocess.run(
      [sys.executable, "-m", "rlvr_jax.main", "--config=configs/quickstart.py:tiny",
       f"--workdir={path}", "--noprogress"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return path


def _check_table(result, ks):
  assert [row["k"] for row in result["table"]] == ks
  for row in result["table"]:
    for key in ("pass@k", "maj@k", "mean@k"):
      assert 0.0 <= row[key] <= 1.0
  passes = [row["pass@k"] for row in result["table"]]
  assert passes == sorted(passes)  # pass@k never decreases with k


def test_cli_latest_checkpoint(workdir):
  proc = subprocess.run(
      [sys.executable, "-m", "rlvr_jax.evaluate", "--config=configs/quickstart.py:tiny",
       f"--workdir={workdir}", "--n=4", "--k=1,2,4,8", "--num_prompts=6", "--noprogress"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "pass@k" in proc.stdout and "maj@k" in proc.stdout and "mean@k" in proc.stdout
  [path] = glob.glob(os.path.join(workdir, "eval_4_n4_t1_*.json"))  # tiny ends at RL step 4
  with open(path) as f:
    result = json.load(f)
  assert result["checkpoint"] == "4" and result["step"] == 4
  assert (result["task"], result["num_prompts"], result["n"]) == ("addition", 6, 4)
  _check_table(result, [1, 2, 4])  # k=8 > n is dropped
  assert len(result["samples"]) == 6 and 0 <= result["truncated_frac"] <= 1


def test_step_and_none_checkpoints_in_process(workdir):
  config = load_config("quickstart", "tiny")
  step2 = evaluate.run_eval(config, workdir, checkpoint="2", n=3, ks=[1, 3], temperature=0.0,
                            num_prompts=5, batch_size=2, progress=False)
  assert step2["step"] == 2 and os.path.basename(step2["path"]).startswith("eval_2_n3_t0_")
  assert os.path.exists(step2["path"])
  _check_table(step2, [1, 3])
  # Greedy samples are identical, so every k gives the same answer.
  assert len({row["pass@k"] for row in step2["table"]}) == 1
  initial = evaluate.run_eval(load_config("quickstart", "tiny"), workdir, checkpoint="none",
                              n=2, ks=[1, 2], num_prompts=4, progress=False)
  assert initial["checkpoint"] == "none" and initial["step"] is None
  assert os.path.basename(initial["path"]).startswith("eval_none_n2_t1_")
  assert os.path.exists(initial["path"])
  with pytest.raises(ValueError, match="no checkpoint for step 3"):
    evaluate.run_eval(load_config("quickstart", "tiny"), workdir, checkpoint="3", n=1, ks=[1],
                      num_prompts=2, progress=False)


def test_a_corrupted_newest_checkpoint_is_skipped_and_asked_for_is_an_error(workdir, tmp_path):
  copy = str(tmp_path / "run")
  shutil.copytree(workdir, copy)
  data_dir = os.path.join(copy, "checkpoints", "4", "state", "ocdbt.process_0", "d")
  path = max((os.path.join(data_dir, f) for f in os.listdir(data_dir)), key=os.path.getsize)
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0xFF  # bit rot: same size, no error from the array reader
  open(path, "wb").write(bytes(data))
  run = Run(load_config("quickstart", "tiny"))
  params, step = evaluate.restore_params(run, copy, "latest")
  assert step == 2  # the tiny run keeps steps 0, 2, 4
  expected, _ = evaluate.restore_params(run, copy, "2")
  for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(x, y)
  with pytest.raises(ValueError, match=r"checkpoints/4 is unreadable: .*sha256 differs"):
    evaluate.restore_params(run, copy, "4")
  assert sorted(os.listdir(os.path.join(copy, "checkpoints"))) == ["0", "2", "4"]  # not moved


def test_metrics_table_against_hand_computed_values():
  correct = np.array([[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], bool)
  answers = [["7", "8", "8", None], ["5"] * 4, [None] * 4]
  rows = evaluate.metrics_table(correct, answers, [1, 2, 4])
  # pass@k is the unbiased estimate from all n samples; maj@k and mean@k use the first k.
  assert rows[0] == pytest.approx({"k": 1, "pass@k": (0.25 + 1 + 0) / 3,
                                   "maj@k": (1 + 1 + 0) / 3, "mean@k": (1 + 1 + 0) / 3})
  # k=2: prompt 0 passes with 1 - C(3,2)/C(4,2) = 1/2; its first two samples tie 7 vs 8 -> 7.
  assert rows[1] == pytest.approx({"k": 2, "pass@k": (0.5 + 1) / 3, "maj@k": 2 / 3,
                                   "mean@k": (0.5 + 1) / 3})
  # k=4: "8" wins the vote (wrong) for prompt 0.
  assert rows[2] == pytest.approx({"k": 4, "pass@k": 2 / 3, "maj@k": 1 / 3,
                                   "mean@k": (0.25 + 1) / 3})


# ---------------------------------------------------------------------------------------------
# Nothing sampled is lost (these evaluate the initial weights: no training run needed)
# ---------------------------------------------------------------------------------------------
EVAL = dict(checkpoint="none", n=2, ks=[1, 2], num_prompts=6, batch_size=2, progress=False)


_STACK = evaluate._stack


class _Interrupted(Exception):
  pass


def _count_sampled_batches(monkeypatch, fail_after=None):
  """Counts the batches actually sampled (each is stacked once); raises after `fail_after`."""
  calls = []

  def counted(*args, **kwargs):
    if fail_after is not None and len(calls) == fail_after:
      raise _Interrupted
    calls.append(1)
    return _STACK(*args, **kwargs)

  monkeypatch.setattr(evaluate, "_stack", counted)
  return calls


def _prompt_lines(result):
  with open(result["prompts_path"]) as f:
    return [json.loads(line) for line in f]


def test_interrupted_evaluation_resumes_without_resampling_done_prompts(tmp_path, monkeypatch):
  straight = evaluate.run_eval(load_config(), str(tmp_path / "straight"), **EVAL)
  assert straight["resumed_prompts"] == 0

  workdir = str(tmp_path / "interrupted")
  sampled = _count_sampled_batches(monkeypatch, fail_after=2)
  with pytest.raises(_Interrupted):
    evaluate.run_eval(load_config(), workdir, **EVAL)
  assert sampled == [1, 1] and not glob.glob(os.path.join(workdir, "eval_*.json"))
  [log] = glob.glob(os.path.join(workdir, "eval_none_*.prompts.jsonl"))
  with open(log, "a") as f:  # a kill mid-write leaves a torn line
    f.write('{"index": 4, "prompt": "12+')

  sampled = _count_sampled_batches(monkeypatch)
  resumed = evaluate.run_eval(load_config(), workdir, **EVAL)
  assert sampled == [1]  # only the third batch; the first two were on disk
  assert resumed["resumed_prompts"] == 4
  assert resumed["table"] == straight["table"]
  assert resumed["samples"] == straight["samples"]
  assert _prompt_lines(resumed) == _prompt_lines(straight)  # same header, same records

  sampled = _count_sampled_batches(monkeypatch)  # done: a rerun samples nothing
  again = evaluate.run_eval(load_config(), workdir, **{**EVAL, "ks": [1]})
  assert sampled == [] and again["table"] == straight["table"][:1]


def test_other_settings_do_not_overwrite_an_evaluation(tmp_path):
  workdir = str(tmp_path)
  first = evaluate.run_eval(load_config(), workdir, **EVAL)
  with open(first["path"]) as f:
    before = f.read()
  other_n = evaluate.run_eval(load_config(), workdir, **{**EVAL, "n": 3})
  other_t = evaluate.run_eval(load_config(), workdir, **{**EVAL, "temperature": 0.5})
  paths = {first["path"], other_n["path"], other_t["path"]}
  assert len(paths) == 3 and all(os.path.exists(p) for p in paths)
  with open(first["path"]) as f:
    assert f.read() == before
  assert (other_n["settings"]["n"], other_t["settings"]["temperature"]) == (3, 0.5)
  assert len(_prompt_lines(first)) == 1 + EVAL["num_prompts"]


def test_other_weights_under_the_same_step_never_resume_old_samples(tmp_path, monkeypatch):
  """A step retrained into different weights (same label, same settings) starts afresh."""
  workdir = str(tmp_path)
  first = evaluate.run_eval(load_config(), workdir, **EVAL)
  with open(first["prompts_path"]) as f:
    before = f.read()
  restore = evaluate.restore_params

  def retrained(*args):
    params, step = restore(*args)
    return jax.tree.map(lambda x: x * 1.01, params), step

  monkeypatch.setattr(evaluate, "restore_params", retrained)
  sampled = _count_sampled_batches(monkeypatch)
  other = evaluate.run_eval(load_config(), workdir, **EVAL)
  assert other["resumed_prompts"] == 0 and len(sampled) == 3  # every batch sampled again
  assert other["prompts_path"] != first["prompts_path"]
  assert other["settings"]["weights"] != first["settings"]["weights"]
  with open(first["prompts_path"]) as f:
    assert f.read() == before


def test_bad_k_and_unwritable_outputs_fail_before_sampling(tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  done = evaluate.run_eval(load_config(), workdir, **EVAL)
  sampled = _count_sampled_batches(monkeypatch)
  with pytest.raises(ValueError, match="no k in 1..n=2"):
    evaluate.run_eval(load_config(), workdir, **{**EVAL, "ks": [4, 8]})
  # A workdir under a regular file cannot be created, even by root.
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(ValueError, match="cannot write evaluation results"):
    evaluate.run_eval(load_config(), str(blocker / "run"), **EVAL)
  # The result's own name taken by a directory: found before sampling, not after.
  os.remove(done["path"])
  os.remove(done["prompts_path"])
  os.mkdir(done["path"])
  with pytest.raises(ValueError, match="is a directory"):
    evaluate.run_eval(load_config(), workdir, **EVAL)
  assert sampled == []
  assert not os.path.exists(done["prompts_path"])
