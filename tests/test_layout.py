"""The tree shows the data path and keeps showing it (the house rules, checked on every run).

- Each package's top level holds at most `TOP_LEVEL_LIMIT` modules: a new module goes into the
  room of its job (a subpackage), not beside the entry points.
- No import cycle between modules, counting imports inside functions and under
  TYPE_CHECKING (a cycle hidden in a function is still a cycle).
- `edge_agent`'s rooms are layered along the data path (`LAYERS`, lowest first): a module
  imports from its own room or a lower one, never a higher one. So `scoring/` never reaches
  into `runtime/`, and `config/` (every setting) never into the code that uses it.
- `edge_agent` never imports TensorFlow or `model_build` (it installs on a Pi without them).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_agent", "model_build")
TOP_LEVEL_LIMIT = 8
"""Modules directly in a package (its `__init__.py` counted)."""
LAYERS = (
    (
        "edge_agent.errors",
        "edge_agent.jsonsafe",
        "edge_agent.arrays",
        "edge_agent.events",
        "edge_agent.private",
    ),
    ("edge_agent.scoring",),
    ("edge_agent.audio",),
    ("edge_agent.config",),
    ("edge_agent.bundle",),
    ("edge_agent.sources",),
    ("edge_agent.runtime",),
    ("edge_agent.sinks",),
    ("edge_agent.adaptation",),
    ("edge_agent.fleet",),
    ("edge_agent.agent",),
    ("edge_agent.commands",),
    ("edge_agent.cli", "edge_agent"),
)
"""The rooms of `edge_agent` from the bottom up: the data path (audio in, scores, settings, the
bundle, sources, one machine's runtime, sinks), then what adapts and distributes, then the
agent and its commands."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every project module `name` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            # `from package import module` imports the module
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] in PACKAGES:
                yield t


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {
        name: {t for t in imports_of(name, path, known) if t != name} for name, path in mods.items()
    }


def layer(name: str) -> int:
    """The index in LAYERS of the room `name` lives in (-1: none)."""
    if name == "edge_agent":
        return len(LAYERS) - 1
    best = -1
    for i, room in enumerate(LAYERS):
        if any(p != "edge_agent" and (name == p or name.startswith(p + ".")) for p in room):
            best = i
    return best


@pytest.mark.parametrize("package", PACKAGES)
def test_a_packages_top_level_stays_small(package: str) -> None:
    top = sorted(p.name for p in (REPO / package).glob("*.py"))
    assert len(top) <= TOP_LEVEL_LIMIT, (
        f"{package}/ has {len(top)} modules at its top level ({', '.join(top)}); at most "
        f"{TOP_LEVEL_LIMIT}: put the new module into the subpackage of its job"
    )


def test_no_import_cycles_counting_imports_in_functions() -> None:
    g = graph()
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(g.get(node, ())):
            if dep not in g:
                continue
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_edge_agent_imports_only_from_its_own_or_a_lower_room() -> None:
    up = []
    for name, deps in graph().items():
        if not name.startswith("edge_agent"):
            continue
        here = layer(name)
        assert here >= 0, f"{name}: in no room of LAYERS (tests/test_layout.py)"
        up += [
            f"{name} -> {d}" for d in sorted(deps) if d.startswith("edge_agent") and layer(d) > here
        ]
    assert not up, (
        "imports against the data path (a lower room importing a higher one):\n" + "\n".join(up)
    )


def test_edge_agent_never_imports_tensorflow_or_model_build() -> None:
    bad = []
    for name, path in modules().items():
        if not name.startswith("edge_agent"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            bad += [
                f"{name}: {m}"
                for m in mods
                if m.split(".")[0] in ("tensorflow", "keras", "model_build")
            ]
    assert not bad, "\n".join(bad)


def test_the_layer_check_can_fail() -> None:
    """The checks above judge real imports: a room importing a higher one is caught."""
    assert layer("edge_agent.scoring.frontend") < layer("edge_agent.runtime.monitor")
    assert layer("edge_agent.config.runtime") < layer("edge_agent.runtime.health")
    assert layer("edge_agent.agent") > layer("edge_agent.fleet.client")
    assert layer("edge_agent") == len(LAYERS) - 1
