"""Benchmark the calibrate job (``mpiexec -n R``) against ccdproc on the same 1040 x 1392 uint16 frames, like for like.

    python bench/calibrate_vs_ccdproc.py [--frames 10 50] [--science 48] [--ranks 2] [--repeat 2] [--skip-ccdproc]
                                         [--keep DIR] [--stages combine science cosmics] [--cosmics-frames 8]

Both sides are timed the same way: wall clock of a fresh command, from launch to exit (Python start-up, imports,
reading the FITS frames, the arithmetic, writing the results), best of --repeat runs on each side (same N). Both
write float32 results (hpcfit: its HDF5 output; ccdproc: FITS files whose data are cast to float32 before writing).
The ccdproc side is in its fastest documented form: ``ccdproc.combine(files, method="median",
sigma_clip_func="median", sigma_clip_dev_func="std")`` (string functions: astropy's sigma_clip uses bottleneck /
nan-functions instead of ``np.ma``; ccdproc clips once, so hpcfit is configured with ``iters: 1``; its default
float64 working dtype, which measured 15-30 % faster than ``dtype=float32``; the master is cast to float32 and
written without its uncertainty plane, what hpcfit stores), and the science
frames processed by a ``multiprocessing.Pool`` of as many processes as hpcfit has ranks (eloy's pipeline pattern:
the masters read once per worker, each worker reads, reduces and writes its frames).

Combine (master creation): N raw bias frames on disk (BZERO 32768, cosmic rays), median combine, without clipping
and with one 3-sigma clip around the median; then two science frames bias-subtracted with it. hpcfit = the whole
job (``require: [bias]``) under mpiexec -n R and -n 1; ccdproc = one script: combine (one process: ccdproc has no
parallel combine) + write the master, then the two science frames through Pool(R). Detail: hpcfit's master stage
(``calibrate_masters_seconds``: read + combine, collective over row bands, no write) against the ccdproc.combine
call (read + combine + write of the master); per-rank peak RSS (``calibrate_peak_rss_mb``) and ccdproc's RSS
growth during the combine.

Science stage: K science frames with ready masters (no combine). hpcfit = the whole job under mpiexec -n R (read,
check, calibrate in batches, each frame written straight into its plane of /science/images); ccdproc = one script: Pool(R) of
workers, per frame ``CCDData.read`` + ``subtract_bias`` + ``subtract_dark(scale=True)`` +
``flat_correct(norm_value=1)`` + write float32 FITS. Detail: hpcfit's phases (``work_seconds``,
``calibrate_write_seconds``), its kernel on frames in memory against ccdproc's arithmetic on frames in memory (one
core each) and against ``np.copyto`` of float32 frames (memory-copy bandwidth).

Cosmic rays (``--stages cosmics``): K sky frames (sky + noise + cosmic rays) with ready masters, calibrated and
cleaned with L.A.Cosmic (astroscrappy, the same settings) on both sides, every rank busy: hpcfit = the whole job
with ``cosmic_rays: {method: lacosmic, gain, readnoise}`` under mpiexec -n R, and without cosmic rays; ccdproc =
Pool(R), per frame read + reduce + ``gain_correct`` + ``cosmicray_lacosmic(gain=1, readnoise)`` + write. Both sides
run astroscrappy with OMP_NUM_THREADS=1 (one thread per rank / worker, as the engine pins run.blas_threads: 1). The
per-frame cost of the cosmic-ray step is (time with - time without) * R / K on each side.

Targets (issue 6): science stage >= 3x ccdproc and >= 50 % of memory-copy bandwidth; combine >= 5x ccdproc, with
memory O(rows / P) per rank. The machine is shared (2 cores, other engineers' jobs): every number is the best of
--repeat runs and still noisy; the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHAPE = (1040, 1392)


# ----------------------------------------------------------------------------------------------------------- frames
def write_frames(directory: Path, n: int, *, kind: str, seed: int, exptime: float = 0.0) -> list[Path]:
    from hpcfit.calibrate.kernels.synthetic import write_raw_frame

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    base = 1000 + 20 * rng.random(SHAPE)
    imagetyp = {"bias": "Bias Frame", "science": "Light Frame"}[kind]
    paths = []
    for i in range(n):
        frame = base + rng.normal(0, 8, SHAPE)
        if kind == "science":
            frame += rng.uniform(0, 3000, SHAPE)
        hits = rng.integers(0, frame.size, 300)
        frame.flat[hits] += rng.uniform(300, 5000, hits.size)  # cosmic rays
        when = f"2024-03-10T{22 + i // 60 % 2:02d}:{i % 60:02d}:00"
        paths.append(write_raw_frame(directory / f"{kind}_{i:03d}.fits", frame, IMAGETYP=imagetyp,
                                     EXPTIME=exptime, DATE_OBS=when, FILTER="V"))
    return paths


def peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# ------------------------------------------------------------------------------------------------- hpcfit runs
def run_hpcfit(directory: Path, name: str, body: str, ranks: int, transfer: str = "auto") -> dict:
    """Run the job under mpiexec; return the timings and per-rank peak RSS from the output's attributes."""
    import h5py

    config = directory / f"{name}.yaml"
    config.write_text(f"job: calibrate\noutput: {name}.h5\n"
                      f"run: {{overwrite: true, progress: none, hdf5_transfer: {transfer}}}\ncalibrate:\n{body}")
    env = dict(os.environ, PYTHONPATH=os.environ.get("HPCFIT_BENCH_TREE", str(REPO)))  # another tree: before/after
    launcher = shutil.which("mpiexec.mpich") or shutil.which("mpiexec")
    t0 = time.perf_counter()
    done = subprocess.run([launcher, "-n", str(ranks), sys.executable, "-m", "hpcfit", "run", config.name],
                          cwd=directory, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"hpcfit failed:\n{done.stdout}\n{done.stderr}")
    with h5py.File(directory / f"{name}.h5") as h5:
        a = h5.attrs
        science = h5["science"].attrs
        return {"wall": wall, "masters": float(a["calibrate_masters_seconds"]), "work": float(a["work_seconds"]),
                "write": float(a["calibrate_write_seconds"]), "rss": [float(x) for x in a["calibrate_peak_rss_mb"]],
                "n_science": int(h5["science/images"].shape[0]),
                "io_ratio": float(science.get("io_science_ratio", np.nan))}  # nan: a version without accounting


