"""A small AST mutation-testing runner for hpcfit's science kernels (``make mutants``).

For each job's target modules it enumerates mutants (one small syntactic change each), applies them one at a time
to a *temporary copy* of the package (the worktree is never edited), runs that module's fast tests with
``pytest -x -q`` under a per-mutant timeout, and counts the mutants the tests kill. A mutant that hangs past the
timeout counts as killed. Each job has a time budget: when it cannot run every mutant, it runs a seeded, evenly
spread sample (a fixed shuffle, so any prefix is a uniform sample) and reports how many it ran of how many exist.

Speed: pytest in a fresh interpreter costs ~2 s of imports (numpy, scipy, astropy). The runner imports the
third-party libraries once and forks a child per mutant (the child imports hpcfit from the temporary copy, so no
mutated code ever leaks into the parent). ``--no-fork`` runs a subprocess per mutant instead.

Usage::

    python bench/mutants/run.py [--jobs cubefit,gridfit,sample,calibrate] [--budget SECONDS] [--output FILE]
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime as _dt
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# job -> [(module path, pytest arguments that exercise it quickly, in-process)]
TARGETS: dict[str, list[tuple[str, list[str]]]] = {
    "cubefit": [
        ("hpcfit/cubefit/batched_lm.py", ["tests/test_batched_lm.py", "tests/test_batched_lm_kernels.py"]),
        ("hpcfit/cubefit/boxes.py", ["tests/test_cubefit_boxes.py"]),
    ],
    "gridfit": [
        ("hpcfit/gridfit/chi2.py", ["tests/test_grid_chi2.py", "tests/test_kernel_edges.py"]),
        ("hpcfit/gridfit/reduce.py", ["tests/test_grid_reduce.py", "tests/test_kernel_edges.py"]),
    ],
    "sample": [
        ("hpcfit/sample/axes.py", ["tests/test_sample_kernels.py"]),
        ("hpcfit/sample/permutation.py", ["tests/test_sample_kernels.py"]),
        ("hpcfit/sample/hypercube.py", ["tests/test_sample_kernels.py"]),
        ("hpcfit/sample/counter_rng.py", ["tests/test_sample_kernels.py"]),
    ],
    "calibrate": [
        ("hpcfit/calibrate/kernels/combine.py", ["tests/test_calib_combine.py", "tests/test_kernel_edges.py"]),
        ("hpcfit/calibrate/kernels/calibrate.py", ["tests/test_calib_calibrate.py", "tests/test_kernel_edges.py"]),
    ],
}
SEED = 20261202
_WRONG_IMPORT = 97  # child exit code: hpcfit was not imported from the scratch copy

_BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
               ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd}
_CMP_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
             ast.NotEq: ast.Eq}
_BOOL_SWAP = {ast.And: ast.Or, ast.Or: ast.And}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.BitAnd: "&", ast.BitOr: "|",
           ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
           ast.And: "and", ast.Or: "or"}


@dataclass(frozen=True)
class Mutant:
    """One mutation: the ``site``-th node (in ast.walk order) of ``module`` gets mutation ``kind``."""

    module: str
    site: int
    kind: str
    line: int
    description: str


@dataclass
class Outcome:
    """The result of running one mutant's tests."""

    mutant: Mutant
    killed: bool
    how: str  # "tests", "timeout", "error" (did not import/compile) or "survived"
    seconds: float


@dataclass
class JobReport:
    """Counts for one job."""

    job: str
    total: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def killed(self) -> int:
        return sum(o.killed for o in self.outcomes)

    @property
    def survivors(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.killed]


# ---------------------------------------------------------------- enumeration

def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of docstring constants (mutating them is pointless)."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside a type annotation (not executed under ``from __future__ import annotations``)."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        roots = []
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
        for root in roots:
            ids.update(id(n) for n in ast.walk(root))
    return ids


