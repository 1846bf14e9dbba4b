"""The installed commands (setup.py console_scripts) are the `python -m` entry points, and their
`--help` lists each command's own flags with one-line meanings, not the libraries'."""

import ast
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT

# console script -> (module of `python -m`, module:function setup.py installs, its flags)
COMMANDS = {
    "rlvr-train": ("rlvr_jax.main", "rlvr_jax.main:run", {"config", "workdir", "progress"}),
    "rlvr-eval": ("rlvr_jax.evaluate", "rlvr_jax.evaluation.main:run",
                  {"config", "workdir", "checkpoint", "n", "k", "temperature", "num_prompts",
                   "batch_size", "progress"}),
    "rlvr-export": ("rlvr_jax.export", "rlvr_jax.export:run",
                    {"workdir", "checkpoint", "out", "lora"}),
    "rlvr-plot": ("rlvr_jax.plot", "rlvr_jax.plot:run", {"workdir", "out"}),
    "rlvr-prepare-dph": ("rlvr_jax.prepare_dph", "rlvr_jax.prepare_dph:run",
                         {"config", "out", "samples", "min_pass_rate", "stored_samples",
                          "batch_size", "workdir", "checkpoint", "progress"}),
}


def _console_scripts():
  """setup.py's console_scripts, read from its source (no install needed)."""
  with open(os.path.join(ROOT, "setup.py")) as f:
    tree = ast.parse(f.read())
  for node in ast.walk(tree):
    if isinstance(node, ast.keyword) and node.arg == "entry_points":
      scripts = ast.literal_eval(node.value)["console_scripts"]
      return dict(s.replace(" ", "").split("=") for s in scripts)
  raise AssertionError("setup.py has no entry_points")


def test_setup_installs_the_commands():
  assert _console_scripts() == {name: entry for name, (_, entry, _) in COMMANDS.items()}


def _help(argv):
  proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "PYTHONPATH": ROOT})
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_lists_our_flags_with_meanings(command):
  module, entry, flags = COMMANDS[command]
  target, function = entry.split(":")
  # As the installed script runs it: argv[0] is the command name, not a module's file.
  installed = _help([sys.executable, "-c", f"import sys; sys.argv = [{command!r}, '--help']; "
                     f"from {target} import {function}; {function}()"])
  assert installed == _help([sys.executable, "-m", module, "--help"])  # the same command
  listed = dict(re.findall(r"^  --(?:\[no\])?(\w+): (.+)$", installed, re.M))
  assert set(listed) == flags, installed  # ours only: no absl / jax / library flags
  assert all(len(meaning) > 5 for meaning in listed.values())
  assert command in installed  # the usage names the command
