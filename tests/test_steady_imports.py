"""The ``hpcfit`` command's module finder (``hpcfit.steady_imports``): the same modules, files and specs as Python's
own finder, from directory listings taken once; new files import after ``importlib.invalidate_caches()``; off with
``HPCFIT_STEADY_IMPORTS=0``; installed for the command's run only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import machinery
from pathlib import Path

import pytest

from hpcfit import steady_imports
from hpcfit.steady_imports import SteadyFileFinder

REPO = Path(__file__).resolve().parent.parent
TAG = machinery.EXTENSION_SUFFIXES[0]  # e.g. .cpython-311-x86_64-linux-gnu.so


def _run(code: str, *args: str, steady: str | None = None, cwd: Path | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop(steady_imports.ENV_VAR, None)
    if steady is not None:
        env[steady_imports.ENV_VAR] = steady
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=cwd)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    return json.loads(lines[-1].split(" ", 1)[1])


def _tree(root: Path) -> Path:
    """A directory of every kind of entry the finder must tell apart."""
    (root / "regular").mkdir()
    (root / "regular" / "__init__.py").write_text("")
    (root / "regular" / "mod.py").write_text("VALUE = 'regular.mod'\n")
    (root / "spaced" / "inner").mkdir(parents=True)  # namespace packages, nested
    (root / "spaced" / "inner" / "leaf.py").write_text("VALUE = 'leaf'\n")
    (root / "shadowed").mkdir()  # a directory without __init__ loses to a module file of the same name
    (root / "shadowed.py").write_text("VALUE = 'file'\n")
    (root / "winner").mkdir()  # a package wins over a module file of the same name
    (root / "winner" / "__init__.py").write_text("VALUE = 'package'\n")
    (root / "winner.py").write_text("VALUE = 'file'\n")
    (root / "plain.py").write_text("VALUE = 'plain'\n")
    (root / "linked.py").symlink_to(root / "plain.py")
    (root / "dangling.py").symlink_to(root / "nowhere.py")
    (root / "noext").write_text("")  # a file named like a module, no suffix: not a module
    (root / "compiled.pyc").write_bytes(b"")  # sourceless
    (root / ("ext" + TAG)).write_bytes(b"")  # an extension module beside a source file of the same name
    (root / "ext.py").write_text("")
    (root / "stable.abi3.so").write_bytes(b"")
    (root / "extpkg").mkdir()
    (root / "extpkg" / ("__init__" + TAG)).write_bytes(b"")
    (root / "extpkg" / "__init__.py").write_text("")
    return root


NAMES = ["regular", "regular.mod", "spaced", "spaced.inner", "spaced.inner.leaf", "shadowed", "winner", "plain",
         "linked", "dangling", "noext", "compiled", "ext", "stable", "extpkg", "missing", "regular.missing"]


def _summary(spec) -> list | None:
    if spec is None:
        return None
    return [spec.name, spec.origin, type(spec.loader).__name__, spec.has_location,
            None if spec.submodule_search_locations is None else list(spec.submodule_search_locations)]


def _find(finder_class, root: Path, name: str):
    """What a finder of ``finder_class`` answers for ``name``, searching as the path finder does (a package's
    submodules in its own directory)."""
    directory = str(root)
    parts = name.split(".")
    for i in range(1, len(parts)):
        parent = finder_class(directory, *steady_imports._LOADERS).find_spec(".".join(parts[:i]))
        if parent is None or not parent.submodule_search_locations:
            return None
        directory = list(parent.submodule_search_locations)[0]
    return finder_class(directory, *steady_imports._LOADERS).find_spec(name)


@pytest.mark.parametrize("name", NAMES)
def test_the_finder_answers_as_python_s_own(tmp_path, name):
    root = _tree(tmp_path)
    try:
        assert _summary(_find(SteadyFileFinder, root, name)) == _summary(_find(machinery.FileFinder, root, name))
    finally:
        steady_imports._listings.clear()


def test_the_tree_covers_each_kind(tmp_path):
    """The cases above are the ones meant: a namespace package, an extension winning over a source file, ..."""
    root = _tree(tmp_path)
    try:
        found = {name: _summary(_find(SteadyFileFinder, root, name)) for name in NAMES}
    finally:
        steady_imports._listings.clear()
    assert found["spaced.inner"][2] == "NoneType" and found["spaced.inner"][4] == [str(root / "spaced" / "inner")]
    assert found["ext"][1].endswith(TAG) and found["ext"][2] == "ExtensionFileLoader"
    assert found["stable"][1].endswith(".abi3.so")
    assert found["extpkg"][1].endswith("__init__" + TAG)
    assert found["shadowed"][1].endswith("shadowed.py") and found["winner"][1].endswith("__init__.py")
    assert found["compiled"][2] == "SourcelessFileLoader" and found["linked"][1].endswith("linked.py")
    assert found["dangling"] is None and found["noext"] is None and found["missing"] is None


PROBE = """
import importlib, json, sys
from hpcfit import steady_imports
installed = steady_imports.install()
sys.path.insert(0, sys.argv[1])
for name in sys.argv[2:]:
    importlib.import_module(name)
