"""Layering, read from the source with `ast` (nothing is imported):

* the model level (rlvr_jax/checkpoints, models, algorithms, sampling, rewards) never imports the
  run level: rlvr_jax.training, rlvr_jax.evaluation or the configs (rlvr_jax.configs_base,
  rlvr_jax.config_rules), whether at module level, inside a function, under `if TYPE_CHECKING:`,
  absolute or relative;
* no module of rlvr_jax/training/ is on an import cycle among rlvr_jax's modules, counting every
  import the same way (imports under TYPE_CHECKING and inside functions included).

An import names the module it loads: `from a.b import c` is a.b.c where that is a module (a file
or a package), else a.b; `importlib.import_module("...")` with a literal name counts too. The
parent packages an import also runs (`a/__init__.py` for a.b) are not edges of the graph.
"""

from __future__ import annotations

import ast
import os
import textwrap

from tests.helpers import ROOT

MODEL_LEVEL = ("checkpoints", "models", "algorithms", "sampling", "rewards")
RUN_LEVEL = ("rlvr_jax.training", "rlvr_jax.evaluation", "rlvr_jax.configs_base",
             "rlvr_jax.config_rules")


def _is_module(name: str) -> bool:
  """Whether `name` (dotted) is a module or package of this repository."""
  path = os.path.join(ROOT, *name.split("."))
  return os.path.isfile(path + ".py") or os.path.isfile(os.path.join(path, "__init__.py"))


def _module_name(path: str) -> str:
  rel = os.path.relpath(path, ROOT)[:-len(".py")].split(os.sep)
  return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def imports(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
  """(line, imported module) of every import in `source`, the code of `module`, anywhere in it."""
  package = module if is_package else module.rpartition(".")[0]
  found = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      found += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: from the package, one level up per dot after the first
        parent = package
        for _ in range(node.level - 1):
          parent = parent.rpartition(".")[0]
        base = f"{parent}.{base}" if base else parent
      for alias in node.names:
        sub = f"{base}.{alias.name}"
        found.append((node.lineno, sub if alias.name != "*" and _is_module(sub) else base))
    elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
          and isinstance(node.args[0].value, str)
          and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
               or (isinstance(node.func, ast.Name) and node.func.id in ("import_module",
                                                                          "__import__")))):
      found.append((node.lineno, node.args[0].value))
  return sorted(found)


def _files(*parts: str) -> list[str]:
  out = []
  for dirpath, _, names in os.walk(os.path.join(ROOT, *parts)):
    out += [os.path.join(dirpath, n) for n in names if n.endswith(".py")]
  return sorted(out)


def _imports_of(path: str) -> list[tuple[int, str]]:
  with open(path, encoding="utf-8") as f:
    source = f.read()
  return imports(source, _module_name(path), os.path.basename(path) == "__init__.py")


def _under(name: str, prefix: str) -> bool:
  return name == prefix or name.startswith(prefix + ".")


def test_model_level_never_imports_the_run_level():
  bad = [f"{os.path.relpath(path, ROOT)}:{line}: imports {name}"
         for package in MODEL_LEVEL for path in _files("rlvr_jax", package)
         for line, name in _imports_of(path)
         if any(_under(name, p) for p in RUN_LEVEL)]
  assert not bad, "the model level imports the run level:\n" + "\n".join(bad)


def _graph() -> dict[str, list[tuple[str, str]]]:
  """rlvr_jax module -> [(imported rlvr_jax module, "file:line" of the import)]."""
  graph = {}
  for path in _files("rlvr_jax"):
    where = os.path.relpath(path, ROOT)
    graph[_module_name(path)] = [(name, f"{where}:{line}") for line, name in _imports_of(path)
                                 if _under(name, "rlvr_jax")]
  return graph


def _cycle_through(graph, start: str) -> list[tuple[str, str]] | None:
  """The shortest import cycle from `start` back to it, as (module, "file:line") edges."""
  paths, frontier = {start: []}, [start]
  while frontier:
    nxt = []
    for module in frontier:
      for target, where in graph.get(module, ()):
        edge = paths[module] + [(target, where)]
        if target == start:
          return edge
        if target not in paths:
          paths[target] = edge
          nxt.append(target)
    frontier = nxt
  return None


def test_training_has_no_import_cycle():
  graph = _graph()
  training = sorted(m for m in graph if _under(m, "rlvr_jax.training"))
  assert "rlvr_jax.training.loop" in training  # the walk found the package
  cycles = []
  for module in training:
    cycle = _cycle_through(graph, module)
    if cycle:
      cycles.append(f"{module}: " + "; ".join(f"{where} -> {target}" for target, where in cycle))
  assert not cycles, "import cycles through rlvr_jax/training:\n" + "\n".join(cycles)


def test_the_walk_sees_every_kind_of_import():
  """The checks above only mean something if `imports` finds each form of import."""
  source = textwrap.dedent("""\
      import os
      import rlvr_jax.training.loop
      from rlvr_jax import configs_base, models
      from ..evaluation import evaluate
      from . import hf
      from .manager import Checkpointer
      from typing import TYPE_CHECKING
      if TYPE_CHECKING:
        from rlvr_jax.training.loop import Run
      def f():
        from rlvr_jax.config_rules import check
        import importlib
        return importlib.import_module("rlvr_jax.training.warm_start")
      """)
  assert imports(source, "rlvr_jax.checkpoints.x", is_package=False) == [
      (1, "os"), (2, "rlvr_jax.training.loop"), (3, "rlvr_jax.configs_base"),
      (3, "rlvr_jax.models"), (4, "rlvr_jax.evaluation.evaluate"),
      (5, "rlvr_jax.checkpoints.hf"), (6, "rlvr_jax.checkpoints.manager"), (7, "typing"),
      (9, "rlvr_jax.training.loop"), (11, "rlvr_jax.config_rules"), (12, "importlib"),
      (13, "rlvr_jax.training.warm_start")]
  # In a package's __init__, one dot is the package itself.
  assert imports("from . import finite\nfrom .. import parallel\n", "rlvr_jax.training",
                 is_package=True) == [(1, "rlvr_jax.training.finite"), (2, "rlvr_jax.parallel")]
  graph = {"a": [("b", "a.py:1")], "b": [("c", "b.py:3")], "c": [("a", "c.py:9")], "d": []}
  assert _cycle_through(graph, "b") == [("c", "b.py:3"), ("a", "c.py:9"), ("b", "a.py:1")]
  assert _cycle_through(graph, "d") is None
