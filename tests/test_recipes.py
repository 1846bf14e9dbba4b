"""Every recipe in configs/recipes/: each variant loads, has a rule for every field and passes the
config checks (no training), has a `cpu` variant, cites its paper, and has a row in the table."""

import glob
import os
import re

import pytest

from rlvr_jax import config_rules, configs_base
from tests.helpers import ROOT

_DIR = os.path.join(ROOT, "configs", "recipes")
_FILES = sorted(p for p in glob.glob(os.path.join(_DIR, "*.py"))
                if not os.path.basename(p).startswith("_"))


def _variants(path: str) -> list[str | None]:
  """None plus the variants `get_config` names in its unknown-variant error ("known: a, b")."""
  with pytest.raises(ValueError, match="known: ") as e:
    configs_base.load_config(f"{path}:__no_such_variant__")
  return [None] + re.findall(r"[A-Za-z_]\w*", str(e.value).split("known: ", 1)[1])


_CASES = [(os.path.basename(p), v) for p in _FILES for v in _variants(p)]


def test_the_recipes_are_found():
  assert {"dr_grpo.py", "one_shot_rlvr.py"} <= {os.path.basename(p) for p in _FILES}


@pytest.mark.parametrize("name,variant", _CASES, ids=[f"{n}:{v}" for n, v in _CASES])
def test_every_variant_passes_the_config_checks(name, variant, tmp_path):
  """A field the recipe marks `config_rules.REQUIRED` (the 1-shot runs' data.one_shot_from) stops
  the checks, naming the field, until it is given: here a stand-in earlier run's workdir."""
  path = os.path.join(_DIR, name)
  config = configs_base.load_config(path if variant is None else f"{path}:{variant}")
  required = [p for p, v in config_rules.leaves(config, configs_base.RULES)
              if v == config_rules.REQUIRED]
  assert config_rules.violations(config, configs_base.RULES) == [
      f"config.{p}: this config needs a value: pass --config.{p}=..." for p in required]
  if required:
    with pytest.raises(ValueError, match=rf"config\.{required[0]}: this config needs a value"):
      configs_base.validate(config)
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "checkpoints").mkdir()  # an earlier run's workdir, for sft.init_from
    config.update_from_flattened_dict({p: str(tmp_path) for p in required})
  configs_base.validate(config)


def test_the_one_shot_runs_require_the_history_run():
  config = configs_base.load_config(os.path.join(_DIR, "one_shot_rlvr.py:cpu"))
  assert config.data.one_shot_from == config_rules.REQUIRED
  history = configs_base.load_config(os.path.join(_DIR, "one_shot_rlvr.py:cpu_history"))
  assert history.data.one_shot_from == ""


@pytest.mark.parametrize("path", _FILES, ids=os.path.basename)
def test_each_recipe_has_a_cpu_variant_a_paper_and_a_table_row(path):
  name = os.path.basename(path)
  assert "cpu" in _variants(path), f"{name}: no `cpu` variant"
  cpu = configs_base.load_config(f"{path}:cpu")
  assert cpu.init.kind == "scratch", f"{name}:cpu must run without a checkpoint"
  with open(path, encoding="utf-8") as f:
    doc = f.read()
  assert re.search(r"arXiv \d{4}\.\d{4,5}", doc), f"{name}: the docstring cites no arXiv paper"
  assert "Deviation" in doc, f"{name}: the docstring lists no deviations"
  with open(os.path.join(_DIR, "README.md"), encoding="utf-8") as f:
    rows = [line for line in f if line.startswith("|") and f"`{name}`" in line]
  assert rows, f"configs/recipes/README.md has no row for {name}"