# ------------------------------------------------------------------------------------------------ ccdproc runs
_MASTERS: dict = {}


def _init_worker(masters: dict) -> None:
    """Pool initializer: each worker reads the masters once (eloy's pattern: masters on disk, read by each process).
    ``masters["cosmics"]``: cosmicray_lacosmic settings (gain, readnoise, ...) to clean each frame with."""
    from astropy.nddata import CCDData

    warnings.simplefilter("ignore")
    _MASTERS.update({kind: CCDData.read(path, unit="adu") for kind, path in masters.items() if kind != "cosmics"})
    if masters.get("cosmics"):
        _MASTERS["cosmics"] = dict(masters["cosmics"])


def _reduce(ccd):
    import astropy.units as u
    import ccdproc

    ccd = ccdproc.subtract_bias(ccd, _MASTERS["bias"])
    if "dark" in _MASTERS:
        ccd = ccdproc.subtract_dark(ccd, _MASTERS["dark"], dark_exposure=60 * u.s, data_exposure=5 * u.s, scale=True)
    if "flat" in _MASTERS:
        ccd = ccdproc.flat_correct(ccd, _MASTERS["flat"], norm_value=1.0)
    return ccd


def _reduce_file(task: tuple[str, str]) -> None:
    """One science frame: read, reduce, write float32 FITS (the dtype hpcfit writes)."""
    from astropy.nddata import CCDData

    source, target = task
    ccd = _reduce(CCDData.read(source, unit="adu"))
    if "cosmics" in _MASTERS:  # the ccdproc user's way: to electrons, then L.A.Cosmic with gain 1
        import astropy.units as u
        import ccdproc

        settings = dict(_MASTERS["cosmics"])
        ccd = ccdproc.gain_correct(ccd, settings.pop("gain") * u.electron / u.adu)
        ccd = ccdproc.cosmicray_lacosmic(ccd, gain=1.0, **settings)
    ccd.data = ccd.data.astype(np.float32)
    ccd.write(target, overwrite=True)


