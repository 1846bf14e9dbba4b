"""Small builders shared by the training tests."""

import os
import subprocess
import sys

import ml_collections

from rlvr_jax.configs_base import load_config as _load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str = "quickstart", arg: str | None = "tiny") -> ml_collections.ConfigDict:
  path = os.path.join(ROOT, "configs", f"{name}.py")
  return _load(f"{path}:{arg}" if arg else path)


def rl_run(config: ml_collections.ConfigDict | None = None, **overrides):
  """`run.Run` of `config` (default: quickstart:tiny) with dotted-path `overrides` applied."""
  from rlvr_jax.training.run import Run
  config = load_config() if config is None else config
  config.update_from_flattened_dict(overrides)
  return Run(config)


def device_batches(run, n: int, batch_size: int | None = None) -> list:
  """`n` device batches of the run's RL training split (seed 0), `batch_size` prompts each
  (default: what one RL step samples, `run.rl_prompts_per_step`)."""
  it = iter(run.dataset("train", batch_size or run.rl_prompts_per_step, seed=0, shuffle=True,
                        size=1000))
  return [run.device_batch(next(it)) for _ in range(n)]


def run_experiment_tiny(script: str, out, workdir, *args: str) -> None:
  """Runs `python experiments/<script> --tiny --out OUT --workdir WORKDIR *args` from the
  repository root; fails the test with the script's stderr tail if it exits non-zero."""
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", script), "--tiny", *args,
       "--out", str(out), "--workdir", str(workdir)],
      cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
      timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
