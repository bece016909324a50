"""The documentation site builds in strict mode (`mkdocs build --strict`: a warning or a broken link fails), with
the API reference from the docstrings; a page added to docs/ gets into the nav; a broken link fails the build."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
                       reason="mkdocs/mkdocstrings not installed: pip install -e '.[docs]' (make setup does)"),
]


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, cwd=REPO, env=env, timeout=900)


def _hooks():
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", REPO / "scripts" / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_strict_with_the_api_reference(tmp_path):
    done = _build(REPO / "mkdocs.yml", tmp_path / "site")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "WARNING" not in output, output
    api = (tmp_path / "site" / "api.html").read_text()
    for module in ("hpcfit.io.result", "hpcfit.engine.job"):
        assert f'id="{module}"' in api, module
    assert 'id="hpcfit.io.result.JobResult"' in api  # a class documented from its docstring
    for page in ("index", "cubefit", "cluster", "editors", "config_reference"):
        assert (tmp_path / "site" / f"{page}.html").is_file(), page


def test_every_page_is_in_the_nav_or_added_by_the_hook():
    hooks = _hooks()
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    listed = set(hooks._pages(config["nav"]))
    pages = {str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md")}
    assert listed <= pages, f"the nav lists pages that do not exist: {sorted(listed - pages)}"
    nav = [{"Home": "index.md"}, {"Jobs": ["cubefit.md"]}]
    out = hooks.on_config({"nav": nav, "docs_dir": str(REPO / "docs")})
    more = out["nav"][-1][hooks.MORE_PAGES]
    assert more == sorted(pages - {"index.md", "cubefit.md"})


def test_api_reference_lists_only_modules_that_exist():
    hooks = _hooks()
    hooks.API_MODULES = ["hpcfit.io.result", "hpcfit.no_such_module", "hpcfit.nojob.result"]
    text = hooks.on_page_markdown("# API\n\n" + hooks.API_MARKER + "\n", None,
                                  {"config_file_path": str(REPO / "mkdocs.yml")}, None)
    assert "::: hpcfit.io.result" in text and "no_such_module" not in text and "nojob" not in text


def test_a_broken_link_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs)
    (docs / "api.md").write_text("# API reference\n\nleft out of this build\n")  # faster: no docstrings
    (docs / "new_page.md").write_text("# A page nobody listed\n\nSee [the engine](engine.md).\n")
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    config.update(docs_dir=str(docs), hooks=[str(REPO / "scripts" / "mkdocs_hooks.py")])
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    done = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "A page nobody listed" in (tmp_path / "site" / "index.html").read_text()  # in the nav
    (docs / "new_page.md").write_text("# A page nobody listed\n\nSee [nothing](no_such_page.md).\n")
    done = _build(tmp_path / "mkdocs.yml", tmp_path / "site2")
    assert done.returncode != 0
    assert "no_such_page.md" in done.stdout + done.stderr
