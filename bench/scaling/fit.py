"""The scaling model's parameters, taken from the measurements (``run_jobs.py``) and micro-benchmarks
(``components.py``).

Conventions, because the machine is shared and has 2 cores:

* compute costs (per row, per fit, per pair, per frame, set-up) come from the CPU time of the rank's main
  thread in runs on 1 and 2 ranks: time-sharing with other people's processes stretches wall time, not CPU time;
* I/O, communication and waiting costs come from wall time (CPU time does not see them), same runs;
* every figure is the median over the repetitions (and over the runs that measure it);
* 4-rank runs are oversubscribed (4 ranks on 2 cores): they are compared with the model, never fitted.

``parameters(measurements, components)`` returns one dict per job; ``model.py`` documents each parameter where it
is used.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any, Callable, Iterable

import numpy as np

from hpcfit.cubefit.boxes import flat_range_boxes

Z_MAX = 6.0            # the sample hypercube's redshift range [0, 6] (inputs.py)
SAMPLE_ROW_BYTES = 108  # float32: (2 x 9 + 7) x 4 + 8 bytes per output row
SAMPLE_EXCHANGE_BYTES = 116  # a row on the wire: 100 bytes of values + position + index
N_CALIBRATION_FRAMES = 23  # 9 bias + 7 darks + 7 flats (inputs.py)
CUBEFIT_DATASETS = 12  # Gaussian1D: 3 parameters, 3 uncertainties, status, 3 fit_info maps, 2 world maps


def median(values: Iterable[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def fitted(runs: list[dict[str, Any]], max_ranks: int = 2) -> list[dict[str, Any]]:
    """Runs that are not oversubscribed (the ones parameters are taken from)."""
    return [r for r in runs if r["ranks"] <= max_ranks and not r.get("oversubscribed")]


def rank_max(run: dict[str, Any], get: Callable[[dict[str, Any]], float]) -> float:
    return max(get(pr) for pr in run["per_rank"])


def phase(pr: dict[str, Any], name: str, cpu: bool = False) -> float:
    """A phase's wall seconds, or its CPU seconds (wall when the record has no CPU times)."""
    table = pr["phases_cpu"] if cpu and "phases_cpu" in pr else pr["phases"]
    return float(table.get(name, 0.0))


def cpu_share(run: dict[str, Any]) -> float:
    """The share of a core the ranks got while computing items: their CPU seconds over their wall seconds (1 on
    an idle machine; lower when other processes or oversubscription time-share the cores)."""
    items = [i for pr in run["per_rank"] for i in pr["items"] if len(i) > 4]
    wall = sum(i[2] for i in items)
    return min(1.0, sum(i[4] for i in items) / wall) if wall > 0 else float("nan")


def call(pr: dict[str, Any], name: str, field: str = "seconds") -> float:
    return float(pr["calls"].get(name, {}).get(field, 0.0))


def items_cpu_per_unit(runs: list[dict[str, Any]]) -> float:
    """Median over runs of (CPU seconds of all items) / (their total size)."""
    per_run = []
    for r in runs:
        items = [i for pr in r["per_rank"] for i in pr["items"]]
        size = sum(i[1] for i in items)
        if size and all(len(i) > 4 for i in items):
            per_run.append(sum(i[4] for i in items) / size)
        elif size:
            per_run.append(sum(i[2] for i in items) / size)
    return median(per_run)


def checkpoint_per_item(runs: list[dict[str, Any]]) -> tuple[float, float]:
    """(seconds, bytes) of one checkpoint save, medians over the runs."""
    seconds, nbytes = [], []
    for r in runs:
        count = sum(call(pr, "checkpoint", "count") for pr in r["per_rank"])
        if count:
            seconds.append(sum(call(pr, "checkpoint") for pr in r["per_rank"]) / count)
            nbytes.append(sum(call(pr, "checkpoint", "bytes") for pr in r["per_rank"]) / count)
    return median(seconds), median(nbytes)


def request_round_trip(runs: list[dict[str, Any]]) -> float:
    """Median gap between consecutive items on ranks other than 0, minus their checkpoint time on the main thread
    (the hand-off to the writer thread when one was timed, else the whole save): the time a worker waits for its
    next item from the dynamic scheduler (2-rank runs)."""
    gaps = []
    for r in runs:
        if r["ranks"] != 2:
            continue
        pr = r["per_rank"][1]
        items = sorted(pr["items"], key=lambda i: i[3])
        main = "checkpoint_handoff" if call(pr, "checkpoint_handoff", "count") else "checkpoint"
        ckpt = call(pr, main) / max(call(pr, main, "count"), 1)
        gaps += [b[3] - (a[3] + a[2]) - ckpt for a, b in zip(items, items[1:])]
    return max(median(gaps), 0.0)


