"""A throw-away single-node SLURM for the tests (and for trying `hpcfit submit` by hand).

``slurm_cluster`` (session-scoped fixture) gives a running SLURM whose daemons (munged, slurmctld, slurmd) and
files live in a temporary directory: its own munge key and socket, its own ports, a generated ``slurm.conf``
describing this machine as one node (``slurmd -C``), ``select/cons_tres``, ``MpiDefault=pmi2``,
``proctrack/linuxproc`` (no cgroups needed) and ``JobRequeue=1``. Client commands reach it through
``SLURM_CONF``, which ``SlurmCluster.env`` sets; jobs inherit that environment from ``sbatch``. Nothing under
/etc is touched. When the packages are missing and we run as root, ``slurm-wlm`` and ``munge`` are installed with
apt-get (about 15 s here); otherwise the tests that need SLURM skip with the reason.

By hand: ``python tests/slurm_cluster.py`` starts one and prints the ``export SLURM_CONF=...`` line; Ctrl-C
(or `kill PID`) stops it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
# Requeued jobs become eligible again only after the job credential lifetime; SLURM's default (120 s) would
# make every requeue test wait two minutes.
CRED_EXPIRE_SECONDS = 5
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                   "BOOT_FAIL", "DEADLINE"}


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started here; the message is the skip reason."""


def _which(name: str) -> str | None:
    return shutil.which(name) or next((f"{d}/{name}" for d in SBIN_DIRS if os.access(f"{d}/{name}", os.X_OK)),
                                      None)


def ensure_installed() -> None:
    """Install slurm-wlm and munge with apt-get when they are missing (root only)."""
    if all(_which(name) for name in (*DAEMONS, "sbatch", "srun", "scontrol")):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("SLURM is not installed and we are not root to install it "
                               f"(apt-get install {' '.join(PACKAGES)})")
    if not shutil.which("apt-get"):
        raise SlurmUnavailable("SLURM is not installed and there is no apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:  # a stale package list is the usual cause
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=900)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0 or not all(_which(name) for name in DAEMONS):
        raise SlurmUnavailable(f"apt-get install {' '.join(PACKAGES)} failed: {result.stderr.strip()[-500:]}")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _node_line(hostname: str) -> str:
    """This machine as a SLURM node: `slurmd -C` (CPUs, sockets, cores, memory), reachable on the loopback."""
    probe = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, timeout=60)
    line = next((ln for ln in probe.stdout.splitlines() if ln.startswith("NodeName=")), "")
    if not line:
        line = f"NodeName={hostname} CPUs={os.cpu_count() or 1}"
    line = re.sub(r"^NodeName=\S+", f"NodeName={hostname}", line)
    # Leave room for the daemons so that the node never registers with less memory than it advertises.
    line = re.sub(r"RealMemory=(\d+)", lambda m: f"RealMemory={max(int(m.group(1)) * 9 // 10, 1)}", line)
    return f"{line} NodeAddr=127.0.0.1 State=UNKNOWN"


