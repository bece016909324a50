"""MkDocs hooks of the documentation site (mkdocs.yml: ``hooks``).

* Pages of ``docs/`` that the ``nav`` of mkdocs.yml does not list are added under "More pages", so a new page is
  on the site (and checked by the strict build) the moment it is in ``docs/``; move it to its place in the nav
  when convenient.
* ``docs/api.md`` gets one ``::: module`` block (mkdocstrings) per module of ``API_MODULES`` that exists in this
  tree, in that order: the list may name modules that are still being written without breaking the build.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

# The Python face of hpcfit, documented from its docstrings (in this order). A module that does not exist yet is
# skipped; add new public modules here.
API_MODULES = [
    "hpcfit.api",
    "hpcfit.io.result",
    "hpcfit.cubefit.result",
    "hpcfit.gridfit.result",
    "hpcfit.sample.result",
    "hpcfit.calibrate.result",
    # the MPI-free science of the jobs and the shared models: arrays in, arrays out, usable from a notebook
    "hpcfit.cubefit.batched_lm",
    "hpcfit.cubefit.boxes",
    "hpcfit.gridfit.grid",
    "hpcfit.gridfit.chi2",
    "hpcfit.gridfit.reduce",
    "hpcfit.gridfit.catalog",
    "hpcfit.sample.hypercube",
    "hpcfit.sample.permutation",
    "hpcfit.calibrate.science",
    "hpcfit.models.filters",
    "hpcfit.models.blackbody",
    "hpcfit.models.dl07",
    "hpcfit.models.sed",
    # writing a job: the contract and the config declarations
    "hpcfit.engine.job",
    "hpcfit.config.schema",
]
API_MARKER = "<!-- api-modules -->"
MORE_PAGES = "More pages"


def on_config(config: Any) -> Any:
    """Add the pages of docs/ that the nav does not list, under "More pages"."""
    nav = config.get("nav")
    if not nav:
        return config  # no nav: MkDocs lists every page itself
    listed = set(_pages(nav))
    docs = Path(config["docs_dir"])
    extra = sorted(str(p.relative_to(docs)) for p in docs.rglob("*.md") if str(p.relative_to(docs)) not in listed)
    if extra:
        nav.append({MORE_PAGES: extra})
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Expand the API reference's marker into the modules of API_MODULES that exist."""
    if API_MARKER not in markdown:
        return markdown
    root = str(Path(config["config_file_path"]).parent)
    if root not in sys.path:
        sys.path.insert(0, root)  # find_spec must see this tree's hpcfit, as mkdocstrings does (paths: [.])
    blocks = [f"::: {name}" for name in API_MODULES if _exists(name)]
    return markdown.replace(API_MARKER, "\n\n".join(blocks))


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _pages(nav: Any) -> list[str]:
    """Every page file a nav lists (nested sections included)."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for entry in nav for page in _pages(entry)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _pages(value)]
    return []
