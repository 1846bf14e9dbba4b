"""Name -> function registries so a config selects the advantage estimator, policy loss and
loss aggregation (`--config.algorithm.advantage=tempo`, `--config.algorithm.loss_agg=...`).

Advantage adapter contract: `fn(inputs: AdvantageInputs, cfg) -> adv [B, G, T] float32`, token
advantages with outcome advantages broadcast over valid tokens and 0 on masked tokens. `cfg` is
the `algorithm` ConfigDict; adapters read hyper-parameters with `cfg.get(key, default)`.
A new estimator is one function plus one line:

    @register_advantage("my_estimator")
    def _my_estimator(x: AdvantageInputs, cfg) -> jax.Array: ...

Policy-loss adapter contract: `fn(logp, old_logp, advantages, mask, cfg, *, normalizer=None)
-> (loss, metrics)`, reading clip_low / clip_high / dual_clip / loss_agg / max_len from cfg
(`cispo` reads cispo_clip_low / cispo_clip_high instead of the PPO clips).
`gspo` accepts only loss_agg = `losses.GSPO_AGGREGATION` (its paper's sequence mean).
"""

from collections.abc import Callable

import chex
import jax

from rlvr_jax.algorithms import advantages as adv_lib
from rlvr_jax.algorithms import losses
from rlvr_jax.algorithms.losses import AGGREGATIONS  # noqa: F401 (re-exported)
from rlvr_jax.algorithms.losses import check_aggregation  # noqa: F401 (re-exported)

Array = jax.Array


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


class Registry(dict):
  """A dict whose unknown-name lookups raise ValueError listing the valid names."""

  def __init__(self, kind: str):
    super().__init__()
    self.kind = kind

  def __missing__(self, name):
    raise ValueError(f"Unknown {self.kind} {name!r}; valid: {', '.join(sorted(self))}.")

  def register(self, name: str) -> Callable[[Callable], Callable]:
    def decorator(fn):
      if name in self:
        raise ValueError(f"{self.kind} {name!r} is already registered.")
      self[name] = fn
      return fn
    return decorator


ADVANTAGES: Registry = Registry("advantage estimator")
POLICY_LOSSES: Registry = Registry("policy loss")
register_advantage = ADVANTAGES.register
register_policy_loss = POLICY_LOSSES.register


def _require(x: AdvantageInputs, field: str, estimator: str) -> Array:
  value = getattr(x, field)
  if value is None:
    raise ValueError(f"Advantage estimator {estimator!r} needs AdvantageInputs.{field}.")
  return value


def _kl_penalty(x: AdvantageInputs, cfg) -> Array | None:
  """Stop-gradient per-token KL for a reward penalty, or None without a reference policy."""
  if x.ref_logp is None:
    return None
  kind = cfg.get("kl_penalty_kind", "k1")
  return jax.lax.stop_gradient(losses.kl(x.logp, x.ref_logp, kind))


def _outcome(adv_bg: Array, x: AdvantageInputs) -> Array:
  return adv_lib.broadcast_to_tokens(adv_bg, x.mask)


# --- Outcome estimators ----------------------------------------------------------------------


@register_advantage("grpo")
def _grpo(x, cfg):
  return _outcome(adv_lib.grpo(x.rewards, eps=cfg.get("eps", 1e-6)), x)


@register_advantage("dr_grpo")
def _dr_grpo(x, cfg):
  return _outcome(adv_lib.grpo(x.rewards, scale_by_std=False), x)


@register_advantage("dapo")
def _dapo(x, cfg):
  """GRPO on overlong-shaped rewards (`overlong_buffer_len` > 0 enables it, L_max = `max_len`,
  default T). DAPO's dynamic sampling and overlong filtering are the trainer's
  (`algorithm.dynamic_sampling`, `algorithm.overlong_filter`); a group whose shaped rewards are
  all equal gets exactly 0 here."""
  rewards = x.rewards
  buffer_len = cfg.get("overlong_buffer_len", 0)
  if buffer_len:
    lengths = x.mask.sum(-1)
    max_len = cfg.get("max_len", None) or x.mask.shape[-1]
    rewards = rewards + adv_lib.overlong_penalty(lengths, max_len, buffer_len)
  return _outcome(adv_lib.grpo(rewards, eps=cfg.get("eps", 1e-6)), x)


@register_advantage("lite_ppo")
def _lite_ppo(x, cfg):
  """Group mean, batch std over the [B, G] rewards of the update batch."""
  return _outcome(adv_lib.lite_ppo(x.rewards, eps=cfg.get("eps", 1e-6)), x)


@register_advantage("rloo")
def _rloo(x, cfg):
  return _outcome(adv_lib.rloo(x.rewards), x)


@register_advantage("remax")
def _remax(x, cfg):
  return _outcome(adv_lib.remax(x.rewards, _require(x, "greedy_rewards", "remax")), x)


@register_advantage("psr")
def _psr(x, cfg):
  return _outcome(adv_lib.weighted_reinforce(x.rewards, positive_weight=1.0,
                                             negative_weight=0.0), x)


@register_advantage("nsr")
def _nsr(x, cfg):
  return _outcome(adv_lib.weighted_reinforce(x.rewards, positive_weight=0.0,
                                             negative_weight=1.0), x)


