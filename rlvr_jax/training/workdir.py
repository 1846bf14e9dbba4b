"""The run directory: checked before anything is built, so a run never dies at its first write."""

from __future__ import annotations

import os


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
