"""Per-file costs of calibrate's survey and plan (the model's "prepare: survey + plan" term), measured through
hpcfit's own code on a synthetic night of small frames (their headers are those of the study's 1024 x 1024 frames:
the pixels are never read while planning).

    python bench/scaling/survey_costs.py bench/scaling/survey_costs.json [--frames 2000] [--repeat 5]

Every figure is the median of R repetitions, in CPU seconds of this process's main thread (the files come from the
page cache: on a shared machine CPU time is the clean measure of a CPU-bound cost; the cluster model adds the file
system's metadata time on its own):

* ``list_seconds_per_file``: rank 0's listing of the inputs (``planning.list_inputs``: ``os.scandir``, no ``stat``
  per file); ``list_rglob_seconds_per_file``: the same list made as before issue 14 (``rglob`` + ``is_file``);
* ``header_seconds_per_file``: one rank's header scan, per file, one thread (``planning.scan``'s ``read_frame``:
  open, first block, the wanted cards by ``headercards``); ``header_astropy_seconds_per_file``: the same with every
  header parsed by astropy's ``Header`` (before issue 14);
* ``record_bytes``, ``pickle_seconds_per_record``, ``unpickle_seconds_per_record``: one frame record as the survey
  gathers it to rank 0 (its pickled size, and the time to pickle it on a rank and unpickle it on rank 0);
* ``plan_seconds_per_frame``: ``make_plan`` from the gathered survey, per frame (classification, groups, master
  choice; no header is read).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def cpu_seconds(fn: Callable[[], Any], repeat: int) -> float:
    """Median CPU seconds of this thread over ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(repeat):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return statistics.median(times)


def measure(frames: int, repeat: int, directory: Path) -> dict[str, Any]:
    from hpcfit.calibrate import planning
    from hpcfit.calibrate.kernels import frames as F
    from hpcfit.calibrate.kernels.synthetic import make_night
    from hpcfit.engine.run import load_config
    from hpcfit.registry import JOBS

    night = directory / "night"
    make_night(night, shape=(8, 8), n_science=frames, seed=11, n_stars=1, cosmic_rays_per_frame=0)
    config = directory / "calibrate.yaml"
    config.write_text(f"job: calibrate\noutput: {directory / 'out.h5'}\ncalibrate:\n  inputs: [{night}]\n"
                      "  classify_by: header\n")
    _, cfg, _, _ = load_config(str(config), [], jobs=JOBS)
    c = cfg.calibrate
    paths, skipped, reports = planning.list_inputs(c)
    options = planning.scan_options(c)
    n = len(paths)
    astropy_options = F.ScanOptions(**{k: getattr(options, k) for k in options.__dataclass_fields__})
    object.__setattr__(astropy_options, "_header_keys", None)  # every header through astropy, as before

    def scan(opts: F.ScanOptions) -> list[F.Frame]:
        return [F.read_frame(p, opts) for p in paths]  # one thread: the per-file CPU cost

    records = scan(options)
    assert records == scan(astropy_options), "the two header parses disagree"
    blob = pickle.dumps(records)  # a rank's part, as the gather sends it
    survey = planning.Survey(records, skipped, reports)
    problems: list[Any] = []
    assert planning.make_plan(cfg, lambda *a: problems.append(a), survey) is not None, problems
    return {
        "files": n, "frames_per_file": 1,
        "list_seconds_per_file": cpu_seconds(lambda: planning.list_inputs(c), repeat) / n,
        "list_rglob_seconds_per_file": cpu_seconds(
            lambda: [p for p in night.rglob("*") if p.is_file()], repeat) / n,
        "header_seconds_per_file": cpu_seconds(lambda: scan(options), repeat) / n,
        "header_astropy_seconds_per_file": cpu_seconds(lambda: scan(astropy_options), repeat) / n,
        "record_bytes": len(pickle.dumps(records)) / n,
        "pickle_seconds_per_record": cpu_seconds(lambda: pickle.dumps(records), repeat) / n,
        "unpickle_seconds_per_record": cpu_seconds(lambda: pickle.loads(blob), repeat) / n,
        "plan_seconds_per_frame": cpu_seconds(lambda: planning.make_plan(cfg, lambda *a: None, survey), repeat) / n,
        "load_average": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--frames", type=int, default=2000, help="science frames of the night (+ 23 calibration)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="survey-costs-") as tmp:
        result = measure(args.frames, args.repeat, Path(tmp))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