def _pool_science(paths: list[str], out: str, processes: int, masters: dict) -> None:
    from multiprocessing import Pool

    Path(out).mkdir(parents=True, exist_ok=True)
    tasks = [(p, str(Path(out) / f"cal_{i:03d}.fits")) for i, p in enumerate(paths)]
    with Pool(processes, initializer=_init_worker, initargs=(masters,)) as pool:
        for _ in pool.imap(_reduce_file, tasks):
            pass


def _child(task: str, args: dict) -> dict:
    """Runs in a fresh process (its wall time is measured from outside): one ccdproc script; phase times inside."""
    import ccdproc
    from astropy.nddata import CCDData

    warnings.simplefilter("ignore")
    out = Path(args["out"])
    out.mkdir(parents=True, exist_ok=True)
    if task == "combine":
        kwargs = {"sigma_clip": True, "sigma_clip_low_thresh": 3, "sigma_clip_high_thresh": 3,
                  "sigma_clip_func": "median", "sigma_clip_dev_func": "std"} if args["clip"] else {}
        rss0 = peak_rss_mb()
        t0 = time.perf_counter()
        master = ccdproc.combine(args["paths"], method="median", unit="adu", **kwargs)  # float64: its fastest
        master.data, master.uncertainty = master.data.astype(np.float32), None  # float32 out, as hpcfit writes
        master.write(out / "master_bias.fits", overwrite=True)
        combine_s = time.perf_counter() - t0
        extra = peak_rss_mb() - rss0
        t0 = time.perf_counter()
        _pool_science(args["science"], str(out / "science"), args["processes"],
                      {"bias": str(out / "master_bias.fits")})
        return {"combine_s": combine_s, "science_s": time.perf_counter() - t0, "extra_rss_mb": extra}
    if task == "science":
        t0 = time.perf_counter()
        _pool_science(args["paths"], str(out), args["processes"], args["masters"])
        return {"pool_s": time.perf_counter() - t0}
    # "in_memory": the arithmetic alone on frames already in memory, one process (detail)
    _init_worker(args["masters"])
    frames = [CCDData.read(p, unit="adu") for p in args["paths"][:8]]
    best = np.inf
    for _ in range(args["repeat"]):
        t0 = time.perf_counter()
        for ccd in frames:
            _reduce(ccd)
        best = min(best, (time.perf_counter() - t0) / len(frames))
    return {"in_memory": best}


def run_ccdproc(task: str, args: dict) -> dict:
    """The ccdproc script in a fresh interpreter; ``wall`` = launch to exit, like the hpcfit command."""
    code = (f"import json, sys; sys.path.insert(0, {str(REPO)!r}); from bench.calibrate_vs_ccdproc import _child; "
            f"print(json.dumps(_child({task!r}, json.loads(sys.stdin.read()))))")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(args), capture_output=True, text=True,
                          check=True)
    wall = time.perf_counter() - t0
    shutil.rmtree(args["out"], ignore_errors=True)
    return {"wall": wall, **json.loads(done.stdout.strip().splitlines()[-1])}


def best_of(runs, key: str = "wall") -> dict:
    return min(runs, key=lambda r: r[key])


