"""The optional Weights & Biases writer, in wandb's offline mode: the logged rows and the config
read back from the offline run file; nothing of wandb is loaded unless it is turned on."""

import glob
import json
import math
import os
import struct
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT
from rlvr_jax import configs_base
from rlvr_jax.training import metrics


def _records(path):
  """The protobuf records of a wandb run file (a LevelDB-style log: 7-byte file header, then
  chunks with a 7-byte header <crc32, length, type> in 32 KiB blocks; FULL=1, FIRST=2, MIDDLE=3,
  LAST=4)."""
  from wandb.proto import wandb_internal_pb2
  with open(path, "rb") as f:
    data = f.read()
  if data[:4] != b":W&B":  # not written yet
    return []
  pos, pending, out = 7, b"", []
  while pos + 7 <= len(data):
    room = 32768 - pos % 32768
    if room < 7:  # the block's tail is padding
      pos += room
      continue
    _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
    if kind == 0:
      break
    pending += data[pos + 7:pos + 7 + length]
    pos += 7 + length
    if kind in (1, 4):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(pending)
      out.append(record)
      pending = b""
  return out


def _offline_run(wandb_dir, run_id):
  """(run records, history {step: row}, config records) of every offline run file of `run_id`
  (a resumed run adds one)."""
  paths = glob.glob(os.path.join(wandb_dir, "wandb", f"offline-run-*-{run_id}", "run-*.wandb"))
  deadline = time.time() + 60
  while True:  # wandb's service may still be writing a file after run.finish() returned
    per_file = [_records(path) for path in sorted(paths)]
    if all(rs and rs[-1].WhichOneof("record_type") == "exit" for rs in per_file):
      break
    assert time.time() < deadline, f"no exit record in {paths}"
    time.sleep(0.2)
  records = [r for rs in per_file for r in rs]
  runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
  history = {}
  for r in records:
    if r.WhichOneof("record_type") == "history":
      items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json.replace("NaN", "null"))
               for i in r.history.item}
      history[r.history.step.num] = {k: v for k, v in items.items() if not k.startswith("_")}
  configs = [r for r in records if r.WhichOneof("record_type") == "config"]
  return runs, history, configs


@pytest.fixture
def offline(tmp_path, monkeypatch):
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_DIR", str(tmp_path))
  monkeypatch.setenv("WANDB_SILENT", "true")
  return tmp_path


def test_rows_and_config_reach_the_offline_run(offline):
  config = configs_base.base_config()
  config.logging.update(wandb=True, wandb_project="proj")
  config.seed = 7
  workdir = offline / "my_run"
  workdir.mkdir()
  writer = metrics.make_writer(str(workdir), resume_step=None, config=config)
  writer.write(0, {"phase": "sft", "eval_accuracy": 0.25})
  writer.write(1, {"phase": "rl", "reward_mean": 0.5, "loss": math.nan, "done": True})
  writer.close()
  run_id = (workdir / "wandb_run_id").read_text().strip()
  [run], history, configs = _offline_run(offline, run_id)
  assert (run.project, run.display_name, run.run_id) == ("proj", "my_run", run_id)
  logged = {i.key: json.loads(i.value_json) for i in run.config.update if i.key != "_wandb"}
  assert logged == json.loads(config.to_json_best_effort())  # the whole config, once
  assert logged["seed"] == 7 and logged["logging"]["wandb"] is True
  assert not [c for c in configs if any(i.key == "seed" for i in c.update)]
  assert history == {0: {"eval_accuracy": 0.25}, 1: {"reward_mean": 0.5, "loss": None}}
  with open(workdir / "metrics.jsonl") as f:  # beside metrics.jsonl, not instead of it
    assert [json.loads(line)["step"] for line in f] == [0, 1]

  # A resumed run continues the same wandb run.
  writer = metrics.make_writer(str(workdir), resume_step=1, config=config)
  writer.write(2, {"phase": "rl", "reward_mean": 0.75})
  writer.close()
  assert (workdir / "wandb_run_id").read_text().strip() == run_id
  runs, history, _ = _offline_run(offline, run_id)
  assert {r.run_id for r in runs} == {run_id} and history[2] == {"reward_mean": 0.75}


def test_off_by_default_and_never_imported(tmp_path):
  code = ("import sys\n"
          "from rlvr_jax import configs_base\n"
          "from rlvr_jax.training import metrics\n"
          f"w = metrics.make_writer({str(tmp_path)!r}, resume_step=None,\n"
          "                         config=configs_base.base_config())\n"
          "w.write(0, {'reward_mean': 0.5})\n"
          "w.close()\n"
          "assert 'wandb' not in sys.modules, 'wandb was imported'\n")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert not os.path.exists(tmp_path / "wandb") and not os.path.exists(tmp_path / "wandb_run_id")


def test_missing_extra_is_a_config_error(monkeypatch):
  import importlib.util
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "wandb" else find_spec(name, *a))
  config = configs_base.base_config()
  config.logging.wandb = True
  with pytest.raises(ValueError, match=r"config.logging.wandb: True needs the \[wandb\] extra"):
    configs_base.validate(config)
