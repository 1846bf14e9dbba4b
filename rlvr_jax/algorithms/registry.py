"""Components of an RL method: advantage estimators, policy losses and loss terms, each one
registered pure function plus a declaration of what it needs.

    @register_advantage("my_estimator", needs=("group",))
    def my_estimator(x, *, eps=1e-6):           # hyperparameters: keyword arguments, defaults
      ...                                        # written once, here
      return advantages_bgt

A config picks components by name and hands them keyword arguments:
`algorithm.advantage` + `algorithm.advantage_kw`, `algorithm.policy_loss` +
`algorithm.policy_loss_kw`, and `algorithm.terms` (term name -> its keyword arguments; a term is on
when it is listed). `Component.check` refuses an unknown or ill-typed keyword, naming the
component and its valid keys; the trainer builds exactly what the chosen components `needs`
(a reference copy, a critic, a PRM, a greedy decode: `NEEDS`), never a name list.

Calling contracts (docs/ALGORITHMS.md, "Writing your own"):
- estimator `fn(x: AdvantageInputs, **hp) -> advantages [B, G, T]` (0 on masked tokens);
- policy loss `fn(logp, old_logp, advantages, mask, *, normalizer, **hp) -> (loss, metrics)` on
  one micro-batch's [n, t] arrays; `agg` / `max_len` keywords, when the function has them, get
  `algorithm.loss_agg` / `algorithm.max_len`, and a `key` keyword a random key, one for each
  (epoch, minibatch, micro-batch) of the update;
- term `fn(ctx: TermContext, **hp) -> (loss, metrics)`; `trains` names the parameters its loss
  is differentiated for: "policy" (added to the policy loss of every micro-batch), "critic"
  (the value model, a `CriticContext`), "implicit_prm" (PRIME's, once per rollout before the
  advantages, an `ImplicitPRMContext`). A term may `provide` an input an estimator needs.
Every metric a component returns reaches metrics.jsonl under its own name.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import chex
import jax

Array = jax.Array

# What a component may ask the trainer to build, and what it then finds in its input.
NEEDS: dict[str, str] = {
    "group": "a group baseline: rl.group_size >= 2",
    "ref_logp": "x.ref_logp / ctx.ref_logp: log-probs of a frozen copy of the starting policy "
                "(the state carries it)",
    "values": "x.values / ctx.values: a critic's V(s_t) (the state carries a critic, trained by "
              "a term that trains 'critic')",
    "greedy_rewards": "x.greedy_rewards [B]: the reward of one greedy completion a prompt",
    "step_rewards": "x.step_rewards, x.step_end: a frozen process reward model's scores at "
                    "reasoning-step ends (the PRM is trained, or read, before RL)",
    "process_rewards": "x.process_rewards: token rewards provided by a term (PRIME's implicit "
                       "PRM)",
    "demos": "ctx.demo_logp, ctx.demo_mask, ctx.demo_normalizer: the policy's log-probs of the "
             "tasks' expert demonstrations of the batch's prompts",
    "several_updates": "several optimizer updates a rollout: rl.ppo_epochs * rl.minibatches >= 2 "
                       "(with one, logp = old_logp on every token)",
    "proxy_logp": "proxy_logp (a policy loss keyword) / ctx.proxy_logp: each sampled token's "
                  "log-prob under the min-p proxy of the behaviour policy (ids below min_p x "
                  "the top probability dropped, the rest renormalised; the component's `min_p` "
                  "hyperparameter is κ), from the sampler or the behaviour pass",
    "stored_samples": "ctx.stored_logp, ctx.stored_old_logp, ctx.stored_mask, "
                      "ctx.stored_normalizer: the policy's log-probs of completions sampled "
                      "earlier and stored with their sampling log-probs (the file "
                      "data.stored_samples, data.stored_samples_per_step rows a step)",
}
TRAINS = ("policy", "critic", "implicit_prm")
# Keywords the trainer fills (not hyperparameters): the mini-batch normaliser, the loss
# aggregation and L_max (algorithm.loss_agg / algorithm.max_len); for a policy loss `key`, a
# random key of its own for each micro-batch update (derived only when the loss takes it), and
# the inputs of needs that reach a policy loss as keywords (proxy_logp).
CONTEXT_KEYWORDS = ("normalizer", "agg", "max_len", "key", "proxy_logp")
# The hyperparameter that parameterises a need: what the trainer computes depends on its value.
NEED_PARAMETERS = {"proxy_logp": "min_p"}
_POSITIONAL = {"advantage": 1, "policy_loss": 4, "term": 1,
               "rollout_correction": 2}  # rollout_correction.py: fn(log_rho, mask, **caps)


@chex.dataclass(frozen=True)
class AdvantageInputs:
  """Everything an advantage estimator may read from a rollout (a pytree)."""
  rewards: Array                        # [B, G] float32 outcome rewards
  tokens: Array                         # [B, G, T] int32 completion tokens
  mask: Array                           # [B, G, T] float32, 1 on valid completion tokens (+EOS)
  logp: Array                           # [B, G, T] behaviour-policy logprobs
  ref_logp: Array | None = None         # [B, G, T] reference-policy logprobs
  values: Array | None = None           # [B, G, T] value-model predictions
  greedy_rewards: Array | None = None   # [B] reward of the greedy completion (ReMax)
  step_rewards: Array | None = None     # [B, G, T] PRM score at step-end tokens, 0 elsewhere
  step_end: Array | None = None         # [B, G, T] 1 at step-end tokens (EOS included)
  process_rewards: Array | None = None  # [B, G, T] PRIME's implicit PRM token rewards r_φ


@dataclasses.dataclass(frozen=True)
class TermContext:
  """What a policy term sees of one micro-batch ([n, t] arrays; scalars otherwise).

  logp / entropy are the policy's (differentiable); old_logp the behaviour policy's; mask the
  loss mask (after filters and the 80/20 token selection); normalizer the mini-batch denominator
  of `agg` (None: this micro-batch's own); policy_loss the policy loss of this micro-batch;
  step the number of updates done before this rollout; micro_batches how many micro-batches
  make the mini-batch (the trainer averages metrics over them, so a metric that is a partial
  sum under the mini-batch normaliser is multiplied by it); proxy_logp the behaviour policy's
  min-p proxy log-probs (`NEEDS`). Rows beside the rollout, each [m, t] with the normaliser of
  its mini-batch share: demo_* (`demos`: the prompts' demonstrations, token-mean) and stored_*
  (`stored_samples`: stored completions, `agg`; stored_old_logp the log-probs they were sampled
  with). Fields of unmet needs are None."""
  logp: Array
  old_logp: Array
  entropy: Array
  mask: Array
  advantages: Array
  normalizer: Array | None
  agg: str
  max_len: int | None
  policy_loss: Array
  step: Array
  micro_batches: int = 1
  ref_logp: Array | None = None
  demo_logp: Array | None = None
  demo_mask: Array | None = None
  demo_normalizer: Array | None = None
  proxy_logp: Array | None = None
  stored_logp: Array | None = None
  stored_old_logp: Array | None = None
  stored_mask: Array | None = None
  stored_normalizer: Array | None = None


@dataclasses.dataclass(frozen=True)
class CriticContext:
  """A critic term's micro-batch: values V(s_t) (differentiable), the rollout's old_values and
  returns, the completion mask [n, t], the normaliser, `agg` and `max_len`."""
  values: Array
  old_values: Array
  returns: Array
  mask: Array
  normalizer: Array
  agg: str
  max_len: int | None


@dataclasses.dataclass(frozen=True)
class ImplicitPRMContext:
  """PRIME's implicit PRM on one micro-batch of the rollout: its log-probs (differentiable) and
  the reference's [n, t], the completion mask, the outcome labels [n] and the normaliser."""
  logp: Array
  ref_logp: Array
  mask: Array
  labels: Array
  normalizer: Array


_REQUIRED = inspect.Parameter.empty


@dataclasses.dataclass(frozen=True, eq=False)
class Component:
  """A registered function and its declaration.

  hyperparameters: name -> default (`inspect.Parameter.empty` for a required one), read from the
  keyword arguments of `fn`; needs: keys of `NEEDS`; trains: for terms, whose parameters its loss
  trains; provides: inputs a term hands to the estimator; requires: algorithm fields the
  component only works with (e.g. GSPO's loss_agg)."""
  kind: str
  name: str
  fn: Callable[..., Any]
  needs: frozenset[str]
  trains: str = "policy"
  provides: tuple[str, ...] = ()
  requires: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  check_values: Callable[[dict[str, Any]], str | None] | None = None

  def __call__(self, *args, **kwargs):
    return self.fn(*args, **kwargs)

  @property
  def context_keywords(self) -> tuple[str, ...]:
    params = inspect.signature(self.fn).parameters
    return tuple(k for k in CONTEXT_KEYWORDS if k in params)

  @property
  def hyperparameters(self) -> dict[str, Any]:
    params = list(inspect.signature(self.fn).parameters.values())[_POSITIONAL[self.kind]:]
    return {p.name: p.default for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.name not in CONTEXT_KEYWORDS}

  @property
  def builtin(self) -> bool:
    """One of the library's own components (not a config file's or a notebook's)."""
    return getattr(self.fn, "__module__", "").startswith("rlvr_jax.")

  @property
  def label(self) -> str:
    return f"{self.kind.replace('_', ' ')} {self.name!r}"

  def check(self, kw: Mapping[str, Any]) -> str | None:
    """None when `kw` are valid keyword arguments, else why not (one line)."""
    hp = self.hyperparameters
    unknown = [k for k in kw if k not in hp]
    if unknown:
      close = difflib.get_close_matches(unknown[0], list(hp), n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      return (f"{self.label} has no hyperparameter {unknown[0]!r}{hint}; valid: "
              f"{', '.join(hp) or 'none'}")
    missing = [k for k, d in hp.items() if d is _REQUIRED and k not in kw]
    if missing:
      return f"{self.label} needs a value for {missing[0]!r}"
    for k, v in kw.items():
      why = _type_mismatch(hp[k], v)
      if why:
        return f"{self.label}: {k!r} {why}"
    why = self.check_values(self.resolve(kw)) if self.check_values else None
    return f"{self.label}: {why}" if why else None

  def resolve(self, kw: Mapping[str, Any]) -> dict[str, Any]:
    """Every hyperparameter's value: `kw` over the defaults (after `check`)."""
    return {**{k: d for k, d in self.hyperparameters.items() if d is not _REQUIRED}, **kw}


def _type_mismatch(default: Any, value: Any) -> str | None:
  """Why `value` cannot replace `default`, or None: a bool for a bool, an int for an int, a
  number for a float or a None default, a str for a str; None only where the default is None.
  A required hyperparameter (no default) takes anything."""
  if default is _REQUIRED or (value is None and default is None):
    return None
  number = isinstance(value, (int, float)) and not isinstance(value, bool)
  if isinstance(default, bool):
    ok = isinstance(value, bool)
  elif isinstance(default, int):
    ok = number and isinstance(value, int)
  elif default is None or isinstance(default, float):
    ok = number
  else:
    ok = isinstance(value, type(default))
  return None if ok else f"must be like its default {default!r}, got {value!r}"


class Registry(dict):
  """Name -> Component; an unknown name raises ValueError listing the valid ones."""

  def __init__(self, kind: str):
    super().__init__()
    self.kind = kind

  def __missing__(self, name):
    close = difflib.get_close_matches(str(name), list(self), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"Unknown {self.kind.replace('_', ' ')} {name!r}{hint}; valid: "
                     f"{', '.join(sorted(self))}.")

  def register(self, name: str, *, needs=(), trains: str = "policy", provides=(),
               requires: Mapping[str, Any] | None = None,
               check=None) -> Callable[[Callable], Callable]:
    unknown = sorted(set(needs) - set(NEEDS))
    if unknown:
      raise ValueError(f"{self.kind} {name!r}: unknown need {unknown[0]!r}; valid: "
                       f"{', '.join(NEEDS)}")
    if trains not in TRAINS:
      raise ValueError(f"{self.kind} {name!r}: trains={trains!r}; valid: {', '.join(TRAINS)}")

    def decorator(fn):
      if name in self and not _same_source(self[name].fn, fn):
        raise ValueError(f"{self.kind} {name!r} is already registered (by "
                         f"{_source(self[name].fn)}).")
      component = Component(self.kind, name, fn, frozenset(needs), trains, tuple(provides),
                            dict(requires or {}), check)
      for need, hp in NEED_PARAMETERS.items():
        if need in needs and hp not in component.hyperparameters:
          raise ValueError(f"{self.kind} {name!r} needs {need!r}: it must take the "
                           f"hyperparameter {hp!r} that parameterises it")
      self[name] = component
      return fn
    return decorator


def _source(fn) -> str:
  return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"


def _same_source(a, b) -> bool:
  """The same function defined again replaces its entry: a config file that registers a
  component, loaded twice (a resume in the same process, an evaluation after training), or a
  notebook cell run again."""
  return _source(a) == _source(b)


ADVANTAGES: Registry = Registry("advantage")
POLICY_LOSSES: Registry = Registry("policy_loss")
TERMS: Registry = Registry("term")


def register_advantage(name: str, *, needs=(), requires=None, check=None):
  """Decorator: `fn(x: AdvantageInputs, **hp) -> [B, G, T]` becomes `algorithm.advantage=name`."""
  return ADVANTAGES.register(name, needs=needs, requires=requires, check=check)


def register_policy_loss(name: str, *, needs=(), requires=None, check=None):
  """Decorator: `fn(logp, old_logp, advantages, mask, *, normalizer, **hp) -> (loss, metrics)`
  becomes `algorithm.policy_loss=name`."""
  return POLICY_LOSSES.register(name, needs=needs, requires=requires, check=check)


def register_term(name: str, *, needs=(), trains: str = "policy", provides=(), requires=None,
                  check=None):
  """Decorator: `fn(ctx, **hp) -> (loss, metrics)` becomes `algorithm.terms.<name>`."""
  return TERMS.register(name, needs=needs, trains=trains, provides=provides, requires=requires,
                        check=check)


def bounds(**intervals: str) -> Callable[[dict[str, Any]], str | None]:
  """A `check` from intervals written as text: `bounds(clip_low="[0, 1)", dual_clip="> 1")`;
  forms "[a, b]" with ( ) for open ends, ">= a", "> a", "<= b", "< b". None values pass."""
  tests = {}
  for name, text in intervals.items():
    t = text.replace(" ", "")
    if t[0] in "[(":
      lo, hi = t[1:-1].split(",")
      tests[name] = (text, float(lo), float(hi), t[0] == "(", t[-1] == ")")
    else:
      op, value = (t[:2], t[2:]) if t[1] == "=" else (t[:1], t[1:])
      lo, hi = (float(value), float("inf")) if op[0] == ">" else (-float("inf"), float(value))
      tests[name] = (text, lo, hi, op == ">", op == "<")

  def check(hp: dict[str, Any]) -> str | None:
    for name, (text, lo, hi, lo_open, hi_open) in tests.items():
      v = hp.get(name)
      if v is None:
        continue
      if v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
        return f"{name!r} must be {text if text[0] in '<>' else 'in ' + text}, got {v!r}"
    return None

  return check


def one_of(name: str, values) -> Callable[[dict[str, Any]], str | None]:
  """A `check` that hyperparameter `name` is one of `values`."""
  values = tuple(values)

  def check(hp: dict[str, Any]) -> str | None:
    return None if hp.get(name) in values else f"{name!r} must be one of {values}"

  return check


def all_of(*checks) -> Callable[[dict[str, Any]], str | None]:
  """The first complaint of several `check`s."""
  def check(hp):
    return next((why for why in (c(hp) for c in checks) if why), None)
  return check
