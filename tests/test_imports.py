"""The package's imports run one way: no module imports a module that
imports it back, directly or through others. Imports are read from the
source with `ast`, those inside functions included (a late import still
ties two modules together); `if TYPE_CHECKING:` blocks are skipped."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "sr_jax"


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
  return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _top_level_imports(path: pathlib.Path, name: str,
                       known: set[str]) -> set[str]:
  """sr_jax modules that `path` imports, anywhere in it."""
  tree = ast.parse(path.read_text())
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = set()

  def visit(body):
    for node in body:
      if isinstance(node, ast.Import):
        found.update(a.name for a in node.names if a.name in known)
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          up = package.split(".")[:len(package.split(".")) - node.level + 1]
          base = ".".join(up + ([node.module] if node.module else []))
        for alias in node.names:
          sub = f"{base}.{alias.name}"
          if sub in known:
            found.add(sub)
          elif base in known:
            found.add(base)
      elif isinstance(node, ast.If) and not (
          isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
        visit(node.body)
        visit(node.orelse)
      elif isinstance(node, ast.Try):
        visit(node.body)
        for h in node.handlers:
          visit(h.body)
      elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                             ast.ClassDef, ast.With, ast.For, ast.While)):
        visit(node.body)
  visit(tree.body)
  # Importing `a.b.c` first runs the packages `a.b` (and `a`) that are not
  # already being imported as this module's own ancestors.
  for target in list(found):
    parts = target.split(".")
    for i in range(1, len(parts)):
      parent = ".".join(parts[:i])
      if parent in known and not name.startswith(parent + ".") \
          and name != parent:
        found.add(parent)
  found.discard(name)
  return found


def import_graph() -> dict[str, set[str]]:
  modules = _modules()
  known = set(modules)
  return {m: _top_level_imports(p, m, known) for m, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on, out = {}, {}, [], set(), []
  counter = [0]

  def strong(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        strong(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  for v in sorted(graph):
    if v not in index:
      strong(v)
  return out


def _is_ancestor_package(a: str, b: str) -> bool:
  return b.startswith(a + ".")


def test_no_import_cycles():
  graph = import_graph()
  # A package's __init__ re-exporting its own modules is not a cycle: the
  # module does not import the package back. Edges from a module to one of
  # its own ancestor packages are what would close such loops.
  closing = {(m, d) for m, deps in graph.items() for d in deps
             if _is_ancestor_package(d, m)}
  assert not closing, f"modules import their own package: {sorted(closing)}"
  assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


def test_the_checker_finds_a_cycle():
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
      ["a", "b", "c"]]
  assert not _cycles({"a": {"b"}, "b": set()})


@pytest.mark.parametrize("edge", [("sr_jax.core.graph", "sr_jax.lrp"),
                                  ("sr_jax.models.registry",
                                   "sr_jax.weights"),
                                  ("sr_jax.lrp", "sr_jax.models"),
                                  ("sr_jax.runtime", "sr_jax.models")])
def test_core_does_not_import_edges(edge):
  """The core does not reach out to LRP; the registry not to weights; LRP
  not to the models (an arch's preprocessing comes from `sr_jax.archs`);
  the import-time settings not to the models."""
  src, dst = edge
  graph = import_graph()
  seen, todo = set(), [src]
  while todo:
    m = todo.pop()
    if m in seen:
      continue
    seen.add(m)
    todo.extend(graph.get(m, ()))
  assert not any(s == dst or s.startswith(dst + ".") for s in seen), edge
