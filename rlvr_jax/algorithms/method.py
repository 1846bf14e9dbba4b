"""A method: the chosen estimator, policy loss and terms with their resolved hyperparameters, and
what they need together. Built from the `algorithm` block of a config (any mapping):

    advantage="grpo", advantage_kw={...}, policy_loss="ppo", policy_loss_kw={...},
    terms={"kl": {"coef": 0.001}, ...}    # a term is on when it is listed (None: off)

`problems` reads only the components' declarations; the trainer asks `Method` what to build.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from rlvr_jax.algorithms.registry import (ADVANTAGES, NEED_PARAMETERS, POLICY_LOSSES, TERMS,
                                          Component, Registry)


@dataclasses.dataclass(frozen=True)
class Bound:
  """A component with its resolved hyperparameters; `__call__` passes them."""
  component: Component
  kw: Mapping[str, Any]

  @property
  def name(self) -> str:
    return self.component.name

  def __call__(self, *args, **context):
    keep = {k: v for k, v in context.items() if k in self.component.context_keywords}
    return self.component.fn(*args, **keep, **self.kw)


def _kw(mapping: Any) -> dict[str, Any]:
  if mapping is None:
    return {}
  return dict(mapping.to_dict() if hasattr(mapping, "to_dict") else mapping)


def listed_terms(alg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
  """Term name -> its keyword arguments, in name order (a ConfigDict keeps its keys sorted; the
  policy loss adds its terms in this order); a term set to None is off."""
  terms = alg.get("terms") or {}
  return {name: _kw(terms[name]) for name in sorted(terms) if terms[name] is not None}


@dataclasses.dataclass(frozen=True)
class Method:
  advantage: Bound
  policy_loss: Bound
  terms: tuple[Bound, ...]

  @classmethod
  def from_config(cls, alg: Mapping[str, Any]) -> Method:
    """Raises ValueError naming the field (see `problems`)."""
    bad = problems(alg)
    if bad:
      raise ValueError(bad[0])
    bind = lambda registry, name, kw: Bound(registry[name], registry[name].resolve(kw))
    return cls(bind(ADVANTAGES, alg["advantage"], _kw(alg.get("advantage_kw"))),
               bind(POLICY_LOSSES, alg["policy_loss"], _kw(alg.get("policy_loss_kw"))),
               tuple(bind(TERMS, n, kw) for n, kw in listed_terms(alg).items()))

  @functools.cached_property
  def needs(self) -> frozenset[str]:
    parts = (self.advantage, self.policy_loss) + self.terms
    return frozenset().union(*(b.component.needs for b in parts))

  def terms_training(self, trains: str) -> tuple[Bound, ...]:
    return tuple(t for t in self.terms if t.component.trains == trains)

  def provided(self, name: str) -> Bound | None:
    return next((t for t in self.terms if name in t.component.provides), None)

  @property
  def needs_reference(self) -> bool:
    return "ref_logp" in self.needs

  @property
  def needs_policy_reference(self) -> bool:
    """A component other than the implicit PRM's terms reads the reference's log-probs (a KL
    term or penalty: at the sampling temperature, like the policy's). PRIME's implicit PRM reads
    its own, of the raw logits (`rollout.advantages`)."""
    parts = (self.advantage, self.policy_loss) + tuple(
        t for t in self.terms if t.component.trains != "implicit_prm")
    return any("ref_logp" in b.component.needs for b in parts)

  @property
  def has_critic(self) -> bool:
    return bool(self.terms_training("critic"))

  @property
  def has_implicit_prm(self) -> bool:
    return bool(self.terms_training("implicit_prm"))

  @property
  def needs_prm(self) -> bool:
    return "step_rewards" in self.needs

  @property
  def proxy_min_p(self) -> float | None:
    """κ of the min-p proxy log-probs the components that need `proxy_logp` read (their
    `min_p`, one value: `problems`); None when none does."""
    values = _need_parameter(self.advantage, self.policy_loss, *self.terms, need="proxy_logp")
    return float(values[0][1]) if values else None

  def summary(self) -> dict[str, Any]:
    """Every component with all its hyperparameters, for logs and config diffs."""
    return {"advantage": {self.advantage.name: dict(self.advantage.kw)},
            "policy_loss": {self.policy_loss.name: dict(self.policy_loss.kw)},
            "terms": {t.name: dict(t.kw) for t in self.terms}}


def _lookup(registry: Registry, name: Any, field: str) -> tuple[Component | None, str | None]:
  try:
    return registry[name], None
  except ValueError as e:
    return None, f"config.{field}: {e}"


def problems(alg: Mapping[str, Any], group_size: int | None = None,
             updates_per_rollout: int | None = None) -> list[str]:
  """'config.<field>: why' for every way the components of `alg` do not fit together: unknown
  names or keywords, a need nothing meets, a required algorithm field, a group baseline without
  a group, a loss that needs several updates a rollout with one (`updates_per_rollout` =
  rl.ppo_epochs * rl.minibatches). Empty when `Method.from_config(alg)` will work."""
  out = []
  chosen: list[tuple[str, Component, dict]] = []
  for registry, field in ((ADVANTAGES, "advantage"), (POLICY_LOSSES, "policy_loss")):
    component, why = _lookup(registry, alg.get(field), f"algorithm.{field}")
    if why:
      out.append(why)
    else:
      chosen.append((f"algorithm.{field}_kw", component, _kw(alg.get(f"{field}_kw"))))
  for name, kw in listed_terms(alg).items():
    component, why = _lookup(TERMS, name, f"algorithm.terms.{name}")
    if why:
      out.append(why)
    else:
      chosen.append((f"algorithm.terms.{name}", component, kw))
  for field, component, kw in chosen:
    why = component.check(kw)
    if why:
      out.append(f"config.{field}: {why}")
  if out:
    return out
  components = [c for _, c, _ in chosen]
  terms = components[2:]
  needs = frozenset().union(*(c.needs for c in components))
  for c in components:
    for key, value in c.requires.items():
      if alg.get(key) != value:
        out.append(f"config.algorithm.{key}: {c.label} needs {key}={value!r}, got "
                   f"{alg.get(key)!r}")
  if "group" in needs and group_size is not None and group_size < 2:
    users = ", ".join(c.label for c in components if "group" in c.needs)
    out.append(f"config.rl.group_size: {users} uses a group baseline and needs group_size >= 2, "
               f"got {group_size}")
  if "several_updates" in needs and updates_per_rollout is not None and updates_per_rollout < 2:
    out.append(f"config.rl.ppo_epochs: {_users(components, 'several_updates')} acts only where "
               "the policy has moved from the one that sampled (logp != old_logp), which needs "
               "several optimizer updates a rollout: rl.ppo_epochs * rl.minibatches >= 2, got "
               f"{updates_per_rollout} (set rl.minibatches or rl.ppo_epochs)")
  critics = [c for c in terms if c.trains == "critic"]
  if "values" in needs and not critics:
    out.append(f"config.algorithm.terms: {_users(components, 'values')} reads critic values, "
               f"and no listed term trains the critic; add one of "
               f"{_spellings(lambda c: c.trains == 'critic')}")
  for c in critics:
    if not any("values" in d.needs for d in components if d.trains != "critic"):
      out.append(f"config.algorithm.terms.{c.name}: {c.label} trains a critic on the returns "
                 "of an estimator that reads its values (e.g. 'gae'); "
                 f"{ADVANTAGES[alg['advantage']].label} reads none")
  bound = [(c, c.resolve(kw)) for _, c, kw in chosen]
  for need, hp in NEED_PARAMETERS.items():
    values = _need_parameter(*(Bound(c, kw) for c, kw in bound), need=need)
    if len({v for _, v in values}) > 1:
      out.append(f"config.algorithm: {', '.join(f'{n} has {hp}={v!r}' for n, v in values)}; "
                 f"the {need!r} they share is computed once, with one {hp}")
  provided_by = {p: c for c in terms for p in c.provides}
  if "process_rewards" in needs and "process_rewards" not in provided_by:
    out.append(f"config.algorithm.terms: {_users(components, 'process_rewards')} reads process "
               f"rewards that a term provides; add one of "
               f"{_spellings(lambda c: 'process_rewards' in c.provides)}")
  return out


def _need_parameter(*parts: Bound, need: str) -> list[tuple[str, Any]]:
  """(label, value of the need's parameter) for each of `parts` that has `need`."""
  hp = NEED_PARAMETERS[need]
  return [(b.component.label, b.kw[hp]) for b in parts if need in b.component.needs]


def _users(components, need: str) -> str:
  return ", ".join(c.label for c in components if need in c.needs)


def _spellings(fits) -> str:
  """How to list each registered term for which `fits(component)`."""
  names = [n for n, c in TERMS.items() if fits(c)]
  return ", ".join(f"algorithm.terms.{n} = {{}}" for n in names) or "(none registered)"
