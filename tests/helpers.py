"""Small builders shared by the training tests."""

import os

import ml_collections

from rlvr_jax.configs_base import load_config as _load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str = "quickstart", arg: str | None = "tiny") -> ml_collections.ConfigDict:
  path = os.path.join(ROOT, "configs", f"{name}.py")
  return _load(f"{path}:{arg}" if arg else path)
