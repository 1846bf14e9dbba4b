"""Every config leaf has a declared rule, and the rules refuse what the code cannot run."""

import glob
import os
import re

import pytest

from rlvr_jax import config_rules, configs_base
from rlvr_jax.algorithms import registry
from rlvr_jax.config_rules import Choice, Float, Int
from tests.helpers import ROOT, load_config

_NO_SUCH_VARIANT = "__no_such_variant__"


def _variants(path: str) -> list[str | None]:
  """The arguments `get_config` accepts, read from its own unknown-variant error ("known: ...")."""
  variants = [None]
  with pytest.raises(ValueError, match="known: ") as e:
    configs_base.load_config(f"{path}:{_NO_SUCH_VARIANT}")
  known = str(e.value).split("known: ", 1)[1]
  variants += re.findall(r"[A-Za-z_]\w*", known)
  return variants


def _all_configs() -> list[tuple[str, object]]:
  out = []
  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
    for arg in _variants(path):
      try:
        config = configs_base.load_config(path if arg is None else f"{path}:{arg}")
      except ValueError as e:  # a config whose variant is required (bench.py)
        assert arg is None and "unknown variant None" in str(e), e
        continue
      out.append((f"{os.path.basename(path)}:{arg}", config))
  return out


CONFIGS = _all_configs()


def test_every_config_file_and_variant_is_walked():
  names = {name for name, _ in CONFIGS}
  files = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))}
  assert {n.split(":")[0] for n in names} == files
  assert {"quickstart.py:tiny", "bench.py:larger", "pure_addition.py:sum",
          "gsm8k_qwen25_05b.py:smoke", "smollm2_arithmetic.py:tiny"} <= names


@pytest.mark.parametrize("name,config", CONFIGS, ids=[n for n, _ in CONFIGS])
def test_every_leaf_has_a_rule_and_passes_it(name, config):
  unruled = [p for p, _ in config_rules.leaves(config, configs_base.RULES)
             if p not in configs_base.RULES]
  assert not unruled, f"{name}: leaves without a rule in configs_base.RULES: {unruled}"
  assert config_rules.violations(config, configs_base.RULES) == [], name


def test_every_rule_names_a_leaf():
  paths = {p for _, c in CONFIGS for p, _ in config_rules.leaves(c, configs_base.RULES)}
  assert set(configs_base.RULES) <= paths, set(configs_base.RULES) - paths


def test_a_field_without_a_rule_is_refused():
  config = load_config()
  config.unlock()
  config.rl.new_knob = 3
  with pytest.raises(ValueError, match=r"config\.rl\.new_knob: is not a field of the run config, "
                     r"or has no validation rule"):
    configs_base.validate(config)


# The values of issue 10 that used to be accepted and failed late (or never).
@pytest.mark.parametrize("path,value,reason", [
    ("rl.max_new_tokens", -1, ">= 0"),
    ("rl.ppo_epochs", 0, ">= 1"),
    ("rl.top_k", -1, ">= 0"),
    ("rl.optimizer.schedule", "cosin", "one of 'constant', 'cosine'"),
    ("task.name", "additon", "one of"),
    ("algorithm.high_entropy_frac", 0.0, r"in \(0, 1\]"),
    ("algorithm.max_len", 0, ">= 1"),
    ("rl.temperature", float("nan"), "finite"),
])
def test_rule_refuses(path, value, reason):
  config = load_config()
  *parents, leaf = path.split(".")
  node = config
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(ValueError, match=rf"^config\.{re.escape(path)}: must be .*{reason}"):
    configs_base.validate(config)


# The same values of issue 10 for the method's hyperparameters, now each component's range.
@pytest.mark.parametrize("algorithm,field,reason", [
    (dict(terms=dict(kl=dict(kind="k9"))), "algorithm.terms.kl",
     r"term 'kl': 'kind' must be one of \('k1', 'k2', 'k3', 'abs'\)"),
    (dict(policy_loss_kw=dict(dual_clip=0.5)), "algorithm.policy_loss_kw",
     r"policy loss 'ppo': 'dual_clip' must be > 1, got 0.5"),
    (dict(policy_loss_kw=dict(clip_low=-0.1)), "algorithm.policy_loss_kw",
     r"policy loss 'ppo': 'clip_low' must be in \[0, 1\), got -0.1"),
    (dict(policy_loss_kw=dict(clip_low=1.0)), "algorithm.policy_loss_kw",
     r"policy loss 'ppo': 'clip_low' must be in \[0, 1\), got 1.0"),
    (dict(advantage="dapo", advantage_kw=dict(overlong_buffer_len=-4)), "algorithm.advantage_kw",
     r"advantage 'dapo': 'overlong_buffer_len' must be >= 0, got -4"),
    (dict(terms=dict(kl=dict(coef=-0.01))), "algorithm.terms.kl",
     r"term 'kl': 'coef' must be >= 0, got -0.01"),
    (dict(advantage="pure_min", advantage_kw=dict(temperature=0.0)), "algorithm.advantage_kw",
     r"advantage 'pure_min': 'temperature' must be > 0, got 0.0"),
])
def test_component_rule_refuses(algorithm, field, reason):
  config = load_config()
  with config.unlocked():
    config.algorithm.update(algorithm)
  with pytest.raises(ValueError, match=rf"^config\.{re.escape(field)}: {reason}"):
    configs_base.validate(config)


def test_overlong_buffer_must_fit_the_completion_budget():
  config = load_config()
  with config.unlocked():
    config.algorithm.update(max_len=16, advantage="dapo",
                            advantage_kw=dict(overlong_buffer_len=17))
  with pytest.raises(ValueError,
                     match=r"config\.algorithm\.advantage_kw\.overlong_buffer_len: 17 is longer"):
    configs_base.validate(config)
  config.algorithm.advantage_kw.overlong_buffer_len = 16
  configs_base.validate(config)


def test_inverted_entropy_mask_needs_a_fraction():
  config = load_config()
  config.algorithm.high_entropy_invert = True
  with pytest.raises(ValueError, match=r"config\.algorithm\.high_entropy_invert: .*needs"):
    configs_base.validate(config)
  config.algorithm.high_entropy_frac = 0.2
  configs_base.validate(config)


def test_an_estimator_registered_after_import_is_accepted():
  registry.register_advantage("test_only_estimator")(lambda x: None)
  try:
    config = load_config()
    config.algorithm.advantage = "test_only_estimator"
    configs_base.validate(config)
  finally:
    del registry.ADVANTAGES["test_only_estimator"]


def test_rules_compare_types_and_bounds():
  assert Int(ge=0).check(True) is not None  # a bool is not an int
  assert Int(ge=1, optional=True).check(None) is None
  assert Float(gt=1, optional=True).check(3) is None  # an int is a number
  assert Float(gt=0, le=1).check(1.0) is None and Float(gt=0, le=1).check(0.0) is not None
  assert Float().check(float("inf")) is not None
  assert Choice("none", False, True).check(0) is not None  # 0 == False, but not a bool
  assert Choice(None, "float32").check(None) is None