@register_advantage("w_reinforce")
def _w_reinforce(x, cfg):
  return _outcome(adv_lib.weighted_reinforce(
      x.rewards, positive_weight=cfg.get("positive_weight", 0.1),
      negative_weight=cfg.get("negative_weight", 1.0)), x)


# --- Token-level estimators ------------------------------------------------------------------


@register_advantage("tempo")
def _tempo(x, cfg):
  return adv_lib.tempo(x.tokens, x.rewards, x.mask, eps=cfg.get("eps", 1e-6))


@register_advantage("reinforce_pp")
def _reinforce_pp(x, cfg):
  return adv_lib.reinforce_plus_plus(
      x.rewards, x.mask, _kl_penalty(x, cfg), kl_coef=cfg.get("kl_penalty_coef", 0.01),
      gamma=cfg.get("gamma", 1.0))


@register_advantage("reinforce_pp_baseline")
def _reinforce_pp_baseline(x, cfg):
  return adv_lib.reinforce_plus_plus(
      x.rewards, x.mask, _kl_penalty(x, cfg), kl_coef=cfg.get("kl_penalty_coef", 0.01),
      gamma=cfg.get("gamma", 1.0), baseline=True)


@register_advantage("gae")
def _gae(x, cfg):
  """Un-whitened GAE; the value targets are `adv + values` on valid tokens."""
  token_r = adv_lib.outcome_token_rewards(x.rewards, x.mask, _kl_penalty(x, cfg),
                                          kl_coef=cfg.get("kl_penalty_coef", 0.0))
  adv, _ = adv_lib.gae(token_r, _require(x, "values", "gae"), x.mask,
                       gamma=cfg.get("gamma", 1.0), lam=cfg.get("lam", 1.0))
  return adv


def _pure(x, cfg, name, transform):
  step_end = _require(x, "step_end", name)
  process_r = transform(_require(x, "step_rewards", name), step_end * x.mask)
  return adv_lib.pure_token_returns(
      process_r, step_end, x.mask, verifiable_rewards=x.rewards,
      verifiable_coef=cfg.get("verifiable_coef", 0.0), kl=_kl_penalty(x, cfg),
      kl_coef=cfg.get("kl_penalty_coef", 0.001))


@register_advantage("pure_min")
def _pure_min(x, cfg):
  temperature = cfg.get("pure_temperature", 0.1)
  return _pure(x, cfg, "pure_min",
               lambda r, m: adv_lib.min_form(r, m, temperature=temperature))


@register_advantage("pure_min_strict")
def _pure_min_strict(x, cfg):
  return _pure(x, cfg, "pure_min_strict", adv_lib.strict_min_form)


@register_advantage("pure_sum")
def _pure_sum(x, cfg):
  return _pure(x, cfg, "pure_sum", lambda r, m: r * m)


@register_advantage("prime")
def _prime(x, cfg):
  return adv_lib.prime(x.rewards, _require(x, "process_rewards", "prime"), x.mask,
                       process_coef=cfg.get("prime_process_coef", 5.0),
                       outcome_coef=cfg.get("prime_outcome_coef", 5.0))


# --- Policy losses ---------------------------------------------------------------------------


@register_policy_loss("ppo")
def _ppo(logp, old_logp, advantages, mask, cfg, *, normalizer=None):
  return losses.policy_loss(
      logp, old_logp, advantages, mask, clip_low=cfg.get("clip_low", 0.2),
      clip_high=cfg.get("clip_high", 0.2), dual_clip=cfg.get("dual_clip", None),
      agg=cfg.get("loss_agg", "token-mean"), max_len=cfg.get("max_len", None),
      normalizer=normalizer)


@register_policy_loss("cispo")
def _cispo(logp, old_logp, advantages, mask, cfg, *, normalizer=None):
  # Its own clip fields: CISPO bounds an IS weight (lower side open by default), not a PPO ratio.
  return losses.cispo_loss(
      logp, old_logp, advantages, mask, clip_low=cfg.get("cispo_clip_low", 1.0),
      clip_high=cfg.get("cispo_clip_high", 4.0), agg=cfg.get("loss_agg", "token-mean"),
      max_len=cfg.get("max_len", None), normalizer=normalizer)


@register_policy_loss("gspo")
def _gspo(logp, old_logp, advantages, mask, cfg, *, normalizer=None):
  # GSPO is a mean over sequences by definition; a `normalizer` built for another loss_agg would
  # silently rescale it, so any other loss_agg is refused rather than ignored.
  agg = cfg.get("loss_agg", losses.GSPO_AGGREGATION)
  if agg != losses.GSPO_AGGREGATION:
    raise ValueError(f"policy loss 'gspo' averages over sequences (GSPO eq. 13): it needs "
                     f"loss_agg={losses.GSPO_AGGREGATION!r}, got {agg!r}.")
  # Sequence-level ratios need a far narrower clip than token ratios: GSPO's own defaults
  # (3e-4, 4e-4), kept apart from the token-level clip_low / clip_high.
  return losses.gspo_loss(
      logp, old_logp, advantages, mask, clip_low=cfg.get("gspo_clip_low", 3e-4),
      clip_high=cfg.get("gspo_clip_high", 4e-4), normalizer=normalizer)
