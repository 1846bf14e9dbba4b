"""What the command-line entry points (`rlvr-train`, `rlvr-eval`, `rlvr-export`, `rlvr-plot`)
share: `run`, whose `--help` lists the command's own flags, flag parsing whose config errors are
one line, and the one-line report of an error caught at the boundary."""

from __future__ import annotations

import difflib
import sys
from typing import Callable, NoReturn

import ml_collections
from absl import app, flags, logging


def fail(error: Exception | str) -> NoReturn:
  """Exits with status 1, printing `error` as one `error: ...` line (and logging it once the
  flags, which set up logging, are parsed)."""
  if flags.FLAGS.is_parsed():
    logging.error("%s", error)
  print(f"error: {error}", file=sys.stderr)
  sys.exit(1)


_HELP = ("-h", "-?", "-help", "--help", "--helpshort")


def run(main: Callable[[list[str]], None], usage: str, flag: flags.FlagHolder) -> None:
  """`app.run(main)` with `parse_flags`, as the console scripts and `python -m` both call it.

  `--help` prints `usage` and the flags of the module that defines `flag` (one line of meaning
  each, with defaults), not the libraries' flags absl would add (those stay under `--helpfull`):
  absl's own `--help` finds the module by the program's name, which an installed console script
  does not share."""
  module = flags.FLAGS.find_module_defining_flag(flag.name)

  def parser(argv: list[str]) -> list[str]:
    if any(arg in _HELP for arg in argv[1:]):
      print(f"{usage.strip()}\n\nflags:\n{flag_help(module)}")
      sys.exit(0)
    return parse_flags(argv)

  app.run(main, flags_parser=parser)


def flag_help(module: str) -> str:
  """One line per flag `module` defines: `  --name: meaning (default: value)`."""
  lines = []
  for f in sorted(flags.FLAGS.get_flags_for_module(module), key=lambda f: f.name):
    default = "" if f.default is None else f" (default: {f.default_as_str})"
    meaning = " ".join(f.help.split())  # absl appends a second line to multi flags' help
    lines.append(f"  --{'[no]' if f.boolean else ''}{f.name}: {meaning}{default}")
  return "\n".join(lines)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parser (pass as `app.run(main, flags_parser=parse_flags)`). An override naming
  no config field surfaces from ml_collections as a bare AttributeError / KeyError traceback;
  here it is one line naming the flag and the nearest field."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError):
    message = unknown_override(argv)
    if message is None:  # not an override's doing: keep the traceback
      raise
    fail(message)


def unknown_field(config: ml_collections.ConfigDict, path: str) -> str | None:
  """None if the dotted `path` names a field of `config`, else why not (with the nearest name)."""
  node, seen = config, "config"
  for key in path.split("."):
    if not isinstance(node, ml_collections.ConfigDict):
      return f"{seen} is {node!r}, not a group of fields"
    if key not in node:
      close = difflib.get_close_matches(key, list(node.keys()), n=1)
      hint = (f"did you mean {seen}.{close[0]}?" if close
              else f"it has {', '.join(sorted(node.keys()))}")
      return f"{seen} has no field {key!r}; {hint}"
    node, seen = node[key], f"{seen}.{key}"
  return None


def _flag_names(argv: list[str]) -> list[tuple[str, str | None]]:
  """(name, value or None) of each `--name[=value]` / `-name` argument; the value of
  `--name value` is the next argument."""
  out = []
  for i, arg in enumerate(argv[1:], start=1):
    if not arg.startswith("-") or arg in ("-", "--"):
      continue
    name, eq, value = arg.lstrip("-").partition("=")
    out.append((name, value if eq else (argv[i + 1] if i + 1 < len(argv) else None)))
  return out


def unknown_override(argv: list[str], flag: str = "config") -> str | None:
  """'--config.a.b: <why>' for the first `--config.a.b=v` override that names no field of the
  config `--config=` loads, or None when every override names one."""
  names = _flag_names(argv)
  spec = next((value for name, value in names if name == flag), None)
  if spec is None:
    return None
  from rlvr_jax import configs_base  # local: `--help` stays fast (no jax import)
  config = configs_base.load_config(spec)
  for name, _ in names:
    path = name[2:] if name.startswith(f"no{flag}.") else name  # --noconfig.a.b for booleans
    if path.startswith(f"{flag}."):
      why = unknown_field(config, path[len(flag) + 1:])
      if why is not None:
        return f"--{path}: {why}"
  return None
