"""The method's old spelling: a config that uses it is refused with the exact new spelling; a run
directory whose config.json has it resumes, its config translated, bit for bit."""

import json
import os

import pytest

from rlvr_jax import config_legacy, configs_base
from rlvr_jax.training import loop, resume
from tests.helpers import load_config


def _old_algorithm(**fields) -> dict:
  """An old-spelling algorithm block: the old base config's fields with `fields` set."""
  return {"advantage": "grpo", "policy_loss": "ppo", "loss_agg": "token-mean",
          **config_legacy.OLD_DEFAULTS, **fields}


@pytest.mark.parametrize("old,new", [
    (dict(kl_coef=0.01), {"terms": {"kl": {"coef": 0.01}}}),
    (dict(kl_coef=0.01, kl_kind="k2", entropy_coef=-0.002),
     {"terms": {"kl": {"coef": 0.01, "kind": "k2"}, "entropy": {"coef": -0.002}}}),
    (dict(clip_high=0.28, dual_clip=3.0),
     {"policy_loss_kw": {"clip_high": 0.28, "dual_clip": 3.0}}),
    (dict(policy_loss="gspo", gspo_clip_high=5e-4), {"policy_loss_kw": {"clip_high": 5e-4}}),
    (dict(advantage="gae", lam=0.95, value_clip=0.5),
     {"advantage_kw": {"lam": 0.95}, "terms": {"value": {"clip": 0.5}}}),
    (dict(advantage="pure_min", verifiable_coef=5.0, pure_temperature=0.2),
     {"advantage_kw": {"temperature": 0.2, "verifiable_coef": 5.0}}),
    (dict(advantage="dapo", overlong_buffer_len=8), {"advantage_kw": {"overlong_buffer_len": 8}}),
    (dict(chord=True, chord_mu_decay_steps=50, chord_phi=True),
     {"terms": {"chord": {"mu_decay_steps": 50, "phi": True}}}),
    (dict(advantage="w_reinforce", positive_weight=0.0), {"advantage_kw": {"positive_weight": 0.0}}),
])
def test_translate_gives_the_new_spelling(old, new):
  got = config_legacy.translate({"algorithm": _old_algorithm(**old), "prime": {"beta": 0.05}})
  alg = got["algorithm"]
  assert not set(alg) & set(config_legacy.OLD_DEFAULTS) and "beta" not in got["prime"]
  want = {"advantage_kw": {}, "policy_loss_kw": {}, "terms": {}, **new}
  assert {k: alg[k] for k in want} == want


def test_prime_beta_moves_to_its_term():
  got = config_legacy.translate({"algorithm": _old_algorithm(advantage="prime"),
                                 "prime": {"beta": 0.1, "optimizer": {}}})
  assert got["algorithm"]["terms"] == {"prime": {"beta": 0.1}}
  assert got["prime"] == {"optimizer": {}}


def test_an_old_field_is_refused_with_the_new_spelling():
  config = load_config()
  with config.unlocked():
    config.algorithm.kl_coef = 0.01
    config.algorithm.clip_high = 0.28
  with pytest.raises(ValueError) as e:
    configs_base.validate(config)
  assert str(e.value) == (
      "config.algorithm.clip_high: the method is now spelled with components; write "
      "algorithm.policy_loss_kw = {'clip_high': 0.28}; algorithm.terms = {'kl': {'coef': 0.01}} "
      "(docs/ALGORITHMS.md)")


def test_the_old_default_config_means_the_new_default_config():
  new = configs_base.base_config().to_dict()
  old = json.loads(json.dumps(new))
  alg = old["algorithm"]
  for k in ("advantage_kw", "policy_loss_kw", "terms"):
    del alg[k]
  alg.update(config_legacy.OLD_DEFAULTS)
  old["prime"]["beta"] = 0.05
  assert resume.resolved(old) == resume.resolved(new)


def _rl_rows(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [{k: v for k, v in r.items() if k != "step_time_s"}
            for r in map(json.loads, f) if r.get("phase") == "rl"]


def _kl_config(steps):
  config = load_config()
  config.algorithm.terms = dict(kl=dict(coef=0.05, kind="k2"))
  config.rl.steps = steps
  config.checkpoint.every = 2
  config.checkpoint.use_async = False
  return config


def _rewrite_in_the_old_spelling(workdir) -> dict:
  """workdir/config.json (a `_kl_config` run's) as the previous code wrote it: the algorithm
  block and prime.beta in the old spelling."""
  with open(workdir / "config.json", encoding="utf-8") as f:
    written = json.load(f)
  written["algorithm"] = {k: v for k, v in written["algorithm"].items()
                          if k not in ("advantage_kw", "policy_loss_kw", "terms")}
  written["algorithm"].update(_old_algorithm(kl_coef=0.05, kl_kind="k2"))
  written["prime"]["beta"] = 0.05
  with open(workdir / "config.json", "w", encoding="utf-8") as f:
    json.dump(written, f)
  return written


def test_a_run_written_in_the_old_spelling_resumes_bit_for_bit(tmp_path):
  whole = tmp_path / "whole"
  loop.train(_kl_config(4), str(whole), progress=False)
  part = tmp_path / "part"
  loop.train(_kl_config(2), str(part), progress=False)
  written = _rewrite_in_the_old_spelling(part)
  longer = _kl_config(4)
  longer.rl.max_new_tokens = written["rl"]["max_new_tokens"]  # as loop.Run fills it in
  assert resume.config_changes(str(part / "config.json"), longer) == ["rl.steps (2 -> 4)"]
  loop.train(_kl_config(4), str(part), progress=False)
  assert _rl_rows(part) == _rl_rows(whole)


def test_an_old_run_whose_method_differs_is_refused_naming_the_field(tmp_path):
  part = tmp_path / "part"
  loop.train(_kl_config(2), str(part), progress=False)
  _rewrite_in_the_old_spelling(part)
  no_kl = load_config()
  no_kl.rl.steps = 4
  with pytest.raises(ValueError, match=r"cannot resume .*algorithm\.terms\.kl\.coef \(0\.05 -> "
                     r"None\)"):
    loop.train(no_kl, str(part), progress=False)


def test_run_config_reads_an_old_spelling_config_json(tmp_path):
  """rlvr-eval and rlvr-export rebuild a run from its config.json."""
  from rlvr_jax.training import workdir as workdir_lib
  config = configs_base.base_config().to_dict()
  for k in ("advantage_kw", "policy_loss_kw", "terms"):
    del config["algorithm"][k]
  config["algorithm"].update(_old_algorithm(kl_coef=0.02, clip_high=0.3))
  config["prime"]["beta"] = 0.05
  (tmp_path / "config.json").write_text(json.dumps(config))
  got = workdir_lib.run_config(str(tmp_path))
  configs_base.validate(got)
  assert got.algorithm.terms.to_dict() == {"kl": {"coef": 0.02}}
  assert got.algorithm.policy_loss_kw.to_dict() == {"clip_high": 0.3}
