"""Before/after the direct writes (issue 14): the calibrate science stage of two source trees, like for like.

    python bench/calibrate_io_ab.py BEFORE_TREE [AFTER_TREE] [--science 32] [--ranks 2] [--repeat 5]

Both trees run the same job (K science frames of 1040 x 1392 uint16, ready masters, `mpiexec -n R hpcfit run`),
alternated run by run (so a noisy minute hits both), best of --repeat on each side: the whole command's wall time,
the engine's work seconds and calibrate's write seconds. The after tree's output also says what the science stage
moved through the file system (rchar/wchar, ``/science`` attributes) against what had to move.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.calibrate_vs_ccdproc import SHAPE, best_of, load, run_hpcfit, write_frames  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path, nargs="?", default=REPO)
    parser.add_argument("--science", type=int, default=32)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from hpcfit.calibrate.demo import write_synthetic_masters

    root = Path(tempfile.mkdtemp(prefix="calib_ab_"))
    write_frames(root / "science", args.science, kind="science", seed=3, exptime=5.0)
    write_synthetic_masters(root / "masters", SHAPE, dark_exptime=60.0, bias_level=1000.0)
    body = ("  inputs: [science]\n  masters: {bias: masters/bias.fits, dark: masters/dark.fits, dark_exptime: 60, "
            "flat: masters/flat.fits}\n  batch_frames: 8\n")
    print(f"science stage: {args.science} frames {SHAPE[0]} x {SHAPE[1]}, -n {args.ranks}, best of {args.repeat}, "
          f"alternated (load {load()})", flush=True)
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(args.repeat):
        for side in ("before", "after"):
            os.environ["HPCFIT_BENCH_TREE"] = str(getattr(args, side))
            runs[side].append(run_hpcfit(root, f"science_{side}", body, args.ranks))
    for side in ("before", "after"):
        best = best_of(runs[side])
        work = min(r["work"] for r in runs[side])
        write = min(r["write"] for r in runs[side])
        print(f"{side:6s}: whole job {best['wall']:5.2f} s (median {sorted(r['wall'] for r in runs[side])[len(runs[side]) // 2]:5.2f}); "
              f"work {work:.2f} s + write {write:.2f} s = {work + write:.2f} s; science bytes moved / needed "
              f"{best['io_ratio']:.3f}", flush=True)
    b, a = best_of(runs["before"]), best_of(runs["after"])
    wb = min(r["work"] + r["write"] for r in runs["before"])
    wa = min(r["work"] + r["write"] for r in runs["after"])
    print(f"after vs before: whole job {b['wall'] / a['wall']:.2f}x, work + write {wb / wa:.2f}x (load {load()})")


if __name__ == "__main__":
    main()
