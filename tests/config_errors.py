"""Shared checks for the bad-config tests of every job: exit code 2, FILE:LINE: key.path in the message, the
expected wording, and no output file."""

from __future__ import annotations

import re
from pathlib import Path

from hpcfit.cli import main
from launch import assert_every_rank_exited, hpcfit


def check_bad_config(workdir: Path, good: str, edit: tuple[str, str], where: str, what: str, capsys,
                     outputs: str = "out.h5*") -> None:
    """Apply ``edit`` (old, new) to the good config, run it in-process, and check the report."""
    old, new = edit
    assert old in good, old
    (workdir / "cfg.yaml").write_text(good.replace(old, new, 1))
    code = main(["run", str(workdir / "cfg.yaml")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert re.search(where, err), err
    assert what in err, err
    assert not list(workdir.glob(outputs))


def check_config_error_under_mpi(workdir: Path, text: str, fragment: str, outputs: str = "out.h5*") -> None:
    """Under mpiexec -n 2 every rank exits 2, rank 0 reports once, and nobody prints a traceback."""
    (workdir / "mpi.yaml").write_text(text)
    result = hpcfit(["run", "mpi.yaml"], n=2, cwd=workdir, probe_ranks=True)
    assert result.returncode == 2, result.output
    assert_every_rank_exited(result, 2, 2)
    assert result.stderr.count(fragment) == 1, result.stderr
    assert "Traceback" not in result.output
    assert not list(workdir.glob(outputs))
