"""The house rules of the package, read from the source: imports only run downward, no import cycle, each job's
code in its own folder, and only a job's MPI side sees the communicator.

The layers, lowest first (docs/engine.md draws them). A module may import its own top-level part and any part of a
lower layer, never a part of its own layer or of a higher one; so two jobs never import each other.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hpcfit"

LAYERS: list[set[str]] = [
    {"_version", "config", "shared_data", "process", "steady_imports"},
    {"disk_cache"},
    {"runtime", "models"},
    {"io"},
    {"engine"},
    {"cubefit", "gridfit", "sample", "calibrate"},
    {"registry"},
    {"api"},
    {"cluster"},
    {"cli"},
    {"__main__"},
    {"__init__"},
]
JOBS = {"cubefit", "gridfit", "sample", "calibrate"}
# A job's modules that take part in collective stages (and so see the communicator); everything else in a job's
# folder is MPI-free science that runs the same in a notebook.
JOB_MPI_MODULES = {"job", "shuffle", "masters", "output", "survey"}
MPI_MODULES = {"hpcfit.runtime.comm", "hpcfit.runtime.schedule", "hpcfit.runtime.shared_array", "mpi4py"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _part(module: str) -> str:
    """The top-level part of hpcfit a module belongs to (``__init__`` for the package itself)."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The hpcfit modules (and mpi4py) a file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from hpcfit.x import y` imports the module hpcfit.x.y when there is one (the package hpcfit.x is then
            # only the way to it, not a dependency)
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(node.module)
    return {name for name in found if name.split(".")[0] in ("hpcfit", "mpi4py")}


@functools.cache
def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {name: {m for m in _imports(path, modules) if m in modules or m.startswith("mpi4py")}
            for name, path in files.items()}


def _layer(part: str) -> int:
    for level, parts in enumerate(LAYERS):
        if part in parts:
            return level
    raise AssertionError(f"hpcfit/{part} is in no layer: add it to LAYERS in {__file__} and to docs/engine.md")


def test_every_part_has_a_layer():
    for name in _graph():
        _layer(_part(name))


def test_imports_run_downward_only():
    upward = []
    for name, targets in _graph().items():
        for target in targets:
            if target.startswith("mpi4py"):
                continue
            here, there = _part(name), _part(target)
            if here != there and _layer(there) >= _layer(here):
                upward.append(f"{name} -> {target}")
    assert not upward, "imports that run sideways or upward:\n  " + "\n  ".join(sorted(upward))


def test_no_import_cycle():
    graph = {name: {t for t in targets if t in _graph()} for name, targets in _graph().items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan), or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("job", sorted(JOBS))
def test_each_job_is_one_folder_with_the_same_shape(job):
    folder = PACKAGE / job
    for module in ("__init__.py", "job.py", "demo.py", "plot.py"):
        assert (folder / module).is_file(), f"hpcfit/{job}/{module} is missing"
    source = (folder / "job.py").read_text()
    assert "JOB = " in source, f"hpcfit/{job}/job.py must define JOB, the job the registry loads"
    assert "    def plot(" in source, f"hpcfit/{job}/job.py must implement the plot hook (hpcfit plot FILE)"


def test_only_the_mpi_side_of_a_job_sees_the_communicator():
    seeing = []
    for name, targets in _graph().items():
        pieces = name.split(".")
        if len(pieces) < 3 or pieces[1] not in JOBS:
            continue
        if pieces[2] not in JOB_MPI_MODULES and targets & MPI_MODULES:
            seeing.append(f"{name} -> {sorted(targets & MPI_MODULES)}")
    assert not seeing, "science modules that import MPI:\n  " + "\n  ".join(seeing)


def test_the_engine_imports_no_job():
    for name, targets in _graph().items():
        if _part(name) in {"engine", "runtime", "io", "config"}:
            assert not {_part(t) for t in targets} & (JOBS | {"registry", "cli"}), name
