"""Components declare themselves: hyperparameters and defaults come from the registered function's
keyword arguments, validation reads the declarations (needs, requires, checks), and the runner
builds exactly what the chosen components need."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rlvr_jax import algorithms, configs_base
from rlvr_jax.algorithms import method as method_lib
from rlvr_jax.algorithms import registry
from tests.helpers import load_config, rl_run


def _alg(**fields):
  alg = configs_base.base_config().algorithm
  alg.update(fields)
  return alg


def _problems(group_size=4, **fields):
  return method_lib.problems(_alg(**fields), group_size=group_size)


def test_hyperparameters_and_defaults_come_from_the_signature():
  assert registry.ADVANTAGES["grpo"].hyperparameters == {"eps": 1e-6}
  assert registry.ADVANTAGES["dr_grpo"].hyperparameters == {}
  assert registry.POLICY_LOSSES["ppo"].hyperparameters == {
      "clip_low": 0.2, "clip_high": 0.2, "dual_clip": None}  # agg, max_len, normalizer: context
  assert registry.POLICY_LOSSES["gspo"].hyperparameters == {"clip_low": 3e-4, "clip_high": 4e-4}
  assert registry.TERMS["kl"].hyperparameters == {"coef": 0.001, "kind": "k3"}
  assert registry.TERMS["value"].trains == "critic"
  assert registry.TERMS["prime"].provides == ("process_rewards",)


def test_every_registered_component_declares_known_needs():
  for reg in (registry.ADVANTAGES, registry.POLICY_LOSSES, registry.TERMS):
    for name, component in reg.items():
      assert component.needs <= set(registry.NEEDS), name
      assert component.trains in registry.TRAINS, name
      for hp, default in component.hyperparameters.items():  # every default passes its checks
        assert component.check({hp: default}) is None, (name, hp)


def test_resolved_method_has_every_default_and_the_overrides():
  m = method_lib.Method.from_config(_alg(
      advantage="dapo", advantage_kw=dict(overlong_buffer_len=4),
      terms=dict(kl=dict(coef=0.01), entropy=None)))
  assert dict(m.advantage.kw) == {"eps": 1e-6, "overlong_buffer_len": 4}
  assert [t.name for t in m.terms] == ["kl"]  # a term set to None is off
  assert m.needs == {"group", "ref_logp"} and m.needs_reference and not m.has_critic
  assert m.summary()["terms"] == {"kl": {"coef": 0.01, "kind": "k3"}}


@pytest.mark.parametrize("fields,group_size,message", [
    (dict(advantage_kw=dict(epss=1e-5)), 4,
     "config.algorithm.advantage_kw: advantage 'grpo' has no hyperparameter 'epss' (did you mean "
     "'eps'?); valid: eps"),
    (dict(policy_loss_kw=dict(clip_low="0.2")), 4,
     "config.algorithm.policy_loss_kw: policy loss 'ppo': 'clip_low' must be like its default "
     "0.2, got '0.2'"),
    (dict(policy_loss_kw=dict(clip_low=1.5)), 4,
     "config.algorithm.policy_loss_kw: policy loss 'ppo': 'clip_low' must be in [0, 1), got 1.5"),
    (dict(advantage="dr_grpo", advantage_kw=dict(eps=1e-5)), 4,
     "config.algorithm.advantage_kw: advantage 'dr_grpo' has no hyperparameter 'eps'; valid: "
     "none"),
    (dict(terms=dict(kll=dict(coef=0.1))), 4,
     "config.algorithm.terms.kll: Unknown term 'kll' (did you mean 'kl'?)"),
    (dict(terms=dict(kl=dict(kind="k5"))), 4,
     "config.algorithm.terms.kl: term 'kl': 'kind' must be one of"),
    (dict(policy_loss="gspo"), 4,
     "config.algorithm.loss_agg: policy loss 'gspo' needs loss_agg='seq-mean-token-mean', got "
     "'token-mean'"),
    (dict(advantage="lite_ppo", loss_agg="token-sum"), 4,
     "config.algorithm.loss_agg: advantage 'lite_ppo' needs loss_agg='token-mean'"),
    (dict(), 1, "config.rl.group_size: advantage 'grpo' uses a group baseline and needs "
     "group_size >= 2, got 1"),
    (dict(advantage="gae"), 4, "config.algorithm.terms: advantage 'gae' reads critic values, and "
     "no listed term trains the critic; add one of algorithm.terms.value = {}"),
    (dict(terms=dict(value={})), 4, "config.algorithm.terms.value: term 'value' trains a critic"),
    (dict(advantage="prime"), 4, "config.algorithm.terms: advantage 'prime' reads process "
     "rewards that a term provides; add one of algorithm.terms.prime = {}"),
    (dict(advantage="prime", advantage_kw=dict(process_coef=0.0, outcome_coef=0.0),
          terms=dict(prime={})), 4,
     "advantage 'prime': needs a reward source: process_coef and outcome_coef are both 0"),
    (dict(terms=dict(chord=dict(mu_start=0.1, mu_end=0.5))), 4,
     "term 'chord': mu decays: mu_end (0.5) must not exceed mu_start (0.1)"),
])
def test_validation_reads_the_declarations(fields, group_size, message):
  bad = _problems(group_size, **fields)
  assert bad and message in bad[0], bad


def test_remax_needs_no_group_but_a_greedy_decode():
  assert _problems(1, advantage="remax") == []
  assert method_lib.Method.from_config(_alg(advantage="remax")).needs == {"greedy_rewards"}


def test_validate_refuses_before_anything_compiles():
  config = load_config()
  config.algorithm.advantage_kw = dict(epss=1e-5)
  with pytest.raises(ValueError, match=r"^config\.algorithm\.advantage_kw: advantage 'grpo' has "
                     r"no hyperparameter 'epss'"):
    configs_base.validate(config)


def test_a_misspelt_field_names_the_closest_one():
  config = load_config()
  with config.unlocked():
    config.rl.stpes = 3
  with pytest.raises(ValueError, match=r"config\.rl\.stpes: is not a field of the run config "
                     r"\(did you mean 'rl\.steps'\?\)"):
    configs_base.validate(config)


@pytest.mark.parametrize("fields,built", [
    (dict(), set()),
    (dict(terms=dict(kl={})), {"ref_params"}),
    (dict(advantage="gae", terms=dict(value={})), {"value_params", "value_opt_state"}),
    (dict(advantage="prime", terms=dict(prime={})),
     {"ref_params", "prime_params", "prime_opt_state"}),
])
def test_the_runner_builds_exactly_what_the_components_need(fields, built):
  config = load_config()
  config.algorithm.update(fields)
  run = rl_run(config)
  state = run.make_rl_state(run.init_params())
  optional = {"ref_params", "value_params", "value_opt_state", "prm_params", "prime_params",
              "prime_opt_state", "rollouts"}
  assert {f for f in optional if getattr(state, f) is not None} == built


def test_bound_components_get_only_the_context_they_declare():
  m = method_lib.Method.from_config(_alg(policy_loss="gspo", loss_agg="seq-mean-token-mean",
                                         policy_loss_kw=dict(clip_high=1e-3)))
  logp = jnp.log(jnp.full((2, 3), 0.5))
  mask = jnp.ones((2, 3))
  adv = jnp.array([[1.0] * 3, [-1.0] * 3])
  got, _ = m.policy_loss(logp, logp, adv, mask, normalizer=None, agg="token-mean", max_len=7)
  want, _ = algorithms.losses.gspo_loss(logp, logp, adv, mask, clip_high=1e-3)
  np.testing.assert_array_equal(got, want)


def test_registering_the_same_function_again_replaces_it_and_a_clash_is_refused():
  def make():
    def fresh(x, *, k=1.0):
      return x.mask * k
    return fresh
  try:
    algorithms.register_advantage("test_only_twice")(make())
    algorithms.register_advantage("test_only_twice")(make())  # a config file loaded again
    with pytest.raises(ValueError, match="'test_only_twice' is already registered"):
      algorithms.register_advantage("test_only_twice")(lambda x: x.mask)
    with pytest.raises(ValueError, match="unknown need 'critic'"):
      algorithms.register_term("test_only_bad_need", needs=("critic",))
  finally:
    registry.ADVANTAGES.pop("test_only_twice", None)


@pytest.mark.parametrize("text,ok,bad", [
    ("[0, 1)", [0.0, 0.5], [1.0, -0.1]), ("> 1", [1.5], [1.0]), (">= 0", [0.0], [-1e-9]),
    ("(0, 1]", [1.0], [0.0]), ("< 2", [1.9], [2.0]), ("<= 2", [2.0], [2.1]),
])
def test_bounds(text, ok, bad):
  check = registry.bounds(x=text)
  assert all(check({"x": v}) is None for v in ok + [None])
  assert all(f"'x' must be" in check({"x": v}) for v in bad)


def test_term_metrics_reach_the_step_metrics():
  """The kl term's metric reaches the step's metrics under its own name (metrics.jsonl writes
  every key of these)."""
  config = load_config()
  config.algorithm.terms = ml_collections.ConfigDict(dict(kl=dict(coef=0.1)))
  run = rl_run(config)
  state = run.make_rl_state(run.init_params())
  from tests.helpers import device_batches
  (batch,) = device_batches(run, 1)
  _, metrics = jax.jit(run._rl_step)(state, batch, jax.random.key(0))
  assert "kl_ref" in metrics and float(metrics["kl_ref"]) == 0.0  # the reference is the policy
