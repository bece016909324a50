"""Benchmark of the sample job: hpcfit (mpiexec) against a Pool-based single-file reference written the way
agnfinder does it, the collective write against ``dd``, and the 100 M-sample demonstration.

What is compared (same model, same N, same number of processes, the reference's 9-parameter hypercube, DES bands):

* hpcfit: ``mpiexec -n R python -m hpcfit run`` end to end (Python start, model tables, draws, model, keyed
  permutation, Alltoallv or bucket shuffle, collective write); ``run.checkpoint: false`` unless --checkpoint.
* the reference, as agnfinder's write-up and code do it: ``Pool(P)`` with one task per redshift slice
  (``maxtasksperchild=1``: one fresh process per slice); each task builds the *same* built-in model for its slice,
  draws N/P Latin-hypercube rows in its slice with an unseeded generator, evaluates them in batches, and writes a
  partial HDF5 file (samples/theta, normalised_theta, simulated_y, wavelengths). Then one process reads the
  partials and concatenates them file by file (as agnfinder's join does), shuffles with an unseeded
  ``np.random.permutation``, and writes the final file. agnfinder's pyDOE2 ``criterion='correlation'`` LHS (an
  iterative search, far slower) is replaced by a plain LHS, and the join also shuffles for P = 1 (agnfinder
  renames a single partial unshuffled): both in the reference's favour.

Times are wall clock of the whole command; ``cpu`` is the user + system time of every process it started
(``RUSAGE_CHILDREN``), which is what other jobs on a shared machine cannot take away. samples/min/core uses
min(R, cores) cores: on this 2-core machine 4 ranks oversubscribe. Peak memory: hpcfit's
``peak_rss_mb_per_rank`` root attribute; for the reference each pool worker's and the joiner's own ru_maxrss.

Write bandwidth: the sample job's in-memory write pattern (4 datasets, one contiguous block of rows per rank and
dataset, ``hpcfit.io.h5out.OutputFile``) under mpiexec, timed from dataset creation to
close, then an fsync of the file; against ``dd if=/dev/zero bs=64M`` of the same byte count, with
``conv=fdatasync`` (to disk) and without (page cache).

Usage (from the repository root):
  .venv/bin/python bench/sample_vs_pool.py [--sizes 1e6,1e7] [--ranks 1,2,4] [--dtype float64] [--dir DIR]
  .venv/bin/python bench/sample_vs_pool.py --write-bandwidth [--sizes 1e7] [--ranks 1,2]
  .venv/bin/python bench/sample_vs_pool.py --demo [--n 1e8] [--memory-limit '2 GiB'] [--ranks 2]
      (100 M samples in float32; logs every rank's RSS every few seconds; needs ~25 GB of free disk)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hpcfit.process import configure_process  # noqa: E402

configure_process()  # one BLAS thread per process, as the hpcfit command sets, before numpy is imported
import h5py  # noqa: E402
import numpy as np  # noqa: E402

FREE_PARAMS = {  # the reference's default hypercube (agnfinder FreeParams)
    "redshift": (0.0, 6.0),
    "log_mass": (8.0, 12.0),
    "log_agn_mass": (-7.0, math.log10(15)),
    "log_agn_torus_mass": (-7.0, math.log10(15)),
    "dust2": (0.0, 2.0),
    "tage": (0.001, 13.8),
    "log_tau": (math.log10(0.1), math.log10(30)),
    "agn_eb_v": (0.0, 0.5),
    "inclination": (0.0, 90.0),
}
CORES = os.cpu_count() or 1
BATCH = 100_000


def mpiexec() -> str:
    return os.environ.get("HPCFIT_MPIEXEC") or shutil.which("mpiexec.mpich") or shutil.which("mpiexec") or "mpiexec"


def write_config(path: Path, n: int, *, dtype: str, method: str = "latin_hypercube", checkpoint: bool = False,
                 memory_limit: str | None = None, progress: str = "none") -> Path:
    params = "\n".join(f"    {name}: [{lo!r}, {hi!r}]" for name, (lo, hi) in FREE_PARAMS.items())
    limit = f"    memory_limit: {memory_limit}\n" if memory_limit else ""
    path.write_text(f"""job: sample
