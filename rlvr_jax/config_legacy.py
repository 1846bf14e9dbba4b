"""The method's old spelling (one flat `algorithm` block of prefixed fields, before components) and
its translation to the new one (`advantage_kw`, `policy_loss_kw`, `terms`).

A config that still uses an old field is refused with the exact new spelling
(`configs_base.validate`); a run directory whose config.json has the old spelling resumes, its
config translated before it is compared (`training.resume.config_changes`).
"""

from __future__ import annotations

import copy
from typing import Any

from rlvr_jax.algorithms.registry import ADVANTAGES, POLICY_LOSSES, TERMS

# Old algorithm field -> its default in the old base config.
OLD_DEFAULTS: dict[str, Any] = dict(
    eps=1e-6, clip_low=0.2, clip_high=0.2, dual_clip=None, kl_coef=0.0, kl_kind="k3",
    entropy_coef=0.0, overlong_buffer_len=0, positive_weight=0.1, negative_weight=1.0,
    kl_penalty_coef=0.01, kl_penalty_kind="k1", gamma=1.0, lam=1.0, value_clip=0.2,
    pure_temperature=0.1, verifiable_coef=1.0, gspo_clip_low=3e-4, gspo_clip_high=4e-4,
    cispo_clip_low=1.0, cispo_clip_high=4.0, prime_process_coef=5.0, prime_outcome_coef=5.0,
    chord=False, chord_mu_start=0.9, chord_mu_end=0.05, chord_mu_decay_steps=200,
    chord_mu_warmup_steps=0, chord_phi=False)
_PENALIZED = ("reinforce_pp", "reinforce_pp_baseline", "gae", "pure_min", "pure_min_strict",
              "pure_sum")
_PURE = ("pure_min", "pure_min_strict", "pure_sum")
# Old field -> (the components that read it, its keyword there).
_ADVANTAGE_KW = {
    "eps": (("grpo", "dapo", "lite_ppo", "tempo"), "eps"),
    "overlong_buffer_len": (("dapo",), "overlong_buffer_len"),
    "positive_weight": (("w_reinforce",), "positive_weight"),
    "negative_weight": (("w_reinforce",), "negative_weight"),
    "kl_penalty_coef": (_PENALIZED, "kl_coef"),
    "kl_penalty_kind": (_PENALIZED, "kl_kind"),
    "gamma": (("reinforce_pp", "reinforce_pp_baseline", "gae"), "gamma"),
    "lam": (("gae",), "lam"),
    "pure_temperature": (("pure_min",), "temperature"),
    "verifiable_coef": (_PURE, "verifiable_coef"),
    "prime_process_coef": (("prime",), "process_coef"),
    "prime_outcome_coef": (("prime",), "outcome_coef"),
}
_POLICY_LOSS_KW = {
    "clip_low": (("ppo",), "clip_low"), "clip_high": (("ppo",), "clip_high"),
    "dual_clip": (("ppo",), "dual_clip"),
    "gspo_clip_low": (("gspo",), "clip_low"), "gspo_clip_high": (("gspo",), "clip_high"),
    "cispo_clip_low": (("cispo",), "clip_low"), "cispo_clip_high": (("cispo",), "clip_high"),
}
_CHORD = {"chord_mu_start": "mu_start", "chord_mu_end": "mu_end",
          "chord_mu_decay_steps": "mu_decay_steps", "chord_mu_warmup_steps": "mu_warmup_steps",
          "chord_phi": "phi"}


def legacy_fields(config: dict[str, Any]) -> list[str]:
  """Dotted paths of the old-spelling fields in a config dict."""
  alg = config.get("algorithm") or {}
  out = [f"algorithm.{k}" for k in alg if k in OLD_DEFAULTS]
  if "beta" in (config.get("prime") or {}):
    out.append("prime.beta")
  return out


def _non_default(component, kw: dict[str, Any]) -> dict[str, Any]:
  defaults = component.hyperparameters
  return {k: v for k, v in kw.items() if k not in defaults or defaults[k] != v}


def _mapped(alg: dict, table: dict, name: str, registry) -> dict[str, Any]:
  if name not in registry:
    return {}
  kw = {new: alg.get(old, OLD_DEFAULTS[old]) for old, (names, new) in table.items()
        if name in names}
  return _non_default(registry[name], kw)


def translate(config: dict[str, Any]) -> dict[str, Any]:
  """A config dict in the new spelling, with the same meaning; a new-spelling one unchanged."""
  if not legacy_fields(config):
    return config
  new = copy.deepcopy(config)
  alg = new["algorithm"]
  old = {k: alg.pop(k) for k in list(alg) if k in OLD_DEFAULTS}
  beta = (new.get("prime") or {}).pop("beta", None)
  get = lambda k: old.get(k, OLD_DEFAULTS[k])
  advantage, loss = alg.get("advantage", "grpo"), alg.get("policy_loss", "ppo")
  alg["advantage_kw"] = {**_mapped(old, _ADVANTAGE_KW, advantage, ADVANTAGES),
                         **(alg.get("advantage_kw") or {})}
  alg["policy_loss_kw"] = {**_mapped(old, _POLICY_LOSS_KW, loss, POLICY_LOSSES),
                           **(alg.get("policy_loss_kw") or {})}
  terms = dict(alg.get("terms") or {})
  if get("kl_coef") > 0:
    terms["kl"] = {"coef": get("kl_coef"), **_non_default(TERMS["kl"], {"kind": get("kl_kind")})}
  if get("entropy_coef"):
    terms["entropy"] = {"coef": get("entropy_coef")}
  if get("chord"):
    terms["chord"] = _non_default(TERMS["chord"], {new_k: get(k) for k, new_k in _CHORD.items()})
  if advantage == "gae":
    terms["value"] = _non_default(TERMS["value"], {"clip": get("value_clip")})
  if advantage == "prime":
    terms["prime"] = _non_default(TERMS["prime"], {} if beta is None else {"beta": beta})
  alg["terms"] = terms
  return new


def new_spelling(config: dict[str, Any]) -> str:
  """The `algorithm` lines that replace the old fields of `config`, ready to paste."""
  alg = translate(config)["algorithm"]
  parts = [f"algorithm.{k} = {alg[k]!r}" for k in ("advantage_kw", "policy_loss_kw", "terms")
           if alg.get(k)]
  return "; ".join(parts) or "nothing: the values are the components' defaults"