def line_fit(x: list[float], y: list[float]) -> tuple[float, float]:
    """(a, b) of y = a + b x by least squares (b = 0 when x does not vary)."""
    x_arr, y_arr = np.asarray(x, float), np.asarray(y, float)
    if len(set(x)) < 2:
        return float(np.median(y_arr)), 0.0
    b, a = np.polyfit(x_arr, y_arr, 1)
    return float(a), float(b)


TIME_SHARED = 1.5  # a CPU-bound phase whose wall time exceeds its CPU time this much was time-shared
CROWDED_LOAD = 8.0  # load average (2 cores) above which a run's CPU-bound wall times are taken from CPU time


def crowded(runs: list[dict[str, Any]]) -> bool:
    """True for runs made on a crowded machine (median load average above 4 per core: the re-measured sample
    and cubefit runs saw 15-23 on 2 cores; the first study's runs 0.8-6.8)."""
    return median(r.get("load_average", 0.0) for r in runs) > CROWDED_LOAD


def cpu_bound(runs: list[dict[str, Any]], pr_of: Callable[[dict[str, Any]], dict[str, Any]], name: str) -> float:
    """A CPU-bound phase's seconds: its wall time (median), or, for crowded runs that were time-shared (wall >
    1.5 x CPU), its CPU time: time-sharing stretches wall time, not CPU time."""
    wall = median(phase(pr_of(r), name) for r in runs)
    cpu = median(phase(pr_of(r), name, cpu=True) for r in runs)
    return cpu if crowded(runs) and wall > TIME_SHARED * cpu else wall


PHASES = ("prepare", "setup", "run_items", "write")


def _stretch(run: dict[str, Any]) -> float:
    """1, or for a crowded run rank 0's CPU over wall time of the engine phases (the share of a core it got)."""
    if not crowded([run]):
        return 1.0
    pr = run["per_rank"][0]
    wall = sum(phase(pr, p) for p in PHASES)
    return min(1.0, sum(phase(pr, p, cpu=True) for p in PHASES) / wall) if wall > 0 else 1.0