# ------------------------------------------------------------------------------------------------- benchmarks
def bench_combine(root: Path, counts: list[int], ranks: int, repeat: int, skip_ccdproc: bool) -> None:
    print(f"== combine: median of N bias frames {SHAPE[0]} x {SHAPE[1]} uint16 + 2 science frames bias-subtracted, "
          f"float32 out; whole command wall, best of {repeat} each side (load {load()})", flush=True)
    every = write_frames(root / "all_bias", max(counts), kind="bias", seed=1)
    science = write_frames(root / "combine_science", 2, kind="science", seed=2, exptime=5.0)
    for n in counts:
        folder = root / f"bias{n}"
        folder.mkdir(exist_ok=True)
        for p in every[:n]:
            if not (folder / p.name).exists():
                os.symlink(p, folder / p.name)
        for clip in (False, True):
            sigma = "{low: 3, high: 3, iters: 1, center: median, dev: std}" if clip else "none"
            body = (f"  inputs: [bias{n}, combine_science]\n  require: [bias]\n"
                    f"  combine: {{method: median, sigma_clip: {sigma}, min_frames: 3}}\n")
            name = f"combine{n}{'c' if clip else ''}"
            ours = best_of([run_hpcfit(root, name, body, ranks) for _ in range(repeat)])
            one = best_of([run_hpcfit(root, name, body, 1) for _ in range(repeat)]) if ranks != 1 else ours
            band_mb = n * (SHAPE[0] / ranks) * SHAPE[1] * 4 / 2**20
            label = "1x 3-sigma clip (median/std)" if clip else "no clipping"
            print(f"N={n:3d} {label:28s} hpcfit whole job: -n {ranks} {ours['wall']:6.2f} s, -n 1 {one['wall']:6.2f} s"
                  f" | peak RSS/rank (-n {ranks}) {max(ours['rss']):5.0f} MiB (stack band {band_mb:4.0f} MiB)",
                  flush=True)
            if not skip_ccdproc:
                theirs = best_of([run_ccdproc("combine", {"paths": [str(p) for p in every[:n]], "clip": clip,
                                                          "science": [str(p) for p in science],
                                                          "processes": ranks, "out": str(root / "ccdproc_out")})
                                  for _ in range(repeat)])
                print(f"      ccdproc script (combine 1 process + Pool({ranks}) science) {theirs['wall']:6.2f} s | "
                      f"HEADLINE whole vs whole: {theirs['wall'] / ours['wall']:5.1f}x with {ranks} ranks vs "
                      f"Pool({ranks}) (target >= 5x); {theirs['wall'] / one['wall']:5.1f}x with 1 rank "
                      f"(same cores as the combine) (load {load()})", flush=True)
                print(f"      detail: master stage (read + combine) hpcfit -n {ranks} {ours['masters']:6.2f} s, -n 1 "
                      f"{one['masters']:6.2f} s vs ccdproc.combine call (read + combine + write) "
                      f"{theirs['combine_s']:6.2f} s +{theirs['extra_rss_mb']:5.0f} MiB -> "
                      f"{theirs['combine_s'] / ours['masters']:.1f}x / {theirs['combine_s'] / one['masters']:.1f}x",
                      flush=True)
    n = max(counts)
    body = (f"  inputs: [bias{n}, combine_science]\n  require: [bias]\n  memory_mb: 32\n"
            "  combine: {method: median, sigma_clip: none, min_frames: 3}\n")
    ours = best_of([run_hpcfit(root, f"combine{n}m", body, ranks) for _ in range(repeat)], "masters")
    print(f"N={n:3d} no clipping, memory_mb: 32     hpcfit -n {ranks}: master {ours['masters']:6.2f} s "
          f"(job wall {ours['wall']:5.1f} s), peak RSS/rank {max(ours['rss']):5.0f} MiB (row blocks re-read per pass)",
          flush=True)


