"""Resuming a workdir: what changed in the config, and whether its checkpoints still fit.

A config change that keeps the train state's structure (rl.steps, a learning rate) resumes with
a warning naming the fields; one that changes it (model.d_model, a KL term's reference) is refused
before anything runs, since those checkpoints cannot be continued under it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections
from absl import logging

from rlvr_jax import config_legacy
from rlvr_jax.algorithms.method import Method
from rlvr_jax.checkpoints.manager import Check, StateMismatchError


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if not isinstance(tree, dict):
    return {prefix: tree}
  out: dict[str, Any] = {}
  for k, v in tree.items():
    out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
  return out


def resolved(config: dict[str, Any]) -> dict[str, Any]:
  """A config dict in the new spelling (`config_legacy.translate`) with every component's
  hyperparameters spelled out, so that two configs meaning the same method compare equal
  (whether they wrote a default or not, in the old spelling or the new)."""
  config = config_legacy.translate(config)
  alg = config.get("algorithm") or {}
  try:
    method = Method.from_config(alg)
  except ValueError:  # e.g. a component this process has not registered: compare as written
    return config
  summary = method.summary()
  alg = dict(alg, advantage_kw=summary["advantage"][method.advantage.name],
             policy_loss_kw=summary["policy_loss"][method.policy_loss.name],
             terms=summary["terms"])
  return dict(config, algorithm=alg)


def config_changes(path: str, config: ml_collections.ConfigDict) -> list[str]:
  """"field (old -> new)" for every field of `config` that differs from the config.json at
  `path` (written when the workdir's run started); fault injection (debug.*) and where metrics
  are logged (logging.*) are not changes."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    old = _flatten(resolved(json.load(f)))
  new = _flatten(resolved(json.loads(config.to_json_best_effort())))
  changed = sorted(k for k in old.keys() | new.keys()
                   if old.get(k) != new.get(k) and not k.startswith(("debug.", "logging.")))
  return [f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in changed]


def warn_on_config_change(workdir: str, changes: list[str]) -> None:
  """Warns, naming the fields, when a workdir that holds a run gets a different config: a resume
  then continues the old run under the new values (fine for rl.steps, surprising for most)."""
  if changes:
    logging.warning("config differs from the one %s was started with, in: %s. A resume continues "
                    "the existing checkpoints under the new values; use a new --workdir for a "
                    "new run.", workdir, ", ".join(changes))


def mismatch_error(error: StateMismatchError, workdir: str, changes: list[str]) -> ValueError:
  """The one-line refusal to resume checkpoints whose state the config no longer matches."""
  cause = (f"the config differs in: {', '.join(changes)}" if changes else
           "no config field differs from config.json, so the code's state layout changed")
  return ValueError(f"cannot resume {workdir}: {error}; {cause}. Use a new --workdir for this "
                    "config (the existing run is left untouched).")


def checkpoint_check(data_template: dict, rng_meta: dict) -> Check:
  """A Check (see Checkpointer) that the saved data-iterator state has the keys and JSON types
  of `data_template` (a fresh iterator's state) and the meta has the rng entry."""

  def check(data_state: dict, meta: dict) -> str | None:
    if data_state.keys() != data_template.keys():
      return (f"data-iterator state has keys {sorted(data_state)}, expected "
              f"{sorted(data_template)}")
    for k, v in data_template.items():
      if type(data_state[k]) is not type(v):
        return (f"data-iterator state {k!r} is a {type(data_state[k]).__name__}, expected "
                f"{type(v).__name__}")
    for k, v in rng_meta.items():
      if not isinstance(meta.get(k), type(v)):
        return f"meta {k!r} is missing or not a {type(v).__name__}"
    return None

  return check
