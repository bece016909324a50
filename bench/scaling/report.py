"""Fit the scaling model to the measurements, draw docs/img/scaling.png and write the tables of docs/scaling.md.

    python bench/scaling/report.py [--dir bench/scaling] [--plot docs/img/scaling.png] [--tables bench/scaling/report.md]
    python bench/scaling/report.py --json

Reads from ``--dir``: ``measurements.json`` (run_jobs.py), overlaid by ``measurements_gridfit.json`` (gridfit's runs
of its current design: run_jobs.py --jobs gridfit --out ...) and ``measurements/*.json`` (later run_jobs.py runs of
some jobs): an overlay replaces those jobs' runs; ``components.json`` (components.py on 2 ranks),
``scheduler4.json`` (components.py --scheduler-only on 4 ranks: the earlier helper-thread scheduler),
``claim_latency_<P>.json`` (claim_latency.py on P ranks: the shared counter), ``startup.json`` (startup.py) and
``gridfit_components.json`` (gridfit_components.py), ``survey_costs.json`` (survey_costs.py: calibrate's survey
+ plan; without it the model keeps rank 0's header scan), ``gridfit_rank0.json`` (gridfit_rank0.py: the catalogue's
layout and row slices); writes ``parameters.json`` there (the fitted parameters), the
plot, and the markdown tables. ``--json`` writes nothing and prints, per job, the cluster model's strong speed-up
and weak efficiency at 64 ranks at the production size and setting (``production_machine``,
``PRODUCTION_OPTIONS``), the first bottleneck (the term that loses the most time against perfect scaling at 64
ranks) and, for calibrate, the share of the file system's limit reached.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import fit  # noqa: E402
import model  # noqa: E402

RANKS = [1, 2, 4, 8, 16, 32, 64]
JOBS = ("sample", "gridfit", "cubefit", "calibrate")
PRODUCTION = {
    "sample": {"n": 100_000_000, "batch": 100_000},
    "gridfit": {"galaxies": 100_000, "models": 100_000},
    "cubefit": {"fits": 2048 * 2048, "chunk": 2048, "shape": (2048, 2048)},
    "calibrate": {"frames": 10_000, "pixels": 2048 * 2048, "calibration": 100},
}
def node_local(job: str) -> Callable[[dict[str, Any]], model.Machine]:
    """The job's production setting (``production_machine``) with start-up's metadata calls served locally (a
    local stat: ~1 µs; the Python environment node-local or in a container image, docs/cluster.md)."""
    return lambda params: replace(production_machine(job, params), metadata_latency=1e-6, metadata_rate=1e9)


WHAT_IFS = [  # (job, label, model options, machine factory or None for stripe count 8)
    ("sample", "as now, stripe count 1 (Lustre default)", {}, lambda p: model.cluster(p, stripes=1)),
    ("sample", "as now, stripe count 8", {}, None),
    ("sample", "run.mpi_info auto on Lustre (16 stripes: the rule before sizes counted)", {},
     lambda p: model.cluster(p, stripes=16)),
    ("sample", "run.mpi_info auto on Lustre (stripes by output size: 21 for 10.8 GB)", {},
     lambda p: production_machine("sample", p)),
    ("sample", "... Python environment node-local or in a container image (docs/cluster.md)", {},
     node_local("sample")),
    ("sample", "stripes by output size, checkpoints saved synchronously (run.checkpoint_async: false)", {},
     lambda p: replace(production_machine("sample", p), checkpoint_async=False)),
    ("gridfit", "as now (ECSV catalogue, read in row slices by every rank)", {}, None),
    ("gridfit", "the same catalogue as FITS", {"catalogue": "fits"}, None),
    ("cubefit", "as before: helper-thread scheduler, maps written with their fill value, piece by piece",
     {"server": True, "fill": True, "separate": True}, None),
    ("cubefit", "... with the shared counter", {"fill": True, "separate": True}, None),
    ("cubefit", "... maps without fill (fill_time never), each piece written on its own", {"separate": True}, None),
    ("cubefit", "as now: shared counter, no fill, a rank's pieces of a map as one union write", {}, None),
    ("cubefit", "as now, run.mpi_info auto on Lustre (16 stripes)", {}, lambda p: production_machine("cubefit", p)),
    ("cubefit", "... Python environment node-local or in a container image (docs/cluster.md)", {},
     node_local("cubefit")),
    ("calibrate", "before issue 14: scratch files and the fill value of /science/images",
     {"fill": True, "scratch": True, "survey": False}, None),
    ("calibrate", "as now (frames written once, straight into the output), stripe count 8", {}, None),
    ("calibrate", "as now, stripe count 1 (Lustre default, run.mpi_info: none)", {},
     lambda p: model.cluster(p, stripes=1)),
    ("calibrate", "as now, run.mpi_info auto on Lustre, 16 stripes", {},
     lambda p: model.cluster(p, stripes=16)),
    ("calibrate", "as now, run.mpi_info auto on Lustre (stripes by output size: 64 for 168 GB)", {},
     lambda p: production_machine("calibrate", p)),
    ("calibrate", "... without the survey (rank 0 reads every header with astropy, as before)", {"survey": False},
     lambda p: production_machine("calibrate", p)),
]
UNIT_COST = {"sample": "row (draw + model)", "gridfit": "pair (chi2 items; grid items counted in)",
             "cubefit": "fit (read + fit)", "calibrate": "frame (read + calibrate + write)"}
PRODUCTION_TEXT = {
    "sample": "10^8 rows (10.8 GB), batches of 10^5",
    "gridfit": "10^5 galaxies x 10^5 models (64 chunks x 10 blocks)",
    "cubefit": "2048 x 2048 spectra, chunks of 2048 fits",
    "calibrate": "10^4 frames of 2048 x 2048 + 100 calibration frames",
}


def bench_size(job: str, count: int) -> dict[str, Any]:
    """The model's size dict of a measured run of ``count`` units."""
    if job == "sample":
        return {"n": count}
    if job == "gridfit":
        return {"galaxies": count}
    if job == "cubefit":
        return {"fits": count, "shape": (math.isqrt(count), math.isqrt(count))}
    return {"frames": count}