def _slurm_conf(root: Path, hostname: str, ports: list[int]) -> str:
    return "\n".join([
        f"ClusterName=hpcfit{secrets.token_hex(3)}",
        f"SlurmctldHost={hostname}(127.0.0.1)",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root}/munge/munge.socket,cred_expire={CRED_EXPIRE_SECONDS}",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log",
        f"SlurmdLogFile={root}/slurmd.log",
        "ProctrackType=proctrack/linuxproc",  # no cgroups in this sandbox
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "MpiDefault=pmi2",
        "JobRequeue=1",
        "ReturnToService=2",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_interval=1,bf_interval=1",  # start eligible (e.g. requeued) jobs promptly
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "MinJobAge=3600",  # finished jobs stay visible to squeue/scontrol (there is no accounting database)
        "KillWait=10",
        "InactiveLimit=0",
        _node_line(hostname),
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


@dataclass
class SlurmCluster:
    """A running single-node SLURM; `env` is what its client commands and jobs need."""

    root: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def command(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def jobs(self, job_id: str) -> dict[str, dict[str, str]]:
        """Every job (or array task) of `job_id` -> its `scontrol show job` fields (JobState, ExitCode, ...)."""
        out = self.command("scontrol", "-o", "show", "job", str(job_id), check=False).stdout
        found = {}
        for line in out.splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            if "JobId" in fields:
                task = fields.get("ArrayTaskId")
                key = f"{fields['ArrayJobId']}_{task}" if task and fields.get("ArrayJobId") else fields["JobId"]
                found[key] = fields
        return found

    def wait(self, job_ids: list[str], *, timeout: float = 600, poll: float = 0.5) -> dict[str, dict[str, str]]:
        """Wait until every job/task of `job_ids` has finished (a hang guard, not a time limit); return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = {key: fields for job in job_ids for key, fields in self.jobs(job).items()}
            pending_merge = any(f.get("Reason") == "DependencyNeverSatisfied" for f in found.values())
            if found and (pending_merge or all(f["JobState"] in TERMINAL_STATES for f in found.values())):
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"SLURM jobs {job_ids} still not finished after {timeout:.0f} s: "
                                   f"{ {k: f['JobState'] for k, f in found.items()} }")
            time.sleep(poll)

    def wait_running(self, job_id: str, *, timeout: float = 300) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fields = self.jobs(job_id).get(job_id)
            if fields and fields["JobState"] == "RUNNING":
                return fields
            time.sleep(0.2)
        raise TimeoutError(f"SLURM job {job_id} did not start within {timeout:.0f} s")

    def cancel_all(self) -> None:
        self.command("scancel", "--user", str(os.getuid()), check=False)

    def stop(self) -> None:
        """Cancel our jobs (so no job step outlives slurmd), stop the daemons, remove the directory."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            self.cancel_all()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.command("squeue", "-h", check=False).stdout.strip():
                time.sleep(0.3)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.processes.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(parts)


def start_cluster(timeout: float = 60) -> SlurmCluster:
    """Start munged, slurmctld and slurmd in a new temporary directory; wait until the node is idle."""
    ensure_installed()
    if os.geteuid() != 0:  # SlurmUser/SlurmdUser=root: the daemons must run as root
        raise SlurmUnavailable("the test SLURM runs its daemons as root, and we are not root")
    # munged insists that every directory above its socket is world-searchable (pytest's tmp dirs are not).
    root = Path(tempfile.mkdtemp(prefix="hpcfit-slurm-", dir="/tmp"))
    root.chmod(0o755)
    for sub in ("munge", "state", "spool"):
        (root / sub).mkdir()
    (root / "munge").chmod(0o755)
    key = root / "munge" / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o400)
    hostname = socket.gethostname().split(".")[0]
    (root / "slurm.conf").write_text(_slurm_conf(root, hostname, _free_ports(2)))
    env = dict(os.environ, SLURM_CONF=str(root / "slurm.conf"))
    for name in ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
        env.pop(name, None)  # running inside a real SLURM job must not leak into ours
    cluster = SlurmCluster(root, env)
    commands = {
        "munged": [_which("munged"), "-F", f"--key-file={key}", f"--socket={root}/munge/munge.socket",
                   f"--pid-file={root}/munge/munged.pid", f"--log-file={root}/munged.log",
                   f"--seed-file={root}/munge/munged.seed"],
        "slurmctld": [_which("slurmctld"), "-D", "-c", "-f", str(root / "slurm.conf")],
        "slurmd": [_which("slurmd"), "-D", "-N", hostname, "-f", str(root / "slurm.conf")],
    }
    try:
        for name, command in commands.items():
            log = open(root / f"{name}.stdout", "wb")
            cluster.processes[name] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                       stdin=subprocess.DEVNULL, start_new_session=True)
            if name == "munged":
                _wait_for(lambda: (root / "munge" / "munge.socket").exists(), 10, "munged did not create its socket")
        _wait_for(lambda: _node_idle(cluster), timeout, "the node did not become idle")
    except SlurmUnavailable as exc:
        dead = [n for n, p in cluster.processes.items() if p.poll() is not None]
        message = f"{exc}{' (exited: ' + ', '.join(dead) + ')' if dead else ''}\n{cluster.log_tail()}"
        cluster.stop()
        raise SlurmUnavailable(message) from None
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _node_idle(cluster: SlurmCluster) -> bool:
    for name, proc in cluster.processes.items():
        if proc.poll() is not None:
            raise SlurmUnavailable(f"{name} exited with code {proc.returncode}")
    result = cluster.command("sinfo", "-h", "-o", "%t", check=False, timeout=20)
    return result.returncode == 0 and result.stdout.strip() == "idle"


def _wait_for(condition, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SlurmUnavailable(f"{message} within {timeout:.0f} s")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node SLURM for this test session (skips with the reason when it cannot be had)."""
    if os.environ.get("HPCFIT_SLURM_TESTS", "1") == "0":
        pytest.skip("SLURM tests disabled (HPCFIT_SLURM_TESTS=0)")
    try:
        cluster = start_cluster()
    except SlurmUnavailable as exc:
        pytest.skip(f"no test SLURM: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops the daemons too
    started = time.monotonic()
    try:
        running = start_cluster()
    except SlurmUnavailable as exc:
        sys.exit(f"cannot start a test SLURM: {exc}")
    print(f"SLURM up in {time.monotonic() - started:.1f} s (files in {running.root}); in another shell:\n"
          f"  export SLURM_CONF={running.conf}\nCtrl-C stops it.", flush=True)
    try:
        while all(p.poll() is None for p in running.processes.values()):
            time.sleep(1)
        print("a daemon exited:\n" + running.log_tail(), file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
