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


def run_experiment_tiny(script: str, out, workdir, *args: str) -> None:
  """Runs `python experiments/<script> --tiny --out OUT --workdir WORKDIR *args` from the
  repository root; fails the test with the script's stderr tail if it exits non-zero."""
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", script), "--tiny", *args,
       "--out", str(out), "--workdir", str(workdir)],
      cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
      timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
