"""Imports for one run of the ``hpcfit`` command without re-checking directories that do not change.

CPython's path finder (``importlib.machinery.FileFinder``) does, for every import and every directory it searches,
one ``stat`` of the directory (is its listing cached from an older modification time?) and then one ``stat`` per
candidate file it saw in that listing (``numpy/__init__`` is tried with four suffixes). For a rank that imports
900-1,300 modules through a sys.path of half a dozen directories that is most of its file-metadata system calls,
each a round trip to the metadata server when the Python environment sits on Lustre or GPFS (docs/cluster.md).

During one run the installed packages do not change, so ``SteadyFileFinder`` lists each directory once
(``os.scandir``: the entry types come with the listing on Linux, no ``stat`` per file) and answers every later
lookup from that listing. It is a ``FileFinder`` with the same loaders, so modules, ``__file__``, spec origins,
packages, namespace packages and extension modules come out exactly as before; zip files and any path entry it
cannot list are left to the standard hooks. ``importlib.invalidate_caches()`` forgets every listing (the documented
way to import a file created after start-up). The ``hpcfit`` command installs it for its run (``install`` /
``uninstall``); ``HPCFIT_STEADY_IMPORTS=0`` turns it off. Standard library only: it runs before anything else.

The same holds for the message catalogues of ``gettext``, through which argparse passes each of its messages:
``gettext.find`` tries four file names per message (``en_US.UTF-8``, ``en_US``, ``en.UTF-8``, ``en``) and keeps
no memory of the catalogues it did not find, about 130 ``stat`` calls per run. While installed, its answers are
kept per (domain, directory, language variables).
"""

from __future__ import annotations

import os
import sys
from importlib import machinery

try:  # the joining FileFinder itself uses, so paths come out character for character the same
    from importlib._bootstrap_external import _path_join
except ImportError:  # pragma: no cover - other interpreters
    _path_join = os.path.join

ENV_VAR = "HPCFIT_STEADY_IMPORTS"
# Where imports may ignore case (and, on Windows, suffix case) FileFinder keeps extra caches: not worth copying.
_CASE_INSENSITIVE = ("win", "cygwin", "darwin")
_LOADERS = ((machinery.ExtensionFileLoader, machinery.EXTENSION_SUFFIXES),
            (machinery.SourceFileLoader, machinery.SOURCE_SUFFIXES),
            (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES))
_SUFFIX_LOADERS = [(suffix, loader) for loader, suffixes in _LOADERS for suffix in suffixes]  # FileFinder._loaders

# directory -> {name: DirEntry}, or None when the directory could not be listed. DirEntry answers is_file/is_dir
# from the listing's entry type and stats only symbolic links or file systems that give no type (once per entry).
_listings: dict[str, dict[str, os.DirEntry] | None] = {}


def _listing(directory: str) -> dict[str, os.DirEntry] | None:
    try:
        return _listings[directory]
    except KeyError:
        pass
    try:
        with os.scandir(directory) as entries:
            found: dict[str, os.DirEntry] | None = {entry.name: entry for entry in entries}
    except OSError:
        found = None
    _listings[directory] = found
    return found


def _is_file(directory: str, name: str) -> bool:
    """``os.path.isfile(directory/name)`` from the listing (a ``stat`` only if the directory cannot be listed)."""
    listing = _listing(directory)
    if listing is None:
        return os.path.isfile(_path_join(directory, name))
    entry = listing.get(name)
    try:
        return entry is not None and entry.is_file()
    except OSError:
        return False


def _is_dir(directory: str, name: str) -> bool:
    entry = (_listing(directory) or {}).get(name)
    try:
        return entry is not None and entry.is_dir()
    except OSError:
        return False