def bench_science(root: Path, k: int, ranks: int, repeat: int, skip_ccdproc: bool) -> None:
    from hpcfit.calibrate.demo import write_synthetic_masters

    print(f"== science stage: {k} frames {SHAPE[0]} x {SHAPE[1]} uint16 -> float32 on both sides, ready masters; "
          f"whole command wall, best of {repeat} each side (load {load()})", flush=True)
    paths = write_frames(root / "science", k, kind="science", seed=3, exptime=5.0)
    masters = write_synthetic_masters(root / "masters", SHAPE, dark_exptime=60.0, bias_level=1000.0)
    body = ("  inputs: [science]\n  masters: {bias: masters/bias.fits, dark: masters/dark.fits, dark_exptime: 60, "
            "flat: masters/flat.fits}\n  batch_frames: 8\n")
    runs = {}
    for transfer in ("auto", "independent"):
        ours = best_of([run_hpcfit(root, "science", body, ranks, transfer) for _ in range(repeat)])
        runs[transfer] = ours
        print(f"hpcfit -n {ranks} (hdf5_transfer {transfer:11s}): whole job {ours['wall']:6.2f} s "
              f"({k / ours['wall']:5.1f} frames/s); detail: work {ours['work']:.2f} s (read, check, calibrate, "
              f"write into the output; {k / ours['work']:.0f} frames/s) + write {ours['write']:.2f} s; peak RSS/rank "
              f"{max(ours['rss']):.0f} MiB; science-stage bytes moved / needed {ours['io_ratio']:.3f}", flush=True)
    ours = runs["auto"]  # the default transfer is the headline (not the better of the two)
    copy_s, kernel_s = kernel_vs_copy()
    print(f"kernel (one core, frames in memory): calibrate_batch {kernel_s * 1e3:.2f} ms/frame, np.copyto of a float32 "
          f"frame {copy_s * 1e3:.2f} ms -> {100 * copy_s / kernel_s:.0f} % of copy bandwidth (target >= 50 %)",
          flush=True)
    if not skip_ccdproc:
        master_paths = {n: str(p) for n, p in masters.items()}
        theirs = best_of([run_ccdproc("science", {"paths": [str(p) for p in paths], "processes": ranks,
                                                  "masters": master_paths, "out": str(root / "ccdproc_out")})
                          for _ in range(repeat)])
        memory = run_ccdproc("in_memory", {"paths": [str(p) for p in paths], "masters": master_paths,
                                           "repeat": 5, "out": str(root / "ccdproc_mem")})
        print(f"ccdproc script, Pool({ranks}) (read + reduce + write float32 FITS): {theirs['wall']:6.2f} s "
              f"({k / theirs['wall']:5.1f} frames/s; the Pool part {theirs['pool_s']:.2f} s)", flush=True)
        print(f"HEADLINE whole vs whole, {ranks} ranks vs Pool({ranks}): {theirs['wall'] / ours['wall']:.1f}x "
              f"(target >= 3x) (load {load()})", flush=True)
        print(f"detail: without interpreter start-up and planning: hpcfit work + write {ours['work'] + ours['write']:.2f} s "
              f"vs ccdproc's Pool part (workers start, read masters, read + reduce + write) {theirs['pool_s']:.2f} s "
              f"-> {theirs['pool_s'] / (ours['work'] + ours['write']):.1f}x", flush=True)
        print(f"detail: kernel vs ccdproc's arithmetic on frames in memory ({memory['in_memory'] * 1e3:.1f} ms/frame), "
              f"one core each: {memory['in_memory'] / kernel_s:.1f}x", flush=True)


def write_sky_frames(directory: Path, n: int, *, seed: int, gain: float, read_noise: float) -> list[Path]:
    """Science frames for the cosmic-ray stage: bias + sky (Poisson in electrons) + read noise + cosmic rays."""
    from hpcfit.calibrate.kernels.synthetic import write_raw_frame

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        frame = 1000 + rng.poisson(300 * 5 * gain, SHAPE) / gain + rng.normal(0, read_noise / gain, SHAPE)
        hits = rng.integers(0, frame.size, 300)
        frame.flat[hits] += rng.uniform(300, 5000, hits.size)
        paths.append(write_raw_frame(directory / f"sky_{i:03d}.fits", frame, IMAGETYP="Light Frame", EXPTIME=5.0,
                                     DATE_OBS=f"2024-03-10T22:{i % 60:02d}:00", FILTER="V"))
    return paths


