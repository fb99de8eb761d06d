"""The house rules, read from the source (ast, nothing imported): no private name crosses a module
boundary, no floor imports a higher one, the rungs import only rungs below them, and no import
cycle. CONTRIBUTING.md ("The house: three floors") states the rules; this file enforces them.

Every import counts, at module level or inside a function (a lazy import is still a dependency),
except under ``if __name__ == "__main__":`` (a script's entry point, never run by an import).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "longconv_edu"


def _modules() -> dict[str, tuple[Path, bool]]:
    """{dotted name: (path, is_package)} for every module of the library."""
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


MODULES = _modules()


def _is_main_guard(node: ast.AST) -> bool:
    t = node.test if isinstance(node, ast.If) else None
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in t.comparators))


def _walk(tree: ast.AST):
    """ast.walk without the bodies of ``if __name__ == "__main__":`` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if _is_main_guard(node):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


class Imports:
    """What one module imports from the library: edges (target module, line), private names it
    takes from another module, and the local names bound to library modules."""

    def __init__(self, name: str):
        self.name = name
        path, self.is_pkg = MODULES[name]
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.edges: list[tuple[str, int]] = []
        self.private: list[str] = []
        self.module_names: dict[str, str] = {}         # local name -> library module it is bound to
        for node in _walk(self.tree):
            if isinstance(node, ast.ImportFrom):
                self._from(node)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "longconv_edu":
                        self.edges.append((a.name, node.lineno))
                        if a.asname:
                            self.module_names[a.asname] = a.name
        for node in _walk(self.tree):                  # then every use of module._name
            self._attribute(node)

    def _resolve(self, node: ast.ImportFrom) -> str | None:
        if node.level == 0:
            return node.module
        base = self.name.split(".")
        if not self.is_pkg:
            base = base[:-1]
        base = base[:len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def _from(self, node: ast.ImportFrom) -> None:
        source = self._resolve(node)
        if not source or source.split(".")[0] != "longconv_edu":
            return
        for a in node.names:
            full = f"{source}.{a.name}"
            if full in MODULES:                          # from . import fft: the module itself
                self.edges.append((full, node.lineno))
                self.module_names[a.asname or a.name] = full
            else:
                self.edges.append((source, node.lineno))
            if _private(a.name):
                self.private.append(f"line {node.lineno}: from {source} import {a.name}")

    def _attribute(self, node: ast.AST) -> None:
        if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in self.module_names):
            self.private.append(f"line {node.lineno}: {node.value.id}._{node.attr.lstrip('_')} "
                                f"({self.module_names[node.value.id]})")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2 and isinstance(node.args[0], ast.Name)
                and node.args[0].id in self.module_names and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str) and _private(node.args[1].value)):
            self.private.append(f"line {node.lineno}: {node.func.id}({node.args[0].id}, "
                                f"{node.args[1].value!r})")

    def string_imports(self) -> list[tuple[str, int]]:
        """Library modules named in strings (importlib.import_module("longconv_edu.x"), registries)."""
        return [(n.value, n.lineno) for n in _walk(self.tree)
                if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in MODULES
                and n.value != "longconv_edu"]


IMPORTS = {name: Imports(name) for name in MODULES}


def floor(module: str) -> int:
    """1: the rungs; 2: longconv_edu.lab; 3: longconv_edu.course; 4: the command line (__main__)."""
    parts = module.split(".")
    if parts[1:2] == ["__main__"]:
        return 4
    return {"lab": 2, "course": 3}.get(parts[1] if len(parts) > 1 else "", 1)


#: Floor 1, bottom-up (CONTRIBUTING.md): a rung imports only rungs of a lower or equal rank.
#: ``timing`` and ``dispatch`` serve the rungs (the kernels time themselves; layers ask the
#: registry), and the package's ``__init__`` gathers everything.
RUNG_RANK = {
    "_checks": 0,
    "conv": 1, "timing": 1,
    "fft": 2,
    "butterfly": 3, "io_model": 3,
    "kernels": 4, "tensorcore": 4,
    "regularize": 5, "params": 5, "dispatch": 5,
    "layers": 6,
    "learned": 7,
    "": 8,                                    # longconv_edu/__init__.py
}