modules = {}
for name, module in sorted(sys.modules.items()):
    spec = getattr(module, "__spec__", None)
    modules[name] = [getattr(module, "__file__", None)] + ([spec.origin, type(spec.loader).__name__,
        list(spec.submodule_search_locations or [])] if spec is not None else [])
steady = sum(isinstance(f, steady_imports.SteadyFileFinder) for f in sys.path_importer_cache.values())
print("RESULT " + json.dumps({"installed": installed, "steady": steady, "modules": modules}))
"""
HEAVY = ["numpy", "scipy.optimize", "h5py", "yaml", "astropy.units", "astropy.io.fits", "threadpoolctl", "mpi4py",
         "hpcfit.cubefit.job", "hpcfit.gridfit.job", "hpcfit.sample.job", "hpcfit.calibrate.job", "sqlite3",
         "regular.mod", "spaced.inner.leaf", "winner", "shadowed", "plain", "linked"]


def test_the_same_modules_from_the_same_files_with_and_without(tmp_path):
    root = _tree(tmp_path)
    for fake in root.glob("*.so"):  # not loadable: only the finder-level test above looks at them
        fake.unlink()
    shutil.rmtree(root / "extpkg")
    (root / "compiled.pyc").unlink()
    on = _run(PROBE, str(root), *HEAVY)
    off = _run(PROBE, str(root), *HEAVY, steady="0")
    assert on["installed"] and on["steady"] > 10, on["steady"]
    assert not off["installed"] and off["steady"] == 0
    assert len(on["modules"]) > 500 and on["modules"] == off["modules"]
    # extension modules with ABI tags came through it
    assert any(v[0] and v[0].endswith(TAG) for v in on["modules"].values())


LATE = """
import importlib, json, sys
from pathlib import Path
from hpcfit import steady_imports
assert steady_imports.install()
root = Path(sys.argv[1])
sys.path.insert(0, str(root))
import regular.mod, plain  # both directories listed now
(root / "late.py").write_text("VALUE = 'late'")
(root / "regular" / "later.py").write_text("VALUE = 'later'")
(root / "spaced" / "also.py").write_text("VALUE = 'also'")
importlib.invalidate_caches()
import late, regular.later, spaced.also
print("RESULT " + json.dumps([late.VALUE, regular.later.VALUE, spaced.also.VALUE]))
"""


def test_files_created_after_start_import_after_invalidate_caches(tmp_path):
    assert _run(LATE, str(_tree(tmp_path))) == ["late", "later", "also"]


ENTRY = """
import json, sys
import hpcfit.cli as cli
from hpcfit import steady_imports
hooks = list(sys.path_hooks)
seen = {}
def main(argv=None):
    seen["enabled"] = steady_imports.enabled()
    import email.mime.text  # an import during the run goes through the steady finders
    seen["steady"] = sum(isinstance(f, steady_imports.SteadyFileFinder) for f in sys.path_importer_cache.values())
    return 0