def _kinds(node: ast.AST) -> Iterator[tuple[str, str]]:
    """The mutations that apply to ``node``: (kind, human description)."""
    if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _BINOP_SWAP:
        old = type(node.op)
        yield "binop", f"{_SYMBOL[old]} -> {_SYMBOL[_BINOP_SWAP[old]]}"
    elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP_SWAP:
        old = type(node.ops[0])
        yield "compare", f"{_SYMBOL[old]} -> {_SYMBOL[_CMP_SWAP[old]]}"
    elif isinstance(node, ast.BoolOp):
        old = type(node.op)
        yield "boolop", f"{_SYMBOL[old]} -> {_SYMBOL[_BOOL_SWAP[old]]}"
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
        yield "constant", f"{node.value!r} -> {node.value + 1!r}"
    elif isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None):
        yield "return", "return x -> return None"
    elif isinstance(node, (ast.If, ast.IfExp, ast.While)):
        yield "negate", f"{type(node).__name__.lower()} cond -> if not cond"
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        yield "unary", "-x -> x"


def _sites(tree: ast.AST) -> Iterator[tuple[int, ast.AST]]:
    """Mutable nodes in a deterministic order (ast.walk), numbered, skipping docstrings and annotations."""
    skip = _docstring_nodes(tree) | _annotation_nodes(tree)
    for index, node in enumerate(ast.walk(tree)):
        if id(node) not in skip:
            yield index, node


def enumerate_mutants(module: str) -> list[Mutant]:
    """Every mutant of one module, in source order."""
    tree = ast.parse((ROOT / module).read_text())
    mutants = [Mutant(module, index, kind, getattr(node, "lineno", 0), text)
               for index, node in _sites(tree) for kind, text in _kinds(node)]
    return sorted(mutants, key=lambda m: (m.line, m.site, m.kind))


def _mutate(node: ast.AST, kind: str) -> ast.AST:
    """Apply ``kind`` to ``node`` (a deep copy of the module's tree) and return its replacement."""
    if kind == "binop":
        node.op = _BINOP_SWAP[type(node.op)]()
    elif kind == "compare":
        node.ops = [_CMP_SWAP[type(node.ops[0])]()]
    elif kind == "boolop":
        node.op = _BOOL_SWAP[type(node.op)]()
    elif kind == "constant":
        node.value = node.value + 1
    elif kind == "return":
        node.value = ast.Constant(value=None)
    elif kind == "negate":
        node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
    elif kind == "unary":
        return node.operand
    return node


class _Replace(ast.NodeTransformer):
    """Swap one node (by identity) for its replacement; needed when a mutation replaces the node itself."""

    def __init__(self, target: ast.AST, replacement: ast.AST):
        self.target, self.replacement = target, replacement

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            return self.replacement
        return super().generic_visit(node)


def mutated_source(mutant: Mutant) -> str:
    """The source of ``mutant.module`` with the mutation applied (re-parsed, so sites are numbered the same)."""
    tree = ast.parse((ROOT / mutant.module).read_text())
    nodes = dict(_sites(tree))
    target = nodes[mutant.site]
    replacement = _mutate(target, mutant.kind)
    if replacement is not target:
        tree = _Replace(target, replacement).visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


# ---------------------------------------------------------------- execution

