"""Every notebook in colabs/ executes top to bottom and its last cell prints what it promises; the
committed notebooks carry no outputs."""

import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import ROOT

NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "colabs", "*.ipynb")))
# What each notebook's last code cell prints; the cells before it assert their own checks
# (TEMPO against a slow prefix tree, pass@k against run_eval's table, reward_fn against verify).
FINAL_OUTPUT = {
    "quickstart.ipynb": "held-out greedy accuracy after RL:",
    "credit_assignment.ipynb": "80/20 mask keeps",
    "evaluation.ipynb": "pass@1",
    "custom_reward.ipynb": "digit_sum: held-out greedy accuracy",
    "your_own_method.ipynb": "your method: held-out greedy accuracy",
}


def _text(cell) -> str:
  return "".join(o.get("text", "") for o in cell.get("outputs", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_executes(path, tmp_path, monkeypatch):
  monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel's run directories go where pytest cleans
  nb = nbformat.read(path, as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": os.path.dirname(path)}}).execute()
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert FINAL_OUTPUT[os.path.basename(path)] in _text(code[-1]), _text(code[-1])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_committed_clean(path):
  """Stripped of outputs (nbformat: outputs = [], execution_count = None), set up for Colab in its
  first code cell, and named in FINAL_OUTPUT."""
  assert os.path.basename(path) in FINAL_OUTPUT, "add the notebook's final output to FINAL_OUTPUT"
  nb = nbformat.read(path, as_version=4)
  code = [c for c in nb.cells if c.cell_type == "code"]
  dirty = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
  assert not dirty, f"code cells {dirty} keep outputs or execution counts; strip them"
  assert "google.colab" in code[0].source


def test_every_expected_notebook_exists():
  assert sorted(FINAL_OUTPUT) == sorted(map(os.path.basename, NOTEBOOKS))
