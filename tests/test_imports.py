"""The import graph of g3d, read from the source with ``ast`` (imports inside functions count too): no
cycle anywhere, and no module takes a private name (``_x``) from another subpackage."""

from __future__ import annotations

import ast
from pathlib import Path

import g3d

ROOT = Path(g3d.__file__).resolve().parent


def _modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package at ``root`` by dotted name (a package by its own name, for its ``__init__.py``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = ("g3d",) + path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _subpackage(module: str) -> str:
    """``g3d.train.loop`` -> ``g3d.train``; a top-level module (``g3d.cli``) is its own."""
    return ".".join(module.split(".")[:2])


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(modules: dict[str, Path]):
    """(importer, imported module, line, private names taken) for every import of a module of ``modules``."""
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        aliases: dict[str, str] = {}  # local name -> g3d module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in modules:
                        aliases[a.asname or a.name] = a.name
                        yield name, a.name, node.lineno, []
            elif isinstance(node, ast.ImportFrom):
                src = _resolve(name, path, node)
                if src not in modules:
                    continue
                names = []
                for a in node.names:
                    sub = f"{src}.{a.name}"
                    if sub in modules:  # `from g3d.datasets import folder`: that module (not the package's contents)
                        aliases[a.asname or a.name] = sub
                        yield name, sub, node.lineno, []
                    else:
                        names.append(a.name)
                if names:
                    yield name, src, node.lineno, [n for n in names if n.startswith("_") and not n.startswith("__")]
        for node in ast.walk(tree):  # `loop._save` through a module bound by an import
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                yield name, aliases[node.value.id], node.lineno, [node.attr]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
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
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def _graph(found) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for a, b, _, _ in found:
        if a != b:
            edges.setdefault(a, set()).add(b)
    return edges


def _cross_private(found) -> list[str]:
    return sorted(f"{a}:{line} takes {', '.join(names)} from {b}" for a, b, line, names in found
                  if names and _subpackage(a) != _subpackage(b))


def test_no_import_cycle_in_g3d():
    found = cycles(_graph(imports(_modules())))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_module_takes_a_private_name_from_another_subpackage():
    found = _cross_private(imports(_modules()))
    assert not found, "; ".join(found)


def test_the_checks_find_what_they_look_for(tmp_path):
    """A cycle through an import inside a function, and a private name taken from another subpackage, are found."""
    pkg = tmp_path / "g3d"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    for p in (pkg / "__init__.py", pkg / "a" / "__init__.py", pkg / "b" / "__init__.py"):
        p.write_text("")
    (pkg / "a" / "x.py").write_text("from g3d.b.y import _helper\n")
    (pkg / "b" / "y.py").write_text("def f():\n    from g3d.a import x\n    return x._private\n")
    found = list(imports(_modules(pkg)))
    assert cycles(_graph(found)) == [["g3d.a.x", "g3d.b.y"]]
    assert _cross_private(found) == ["g3d.a.x:1 takes _helper from g3d.b.y", "g3d.b.y:3 takes _private from g3d.a.x"]
