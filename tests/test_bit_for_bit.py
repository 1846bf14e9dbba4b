"""The shipped configs reproduce, row for row, the metrics recorded at an earlier commit
(tests/golden/, see its README.md): quickstart:tiny in full, and every recipe's `cpu` variant
with `rl.steps = 2` (1-shot RLVR: its `cpu_history` run, then `cpu` on that history).

Rows are compared exactly (same rows, keys and values by `==`, no tolerance) after dropping the
wall-clock keys (`*_time_s`) and replacing absolute paths by a marker (`helpers.golden_row`).
The configs are loaded from the shipped files and only `rl.steps` (and the 1-shot run's
`data.one_shot_from`) is set, so the test reads whatever spelling those files use. The
ablations' --tiny rows are checked by the tests/test_ablation_*.py tests themselves.

The recipes take one to two minutes each on an idle 2-core CPU (their `cpu` variants keep the
quickstart's SFT warm start to 50% held-out accuracy, 450-500 SFT steps), hence `slow`.
"""

import os

import pytest

from rlvr_jax import configs_base
from tests.helpers import ROOT, assert_matches_golden, golden_rows, load_golden

_RECIPES = os.path.join(ROOT, "configs", "recipes")
# The recipes recorded in tests/golden/recipes_cpu.json (one_shot_rlvr: its two runs, together).
_RECORDED = sorted({run.split(":")[0] for run in load_golden("recipes_cpu")})


def _train(spec: str, workdir: str, **overrides) -> list[dict]:
  """Trains `spec` ("path[:variant]") into `workdir` with the dotted `overrides`; its rows."""
  from rlvr_jax.training import loop
  config = configs_base.load_config(spec)
  with config.unlocked():
    config.update_from_flattened_dict(overrides)
  loop.train(config, workdir, progress=False)
  return golden_rows(workdir)


def test_quickstart_tiny_matches_golden(tmp_path):
  rows = _train(os.path.join(ROOT, "configs", "quickstart.py:tiny"), str(tmp_path / "run"))
  assert_matches_golden("quickstart_tiny", {"quickstart:tiny": rows})


@pytest.mark.slow
@pytest.mark.parametrize("recipe", _RECORDED)
def test_recipe_cpu_two_steps_matches_golden(recipe, tmp_path):
  path = os.path.join(_RECIPES, f"{recipe}.py")
  if recipe == "one_shot_rlvr":  # the 1-shot run picks its example from a history run
    history = str(tmp_path / "history")
    runs = {f"{recipe}:cpu_history": _train(f"{path}:cpu_history", history,
                                            **{"rl.steps": 2})}
    runs[f"{recipe}:cpu"] = _train(f"{path}:cpu", str(tmp_path / "run"),
                                   **{"rl.steps": 2, "data.one_shot_from": history})
  else:
    runs = {f"{recipe}:cpu": _train(f"{path}:cpu", str(tmp_path / "run"), **{"rl.steps": 2})}
  assert_matches_golden("recipes_cpu", runs, only=list(runs))