class SteadyFileFinder(machinery.FileFinder):
    """``FileFinder.find_spec`` step for step, with the directory's cached listing in place of its ``stat`` calls."""

    def find_spec(self, fullname, target=None):
        listing = _listing(self.path)
        if listing is None:  # vanished or unreadable since the hook took it: the standard way
            return super().find_spec(fullname, target)
        tail = fullname.rpartition(".")[2]
        is_namespace = False
        if tail in listing and _is_dir(self.path, tail):  # a package: an __init__ of any loader's suffix inside
            base_path = _path_join(self.path, tail)
            for suffix, loader_class in self._loaders:
                init = "__init__" + suffix
                if _is_file(base_path, init):
                    return self._get_spec(loader_class, fullname, _path_join(base_path, init), [base_path], target)
            is_namespace = True  # unless a module file of that name comes first, below
        for suffix, loader_class in self._loaders:
            if tail + suffix in listing and _is_file(self.path, tail + suffix):
                return self._get_spec(loader_class, fullname, _path_join(self.path, tail + suffix), None, target)
        if is_namespace:
            spec = machinery.ModuleSpec(fullname, None)
            spec.submodule_search_locations = [_path_join(self.path, tail)]
            return spec
        return None

    def invalidate_caches(self):
        _listings.clear()
        super().invalidate_caches()

    def __repr__(self):
        return f"SteadyFileFinder({self.path!r})"


def _path_hook(path: str) -> SteadyFileFinder:
    """sys.path_hooks entry: a steady finder for a directory it can list; anything else to the next hook."""
    finder = SteadyFileFinder(path, *_LOADERS)
    if _listing(finder.path) is None:
        raise ImportError("not a directory this finder can list", path=path)
    return finder


def _is_standard(finder: object) -> bool:
    """A plain FileFinder with the interpreter's own loaders (one we may replace without changing an import)."""
    return type(finder) is machinery.FileFinder and finder._loaders == _SUFFIX_LOADERS  # type: ignore[attr-defined]


_replaced: dict[str, object] = {}


def enabled() -> bool:
    return _path_hook in sys.path_hooks


def install() -> bool:
    """Put the steady finder in front of the standard directory finder, for sys.path and package paths, and
    return whether this call installed it (False: already there, turned off, or an unsupported platform)."""
    if enabled() or os.environ.get(ENV_VAR) == "0" or sys.platform.startswith(_CASE_INSENSITIVE):
        return False
    # First, even before zipimport's hook, which stats every new directory to see whether it is a zip file: this
    # one refuses anything it cannot list as a directory, and the standard hooks then take it as before.
    sys.path_hooks.insert(0, _path_hook)
    _steady_gettext(True)
    for path, finder in list(sys.path_importer_cache.items()):
        if _is_standard(finder):
            try:
                sys.path_importer_cache[path] = _path_hook(path)
            except ImportError:
                continue
            _replaced[path] = finder
    return True


def uninstall() -> None:
    """Back to the standard finders (an in-process caller of the command keeps its usual imports afterwards)."""
    if enabled():
        sys.path_hooks.remove(_path_hook)
        _steady_gettext(False)
    for path, finder in list(sys.path_importer_cache.items()):
        if isinstance(finder, SteadyFileFinder):
            if path in _replaced:
                sys.path_importer_cache[path] = _replaced[path]
            else:
                del sys.path_importer_cache[path]
    _replaced.clear()
    _listings.clear()


_LANGUAGE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")  # what gettext.find reads when not told


def _steady_gettext(on: bool) -> None:
    """Remember ``gettext.find``'s answers (on) or forget them and restore it (off)."""
    import gettext

    original = getattr(gettext.find, "__wrapped__", gettext.find)
    if not on:
        gettext.find = original
        return
    found: dict[tuple, object] = {}

    def find(domain, localedir=None, languages=None, all=False):  # noqa: A002 - gettext's own signature
        if languages is not None:  # a caller's explicit list: rare, not worth a key
            return original(domain, localedir, languages, all)
        key = (domain, localedir, bool(all), tuple(os.environ.get(name) for name in _LANGUAGE_VARIABLES))
        if key not in found:
            found[key] = original(domain, localedir, languages, all)
        result = found[key]
        return list(result) if isinstance(result, list) else result  # callers may change the list they get

    find.__wrapped__ = original  # type: ignore[attr-defined]
    gettext.find = find