cli.main = main
code = cli.entry()
left = sum(isinstance(f, steady_imports.SteadyFileFinder) for f in sys.path_importer_cache.values())
print("RESULT " + json.dumps({"code": code, **seen, "left": left, "hooks_back": sys.path_hooks == hooks}))
"""


def test_the_command_uses_it_for_its_run_only():
    found = _run(ENTRY)
    assert found == {"code": 0, "enabled": True, "steady": found["steady"], "left": 0, "hooks_back": True}
    assert found["steady"] > 3
    assert _run(ENTRY, steady="0")["enabled"] is False


def test_python_dash_m_hpcfit_installs_it_before_the_command_line(tmp_path):
    """``python -m hpcfit``: hpcfit.cli and what it imports were found by the steady finder (still there after)."""
    code = ("import runpy, sys, json; sys.argv = ['hpcfit', '--version']\n"
            "try:\n    runpy.run_module('hpcfit', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "from hpcfit import steady_imports\n"
            "print('RESULT ' + json.dumps([steady_imports.enabled(), sorted(type(f).__name__ for p, f in "
            "sys.path_importer_cache.items() if p.endswith('hpcfit/runtime'))]))")
    assert _run(code, cwd=tmp_path) == [True, ["SteadyFileFinder"]]


def test_gettext_catalogue_lookups_are_answered_once_per_run(tmp_path, monkeypatch):
    """argparse's messages go through gettext.find, which stats four catalogue names per message and remembers
    none it did not find; while installed the answers are kept (a catalogue that does exist is still found), and
    uninstall gives back the standard function."""
    code = r"""
import gettext, json, os, sys
from hpcfit import steady_imports
calls = []
real_exists = os.path.exists
def counting(path):
    calls.append(path)
    return real_exists(path)
os.path.exists = counting
def lookups(domain, localedir=None):
    calls.clear()
    answers = [gettext.find(domain, localedir, all=True) for _ in range(5)]
    return len(calls), answers[0], all(a == answers[0] for a in answers)
plain = lookups("argparse")
steady_imports.install()
cached = lookups("argparse")
catalogue = lookups("demo", sys.argv[1])
translated = gettext.translation("demo", sys.argv[1], fallback=True).gettext("hello")
steady_imports.uninstall()
restored = gettext.find.__name__ == "find" and not hasattr(gettext.find, "__wrapped__")
print("RESULT " + json.dumps({"plain": plain, "cached": cached, "catalogue": catalogue,
                              "translated": translated, "restored": restored}))
"""
    messages = tmp_path / "en" / "LC_MESSAGES"
    messages.mkdir(parents=True)
    _write_mo(messages / "demo.mo", {"hello": "hello from the catalogue"})
    monkeypatch.setenv("LANGUAGE", "en_US.UTF-8")  # four names to try, whatever the machine's locale
    got = _run(code, str(tmp_path))
    plain_calls, plain_answer, _ = got["plain"]
    cached_calls, cached_answer, same = got["cached"]
    assert plain_calls >= 5 * 2 and plain_answer == []  # every call looks again
    assert cached_calls == plain_calls // 5 and cached_answer == [] and same
    assert got["catalogue"][1] == [str(messages / "demo.mo")] and got["catalogue"][0] <= 4
    assert got["translated"] == "hello from the catalogue"
    assert got["restored"]


def _write_mo(path: Path, messages: dict[str, str]) -> None:
    """A GNU message catalogue (.mo) holding ``messages`` (the format gettext reads: header, two string tables)."""
    import struct

    keys = sorted(messages)
    ids, strs = b"", b""
    offsets = []
    for key in keys:
        k, v = key.encode(), messages[key].encode()
        offsets.append((len(ids), len(k), len(strs), len(v)))
        ids += k + b"\0"
        strs += v + b"\0"
    n = len(keys)
    start = 7 * 4 + 16 * n
    key_table = b"".join(struct.pack("<II", length, start + o) for o, length, _, _ in offsets)
    value_table = b"".join(struct.pack("<II", length, start + len(ids) + o) for _, _, o, length in offsets)
    header = struct.pack("<7I", 0x950412DE, 0, n, 7 * 4, 7 * 4 + 8 * n, 0, 0)
    path.write_bytes(header + key_table + value_table + ids + strs)
