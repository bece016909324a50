"""Start-up stays cheap (docs/cluster.md, bench/scaling/startup.py): the command line and validation import only
what they need, and ``hpcfit.process.quick_frame_modules`` answers astropy's per-config-item module lookups
without resolving every loaded module's path (half of a rank's file-metadata system calls)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("scipy", "matplotlib", "astropy.modeling", "astropy.table", "astropy.cosmology", "sedpy", "h5py",
         "mpi4py.MPI")

PROBE = """
import json, sys
sys.argv[0] = "hpcfit"
from hpcfit.cli import entry
try:
    code = entry()
except SystemExit as exc:
    code = exc.code
print("MODULES " + json.dumps({"count": len(sys.modules), "code": code,
                               "heavy": sorted(m for m in %r if m in sys.modules)}))
"""


def modules_after(*args: str, cwd: Path = REPO) -> dict:
    """Run the ``hpcfit`` command in a fresh interpreter; the modules it had loaded at the end."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", PROBE % (HEAVY,), *args], capture_output=True, text=True, cwd=cwd,
                          env=env)
    line = [x for x in proc.stdout.splitlines() if x.startswith("MODULES ")]
    assert line, proc.stdout + proc.stderr
    return json.loads(line[-1].split(" ", 1)[1])


def test_help_imports_nothing_heavy():
    found = modules_after("--help")
    assert found["code"] == 0 and found["heavy"] == []
    assert found["count"] < 200  # 102 today; numpy alone is ~150


def test_import_hpcfit_is_cheap():
    proc = subprocess.run([sys.executable, "-c", "import sys, hpcfit; print(len(sys.modules), 'numpy' in sys.modules)"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    count, numpy = proc.stdout.split()
    assert numpy == "False" and int(count) < 100, proc.stdout + proc.stderr


def test_validate_sample_needs_no_scipy_or_matplotlib():
    found = modules_after("validate", "sample_agnfinder.yaml", cwd=REPO / "configs")
    assert found["code"] == 0, found
    assert not {"scipy", "matplotlib", "astropy.modeling", "astropy.table", "astropy.cosmology", "mpi4py.MPI"} \
        & set(found["heavy"])


QUICK = """
import inspect, os, sys
from hpcfit.process import configure_process
configure_process()
assert getattr(inspect.getmodule, "hpcfit_quick", False)
import hpcfit.config.schema as target  # a frame of its module-level code is what astropy looks up
frame = sys._getframe()
def resolved(path, *a, **k):
    raise AssertionError("realpath called: " + str(path))
os.path.realpath = resolved
import types
code = compile("import inspect; found = inspect.getmodule(inspect.currentframe())", target.__file__, "exec")
scope = {"__name__": target.__name__}
exec(code, scope)
assert scope["found"] is target, scope["found"]
print("OK")
"""


def test_configure_process_answers_frames_without_resolving_paths():
    proc = subprocess.run([sys.executable, "-c", QUICK], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO), HPCFIT_QUICK_GETMODULE="1"))
    assert proc.stdout.strip() == "OK", proc.stdout + proc.stderr


def test_quick_lookup_falls_back_for_frames_it_cannot_place():
    import inspect

    from hpcfit import process

    original = inspect.getmodule
    try:
        process.quick_frame_modules()
        assert inspect.getmodule is not original
        scope = {"__name__": "not_a_loaded_module"}
        exec(compile("import inspect; found = inspect.getmodule(inspect.currentframe())", "<nowhere>", "exec"),
             scope)
        assert scope["found"] is None  # what the standard lookup says
        assert inspect.getmodule(inspect.currentframe()) is sys.modules[__name__]
        assert inspect.getmodule(json) is json
    finally:
        inspect.getmodule = original


def test_startup_script_counts_path_and_fd_calls_and_the_model_takes_path_calls():
    """bench/scaling/startup.py splits strace's calls into calls on a path (metadata-server round trips on Lustre)
    and fstat of open files; bench/scaling/fit.py gives the model the path calls, or an older file's total."""
    sys.path.insert(0, str(REPO / "bench" / "scaling"))
    import fit
    import startup

    trace = "\n".join([
        '12 newfstatat(AT_FDCWD, "/a/b.py", {st_mode=S_IFREG|0644, st_size=1, ...}, 0) = 0',
        '12 openat(AT_FDCWD, "/a/__pycache__/b.cpython-311.pyc", O_RDONLY|O_CLOEXEC) = 3',
        '12 newfstatat(3, "", {st_mode=S_IFREG|0644, st_size=9, ...}, AT_EMPTY_PATH) = 0',
        '12 fstat(3, {st_mode=S_IFREG|0644, st_size=9, ...}) = 0',
        '13 newfstatat(5, "x.py", <unfinished ...>',
        '13 <... newfstatat resumed>{st_mode=S_IFREG|0644, st_size=1, ...}, 0) = 0',
        '12 getcwd("/tmp", 4096) = 5',
        "+++ exited with 0 +++"])
    calls = startup.count_calls(trace)
    assert (calls["path_calls"], calls["fd_calls"], calls["metadata_syscalls"]) == (4, 2, 5)
    assert calls["path_by_call"] == {"newfstatat": 2, "openat": 1, "getcwd": 1}
    new = {"jobs": {"sample": {"after": {"metadata_syscalls": 9, "path_calls": 4}}}}
    old = {"jobs": {"sample": {"after": {"metadata_syscalls": 9}}}}
    assert fit.startup_calls(new) == {"sample": 4} and fit.startup_calls(old) == {"sample": 9}