output: {path.with_suffix('.h5').name}
sample:
  free_params:
{params}
  sampling:
    n_samples: {n}
    seed: 42
    method: {method}
    filters: des
    batch_size: {BATCH}
    dtype: {dtype}
{limit}  model: builtin
run: {{overwrite: true, checkpoint: {str(checkpoint).lower()}, progress: {progress}, progress_interval: 30}}
""")
    return path


class Timed:
    """Wall and CPU (user + system of waited-for children) time of a block that runs subprocesses."""

    def __enter__(self) -> "Timed":
        self._cpu0 = _children_cpu()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t0
        self.cpu = _children_cpu() - self._cpu0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_hpcfit(directory: Path, n: int, ranks: int, *, dtype: str, method: str, checkpoint: bool) -> dict:
    config = write_config(directory / f"hpcfit_n{n}_r{ranks}.yaml", n, dtype=dtype, method=method,
                          checkpoint=checkpoint)
    command = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "hpcfit", "run", config.name]
    with Timed() as t:
        proc = subprocess.run(command, cwd=directory, env=dict(os.environ, PYTHONPATH=str(REPO)),
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout + proc.stderr)
    output = config.with_suffix(".h5")
    with h5py.File(output) as h5:
        rss = [float(x) for x in h5.attrs["peak_rss_mb_per_rank"]]
        result = {"wall": t.wall, "cpu": t.cpu, "rss_mb": rss, "work_s": float(h5.attrs["work_seconds"]),
                  "job_wall_s": float(h5.attrs["wall_seconds"]), "mode": str(h5.attrs["sample_shuffle_mode"]),
                  "bytes": output.stat().st_size}
    output.unlink()
    return result


# ----------------------------------------------------------------------------------------------------------------
# The reference: Pool workers, one redshift slice each, partial files, an in-memory join and an unseeded shuffle
# ----------------------------------------------------------------------------------------------------------------

def _reference_slice(task: tuple[int, int, int, str, str]) -> dict:
    """One pool task: slice k of p (n_k rows in its redshift slice) -> partials/part_k.h5."""
    k, p, n, dtype, directory = task
    from hpcfit.models.sed.builtin import BuiltinSEDModel

    t0 = time.perf_counter()
    names = list(FREE_PARAMS)
    low = np.array([FREE_PARAMS[q][0] for q in names])
    high = np.array([FREE_PARAMS[q][1] for q in names])
    z_lo, z_hi = FREE_PARAMS["redshift"]
    band = (z_lo + (z_hi - z_lo) * k / p, z_lo + (z_hi - z_lo) * (k + 1) / p)
    bounds = {q[4:] if q.startswith("log_") else q: ((10 ** lo, 10 ** hi) if q.startswith("log_") else (lo, hi))
              for q, lo, hi in zip(names, low, high)}
    bounds["redshift"] = band
    model = BuiltinSEDModel("des", bounds=bounds)
    n_k = n * (k + 1) // p - n * k // p
    rng = np.random.default_rng()  # unseeded, as in the reference
    # Latin hypercube of n_k rows; the redshift column is then squeezed into this slice of [0, 1].
    unit = np.empty((n_k, len(names)))
    for j in range(len(names)):
        unit[:, j] = (rng.permutation(n_k) + rng.random(n_k)) / n_k
    unit[:, 0] = (k + unit[:, 0]) / p
    sampled = low + (high - low) * unit
    is_log = np.array([q.startswith("log_") for q in names])
    theta = np.where(is_log, 10.0 ** sampled, sampled)  # the reference stores the exponentiated values
    y = np.empty((n_k, len(model.filter_names)))
    for a in range(0, n_k, BATCH):
        y[a:a + BATCH] = model({q[4:] if q.startswith("log_") else q: theta[a:a + BATCH, j]
                                for j, q in enumerate(names)})
    t1 = time.perf_counter()
    with h5py.File(Path(directory) / f"part_{k:03d}.h5", "w") as h5:
        group = h5.create_group("samples")
        group.create_dataset("theta", data=theta.astype(dtype))
        group.create_dataset("normalised_theta", data=unit.astype(dtype))
        group.create_dataset("simulated_y", data=y.astype(dtype))
        group.create_dataset("wavelengths", data=np.asarray(model.wavelengths))
    return {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "model_s": t1 - t0, "write_s": time.perf_counter() - t1}


def reference_main(n: int, p: int, dtype: str, output: Path) -> dict:
    """The whole reference run (called in a fresh interpreter so its memory is measured on its own)."""
    from multiprocessing import Pool

    partials = output.parent / (output.name + ".partials")
    shutil.rmtree(partials, ignore_errors=True)
    partials.mkdir(parents=True)
    t0 = time.perf_counter()
    with Pool(p, maxtasksperchild=1) as pool:
        workers = pool.map(_reference_slice, [(k, p, n, dtype, str(partials)) for k in range(p)], chunksize=1)
    t1 = time.perf_counter()
    keys = ("theta", "normalised_theta", "simulated_y")
    joined: dict[str, np.ndarray] = {}
    wavelengths = None
    for path in sorted(partials.glob("part_*.h5")):
        with h5py.File(path) as h5:
            for key in keys:  # file by file, as agnfinder's join does: every step copies what is joined so far
                part = h5["samples"][key][()]
                joined[key] = part if key not in joined else np.concatenate([joined[key], part], axis=0)
            wavelengths = h5["samples/wavelengths"][()]
    order = np.random.permutation(n)  # unseeded
    with h5py.File(output, "w") as h5:
        group = h5.create_group("samples")
        for key in keys:
            group.create_dataset(key, data=joined[key][order])
        group.create_dataset("wavelengths", data=wavelengths)
    shutil.rmtree(partials)
    t2 = time.perf_counter()
    return {"workers": workers, "joiner_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "pool_s": t1 - t0, "join_s": t2 - t1}


def run_reference(directory: Path, n: int, p: int, *, dtype: str) -> dict:
    output = directory / f"reference_n{n}_p{p}.h5"
    command = [sys.executable, __file__, "--reference-child", str(n), str(p), dtype, str(output)]
    with Timed() as t:
        proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout + proc.stderr)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(wall=t.wall, cpu=t.cpu, bytes=output.stat().st_size,
                  rss_mb=[w["rss_mb"] for w in result["workers"]] + [result["joiner_rss_mb"]])
    output.unlink()
    return result


# ----------------------------------------------------------------------------------------------------------------
# Write bandwidth: the job's collective write pattern vs dd
# ----------------------------------------------------------------------------------------------------------------

def write_child(n: int, dtype: str, output: Path) -> None:
    """Under mpiexec: write N rows the way the sample job's in-memory path does (each rank one contiguous block of
    rows, one array per dataset), print the timings from rank 0."""
    from hpcfit.io.h5out import OutputFile
    from hpcfit.runtime.comm import world_comm
    from hpcfit.sample.shuffle import block_offsets

    comm = world_comm()
    d, f = 9, 7
    offsets = block_offsets(n, comm.size)
    lo, hi = int(offsets[comm.rank]), int(offsets[comm.rank + 1])
    rng = np.random.default_rng(comm.rank)
    columns = {"samples/theta": d, "samples/normalised_theta": d, "samples/simulated_y": f}
    arrays = {name: rng.random((hi - lo, width)).astype(dtype) for name, width in columns.items()}
    arrays["samples/sample_index"] = np.arange(lo, hi, dtype=np.int64)
    timings = []
    for trial in range(2):  # the first write into fresh page-cache memory is slower on this VM: report both
        comm.barrier()
        t0 = time.perf_counter()
        out = OutputFile(output, comm)
        for name, width in columns.items():
            out.create_dataset(name, (n, width), dtype)
        out.create_dataset("samples/sample_index", (n,), "i8")
        out.write([(name, (slice(lo, hi),), array) for name, array in arrays.items()])
        final = out.commit()
        t1 = time.perf_counter()
        if comm.is_root:
            fd = os.open(final, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            timings.append((t1 - t0, time.perf_counter() - t1, final.stat().st_size))
            if trial == 0:
                final.unlink()
        comm.barrier()
    if comm.is_root:
        (cold, cold_sync, _), (warm, warm_sync, size) = timings
        print(json.dumps({"write_s": warm, "sync_s": warm_sync, "cold_write_s": cold, "cold_sync_s": cold_sync,
                          "bytes": size, "payload": n * ((2 * d + f) * np.dtype(dtype).itemsize + 8),
                          "mode": out.mode}))


def dd(path: Path, nbytes: int, sync: bool) -> float:
    command = ["dd", "if=/dev/zero", f"of={path}", "bs=64M", f"count={nbytes}", "iflag=count_bytes"]
    if sync:
        command.append("conv=fdatasync")
    t0 = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    path.unlink()
    return seconds


def write_bandwidth(directory: Path, sizes: list[int], ranks: list[int], dtype: str, repeat: int) -> list[dict]:
    rows = []
    print(f"\nwrite bandwidth ({dtype}; best of {repeat}; MB = 1e6 bytes)")
    print("HDF5 write = dataset creation to close on every rank; + fsync = then fsync of the file; the first "
          "write of a process (cold) in brackets")
    print(f"{'rows':>12} {'bytes':>14} | {'ranks':>5} {'mode':>6} | {'HDF5 write':>16} {'(cold)':>8} "
          f"{'+ fsync':>16} | {'dd (cache)':>16} {'dd fdatasync':>16} | {'HDF5/dd cache':>13} "
          f"{'HDF5+fsync/dd sync':>18}")
    for n in sizes:
        for r in ranks:
            output = directory / f"write_n{n}_r{r}.h5"
            best = None
            for _ in range(repeat):
                command = [mpiexec(), "-n", str(r), sys.executable, __file__, "--write-child", str(n), dtype,
                           str(output)]
                proc = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ,
                                                                                       PYTHONPATH=str(REPO)))
                if proc.returncode != 0:
                    raise RuntimeError(proc.stdout + proc.stderr)
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                output.unlink()
                if best is None or result["write_s"] + result["sync_s"] < best["write_s"] + best["sync_s"]:
                    best = result
            nbytes = best["bytes"]
            cache = min(dd(directory / "dd.bin", nbytes, False) for _ in range(repeat))
            synced = min(dd(directory / "dd.bin", nbytes, True) for _ in range(repeat))
            mb = nbytes / 1e6
            h5_rate, h5_sync_rate = mb / best["write_s"], mb / (best["write_s"] + best["sync_s"])
            row = {"rows": n, "bytes": nbytes, "ranks": r, "mode": best["mode"], "write_s": best["write_s"],
                   "sync_s": best["sync_s"], "cold_write_s": best["cold_write_s"], "dd_cache_s": cache,
                   "dd_sync_s": synced}
            rows.append(row)
            print(f"{n:>12,} {nbytes:>14,} | {r:>5} {best['mode']:>6} | {best['write_s']:>6.2f} s {h5_rate:>5.0f} MB/s "
                  f"({mb / best['cold_write_s']:>4.0f}) "
                  f"{best['write_s'] + best['sync_s']:>6.2f} s {h5_sync_rate:>5.0f} MB/s | {cache:>6.2f} s "
                  f"{mb / cache:>5.0f} MB/s {synced:>6.2f} s {mb / synced:>5.0f} MB/s | "
                  f"{cache / best['write_s']:>13.2f} {synced / (best['write_s'] + best['sync_s']):>18.2f}")
    return rows


# ----------------------------------------------------------------------------------------------------------------
# The 100 M demonstration: run in the background, log every rank's RSS
# ----------------------------------------------------------------------------------------------------------------

def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            out.append(child)
            todo.append(child)
    return out


def _status(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as handle:
            return dict(line.split(":", 1) for line in handle if ":" in line)
    except OSError:
        return {}


def demo(directory: Path, n: int, ranks: int, memory_limit: str, interval: float) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tag = memory_limit.replace(" ", "")
    config = write_config(directory / f"demo_n{n}_r{ranks}_{tag}.yaml", n, dtype="float32",
                          memory_limit=f"'{memory_limit}'", progress="log")
    log = config.with_suffix(".rss.log")
    usage = shutil.disk_usage(directory)
    print(f"demo: {n:,} samples, {ranks} ranks, memory_limit {memory_limit}, float32; free disk "
          f"{usage.free / 1e9:.1f} GB; RSS log {log}", flush=True)
    command = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "hpcfit", "run", config.name]
    peaks: dict[int, float] = {}
    disk_peak = [0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, cwd=directory, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def watch() -> None:
        with open(log, "w") as handle:
            while proc.poll() is None:
                ranks_now = []
                for pid in _descendants(proc.pid):
                    status = _status(pid)
                    if "python" not in status.get("Name", ""):
                        continue
                    rss = int(status.get("VmRSS", "0 kB").split()[0]) / 1024
                    hwm = int(status.get("VmHWM", "0 kB").split()[0]) / 1024
                    peaks[pid] = max(peaks.get(pid, 0.0), hwm)
                    ranks_now.append(f"{pid}:{rss:.0f}/{hwm:.0f}")
                used = _du(directory)
                disk_peak[0] = max(disk_peak[0], used)
                handle.write(f"{time.perf_counter() - t0:8.1f} s  rss/hwm MB {' '.join(ranks_now)}  "
                             f"dir {used / 1e9:.2f} GB\n")
                handle.flush()
                time.sleep(interval)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for line in proc.stdout:
        print(f"[{time.perf_counter() - t0:7.1f} s] {line}", end="", flush=True)
    proc.wait()
    wall = time.perf_counter() - t0
    watcher.join(timeout=interval * 3)
    print(f"demo: exit {proc.returncode}, wall {wall:.1f} s; peak VmHWM per process (MB): "
          f"{sorted(round(v) for v in peaks.values())}; directory peak {disk_peak[0] / 1e9:.2f} GB", flush=True)
    output = config.with_suffix(".h5")
    if proc.returncode == 0 and output.exists():
        with h5py.File(output) as h5:
            print(f"demo: peak_rss_mb_per_rank {[float(m) for m in h5.attrs['peak_rss_mb_per_rank']]}, work "
                  f"{h5.attrs['work_seconds']} s, job wall {h5.attrs['wall_seconds']} s, shuffle "
                  f"{h5.attrs['sample_shuffle_mode']}, file {output.stat().st_size / 1e9:.2f} GB", flush=True)
            z = h5["samples/theta"][:1_000_000, 0]
            index = h5["samples/sample_index"][:1_000_000]
            print(f"demo: first 1 M rows: redshift mean {z.mean():.4f} (expect 3), min {z.min():.2e} max "
                  f"{z.max():.4f}; sample_index spans {index.min():,}..{index.max():,}", flush=True)


def _du(directory: Path) -> int:
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


# ----------------------------------------------------------------------------------------------------------------

def compare(directory: Path, sizes: list[int], ranks: list[int], dtype: str, method: str, checkpoint: bool,
            repeat: int) -> list:
    rows = []
    load = os.getloadavg()
    print(f"sample job vs Pool reference: 9 parameters, DES (7 bands), built-in model (BC03), {dtype}, "
          f"{method}{', checkpoints on' if checkpoint else ''}; best wall of {repeat}; {CORES} cores, load average "
          f"at start {load[0]:.1f}")
    print(f"{'N':>11} {'R':>2} | {'hpcfit wall':>11} {'cpu':>7} {'M/min/core':>10} {'(cpu)':>7} "
          f"{'peak RSS/rank MB':>18} | {'ref wall':>9} {'cpu':>7} {'M/min/core':>10} {'(cpu)':>7} "
          f"{'workers MB':>14} {'joiner MB':>9} | {'time ratio':>10} {'peak ratio':>10}")
    for n in sizes:
        for r in ranks:
            h = min((run_hpcfit(directory, n, r, dtype=dtype, method=method, checkpoint=checkpoint)
                     for _ in range(repeat)), key=lambda x: x["wall"])
            ref = min((run_reference(directory, n, r, dtype=dtype) for _ in range(repeat)), key=lambda x: x["wall"])
            cores = min(r, CORES)
            rate = lambda seconds: n / (seconds / 60) / cores / 1e6  # noqa: E731
            cpu_rate = lambda cpu: n / (cpu / 60) / 1e6  # noqa: E731
            row = {"n": n, "ranks": r, "hpcfit": h, "reference": ref, "load": os.getloadavg()[0]}
            rows.append(row)
            workers = ref["rss_mb"][:-1]
            print(f"{n:>11,} {r:>2} | {h['wall']:>9.1f} s {h['cpu']:>5.0f} s {rate(h['wall']):>10.2f} "
                  f"{cpu_rate(h['cpu']):>7.2f} {'/'.join(f'{m:.0f}' for m in h['rss_mb']):>18} | "
                  f"{ref['wall']:>7.1f} s {ref['cpu']:>5.0f} s {rate(ref['wall']):>10.2f} {cpu_rate(ref['cpu']):>7.2f} "
                  f"{'/'.join(f'{m:.0f}' for m in workers):>14} {ref['joiner_rss_mb']:>9.0f} | "
                  f"{ref['wall'] / h['wall']:>10.2f} {max(ref['rss_mb']) / max(h['rss_mb']):>10.2f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e6,1e7")
    ap.add_argument("--ranks", default="1,2,4")
    ap.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    ap.add_argument("--method", default="latin_hypercube", choices=("uniform", "latin_hypercube", "sobol"))
    ap.add_argument("--checkpoint", action="store_true", help="hpcfit with run.checkpoint: true (the default)")
    ap.add_argument("--dir", default=None, help="working directory (default: a temporary one under /tmp)")
    ap.add_argument("--json", default=None, help="also save the measurements here")
    ap.add_argument("--write-bandwidth", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is kept")
    ap.add_argument("--demo", action="store_true")
    ap.add_argument("--n", type=float, default=1e8)
    ap.add_argument("--memory-limit", default="2 GiB")
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--reference-child", nargs=4, metavar=("N", "P", "DTYPE", "OUTPUT"), help=argparse.SUPPRESS)
    ap.add_argument("--write-child", nargs=3, metavar=("N", "DTYPE", "OUTPUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.reference_child:
        n, p, dtype, output = args.reference_child
        print(json.dumps(reference_main(int(n), int(p), dtype, Path(output))))
        return
    if args.write_child:
        n, dtype, output = args.write_child
        write_child(int(n), dtype, Path(output))
        return
    directory = Path(args.dir) if args.dir else Path("/tmp") / f"hpcfit_sample_bench_{os.getpid()}"
    directory.mkdir(parents=True, exist_ok=True)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    ranks = [int(r) for r in args.ranks.split(",")]
    if args.demo:
        demo(directory, int(args.n), ranks[0] if args.ranks != "1,2,4" else 2, args.memory_limit, args.interval)
        return
    if args.write_bandwidth:
        rows = write_bandwidth(directory, sizes, ranks, args.dtype, args.repeat)
    else:
        rows = compare(directory, sizes, ranks, args.dtype, args.method, args.checkpoint, args.repeat)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if not args.dir:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
