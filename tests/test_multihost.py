"""Two processes on localhost (CPU, gloo collectives) train like one: same data, same params.

The 2-process run goes through the real entry point (`python -m rlvr_jax.main
--config.distributed=True`), each process loading only its rows of every batch; a 1-process run
of the same config is the reference.
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from rlvr_jax.checkpoints import integrity
from rlvr_jax.data import pipeline, synthetic
from tests.helpers import ROOT

# NSR gives non-zero gradients from an untrained policy; no warm-up, so RL visibly moves it.
ARGS = ["--config=configs/quickstart.py:tiny", "--noprogress", "--config.algorithm.advantage=nsr",
        "--config.rl.optimizer.warmup_steps=0"]
TIMEOUT_S = 300  # all children together


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(workdir, *, devices: int, extra_env: dict | None = None, args=()):
  """Starts one child; its stdout/stderr go to files next to `workdir` (a pipe left unread
  could fill and stall a process that its peer is waiting for in a collective)."""
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **(extra_env or {}))
  log = f"{workdir}.{(extra_env or {}).get('JAX_PROCESS_ID', 'only')}"
  with open(log + ".out", "w") as stdout, open(log + ".err", "w") as stderr:
    proc = subprocess.Popen([sys.executable, "-m", "rlvr_jax.main", f"--workdir={workdir}",
                             *ARGS, *args], cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
  return proc, log


def _wait_all(procs: dict) -> dict[str, tuple[int | None, str, str]]:
  """Waits for every child (killing all at the deadline) and asserts they succeeded, showing
  each child's stderr otherwise. Returns name -> (returncode, stdout, stderr)."""
  deadline = time.monotonic() + TIMEOUT_S
  for proc, _ in procs.values():
    try:
      proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      break
  for proc, _ in procs.values():
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  out = {name: (proc.returncode, open(log + ".out").read(), open(log + ".err").read())
         for name, (proc, log) in procs.items()}
  report = "\n".join(f"--- {name} (rc={rc})\n{stdout[-1500:]}\n{stderr[-5000:]}"
                     for name, (rc, stdout, stderr) in out.items())
  assert all(rc == 0 for rc, _, _ in out.values()), report
  return out


def _params(workdir, step):
  """Params saved at `step`, restored onto this (single) process's first device."""
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  checkpointer = ocp.StandardCheckpointer()
  metadata = checkpointer.metadata(path)
  metadata = getattr(metadata, "item_metadata", metadata)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        metadata)
  return jax.tree.map(np.asarray, checkpointer.restore(path, target)["params"])


def _max_abs_diff(a, b) -> float:
  return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_process_rows_of_each_batch_stack_into_the_global_batch():
  task = synthetic.make_task("addition", digits=3, scratchpad=True)
  tokenizer = synthetic.build_tokenizer([task])
  shapes = pipeline.task_shapes(task, tokenizer)
  for shuffle, size in ((True, 1000), (False, 16)):
    source = pipeline.TaskSource(task, "train", 3, size)
    make = lambda rows: iter(pipeline.make_dataset(source, tokenizer, shapes, 8, seed=3,
                                                   shuffle=shuffle, repeat=shuffle, rows=rows))
    full, parts = make(None), [make((0, 2)), make((2, 8))]
    for _ in range(3 if shuffle else 2):
      batch, pieces = next(full), [next(p) for p in parts]
      for k, v in batch.items():
        np.testing.assert_array_equal(v, np.concatenate([p[k] for p in pieces]))


@pytest.mark.slow  # 40-70 s on 2 cores (70 with a cold XLA cache): three runs, two in lockstep
def test_two_processes_match_one(tmp_path):
  multi, single = tmp_path / "two_processes", tmp_path / "one_process"
  port = _free_port()
  procs = {f"process {i}": _launch(multi, devices=1, args=["--config.distributed=True"],
                                   extra_env=dict(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                                                  JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}",
                                                  JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
           for i in range(2)}
  procs["single process"] = _launch(single, devices=1)
  out = _wait_all(procs)

  assert "process 0 of 2" in out["process 0"][2] and "process 1 of 2" in out["process 1"][2]
  summary = json.loads(out["process 0"][1].split("summary: ")[-1])
  assert summary["rl_steps"] == 4
  assert "summary: {}" in out["process 1"][1]  # only process 0 reads back metrics
  # Process 0 alone wrote metrics (one line a step), TensorBoard, config and tokenizer.
  rows = [json.loads(line) for line in open(multi / "metrics.jsonl")]
  assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
  assert [r["step"] for r in rows if "eval_accuracy" in r] == [0, 2, 4]
  assert len(os.listdir(multi / "tensorboard")) == 1
  assert (multi / "config.json").exists() and (multi / "tokenizer.model").exists()
  assert sorted(int(d) for d in os.listdir(multi / "checkpoints") if d.isdigit()) == [0, 2, 4]
  for step in (0, 2, 4):  # process 0's manifest covers what both processes wrote
    step_dir = str(multi / "checkpoints" / str(step))
    assert integrity.manifest_problem(step_dir) is None
    assert any(f.startswith("state/ocdbt.process_1/") for f in integrity._files(step_dir))

  moved = _max_abs_diff(_params(multi, 0), _params(multi, 4))
  diff = _max_abs_diff(_params(multi, 4), _params(single, 4))
  print(f"max_abs_diff two vs one process: {diff:.3g} (RL moved params by {moved:.3g})")
  assert moved > 1e-4, moved  # the RL steps did change the policy
  assert diff < 1e-5, diff
  # Same prompts and samples: the sampled lengths and rewards agree step by step.
  reference = [json.loads(line) for line in open(single / "metrics.jsonl")]
  for key in ("reward_mean", "completion_tokens"):
    assert [r.get(key) for r in rows] == [r.get(key) for r in reference], key
