"""The optional install extra each `config.init.kind` needs, checked before its loader imports."""

from __future__ import annotations

import importlib.util

# The modules each loader imports (checkpoints/hf.py, checkpoints/gguf.py, tokenizers/hf.py);
# setup.py's extras of the same names install them.
MODULES = {
    "hf": ("safetensors", "tokenizers", "jinja2"),
    "gguf": ("gguf", "safetensors", "tokenizers", "jinja2"),
}


def require(kind: str) -> None:
  """Raises ValueError naming the extra to install when a module `kind`'s loader needs is absent."""
  missing = [m for m in MODULES[kind] if importlib.util.find_spec(m) is None]
  if missing:
    raise ValueError(f"config.init.kind={kind!r} needs the [{kind}] extra: pip install "
                     f"'rlvr_jax[{kind}]' (not installed: {', '.join(missing)})")
