"""Start-up cost of one rank, per job: file-metadata system calls, modules imported, seconds.

    python bench/scaling/startup.py [OUT.json] [--workdir DIR] [--repeat 3]

Each job's demo config (``hpcfit demo JOB``, at a tiny size) is run once to create its inputs, then for every job
``python -m hpcfit run CONFIG`` (one process, no mpiexec: a rank's start-up is the same) is measured

* under ``strace -f -e trace=%file,%fstat`` (every system call that takes a file name: stat, openat, readlink, ...,
  and the fstat family), counted in two kinds: ``path_calls``, the calls that name a path (stat/newfstatat of a
  path, openat, access, readlink, getcwd, execve, ...), each a round trip to the metadata server when the Python
  environment sits on a parallel file system; and ``fd_calls``, fstat of a file already open (``fstat``,
  ``newfstatat(fd, "", AT_EMPTY_PATH)``), answered by the client from the open file. ``metadata_syscalls`` is
  the ``%file`` count of earlier versions of this script (path calls plus newfstatat on an fd),
* with ``python -X importtime`` (the number of modules imported and the import seconds),
* by wall time, best of ``--repeat``,

both as hpcfit runs now ("after") and with the start-up savings turned off ("before": ``HPCFIT_QUICK_GETMODULE=0``,
astropy's configuration items made ``inspect.getmodule`` resolve every loaded module's file; and
``HPCFIT_STEADY_IMPORTS=0``, Python's own module finder, a ``stat`` of every directory searched and every
candidate file on each import, and ``os.path.realpath`` of every library by threadpoolctl). The figures of
``hpcfit --help`` and of the bare interpreter (``python -c pass``, the floor no hpcfit change reaches) are added
for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TINY = {"sample": ["--set", "sample.sampling.n_samples=2000", "--set", "sample.sampling.batch_size=1000"],
        "gridfit": [], "cubefit": [], "calibrate": []}


def environment(savings: bool) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(":"))
    env["HPCFIT_QUICK_GETMODULE"] = "1" if savings else "0"
    env["HPCFIT_STEADY_IMPORTS"] = "1" if savings else "0"
    return env


_CALL = re.compile(r"(?:\d+\s+)?(\w+)\((.*)")
_FD_ONLY = ("fstat", "fstat64")  # in %fstat, not in %file: not part of the older metadata_syscalls count


def count_calls(trace: str) -> dict[str, Any]:
    """Count one ``strace -f -e trace=%file,%fstat`` log: calls on a path and calls on an open file descriptor."""
    path_calls: dict[str, int] = {}
    fd_calls: dict[str, int] = {}
    for line in trace.splitlines():
        m = _CALL.match(line)
        if not m or "resumed>" in line:  # a call interrupted by another thread is counted at its start
            continue
        name, args = m.groups()
        on_fd = name in _FD_ONLY or re.match(r'\d+, ""', args) is not None
        kind = fd_calls if on_fd else path_calls
        kind[name] = kind.get(name, 0) + 1
    by_call = dict(path_calls)
    for name, n in fd_calls.items():
        if name not in _FD_ONLY:
            by_call[name] = by_call.get(name, 0) + n
    return {"metadata_syscalls": sum(by_call.values()), "path_calls": sum(path_calls.values()),
            "fd_calls": sum(fd_calls.values()), "by_call": by_call, "path_by_call": path_calls}


def strace_calls(command: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as log:
        subprocess.run(["strace", "-f", "-o", log.name, "-e", "trace=%file,%fstat", *command], env=env, cwd=cwd,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return count_calls(Path(log.name).read_text())


def modules_and_import_seconds(command: list[str], env: dict[str, str], cwd: Path) -> tuple[int, float]:
    done = subprocess.run([command[0], "-X", "importtime", *command[1:]], env=env, cwd=cwd, check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows = [line.split("|") for line in done.stderr.splitlines() if line.startswith("import time:")
            and "cumulative" not in line]
    top = sum(int(r[1]) for r in rows if not r[2].startswith("  "))  # top-level imports' cumulative µs
    return len(rows), top / 1e6


def wall(command: list[str], env: dict[str, str], cwd: Path, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(command, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
    return best


def measure(command: list[str], cwd: Path, repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, savings in (("before", False), ("after", True)):
        env = environment(savings)
        calls = strace_calls(command, env, cwd)
        modules, seconds = modules_and_import_seconds(command, env, cwd)
        out[label] = {**calls, "modules": modules, "import_seconds": round(seconds, 3),
                      "wall_seconds_best": round(wall(command, env, cwd, repeat), 3)}
    out["ratio"] = round(out["after"]["metadata_syscalls"] / out["before"]["metadata_syscalls"], 3)
    out["path_ratio"] = round(out["after"]["path_calls"] / out["before"]["path_calls"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, nargs="?", default=HERE / "startup.json")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", default="sample,gridfit,cubefit,calibrate")
    args = parser.parse_args(argv)
    if shutil.which("strace") is None:
        raise SystemExit("strace is needed (apt-get install strace)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hpcfit_startup_"))
    python = sys.executable
    # (the launch-to-engine time itself is measured per job by run_jobs.py: its runs' "startup")
    result: dict[str, Any] = {"load_average": os.getloadavg()[0], "python": sys.version.split()[0], "jobs": {}}
    for job in args.jobs.split(","):
        directory = workdir / job
        if not any(directory.glob("*.yaml")):
            subprocess.run([python, "-m", "hpcfit", "demo", job, "--output-dir", str(directory), "-q", *TINY[job]],
                           env=environment(True), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        config = sorted(directory.glob("*.yaml"))[0]
        command = [python, "-m", "hpcfit", "run", config.name, "--set", "run.overwrite=true", "-q", *TINY[job]]
        result["jobs"][job] = measure(command, directory, args.repeat)
        print(job, json.dumps({k: (v["path_calls"], v["fd_calls"], v["modules"], v["wall_seconds_best"])
                               if isinstance(v, dict) else v for k, v in result["jobs"][job].items()}), flush=True)
    result["help"] = measure([python, "-m", "hpcfit", "--help"], workdir, args.repeat)
    result["interpreter"] = strace_calls([python, "-c", "pass"], environment(True), workdir)
    result["load_average_end"] = os.getloadavg()[0]
    args.output.write_text(json.dumps(result, indent=1))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