def common(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Start-up (launcher wall minus the engine's wall) and the engine's fixed costs around the phases."""
    ok = fitted(runs)
    return {
        "startup": median(r["launcher_seconds"] - r["attributes"]["wall_seconds"] for r in ok),
        "prepare": cpu_bound([r for r in ok if r["ranks"] == 1], lambda r: r["per_rank"][0], "prepare"),
        "plan": median(phase(r["per_rank"][0], "plan", cpu=True) for r in ok if r["ranks"] == 1),
        "other": median((r["attributes"]["wall_seconds"] - sum(phase(r["per_rank"][0], p) for p in PHASES))
                        * _stretch(r) for r in ok),
    }


def sample_parameters(runs: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    ok = fitted(runs)
    # Set-up: the lowest redshift band is the widest in ln(1 + z), where the model's table nodes are uniform,
    # and rank 0 holds it: setup_0(P) = s0 + s1 * ln(1 + z_max / P) / ln(1 + z_max).
    xs, ys = [], []
    for r in ok:
        xs.append(math.log1p(Z_MAX / r["ranks"]) / math.log1p(Z_MAX))
        ys.append(phase(r["per_rank"][0], "setup", cpu=True))
    s0, s1 = line_fit(xs, ys)
    # With the disk cache warm (run_jobs.py fills it first) the fixed part of the set-up (SSP grid, filters,
    # cosmology) is a few tens of ms: a negative intercept is the noise of the fit, not a gain.
    s0 = max(s0, 0.0)
    local = []
    for r in ok:
        share = r["size"] / r["ranks"]
        worst = max(r["per_rank"], key=lambda pr: phase(pr, "write"))
        # the regroup is CPU-bound: when the run was time-shared, only the CPU share of its wall time counts
        wall, cpu = phase(worst, "write"), phase(worst, "write", cpu=True)
        stretch = cpu / wall if crowded([r]) and wall > TIME_SHARED * cpu else 1.0
        local.append((wall - call(worst, "h5_write") - call(worst, "h5_meta") - call(worst, "alltoallv"))
                     * stretch / share)
    ckpt_s, ckpt_b = checkpoint_per_item(ok)
    return {"setup_s0": s0, "setup_s1": s1, "t_row": items_cpu_per_unit(ok), "t_shuffle_local_row": median(local),
            "checkpoint_seconds": ckpt_s, "checkpoint_bytes": ckpt_b, "batch": batch,
            "row_bytes": SAMPLE_ROW_BYTES, "exchange_bytes": SAMPLE_EXCHANGE_BYTES, **common(runs)}


def gridfit_parameters(runs: list[dict[str, Any]], extra: dict[str, Any] | None = None,
                       rank0: dict[str, Any] | None = None) -> dict[str, Any]:
    """gridfit as it is now: on several ranks rank 0 reads the catalogue's layout, each rank reads and validates
    its slice of the rows and the slices are allgathered (one rank: the whole read in plan); grid items, then chi2
    items (galaxy block x model chunk, dynamic); the partial records travel to the galaxies' owner ranks
    (Alltoallv), which fold, finalise and write them; every rank writes its rows of the FITS results table.
    ``extra``: gridfit_components.json (catalogue read per format, results table, bytes per galaxy); ``rank0``:
    gridfit_rank0.json (layout, slice and table-encoding costs; without it the whole-read figures stand in)."""
    ok = fitted(runs)
    a = ok[0]["attributes"]
    n_models, chunk, block = (int(a[k]) for k in ("gridfit_n_models", "gridfit_chunk_models",
                                                  "gridfit_block_galaxies"))
    n_chunks = -(-n_models // chunk)
    # plan and set-up from one-rank runs when there are two sizes of them: there plan reads the whole catalogue and
    # set-up none, while on several ranks plan reads the layout only and set-up a slice (charged from rank0)
    one = [r for r in ok if r["ranks"] == 1]
    base = one if len({r["size"] for r in one}) >= 2 else ok
    plan_a, plan_b = line_fit([r["size"] for r in base], [phase(r["per_rank"][0], "plan", cpu=True) for r in base])
    setup_a, setup_b = line_fit([r["size"] for r in base], [rank_max(r, lambda pr: phase(pr, "setup", cpu=True))
                                                            for r in base])
    model_cpu, pair_cpu, fold, finalise, out, table, share, exchange_bw = [], [], [], [], [], [], [], []
    for r in ok:
        g, p = r["size"], r["ranks"]
        items = [i for pr in r["per_rank"] for i in pr["items"]]
        grid = [i for i in items if i[0] < n_chunks]
        chi2 = [i for i in items if i[0] >= n_chunks]
        model_cpu.append(sum(i[4] for i in grid) / max(sum(i[1] for i in grid), 1))
        pair_cpu.append(sum(i[4] for i in chi2) / max(sum(i[1] for i in chi2), 1))
        owned = g / p
        fold.append(rank_max(r, lambda pr: call(pr, "fold")) / (owned * n_chunks))
        finalise.append(rank_max(r, lambda pr: call(pr, "finalise") + call(pr, "photometry")) / owned)
        out.append(rank_max(r, lambda pr: call(pr, "h5_write")) / owned)
        root = r["per_rank"][0]
        table.append((call(root, "results_table") + call(root, "table_gather")) / g)
        if p > 1:
            share.append(rank_max(r, lambda pr: call(pr, "catalogue_share")) / g)
            moved = sum(call(pr, "alltoallv", "bytes") for pr in r["per_rank"])
            seconds = rank_max(r, lambda pr: call(pr, "alltoallv"))
            exchange_bw.append(moved / p / max(seconds, 1e-9))
    ckpt_s, ckpt_b = checkpoint_per_item([r for r in ok])
    extra = extra or {}
    return {"n_models": n_models, "chunk": chunk, "block": block, "n_chunks": n_chunks,
            "plan_a": plan_a, "plan_b": plan_b, "setup_a": setup_a, "setup_b": setup_b,
            "t_model": median(model_cpu), "t_pair": median(pair_cpu),
            # the fold's CPU time (micro-benchmark) where measured: the runs' timer is wall time on a loaded machine
            "t_fold": extra.get("fold_cpu_per_galaxy_chunk", median(fold)), "t_fold_wall_in_runs": median(fold),
            "t_finalise": median(finalise), "t_output_galaxy": median(out), "t_table": median(table),
            "t_share": median(share), "exchange_bandwidth": median(exchange_bw),
            "read_catalog": extra.get("read_catalog_cpu_per_galaxy", {}),
            "t_table_cpu": extra.get("results_table_cpu_per_galaxy", float("nan")),
            "broadcast_bytes": extra.get("catalogue_broadcast_bytes_per_galaxy", 124.0),
            **_slice_parameters(extra, rank0 or {}),
            "record_bytes": extra.get("exchange_row_bytes", 224),
            "table_row_bytes": extra.get("table_row_bytes", 248),
            "checkpoint_seconds": ckpt_s, "checkpoint_bytes": ckpt_b, "t_request": request_round_trip(ok),
            **common(runs),
            # validation + plan on rank 0 in CPU time: these runs' machine was loaded (wall time 5-10x CPU time)
            "prepare": median(phase(r["per_rank"][0], "prepare", cpu=True) for r in ok if r["ranks"] == 1)}


def _slice_parameters(extra: dict[str, Any], rank0: dict[str, Any]) -> dict[str, Any]:
    """The catalogue read in slices and the FITS table written by every rank (gridfit_rank0.json), each as
    ``{"a": fixed seconds, "b": seconds per galaxy}`` (CPU); without the file, today's whole-read figures: the
    layout free, a slice at the whole read's cost per galaxy, the table at the one-rank table's."""
    whole = extra.get("read_catalog_cpu_per_galaxy", {})
    return {
        "layout": rank0.get("layout", {kind: {"a": 0.0, "b": 0.0} for kind in whole}),
        "slice": rank0.get("slice", {kind: {"a": 0.0, "b": b} for kind, b in whole.items()}),
        "table_fits": rank0.get("table_fits", {"a": 0.0, "b": extra.get("results_table_cpu_per_galaxy", 0.0)}),
        "gather_bytes": rank0.get("gather_bytes_per_galaxy", extra.get("catalogue_broadcast_bytes_per_galaxy", 124.0)),
        "slices_measured": bool(rank0),
    }


def gridfit_gather_parameters(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The same figures from runs of the earlier design (partials gathered pickled to rank 0 and folded there,
    every rank parsing the catalogue again): the "before" of docs/scaling.md."""
    ok = fitted(runs)
    a = ok[0]["attributes"]
    n_models, chunk = int(a["gridfit_n_models"]), int(a["gridfit_chunk_models"])
    n_chunks = -(-n_models // chunk)
    fold, gather = [], []
    for r in ok:
        g = r["size"]
        root = r["per_rank"][0]
        fold.append(call(root, "fold") / g)
        gather.append(call(root, "gather") / g)
    setup_a, setup_b = line_fit([r["size"] for r in ok], [rank_max(r, lambda pr: phase(pr, "setup", cpu=True))
                                                          for r in ok])
    plan_a, plan_b = line_fit([r["size"] for r in ok], [phase(r["per_rank"][0], "plan", cpu=True) for r in ok])
    return {"n_chunks": n_chunks, "rank0_fold_per_galaxy": median(fold), "rank0_gather_per_galaxy": median(gather),
            "setup_per_galaxy_every_rank": setup_b, "plan_per_galaxy_rank0": plan_b}


def cubefit_parameters(runs: list[dict[str, Any]], chunk: int, side_of: Callable[[int], int]) -> dict[str, Any]:
    ok = fitted(runs)
    piece = []
    for r in ok:
        side = side_of(r["size"])
        n_items = -(-r["size"] // chunk)
        boxes = sum(len(flat_range_boxes((side, side), a, min(a + chunk, r["size"])))
                    for a in range(0, r["size"], chunk))
        worst = max(r["per_rank"], key=lambda pr: call(pr, "h5_write"))
        pieces = boxes * CUBEFIT_DATASETS * len(worst["items"]) / n_items
        piece.append(call(worst, "h5_write") / max(pieces, 1))
    ckpt_s, ckpt_b = checkpoint_per_item(ok)
    return {"chunk": chunk, "t_fit": items_cpu_per_unit(ok), "t_request": request_round_trip(ok),
            "t_piece": median(piece), "datasets": CUBEFIT_DATASETS,
            "setup": median(rank_max(r, lambda pr: phase(pr, "setup", cpu=True)) for r in ok),
            "checkpoint_seconds": ckpt_s, "checkpoint_bytes": ckpt_b, **common(runs)}


def calibrate_parameters(runs: list[dict[str, Any]], pixels: int, batch: int,
                         survey: dict[str, Any] | None = None) -> dict[str, Any]:
    ok = fitted(runs)
    # The header scan and the master build read files from the page cache here: CPU-bound, so like the
    # per-frame cost they are taken at the CPU share the ranks got (wall x share), not stretched by other people's
    # processes on the shared cores (the cluster model adds the masters' file-system time on its own). Rank 0
    # scanned every file before issue 14, its share of them since (the survey: the instrument counts the files
    # in the call's "bytes").
    header_wall = [call(r["per_rank"][0], "header_scan")
                   / (call(r["per_rank"][0], "header_scan", "bytes") or r["size"] + N_CALIBRATION_FRAMES) for r in ok]
    header = [h * cpu_share(r) for h, r in zip(header_wall, ok)]
    m_a, m_b = line_fit([1.0 / r["ranks"] for r in ok],
                        [rank_max(r, lambda pr: call(pr, "masters")) * cpu_share(r) for r in ok])
    writes = [rank_max(r, lambda pr: phase(pr, "write")) for r in ok]
    write_a, write_b = line_fit([r["size"] / r["ranks"] for r in ok], writes)
    if write_b < 0:  # the write step no longer handles the science frames (written during the work): a constant
        write_a, write_b = median(writes), 0.0
    meta = [rank_max(r, lambda pr: call(pr, "h5_meta")) / r["size"] for r in ok]
    ckpt_s, ckpt_b = checkpoint_per_item(ok)
    return {"pixels": pixels, "batch": batch, "t_header": median(header), "t_header_wall": median(header_wall),
            "masters_a": m_a, "masters_b": m_b,
            "t_frame": items_cpu_per_unit(ok), "write_a": write_a, "write_b": write_b,
            "t_create_frame": median(meta),
            "t_request": request_round_trip(ok), "n_calibration": N_CALIBRATION_FRAMES,
            "checkpoint_seconds": ckpt_s, "checkpoint_bytes": ckpt_b, **common(runs),
            # rank 0's survey step (0 in runs before issue 14, whose header scan is inside "plan")
            "survey": cpu_bound([r for r in ok if r["ranks"] == 1], lambda r: r["per_rank"][0], "survey"),
            **survey_parameters(survey, median(header), any("survey" in r["per_rank"][0]["phases"] for r in ok))}


def survey_parameters(costs: dict[str, Any] | None, t_header: float, surveyed: bool) -> dict[str, Any]:
    """calibrate's survey + plan figures (``survey_costs.py``; none without its JSON: the model then keeps rank 0's
    header scan). The header cost per file stays the runs' (``t_header``), turned into the other parse's by the
    ratio measured between the two: runs made before issue 14 parsed every header with astropy (``t_header``, the
    'before' figure) and give the fast parse's cost as t_header / ratio; runs made with the survey the reverse."""
    if not costs:
        return {}
    ratio = costs["header_astropy_seconds_per_file"] / costs["header_seconds_per_file"]
    fast = t_header if surveyed else t_header / ratio
    return {"t_header": fast * ratio, "t_survey_file": fast, "survey_parse_ratio": ratio,
            "t_list_file": costs["list_seconds_per_file"], "t_plan_frame": costs["plan_seconds_per_frame"],
            "survey_record_bytes": costs["record_bytes"],
            "t_survey_record": costs["pickle_seconds_per_record"] + costs["unpickle_seconds_per_record"]}


def startup_calls(startup: dict[str, Any] | None) -> dict[str, int]:
    """File-metadata system calls of one rank's start-up per job (``startup.py``: ``hpcfit run`` of each job's
    demo config, as hpcfit runs now): the calls on a path (``path_calls``), each a metadata-server round trip on
    Lustre, not the fstat of files already open; the older files' ``metadata_syscalls`` (both kinds) when that is
    all they have, or the oldest file's single import-everything count for every job."""
    if not startup:
        return {}
    if "jobs" in startup:
        return {job: int(v["after"].get("path_calls", v["after"]["metadata_syscalls"]))
                for job, v in startup["jobs"].items()}
    total = int(startup.get("startup", {}).get("metadata_syscalls_total", 0))
    return {job: total for job in ("sample", "gridfit", "cubefit", "calibrate")}


def claim_seconds(claims: dict[int, dict[str, Any]] | None, statistic: str = "p10_us") -> dict[str, Any]:
    """Claim latency of the dynamic schedule's counter by rank-0 workload (``claim_latency.py``) at the largest
    rank count that had a core per rank, and the figures per rank count. The model takes the 10th percentile: the latency of the
    claims that found the claiming rank and rank 0 each on a core, as every claim does on a cluster (the median on
    this oversubscribed 2-core machine mostly measures the operating system's scheduling; see claim_latency.py)."""
    if not claims:
        return {}
    # oversubscribed rank counts (4 ranks on 2 cores) are shown, never fitted (as the runs)
    ranks = max((p for p in claims if p <= claims[p].get("cores", 2)), default=min(claims))
    return {"by_workload": {k: v[statistic] * 1e-6 for k, v in claims[ranks]["workloads"].items()},
            "ranks": ranks, "statistic": statistic,
            "table": {str(p): {k: {s: v[s] * 1e-6 for s in ("p10_us", "median_us", "p90_us") if s in v}
                               for k, v in c["workloads"].items()} for p, c in sorted(claims.items())}}


def component_parameters(components: dict[str, Any], scheduler4: dict[str, Any] | None,
                         startup: dict[str, Any] | None,
                         claims: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The micro-benchmarks' figures the model uses (this machine)."""
    h5 = components["hdf5"]
    sched = (scheduler4 or components)["scheduler"]
    calls = startup_calls(startup)
    return {
        "alltoallv_alpha": components["alltoallv"]["alpha_seconds"],
        "alltoallv_bandwidth": components["alltoallv"]["bandwidth_bytes_per_s"],
        "gather_bandwidth": components["gather"].get("root_bytes_per_s",
                                                     2 * components["gather"].get("bandwidth_bytes_per_s", 0.0)),
        "request_latency": {k: v["seconds_per_request"] for k, v in components["scheduler"].items()},
        "service_time": {k: v["seconds_per_request"] for k, v in sched.items()},
        "h5_collective_bandwidth": h5["contiguous_collective"]["bandwidth_bytes_per_s"],
        "h5_independent_bandwidth": h5["contiguous_independent"]["bandwidth_bytes_per_s"],
        "h5_small_piece": h5["small_independent"]["seconds_per_piece"],
        "h5_collective_round": h5.get("small_collective", {}).get("seconds_per_round", float("nan")),
        # the CPU part of a merged (union of hyperslabs) write, per piece; 0 in components.json of before the merge
        "h5_union_piece": h5.get("union_selection", {}).get("seconds_per_piece", 0.0),
        "h5_create_dataset": h5["metadata"]["seconds_per_dataset"],
        "h5_chunked_fill_bandwidth": h5.get("chunked_create", {}).get("bandwidth_bytes_per_s", float("nan")),
        "checkpoint_seconds": components["checkpoint"]["seconds_per_save"],
        "checkpoint_bandwidth": components["checkpoint"]["bandwidth_bytes_per_s"],
        # run.checkpoint_async's main-thread part (components.py); None from a components.json measured before
        # it existed: the model then charges today's synchronous saves (file_op, checkpoint_bandwidth) as before
        "checkpoint_handoff_seconds": components["checkpoint"].get("handoff_seconds"),
        "checkpoint_seconds_per_byte": components["checkpoint"].get("cpu_seconds_per_byte"),
        "startup_metadata_calls": max(calls.values(), default=0),
        "machine_startup_seconds": (startup or {}).get("machine_startup_seconds"),
        "startup_metadata_calls_by_job": calls,
        "claim": claim_seconds(claims),
    }


def parameters(measurements: dict[str, Any], components: dict[str, Any], scheduler4: dict[str, Any] | None = None,
               startup: dict[str, Any] | None = None, gridfit_extra: dict[str, Any] | None = None,
               claims: dict[int, dict[str, Any]] | None = None,
               survey_costs: dict[str, Any] | None = None,
               gridfit_rank0: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every job's parameters plus the components', from the JSON files."""
    import inputs

    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in measurements["runs"]:
        by_job[run["job"]].append(run)
    out: dict[str, Any] = {"components": component_parameters(components, scheduler4, startup, claims)}
    if by_job.get("sample"):
        out["sample"] = sample_parameters(by_job["sample"], inputs.SAMPLE_BATCH)
    if by_job.get("gridfit"):
        out["gridfit"] = gridfit_parameters(by_job["gridfit"], gridfit_extra, gridfit_rank0)
    if by_job.get("cubefit"):
        out["cubefit"] = cubefit_parameters(by_job["cubefit"], inputs.CUBE_CHUNK, lambda n: math.isqrt(n))
    if by_job.get("calibrate"):
        ny, nx = inputs.FRAME_SHAPE
        out["calibrate"] = calibrate_parameters(by_job["calibrate"], ny * nx, 4, survey_costs)
    return out