def rung_rank(module: str) -> int:
    parts = module.split(".")
    return RUNG_RANK[parts[1] if len(parts) > 1 else ""]


def test_every_module_is_read():
    assert {"longconv_edu", "longconv_edu._checks", "longconv_edu.lab.train",
            "longconv_edu.course.widgets", "longconv_edu.kernels.cpu"} <= set(MODULES)
    assert all(floor(m) < 4 or m == "longconv_edu.__main__" for m in MODULES)
    assert all(rung_rank(m) is not None for m in MODULES if floor(m) == 1)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_crosses_a_module_boundary(name):
    """``from .x import _y``, ``x._y`` and ``getattr(x, "_y")`` on a library module are refused:
    what two modules share is public in the lower one."""
    assert IMPORTS[name].private == [], f"{name} reaches into private names: {IMPORTS[name].private}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_floor_imports_a_higher_one(name):
    """The rungs never import lab or course; lab never imports course (strings given to importlib
    count too: the backend registry may only name rungs)."""
    imp = IMPORTS[name]
    up = [f"line {line}: {target} (floor {floor(target)})"
          for target, line in imp.edges + imp.string_imports() if floor(target) > floor(name)]
    assert up == [], f"{name} (floor {floor(name)}) imports upward: {up}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if floor(m) == 1))
def test_rungs_import_only_rungs_below_them(name):
    up = [f"line {line}: {target}" for target, line in IMPORTS[name].edges
          if floor(target) == 1 and rung_rank(target) > rung_rank(name)]
    assert up == [], f"{name} (rank {rung_rank(name)}) imports a higher rung: {up}"


def test_no_import_cycle():
    graph = {m: {t for t, _ in IMPORTS[m].edges if t in MODULES and t != m} for m in MODULES}
    # a module importing its own package's __init__ is how Python loads packages: not a cycle
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


# the checker itself: each rule catches the case it is for
def _imports_of(tmp_path, monkeypatch, name: str, source: str) -> Imports:
    path = tmp_path / "probe.py"
    path.write_text(source)
    monkeypatch.setitem(MODULES, name, (path, False))
    return Imports(name)


def test_the_checker_sees_private_imports_and_uses(tmp_path, monkeypatch):
    imp = _imports_of(tmp_path, monkeypatch, "longconv_edu.lab.probe", (
        "from ..fft import _roots, fft_size\n"
        "from .. import butterfly\n"
        "def f():\n"
        "    from ..kernels import cpu as kc\n"
        "    return butterfly._x, kc._plan, getattr(butterfly, '_y'), butterfly.__name__\n"))
    assert [p.split(":")[0] for p in imp.private] == ["line 1", "line 5", "line 5", "line 5"]
    assert ("longconv_edu.fft", 1) in imp.edges and ("longconv_edu.kernels.cpu", 4) in imp.edges


def test_the_checker_sees_upward_and_lazy_imports_but_not_main_blocks(tmp_path, monkeypatch):
    imp = _imports_of(tmp_path, monkeypatch, "longconv_edu.conv", (
        "def f():\n"
        "    from .lab import train\n"
        "    import importlib\n"
        "    return importlib.import_module('longconv_edu.course.widgets')\n"
        "if __name__ == '__main__':\n"
        "    from .learned import learned_long_conv\n"))
    targets = [t for t, _ in imp.edges + imp.string_imports()]
    assert targets == ["longconv_edu.lab.train", "longconv_edu.course.widgets"]
    assert floor("longconv_edu.lab.train") == 2 and floor("longconv_edu.course.widgets") == 3
    assert rung_rank("longconv_edu.learned") > rung_rank("longconv_edu.conv")