def bench_cosmics(root: Path, k: int, ranks: int, repeat: int, skip_ccdproc: bool) -> None:
    from hpcfit.calibrate.demo import write_synthetic_masters

    gain, read_noise = 1.5, 9.0
    print(f"== cosmic rays: {k} sky frames {SHAPE[0]} x {SHAPE[1]}, ready masters, L.A.Cosmic (astroscrappy, sigclip "
          f"4.5, niter 4) after bias/dark/flat, {ranks} ranks / Pool({ranks}), OMP_NUM_THREADS=1; best of {repeat} "
          f"each side (load {load()})", flush=True)
    write_sky_frames(root / "sky", k, seed=4, gain=gain, read_noise=read_noise)
    masters = write_synthetic_masters(root / "masters", SHAPE, dark_exptime=60.0, bias_level=1000.0)
    body = ("  inputs: [sky]\n  masters: {bias: masters/bias.fits, dark: masters/dark.fits, dark_exptime: 60, "
            "flat: masters/flat.fits}\n  batch_frames: 2\n")
    cosmics = f"  cosmic_rays: {{method: lacosmic, gain: {gain}, readnoise: {read_noise}}}\n"
    runs = {}
    for label, extra in (("with", cosmics), ("without", "")):
        runs[label] = best_of([run_hpcfit(root, f"cr_{label}", body + extra, ranks) for _ in range(repeat)])
    ours, plain = runs["with"], runs["without"]
    ours_cr = (ours["work"] - plain["work"]) * ranks / k
    print(f"hpcfit -n {ranks}: whole job with cosmic rays {ours['wall']:6.2f} s ({k / ours['wall']:.2f} frames/s), "
          f"without {plain['wall']:6.2f} s; work stage {ours['work']:.2f} s vs {plain['work']:.2f} s -> cosmic-ray "
          f"step {ours_cr:.2f} s per frame per rank", flush=True)
    if skip_ccdproc:
        return
    paths = [str(p) for p in sorted((root / "sky").glob("*.fits"))]
    master_paths = {n: str(p) for n, p in masters.items()}
    theirs = {}
    for label, extra in (("with", {"cosmics": {"gain": gain, "readnoise": read_noise, "sigclip": 4.5, "niter": 4}}),
                         ("without", {})):
        theirs[label] = best_of([run_ccdproc("science", {"paths": paths, "processes": ranks,
                                                         "masters": {**master_paths, **extra},
                                                         "out": str(root / "ccdproc_cr")}) for _ in range(repeat)])
    theirs_cr = (theirs["with"]["pool_s"] - theirs["without"]["pool_s"]) * ranks / k
    print(f"ccdproc Pool({ranks}): whole script with cosmic rays {theirs['with']['wall']:6.2f} s "
          f"({k / theirs['with']['wall']:.2f} frames/s), without {theirs['without']['wall']:6.2f} s; cosmic-ray step "
          f"{theirs_cr:.2f} s per frame per process", flush=True)
    print(f"HEADLINE whole vs whole with cosmic rays, {ranks} ranks vs Pool({ranks}): "
          f"{theirs['with']['wall'] / ours['wall']:.2f}x; cosmic-ray step per frame: {theirs_cr / ours_cr:.2f}x "
          f"(load {load()})", flush=True)


def kernel_vs_copy(n: int = 16, repeat: int = 5) -> tuple[float, float]:
    """Per frame: np.copyto of a float32 frame, and ScienceCalibrator.calibrate_batch in place (batches of 8)."""
    from hpcfit.calibrate.kernels.calibrate import ScienceCalibrator
    from hpcfit.calibrate.kernels.synthetic import make_masters

    bias, dark, flat = make_masters(SHAPE)
    rng = np.random.default_rng(0)
    raws = [(bias + rng.uniform(0, 3000, SHAPE)).astype(np.float32) for _ in range(n)]
    outs = [np.empty(SHAPE, np.float32) for _ in range(n)]
    cal = ScienceCalibrator(bias, dark, flat)

    def best(fn) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times) / n

    copy = best(lambda: [np.copyto(o, r) for o, r in zip(outs, raws)])
    kernel = best(lambda: [cal.calibrate_batch(raws[i:i + 8], [5.0] * 8, outs[i:i + 8]) for i in range(0, n, 8)])
    return copy, kernel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--science", type=int, default=48)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="runs per case on each side (best kept)")
    parser.add_argument("--skip-ccdproc", action="store_true")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--stages", nargs="+", choices=("combine", "science", "cosmics"),
                        default=["combine", "science", "cosmics"])
    parser.add_argument("--cosmics-frames", type=int, default=8, help="frames of the cosmic-ray stage")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="calib_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        print(f"machine: {os.cpu_count()} cores, load average {load()} (shared; numbers are noisy)", flush=True)
        os.environ["OMP_NUM_THREADS"] = "1"  # astroscrappy's OpenMP loops: one thread per rank / Pool worker
        if "combine" in args.stages:
            bench_combine(root, args.frames, args.ranks, args.repeat, args.skip_ccdproc)
        if "science" in args.stages:
            bench_science(root, args.science, args.ranks, args.repeat, args.skip_ccdproc)
        if "cosmics" in args.stages:
            bench_cosmics(root, args.cosmics_frames, args.ranks, args.repeat, args.skip_ccdproc)
        print(f"load average at the end: {load()}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