def _prepare_copy() -> Path:
    """A temporary copy of the package and its tests (compiled once; mutated modules' .pyc are removed)."""
    scratch = Path(tempfile.mkdtemp(prefix="hpcfit-mutants-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in ("hpcfit", "tests"):
        shutil.copytree(ROOT / name, scratch / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", scratch / "pyproject.toml")
    return scratch


def _pytest_args(tests: list[str]) -> list[str]:
    # -p no:cacheprovider: no .pytest_cache writes; -x: the first failure is enough to kill a mutant
    return ["-x", "-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=", *tests]


def _run_forked(scratch: Path, tests: list[str], timeout: float) -> tuple[str, float]:
    """Run pytest in a forked child inside ``scratch``; return (result, seconds): passed / failed / timeout."""
    began = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child: import hpcfit from the scratch copy only, never write bytecode of a mutant
        code = 1
        try:
            os.chdir(scratch)
            sys.dont_write_bytecode = True
            sys.path.insert(0, str(scratch))
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            import pytest
            code = int(pytest.main(_pytest_args(tests)))
            imported = getattr(sys.modules.get("hpcfit"), "__file__", "") or ""
            if not imported.startswith(str(scratch)):
                code = _WRONG_IMPORT  # an installed hpcfit shadowed the scratch copy: the run proves nothing
        finally:
            os._exit(code)
    deadline = began + timeout
    try:
        result = _wait_child(pid, began, deadline)
    except BaseException:  # Ctrl-C while waiting: do not leave the child running on its own
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    if result[0] == "wrong-import":
        raise RuntimeError(f"the tests imported hpcfit from outside {scratch}")
    return result


def _wait_child(pid: int, began: float, deadline: float) -> tuple[str, float]:
    """Poll the forked child until it exits or the deadline passes (then kill it: a timeout)."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            if code == _WRONG_IMPORT:
                return "wrong-import", time.monotonic() - began
            return ("passed" if code == 0 else "failed"), time.monotonic() - began
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - began
        time.sleep(0.02)


def _run_subprocess(scratch: Path, tests: list[str], timeout: float) -> tuple[str, float]:
    """Run pytest in a fresh interpreter (slower, but independent of the runner's state)."""
    began = time.monotonic()
    env = dict(os.environ, PYTHONPATH=str(scratch), PYTHONDONTWRITEBYTECODE="1")
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", *_pytest_args(tests)], cwd=scratch, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - began
    return ("passed" if proc.returncode == 0 else "failed"), time.monotonic() - began


class Runner:
    """Applies mutants to the scratch copy one at a time, restoring the original source after each."""

    def __init__(self, scratch: Path, fork: bool):
        self.scratch, self.fork = scratch, fork
        self.baseline: dict[str, float] = {}

    def run_tests(self, tests: list[str], timeout: float) -> tuple[str, float]:
        run = _run_forked if self.fork else _run_subprocess
        return run(self.scratch, tests, timeout)

    def check_baseline(self, module: str, tests: list[str]) -> float:
        """Seconds the unmutated tests take; raises if they do not pass (a mutant run would be meaningless)."""
        result, seconds = self.run_tests(tests, timeout=600)
        if result != "passed":
            raise RuntimeError(f"baseline tests {tests} for {module} do not pass ({result})")
        self.baseline[module] = seconds
        return seconds

    def run_mutant(self, mutant: Mutant, tests: list[str]) -> Outcome:
        """Write the mutant into the scratch copy, run the tests, and always restore the original file."""
        path = self.scratch / mutant.module
        original = path.read_text()
        source = mutated_source(mutant)
        try:
            compile(source, mutant.module, "exec")
        except SyntaxError:
            return Outcome(mutant, True, "error", 0.0)
        # a generous timeout: a mutated loop may be slower without hanging
        timeout = 3 * self.baseline[mutant.module] + 10
        try:
            path.write_text(source)
            result, seconds = self.run_tests(tests, timeout)
        finally:
            path.write_text(original)
        if result == "timeout":
            return Outcome(mutant, True, "timeout", seconds)
        return Outcome(mutant, result == "failed", "tests" if result == "failed" else "survived", seconds)


def run_job(runner: Runner, job: str, budget: float, log) -> JobReport:
    """Run a seeded, evenly spread sample of the job's mutants until its budget is spent."""
    report = JobReport(job)
    began = time.monotonic()
    tests_of: dict[str, list[str]] = {}
    mutants: list[Mutant] = []
    for module, tests in TARGETS[job]:
        tests_of[module] = tests
        mutants += enumerate_mutants(module)
        seconds = runner.check_baseline(module, tests)
        log(f"[{job}] baseline {module}: tests pass in {seconds:.1f} s")
    report.total = len(mutants)
    order = list(mutants)
    random.Random(f"{SEED}-{job}").shuffle(order)  # any prefix is a uniform sample of the job's mutants
    for mutant in order:
        if time.monotonic() - began > budget:
            break
        outcome = runner.run_mutant(mutant, tests_of[mutant.module])
        report.outcomes.append(outcome)
        if not outcome.killed:
            log(f"[{job}] survived {mutant.module}:{mutant.line} {mutant.description}")
    report.seconds = time.monotonic() - began
    return report


# ---------------------------------------------------------------- reporting

def format_report(reports: list[JobReport], budget: float) -> str:
    """The per-job table, per-module counts and the survivor list."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"hpcfit mutation testing, {stamp}, budget {budget:.0f} s per job", "",
             f"{'job':<10} {'run':>5} {'of':>6} {'killed':>7} {'survived':>9} {'kill rate':>10} {'time':>7}"]
    for r in reports:
        rate = 100.0 * r.killed / len(r.outcomes) if r.outcomes else float("nan")
        lines.append(f"{r.job:<10} {len(r.outcomes):>5} {r.total:>6} {r.killed:>7} {len(r.survivors):>9} "
                     f"{rate:>9.1f}% {r.seconds:>6.0f}s")
    lines += ["", "per module (run / killed):"]
    for r in reports:
        for module, _ in TARGETS[r.job]:
            mine = [o for o in r.outcomes if o.mutant.module == module]
            timeouts = sum(o.how == "timeout" for o in mine)
            lines.append(f"  {module:<42} {len(mine):>4} / {sum(o.killed for o in mine):>4}"
                         + (f"  ({timeouts} by timeout)" if timeouts else ""))
    lines += ["", "survivors:"]
    for r in reports:
        for o in sorted(r.survivors, key=lambda o: (o.mutant.module, o.mutant.line)):
            lines.append(f"  [{r.job}] {o.mutant.module}:{o.mutant.line}  {o.mutant.description}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default=",".join(TARGETS), help="comma-separated jobs (default: all four)")
    parser.add_argument("--budget", type=float, default=180.0, help="seconds per job (default 180)")
    parser.add_argument("--output", default=str(ROOT / "bench/results/mutants.txt"))
    parser.add_argument("--no-fork", action="store_true", help="a fresh interpreter per mutant (slower)")
    parser.add_argument("--list", action="store_true", help="only count the mutants per module")
    args = parser.parse_args(argv)
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    unknown = [j for j in jobs if j not in TARGETS]
    if unknown:
        parser.error(f"unknown job(s) {unknown}; known: {', '.join(TARGETS)}")
    if args.list:
        for job in jobs:
            for module, _ in TARGETS[job]:
                print(f"{job:<10} {module:<42} {len(enumerate_mutants(module)):>5}")
        return 0
    # one BLAS thread: the machine is shared, and the tests are small
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    # third-party pytest plugins are not needed by these tests, and one (zarr's) costs ~1.4 s per run
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    if not args.no_fork:
        # pay the third-party imports once; hpcfit itself is only ever imported by the children
        import astropy.stats  # noqa: F401
        import numpy  # noqa: F401
        import pytest  # noqa: F401
        import scipy.optimize  # noqa: F401
        import scipy.special  # noqa: F401
        import scipy.stats  # noqa: F401
        import scipy.stats.qmc  # noqa: F401
    log = lambda text: print(text, flush=True)  # noqa: E731
    scratch = _prepare_copy()
    try:
        runner = Runner(scratch, fork=not args.no_fork)
        reports = [run_job(runner, job, args.budget, log) for job in jobs]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = format_report(reports, args.budget)
    print("\n" + text, end="")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