def production_weak(job: str, ranks: int) -> dict[str, Any]:
    """The production size divided by 64, times ``ranks`` (so 64 ranks run the production size)."""
    size = dict(PRODUCTION[job])
    if job == "sample":
        size["n"] = size["n"] // 64 * ranks
    elif job == "gridfit":
        size["galaxies"] = size["galaxies"] // 64 * ranks
    elif job == "cubefit":
        size["fits"] = size["fits"] // 64 * ranks
        size["shape"] = (size["fits"] // 2048, 2048)
    else:
        size["frames"] = math.ceil(size["frames"] / 64 * ranks)
    return size


def measured(measurements: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Medians per (job, mode, ranks): launcher and engine wall, phases (slowest rank), load, repetitions."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for run in measurements["runs"]:
        groups[(run["job"], run["mode"], run["ranks"])].append(run)
    out = {}
    for key, runs in groups.items():
        phases = {name: statistics.median(fit.rank_max(r, lambda pr: fit.phase(pr, name)) for r in runs)
                  for name in ("prepare", "setup", "run_items", "write")}
        out[key] = {"size": runs[0]["size"], "repeats": len(runs),
                    "total": statistics.median(r["launcher_seconds"] for r in runs),
                    "wall": statistics.median(r["attributes"]["wall_seconds"] for r in runs),
                    "load": statistics.median(r["load_average"] for r in runs),
                    "cpu_share": fit.median(fit.cpu_share(r) for r in runs),
                    "rss": max(max(r["attributes"].get("peak_rss_mb_per_rank", [0])) for r in runs),
                    "oversubscribed": runs[0]["oversubscribed"], **phases}
    return out


def busiest_share(run: dict[str, Any]) -> float:
    """Units processed by the busiest rank over the average per rank (1 = perfect balance)."""
    units = [sum(i[1] for i in pr["items"]) for pr in run["per_rank"]]
    return max(units) * len(units) / max(sum(units), 1)


def with_share(machine: model.Machine, group: dict[str, Any]) -> model.Machine:
    """This machine as the runs of ``group`` found it: each rank got ``cpu_share`` of a core while computing."""
    share = group.get("cpu_share")
    return replace(machine, cpu_share=share) if share and not math.isnan(share) else machine


def curves(job: str, params: dict[str, Any], machine: model.Machine, sizes: dict[int, dict[str, Any]],
           ranks: list[int], **options: Any) -> list[float]:
    return [model.total(model.predict(job, p, sizes[p], params, machine, **options)) for p in ranks]


def draw(params: dict[str, Any], meas: dict[tuple[str, str, int], dict[str, Any]], strong: dict[str, int],
         weak: dict[str, int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    local = model.local_machine(params)
    c1, c8 = model.cluster(params, stripes=1), model.cluster(params, stripes=8)
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), sharex=True)
    for col, job in enumerate(JOBS):
        for row, mode in enumerate(("strong", "weak")):
            ax = axes[row, col]
            if mode == "strong":
                bench = {p: bench_size(job, strong[job]) for p in RANKS}
                prod = {p: PRODUCTION[job] for p in RANKS}
            else:
                bench = {p: bench_size(job, weak[job] * p) for p in RANKS}
                prod = {p: production_weak(job, p) for p in RANKS}

            def metric(times: list[float]) -> list[float]:
                return [times[0] / t for t in times] if mode == "strong" else [times[0] / t for t in times]

            ax.plot(RANKS, RANKS if mode == "strong" else [1.0] * len(RANKS), color="0.7", lw=1, label="ideal")
            local_ranks = [p for p in (1, 2, 4) if (job, mode, p) in meas]
            here = [model.total(model.predict(job, p, bench[p], params, with_share(local, meas[(job, mode, p)])))
                    for p in local_ranks]
            ax.plot(local_ranks, metric(here), color="C0", lw=1.2,
                    label="model, this machine, measured CPU share (bench size)")
            ax.plot(RANKS, metric(curves(job, params, c8, bench, RANKS)), color="C0", ls="--", lw=1.2,
                    label="model, cluster (bench size)")
            ax.plot(RANKS, metric(curves(job, params, c1, prod, RANKS)), color="C3", lw=1.8,
                    label="model, cluster, production size, stripe count 1")
            ax.plot(RANKS, metric(curves(job, params, c8, prod, RANKS)), color="C2", lw=1.8,
                    label="model, cluster, production size, stripe count 8")
            points = [(p, meas[(job, mode, p)]["total"]) for p in local_ranks if (job, mode, p) in meas]
            if points and points[0][0] == 1:
                base = points[0][1]
                for p, t in points:
                    hollow = p > 2
                    ax.plot([p], [base / t], marker="o", ms=7, color="k", mfc="white" if hollow else "k",
                            ls="none", label=None)
            ax.set_xscale("log", base=2)
            ax.set_xticks(RANKS, [str(p) for p in RANKS])
            if mode == "strong":
                ax.set_yscale("log", base=2)
                ax.set_yticks([1, 2, 4, 8, 16, 32, 64], ["1", "2", "4", "8", "16", "32", "64"])
                ax.set_ylim(0.4, 80)
                ax.set_title(f"{job}: strong scaling")
                if col == 0:
                    ax.set_ylabel("speed-up T(1) / T(P)")
            else:
                top = max([1.0] + [line.get_ydata().max() for line in ax.get_lines()])
                ax.set_ylim(0, max(1.15, min(top, 2.0) + 0.05))
                ax.set_title(f"{job}: weak scaling")
                if col == 0:
                    ax.set_ylabel("efficiency T(1) / T(P), work x P")
                ax.set_xlabel("ranks P")
            ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    handles += [Line2D([], [], marker="o", color="k", ls="none"),
                Line2D([], [], marker="o", color="k", mfc="white", ls="none")]
    labels += ["measured here (1, 2 ranks)", "measured here, 4 ranks on 2 cores (oversubscribed)"]
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.suptitle("hpcfit scaling: measured on a shared 2-core machine (points) and modelled (lines); "
                 "speed-ups include start-up", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:,.0f}"
    if seconds >= 10:
        return f"{seconds:.1f}"
    return f"{seconds:.2f}"


def tables(params: dict[str, Any], meas: dict[tuple[str, str, int], dict[str, Any]], strong: dict[str, int],
           weak: dict[str, int], units: dict[str, str], measurements_runs: list[dict[str, Any]]) -> str:
    local = model.local_machine(params)
    c1, c8 = model.cluster(params, stripes=1), model.cluster(params, stripes=8)
    lines: list[str] = []
    add = lines.append

    add("### Measured on this machine (medians)\n")
    add("| job | scaling | ranks | size | total wall (s) | engine wall (s) | prepare | set-up | work | write "
        "| model, measured CPU share (s) | CPU share | model, free cores (s) | load avg | peak RSS/rank (MB) | runs |")
    add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for job in JOBS:
        for mode in ("strong", "weak"):
            for p in (1, 2, 4):
                m = meas.get((job, mode, p))
                if not m:
                    continue
                ideal = model.total(model.predict(job, p, bench_size(job, m["size"]), params, local))
                predicted = model.total(model.predict(job, p, bench_size(job, m["size"]), params,
                                                      with_share(local, m)))
                add(f"| {job} | {mode} | {p}{'*' if m['oversubscribed'] else ''} | {m['size']:,} {units[job]} "
                    f"| {fmt(m['total'])} | {fmt(m['wall'])} | {fmt(m['prepare'])} | {fmt(m['setup'])} "
                    f"| {fmt(m['run_items'])} | {fmt(m['write'])} | {fmt(predicted)} | {m['cpu_share']:.2f} "
                    f"| {fmt(ideal)} | {m['load']:.1f} "
                    f"| {m['rss']:.0f} | {m['repeats']} |")
    add("\n\\* 4 ranks on 2 cores (oversubscribed). Total = `mpiexec` launch to exit; engine wall = the output's "
        "`wall_seconds`; phases are the slowest rank's.\n")

    add("### Per-unit compute cost and balance of the work phase (medians over strong and weak runs)\n")
    add("| job | unit | CPU per unit, 1 rank | 2 ranks | 4 ranks* | busiest rank's share / (1/P), 2 ranks | 4 ranks* "
        "| CPU share while computing, 1 / 2 / 4* ranks |")
    add("|---|---|---|---|---|---|---|---|")
    for job in JOBS:
        cells, balance, shares = [], [], []
        for p in (1, 2, 4):
            runs = [r for r in measurements_runs if r["job"] == job and r["ranks"] == p]
            cells.append(per_unit_text(fit.items_cpu_per_unit(runs)))
            shares.append(f"{fit.median(fit.cpu_share(r) for r in runs):.2f}")
            if p > 1:
                balance.append(f"{fit.median(busiest_share(r) for r in runs):.2f}")
        add(f"| {job} | {UNIT_COST[job]} | " + " | ".join(cells) + " | " + " | ".join(balance)
            + " | " + " / ".join(shares) + " |")
    add("\n\\* oversubscribed. CPU per unit is the CPU time of `Job.work` over the units it processed; the busiest "
        "rank's share is the units it processed over the average.\n")

    for label, machine in (("stripe count 1 (Lustre default)", c1), ("stripe count 8", c8)):
        add(f"### Cluster predictions, production sizes, output {label}\n")
        add("| job (production size) | scaling | " + " | ".join(f"P={p}" for p in RANKS) + " |")
        add("|---|---|" + "---|" * len(RANKS))
        for job in JOBS:
            strong_t = curves(job, params, machine, {p: PRODUCTION[job] for p in RANKS}, RANKS)
            weak_t = curves(job, params, machine, {p: production_weak(job, p) for p in RANKS}, RANKS)
            add(f"| {job} ({PRODUCTION_TEXT[job]}) | strong: time (s) | "
                + " | ".join(fmt(t) for t in strong_t) + " |")
            add("| | strong: speed-up | " + " | ".join(f"{strong_t[0] / t:.1f}" for t in strong_t) + " |")
            add("| | weak (1/64 of it per rank): efficiency | "
                + " | ".join(f"{weak_t[0] / t:.2f}" for t in weak_t) + " |")
        add("")

    add("### Cluster predictions at the measured (bench) sizes, stripe count 8\n")
    add("| job (bench size) | scaling | " + " | ".join(f"P={p}" for p in RANKS) + " |")
    add("|---|---|" + "---|" * len(RANKS))
    for job in JOBS:
        s = curves(job, params, c8, {p: bench_size(job, strong[job]) for p in RANKS}, RANKS)
        w = curves(job, params, c8, {p: bench_size(job, weak[job] * p) for p in RANKS}, RANKS)
        add(f"| {job} ({strong[job]:,} {units[job]}) | strong speed-up | "
            + " | ".join(f"{s[0] / t:.1f}" for t in s) + " |")
        add(f"| {job} ({weak[job]:,} per rank) | weak efficiency | " + " | ".join(f"{w[0] / t:.2f}" for t in w) + " |")
    add("")

    add("### What changes to the code would buy (model, production size, 64 ranks, stripe count 8)\n")
    add("| job | variant | time at 64 ranks (s) | speed-up over 1 rank |")
    add("|---|---|---|---|")
    for job, label, options, machine in WHAT_IFS:
        machine = c8 if machine is None else machine(params)
        one = model.total(model.predict(job, 1, PRODUCTION[job], params, machine, **options))
        sixty_four = model.total(model.predict(job, 64, PRODUCTION[job], params, machine, **options))
        add(f"| {job} | {label} | {fmt(sixty_four)} | {one / sixty_four:.1f} |")
    add("")
    for job, ranks_list in (("cubefit", (64, 128, 256)),):
        add("Dynamic scheduler, cubefit production size, stripe count 8: total seconds / seconds lost to "
            "the scheduler (claims, or the earlier helper thread's round trips and saturation):\n")
        add("| rank-0 workload | scheduler | " + " | ".join(f"P={p}" for p in ranks_list) + " |")
        add("|---|---|" + "---|" * len(ranks_list))
        for workload in ("cubefit", "numpy", "python"):
            for server, name in ((True, "helper thread (before)"), (False, "shared counter (now)")):
                cells = []
                for p in ranks_list:
                    terms = model.predict(job, p, PRODUCTION[job], params, c8, workload=workload, server=server)
                    ideal = model.predict(job, p, PRODUCTION[job], params, c8, workload=workload, server=False)
                    lost = terms["work: scheduler saturated (excess)"] + (
                        terms["work: fits (+ checkpoints, requests)"]
                        - ideal["work: fits (+ checkpoints, requests)"] if server else 0.0)
                    claims = math.ceil(math.ceil(PRODUCTION[job]["fits"] / PRODUCTION[job]["chunk"]) / p)
                    if not server:
                        lost = claims * (c8.claim or {}).get(workload, (c8.claim or {}).get("numpy", 0.0))
                    cells.append(f"{fmt(model.total(terms))} / {fmt(lost)}")
                add(f"| {workload} | {name} | " + " | ".join(cells) + " |")
        add("")

    add("### Terms at 64 ranks, production size, strong scaling (seconds)\n")
    for job in JOBS:
        prod = production_machine(job, params)
        options = PRODUCTION_OPTIONS.get(job, {})
        one = model.predict(job, 1, PRODUCTION[job], params, prod, **options)
        add(f"**{job}** ({PRODUCTION_TEXT[job]}) — the production setting ({prod.stripes} stripes, as "
            f"`run.mpi_info: auto` asks on Lustre{'; ' + ', '.join(f'{k} {v}' for k, v in options.items()) if options else ''}) "
            "at 1 and 64 ranks, and 64 ranks on Lustre's default single stripe\n")
        add("| term | P=1 | P=64 | P=64, stripe 1 |")
        add("|---|---|---|---|")
        t64 = model.predict(job, 64, PRODUCTION[job], params, prod, **options)
        t1 = model.predict(job, 64, PRODUCTION[job], params, c1, **options)
        for name in t64:
            add(f"| {name} | {fmt(one[name])} | {fmt(t64[name])} | {fmt(t1[name])} |")
        add(f"| **total** | **{fmt(model.total(one))}** | **{fmt(model.total(t64))}** | **{fmt(model.total(t1))}** |\n")
    return "\n".join(lines)


def load_measurements(directory: Path) -> dict[str, Any]:
    """``measurements.json`` with the runs of the jobs in ``measurements_gridfit.json`` and ``measurements/*.json``
    replaced by those files' runs."""
    measurements = json.loads((directory / "measurements.json").read_text())
    gridfit = [directory / "measurements_gridfit.json"] if (directory / "measurements_gridfit.json").exists() else []
    for path in gridfit + sorted((directory / "measurements").glob("*.json")):
        newer = json.loads(path.read_text())
        jobs = {run["job"] for run in newer["runs"]}
        measurements["runs"] = [r for r in measurements["runs"] if r["job"] not in jobs] + newer["runs"]
    return measurements


def load_claims(directory: Path) -> dict[int, dict[str, Any]]:
    """claim_latency.py's files by rank count."""
    return {int(path.stem.rsplit("_", 1)[1]): json.loads(path.read_text())
            for path in directory.glob("claim_latency_*.json")}


# The production setting of the summary (--json): the output striped as run.mpi_info's default does on Lustre
# (hpcfit.io.mpi_hints.lustre_stripes, "auto": striping_unit 4 MiB, striping_factor = min(ranks, max(16,
# ceil(output bytes / 512 MiB)), 64): 21 stripes for sample's 10.8 GB at 64 ranks, 64 for calibrate's 168 GB, 16 for
# the others; the 1-rank baseline, conservatively, is given the same file); gridfit's catalogue as FITS, as
# docs/gridfit.md recommends for large catalogues (parsed ~14x faster on rank 0, measured).
PRODUCTION_OPTIONS: dict[str, dict[str, Any]] = {"gridfit": {"catalogue": "fits"}}


def per_unit_text(seconds: float) -> str:
    """A per-unit cost in the unit that shows it (gridfit's pairs are tens of ns, calibrate's frames ms)."""
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1e9:.1f} ns"


def production_output_bytes(job: str, size: dict[str, Any], params: dict[str, Any]) -> float:
    """The output size the model writes at ``size`` (what Job.estimate_output_bytes tells run.mpi_info)."""
    if job == "sample":
        return size["n"] * params["sample"]["row_bytes"]
    if job == "gridfit":
        return size["galaxies"] * model.GRIDFIT_GALAXY_BYTES
    if job == "cubefit":
        return size["fits"] * params["cubefit"]["datasets"] * 8
    return size["frames"] * size.get("pixels", params["calibrate"]["pixels"]) * 4


def production_machine(job: str, params: dict[str, Any], ranks: int = 64) -> model.Machine:
    """The reference cluster with the stripe count run.mpi_info auto asks for at ``ranks`` for the job's output."""
    from hpcfit.io.mpi_hints import lustre_stripes

    stripes = lustre_stripes(ranks, int(production_output_bytes(job, PRODUCTION[job], params)))
    return model.cluster(params, stripes=stripes)


def first_bottleneck(job: str, params: dict[str, Any], machine: model.Machine, ranks: int = 64,
                     **options: Any) -> str:
    """The term that loses the most time at ``ranks`` against perfect scaling of the same term from 1 rank."""
    one = model.predict(job, 1, PRODUCTION[job], params, machine, **options)
    many = model.predict(job, ranks, PRODUCTION[job], params, machine, **options)
    return max(many, key=lambda term: many[term] - one.get(term, 0.0) / ranks)


def summary(params: dict[str, Any], ranks: int = 64) -> dict[str, dict[str, Any]]:
    """Per job: strong speed-up and weak efficiency at ``ranks`` (cluster, production size and setting: stripe count
    ``production_machine``, ``PRODUCTION_OPTIONS``) and the first bottleneck; for calibrate also the share of the
    file system's limit reached (``fs_fraction``: T_fs over the predicted time at ``ranks``)."""
    out = {}
    for job in JOBS:
        if job not in params:
            continue
        machine = production_machine(job, params, ranks)
        options = PRODUCTION_OPTIONS.get(job, {})
        strong = curves(job, params, machine, {p: PRODUCTION[job] for p in (1, ranks)}, [1, ranks], **options)
        weak = curves(job, params, machine, {p: production_weak(job, p) for p in (1, ranks)}, [1, ranks], **options)
        out[job] = {f"speedup_{ranks}": round(strong[0] / strong[1], 2),
                    f"weak_efficiency_{ranks}": round(weak[0] / weak[1], 3),
                    "first_bottleneck": first_bottleneck(job, params, machine, ranks, **options)}
        if job == "calibrate":
            size = PRODUCTION[job]
            bound = model.science_io_bound(size["frames"], size["pixels"], machine, ranks)
            out[job][f"fs_fraction_{ranks}"] = round(bound / strong[1], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=HERE)
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "img" / "scaling.png")
    parser.add_argument("--tables", type=Path, default=HERE / "report.md")
    parser.add_argument("--json", action="store_true",
                        help="print the per-job summary at 64 ranks as JSON (and write nothing)")
    args = parser.parse_args(argv)
    read = lambda name: json.loads((args.dir / name).read_text()) if (args.dir / name).exists() else None  # noqa: E731
    measurements = load_measurements(args.dir)
    params = fit.parameters(measurements, read("components.json"), read("scheduler4.json"), read("startup.json"),
                            read("gridfit_components.json"), load_claims(args.dir), read("survey_costs.json"),
                            gridfit_rank0=read("gridfit_rank0.json"))
    if args.json:
        print(json.dumps(summary(params), indent=1))
        return 0
    (args.dir / "parameters.json").write_text(json.dumps(params, indent=1, default=float))
    meas = measured(measurements)
    draw(params, meas, measurements["strong"], measurements["weak"], args.plot)
    text = tables(params, meas, measurements["strong"], measurements["weak"], measurements["size_units"],
                  measurements["runs"])
    args.tables.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
