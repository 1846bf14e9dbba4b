"""The run directory: checked before anything is built, so a run never dies at its first write;
and the config a finished (or running) run was started with."""

from __future__ import annotations

import json
import os

import ml_collections

from rlvr_jax import config_legacy, configs_base


def check_writable(workdir: str) -> None:
  """Raises ValueError (one line) unless `workdir` is a writable directory or can be created as
  one. Creates nothing: it runs before the config is known to be good."""
  if not workdir:
    raise ValueError("--workdir: empty path")
  path = os.path.abspath(workdir)
  existing = path
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    where = ("exists and is not a directory" if existing == path
             else f"cannot be created: {existing} is not a directory")
    raise ValueError(f"--workdir={workdir}: {where}")
  if not os.access(existing, os.W_OK | os.X_OK):
    where = "" if existing == path else f" (it would be created in {existing})"
    raise ValueError(f"--workdir={workdir}: {existing} is not writable{where}")


def run_config(workdir: str) -> ml_collections.ConfigDict:
  """The locked config of the run in `workdir`: the defaults updated with its config.json
  (written when the run started; the old method spelling translated). Raises ValueError naming the file if it is missing or holds
  fields this version does not have."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise ValueError(f"--workdir={workdir}: no config.json; is it a run directory?")
  with open(path, encoding="utf-8") as f:
    saved = config_legacy.translate(json.load(f))  # a run of the old method spelling too
  config = configs_base.base_config()
  try:
    config.update(saved)
  except (TypeError, KeyError, AttributeError) as e:
    raise ValueError(f"{path}: does not fit this version's config ({e})") from None
  config.lock()
  return config
