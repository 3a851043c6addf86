"""The layers hold, lazy imports included.

pyproject.toml declares phalanb's layers for import-linter (``lint-imports``, run by .ci/run). These tests read
the same contracts and check them over phalanb's own AST: every import, at module level or inside a function,
goes down the layers, never up; siblings separated by ``|`` never import each other; the two protocols and the two
TEEs stay apart; every module has a layer; and no import circle runs between layers, nor between any two modules.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import phalanb

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

PKG = Path(phalanb.__file__).resolve().parent
PYPROJECT = PKG.parent / "pyproject.toml"


def _contracts() -> dict[str, dict]:
    data = tomllib.loads(PYPROJECT.read_text())
    return {c["id"]: c for c in data["tool"]["importlinter"]["contracts"]}


def _module_name(path: Path) -> str:
    parts = ["phalanb", *path.relative_to(PKG).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(module: str, source: str, *, is_package: bool, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported phalanb module, line, lazy) for every import in ``source``; lazy = inside a function."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "phalanb" and (target := resolve(alias.name)):
                    found.append((target, node.lineno, lazy))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                full = ".".join(base + ([node.module] if node.module else []))
            else:
                full = node.module or ""
            if full.split(".")[0] == "phalanb":
                for alias in node.names:
                    target = f"{full}.{alias.name}" if f"{full}.{alias.name}" in known else resolve(full)
                    if target:
                        found.append((target, node.lineno, lazy))
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def _edges() -> list[tuple[str, str, int, bool]]:
    mods = _modules()
    known = set(mods)
    out = []
    for name, path in mods.items():
        for target, line, lazy in imports_of(name, path.read_text(), is_package=path.name == "__init__.py",
                                             known=known):
            if target != name:
                out.append((name, target, line, lazy))
    return out


def _layers() -> tuple[dict[str, int], dict[str, bool]]:
    """Each top-level member's rank (higher = higher layer) and whether its layer's siblings are independent."""
    layers = _contracts()["layers"]["layers"]
    rank, independent = {}, {}
    for i, layer in enumerate(layers):
        sep = "|" if "|" in layer else ":"
        for member in (m.strip() for m in layer.split(sep)):
            rank[member] = len(layers) - i
            independent[member] = sep == "|"
    return rank, independent


def _member(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package itself (phalanb/__init__.py)


def _ignored(contract_id: str) -> set[tuple[str, str]]:
    return {tuple(s.strip() for s in rule.split("->"))  # type: ignore[misc]
            for rule in _contracts()[contract_id].get("ignore_imports", [])}


def _breaks(edges, rank, independent, ignored) -> list[str]:
    problems = []
    for a, b, line, lazy in edges:
        ma, mb = _member(a), _member(b)
        if ma is None or mb is None or ma == mb or (a, b) in ignored:
            continue
        up = rank[mb] > rank[ma]
        sideways = rank[mb] == rank[ma] and independent[ma]
        if up or sideways:
            problems.append(f"{a} -> {b} (line {line}{', inside a function' if lazy else ''}): "
                            f"{'up a layer' if up else 'between independent siblings'}")
    return problems


def test_every_module_has_a_layer():
    rank, _ = _layers()
    unplaced = sorted({m for m in map(_member, _modules()) if m is not None and m not in rank})
    assert not unplaced, f"place {unplaced} in pyproject.toml's layers (README 'Architecture' says where)"


def test_no_import_goes_up_a_layer_lazy_imports_included():
    rank, independent = _layers()
    assert not _breaks(_edges(), rank, independent, _ignored("layers"))


def test_the_check_sees_an_upward_import_inside_a_function():
    """Not vacuous: a lazy import of a higher layer, as a newcomer might write it, is caught."""
    rank, independent = _layers()
    known = set(_modules())
    source = "def f():\n    from ..session import Session\n    return Session\n"
    edges = [("phalanb.wire.client", t, line, lazy)
             for t, line, lazy in imports_of("phalanb.wire.client", source, is_package=False, known=known)]
    assert edges == [("phalanb.wire.client", "phalanb.session", 2, True)]
    assert _breaks(edges, rank, independent, set()) == [
        "phalanb.wire.client -> phalanb.session (line 2, inside a function): up a layer"]


@pytest.mark.parametrize("contract", ["protocols", "tees"])
def test_independent_packages_never_import_each_other(contract):
    c = _contracts()[contract]
    members = [m.split(".")[1] for m in c["modules"]]
    ignored = _ignored(contract)
    crossing = [f"{a} -> {b} (line {line})" for a, b, line, _ in _edges()
                if _member(a) in members and _member(b) in members and _member(a) != _member(b)
                and (a, b) not in ignored]
    assert not crossing


def test_no_import_circle_runs_between_layers():
    """Between top-level members (folders and ground modules) the imports form no loop, lazy ones included."""
    ignored = _ignored("layers")
    graph: dict[str, set[str]] = {}
    for a, b, _, _ in _edges():
        ma, mb = _member(a), _member(b)
        if ma and mb and ma != mb and (a, b) not in ignored:
            graph.setdefault(ma, set()).add(mb)
    state: dict[str, int] = {}
    loop: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                loop.extend(path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, path + [node]):
                return True
        state[node] = 2
        return False

    assert not any(visit(n, []) for n in sorted(graph) if state.get(n) is None), f"import circle: {loop}"


def import_circles(edges) -> list[str]:
    """Every import circle among modules (a strongly connected group of more than one), each named by its modules
    and the imports that tie them, with their lines; lazy imports count like any other."""
    graph: dict[str, set[str]] = {}
    for a, b, _, _ in edges:
        graph.setdefault(a, set()).add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan: a module's group is closed when no import leads back above it
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    named = []
    for group in groups:
        ties = sorted({f"{a} -> {b} (line {line}{', inside a function' if lazy else ''})"
                       for a, b, line, lazy in edges if a in group and b in group})
        named.append(f"circle {' '.join(sorted(group))}: {'; '.join(ties)}")
    return sorted(named)


def test_no_import_circle_among_modules_lazy_imports_included():
    """Module by module, not only between layers: no two modules need each other, even through an import inside a
    function. What both sides need belongs in a module below them."""
    circles = import_circles(_edges())
    assert not circles, "\n".join(circles)


def test_the_circle_check_sees_a_circle_closed_by_a_lazy_import():
    """Not vacuous: one lazy import back up (the simulated PKI asking for the GPU simulator) is named as a circle."""
    known = set(_modules())
    source = "def f():\n    from .sim import SimulatedGpus\n    return SimulatedGpus\n"
    back = [("phalanb.gpu.sim_pki", t, line, lazy)
            for t, line, lazy in imports_of("phalanb.gpu.sim_pki", source, is_package=False, known=known)]
    circles = import_circles(_edges() + back)
    assert len(circles) == 1
    assert {"phalanb.gpu.sim", "phalanb.gpu.sim_pki"} <= set(circles[0].partition(":")[0].split()[1:])
    assert "phalanb.gpu.sim_pki -> phalanb.gpu.sim (line 2, inside a function)" in circles[0]


def test_the_wire_and_the_model_servers_name_the_same_signing_algorithms():
    """The client checks ``signing_algo`` without importing the protocol; both spell the same pair."""
    from phalanb.vllm.signatures import ALGOS
    from phalanb.wire.client import ALGOS as WIRE_ALGOS

    assert WIRE_ALGOS == ALGOS
