"""The scaling model: each job's wall time on P ranks as a sum of terms, on this machine or on a cluster.

Every term is a measured per-unit cost (``fit.py``) times a count that follows from the job's design (rows, fits,
model chunks, frames, bytes, messages), divided by whatever the design spreads over the ranks, or not divided when
the design does not spread it. ``predict(job, P, size, params, machine)`` returns the terms in seconds; their sum is
the predicted wall time of ``mpiexec -n P hpcfit run`` including start-up. docs/scaling.md writes the equations
out; the code below is the reference.

Machines: ``local_machine(params)`` is this 2-core machine (compute terms stretch by P/2 when P > 2: time-sharing),
with the I/O and communication figures measured by ``components.py``. ``cluster(...)`` is the reference cluster
of docs/scaling.md; its figures are assumptions (stated and cited there), except the costs that are CPU-bound on
any machine (per-unit compute, gridfit's catalogue parse and fold, the scheduler thread's service time), which are
taken as measured here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

GRIDFIT_GALAXY_BYTES = 8 * (4 + 4 * 6 + 10 + 6 + 2 * 4)  # gridfit's per-galaxy output columns
COLLECTIVE_MIN_BYTES = 64 << 20  # hpcfit.io.h5out: "auto" writes collectively from this many bytes per dataset
Z_MAX = 6.0
T_REQUEST_THREAD = 2.9e-3  # the helper-thread scheduler's round trip, measured in the earlier cubefit 2-rank runs


@dataclass(frozen=True)
class Machine:
    """What the model needs to know about where the ranks run. Bandwidths in bytes/s, times in seconds."""

    name: str
    cores_per_node: int
    oversubscribe_cores: int | None  # this machine: compute slows by P / cores above it; a cluster: None
    net_bandwidth: float             # injection bandwidth per node
    net_latency: float               # per message between nodes
    intra_bandwidth: float           # Alltoallv bandwidth per rank inside a node
    intra_latency: float             # one Alltoallv inside a node
    ost_bandwidth: float             # one storage target (a shared file gets stripes x this)
    stripes: int                     # storage targets the output file is striped over
    rank_io_bandwidth: float         # one process reading/writing
    node_io_bandwidth: float         # one node's file-system client
    fs_bandwidth: float              # the file system's share for this job, many files (checkpoints, scratch)
    file_op: float                   # create + fsync + rename of one small file (a checkpoint)
    small_write: float               # one independent small write into the shared output
    collective_round: float          # one collective write round (every rank, two-phase I/O)
    create_dataset: float            # one collective dataset creation
    service_time: dict[str, float]   # the scheduler thread's time per request when saturated, by rank-0 workload
    startup: float                   # mpiexec + Python + imports, one node
    startup_metadata_calls: int      # file-metadata system calls of one rank's start (stat, open, ...)
    metadata_latency: float | None   # one metadata round trip to the shared file system's server (None: local)
    metadata_rate: float | None      # metadata operations per second that server gives the job
    cpu_share: float | None = None   # measured share of a core a rank got while computing (this shared machine)
    claim: dict[str, float] | None = None  # the dynamic schedule's claim latency by rank-0 workload (shared counter)
    metadata_calls_by_job: dict[str, int] | None = None  # start-up metadata calls per job (else the one figure)
    union_piece: float = 0.0         # CPU per piece of a rank's pieces merged into one union write (measured)
    startup_by_job: dict[str, float] | None = None  # launch to engine start per job, measured (else ``startup``)
    checkpoint_async: bool = True        # run.checkpoint_async (the default): a writer thread saves the checkpoints
    checkpoint_handoff: float = 0.0      # ... the main thread's CPU seconds per hand-off to it
    checkpoint_cpu_per_byte: float = 0.0  # ... and the CPU seconds per byte of a save (pickle, write's copy)

    def nodes(self, ranks: int) -> int:
        return -(-ranks // self.cores_per_node)

    def ranks_per_node(self, ranks: int) -> int:
        return min(ranks, self.cores_per_node)

    def over(self, ranks: int) -> float:
        """Slow-down of compute from time-sharing cores: 1 on a cluster with a core per rank; here P / cores above
        the core count, or 1 / (the CPU share the ranks were measured to get) when that is given."""
        if self.cpu_share:
            return 1.0 / self.cpu_share
        if self.oversubscribe_cores is None:
            return 1.0
        return max(1.0, ranks / self.oversubscribe_cores)

    def file_bandwidth(self, ranks: int) -> float:
        """Writing one shared file from ``ranks`` ranks."""
        return min(self.stripes * self.ost_bandwidth, self.nodes(ranks) * self.node_io_bandwidth,
                   ranks * self.rank_io_bandwidth)

    def rank_bandwidth(self, ranks: int) -> float:
        """One rank's share when every rank reads or writes its own files at once."""
        return min(self.rank_io_bandwidth, self.nodes(ranks) * self.node_io_bandwidth / ranks,
                   self.fs_bandwidth / ranks)

    def checkpoint(self, nbytes: float, ranks: int) -> float:
        """One item's checkpoint on the rank's critical path. Synchronous: the whole save (create + fsync + rename,
        the bytes at the rank's share of the file system). Asynchronous: the hand-off, plus the CPU the writer
        thread takes from the rank's core (pickling, the copy into the kernel); the waiting for the storage
        overlaps the next items; never more than the synchronous save (the CPU figures are this machine's, the
        cluster's file system is assumed). Not charged: the stage end's wait for the last save (one save per stage),
        and a writer slower than the work (never so at the production sizes: a save is < 1/5 of an item's compute)."""
        save = self.file_op + nbytes / self.rank_bandwidth(ranks)
        if self.checkpoint_async:
            return min(self.checkpoint_handoff + nbytes * self.checkpoint_cpu_per_byte, save)
        return save

    def start(self, ranks: int, job: str | None = None) -> float:
        """Start-up: this machine's, plus the metadata calls of Python's imports from a shared file system. The
        ranks of a node share its client cache, so each node pays the calls once (a round trip each), until the
        nodes together exceed the metadata server's rate."""
        base = (self.startup_by_job or {}).get(job or "", self.startup)
        if not self.metadata_rate or not self.metadata_latency:
            return base
        calls = (self.metadata_calls_by_job or {}).get(job or "", self.startup_metadata_calls)
        per_call = max(self.metadata_latency, self.nodes(ranks) / self.metadata_rate)
        return base + calls * per_call

    @property
    def shared_fs(self) -> bool:
        return self.metadata_rate is not None


def local_machine(params: dict[str, Any], cores: int = 2) -> Machine:
    """This machine, from the micro-benchmarks (one node, ``cores`` cores, a local disk)."""
    c = params["components"]
    # launch to engine start, each job's own (its runs here); an older startup.json's one stored figure (taken from
    # quiet runs when the runs were made on a crowded machine) replaces them all
    measured = {k: p["startup"] for k, p in params.items() if k != "components" and "startup" in p}
    startup = c.get("machine_startup_seconds") or min(measured.values())
    by_job = None if c.get("machine_startup_seconds") else measured
    disk = c["h5_independent_bandwidth"]
    return Machine(
        name="this machine (2 cores)", cores_per_node=10**6, oversubscribe_cores=cores,
        net_bandwidth=math.inf, net_latency=0.0, intra_bandwidth=c["alltoallv_bandwidth"],
        intra_latency=c["alltoallv_alpha"], ost_bandwidth=disk, stripes=1, rank_io_bandwidth=disk,
        node_io_bandwidth=disk, fs_bandwidth=c["checkpoint_bandwidth"], file_op=c["checkpoint_seconds"],
        small_write=c["h5_small_piece"], collective_round=c["h5_collective_round"],
        create_dataset=c["h5_create_dataset"], service_time=c["service_time"], startup=startup,
        startup_by_job=by_job,
        startup_metadata_calls=c["startup_metadata_calls"], metadata_latency=None, metadata_rate=None,
        claim=(c.get("claim") or {}).get("by_workload"), metadata_calls_by_job=c.get("startup_metadata_calls_by_job"),
        union_piece=c.get("h5_union_piece", 0.0),
        # no writer figures (measured before run.checkpoint_async existed): synchronous saves, as then
        checkpoint_async=c.get("checkpoint_handoff_seconds") is not None,
        checkpoint_handoff=c.get("checkpoint_handoff_seconds") or 0.0,
        checkpoint_cpu_per_byte=c.get("checkpoint_seconds_per_byte") or 0.0)


# The reference cluster (docs/scaling.md, "Assumptions"): 32 cores per node, 100 Gb/s network, Lustre.
CLUSTER_ASSUMPTIONS = {
    "cores_per_node": 32,
    "net_bandwidth": 12.5e9,      # 100 Gb/s per node and direction (ARCHER2: 2 x 100 Gb/s ports per node)
    "net_latency": 2e-6,          # MPI latency between nodes, InfiniBand / Slingshot class
    "ost_bandwidth": 0.5e9,       # one Lustre OST (ARCHER's documented figure)
    "stripes_default": 1,         # Lustre's default stripe count
    "stripes_tuned": 8,           # lfs setstripe -c 8 on the output directory
    "rank_io_bandwidth": 1.0e9,   # one writer (ARCHER2: a single writer rarely exceeds ~1 GB/s)
    "node_io_bandwidth": 5.0e9,   # one node's Lustre client
    "fs_bandwidth": 20e9,         # the job's share of the whole file system (many files over many OSTs)
    "file_op": 5e-3,              # create + fsync + rename of a small file on Lustre (metadata server round trips)
    "small_write": 1e-3,          # an independent small write into a shared Lustre file (extent lock traffic)
    "collective_round": 2e-3,     # one collective write round of 64 ranks (synchronisation + two-phase I/O)
    "create_dataset": 2e-3,       # a collective HDF5 dataset creation
    "metadata_latency": 1e-4,     # one metadata RPC (stat/open of a file not in the client cache)
    "metadata_rate": 5e4,         # metadata operations per second the MDS gives one job
}


def cluster(params: dict[str, Any], stripes: int | None = None, **changes: Any) -> Machine:
    """The reference cluster; CPU-bound costs as measured on this machine."""
    c = params["components"]
    a = CLUSTER_ASSUMPTIONS
    base = local_machine(params)
    machine = Machine(
        name=f"cluster, output striped over {stripes or a['stripes_default']} OST(s)",
        cores_per_node=a["cores_per_node"], oversubscribe_cores=None,
        net_bandwidth=a["net_bandwidth"], net_latency=a["net_latency"],
        intra_bandwidth=c["alltoallv_bandwidth"], intra_latency=c["alltoallv_alpha"],
        ost_bandwidth=a["ost_bandwidth"], stripes=stripes or a["stripes_default"],
        rank_io_bandwidth=a["rank_io_bandwidth"], node_io_bandwidth=a["node_io_bandwidth"],
        fs_bandwidth=a["fs_bandwidth"], file_op=a["file_op"], small_write=a["small_write"],
        collective_round=a["collective_round"], create_dataset=a["create_dataset"],
        service_time=c["service_time"], startup=base.startup, startup_by_job=base.startup_by_job,
        startup_metadata_calls=c["startup_metadata_calls"], metadata_latency=a["metadata_latency"],
        metadata_rate=a["metadata_rate"], claim=base.claim, metadata_calls_by_job=base.metadata_calls_by_job,
        union_piece=base.union_piece, checkpoint_async=base.checkpoint_async,
        checkpoint_handoff=base.checkpoint_handoff, checkpoint_cpu_per_byte=base.checkpoint_cpu_per_byte)
    return replace(machine, **changes)


# ---------------------------------------------------------------------------------------------------- the jobs
def _common(p: dict[str, Any], m: Machine, ranks: int, job: str) -> dict[str, float]:
    return {"start-up": m.start(ranks, job), "engine fixed": max(p["other"], 0.0)}


def sample(ranks: int, size: dict[str, Any], p: dict[str, Any], m: Machine) -> dict[str, float]:
    """N rows; ranks own contiguous redshift bands; in-memory shuffle (Alltoallv rounds); contiguous writes."""
    n, batch = size["n"], size.get("batch", p["batch"])
    over, share = m.over(ranks), n / ranks
    items = math.ceil(n / batch)
    c = m.ranks_per_node(ranks)
    rounds = math.ceil(share / batch)
    ckpt_bytes = p["checkpoint_bytes"] / p["batch"] * batch
    exchange = share * p["exchange_bytes"] * ((c - 1) / ranks / m.intra_bandwidth
                                              + (ranks - c) / ranks * c / m.net_bandwidth)
    latency = rounds * 2 * (m.intra_latency + (ranks > c) * ranks * m.net_latency) if ranks > 1 else 0.0
    band = math.log1p(Z_MAX / ranks) / math.log1p(Z_MAX)
    return {**_common(p, m, ranks, "sample"),
            "prepare (rank 0)": p["prepare"],
            "set-up: model tables of the lowest band": (p["setup_s0"] + p["setup_s1"] * band) * over,
            "work: draws + model": share * p["t_row"] * over,
            "checkpoints": math.ceil(items / ranks) * m.checkpoint(ckpt_bytes, ranks),
            "shuffle: local regroup + place": share * p["t_shuffle_local_row"] * over,
            "shuffle: Alltoallv": exchange + latency,
            "output: contiguous collective writes": n * p["row_bytes"] / m.file_bandwidth(ranks)}


def gridfit(ranks: int, size: dict[str, Any], p: dict[str, Any], m: Machine, *,
            catalogue: str = "ecsv", table: str = "fits") -> dict[str, float]:
    """G galaxies x N models: on one rank, plan parses the whole catalogue (``catalogue``: its format, ecsv as
    measured or fits); on several, rank 0 reads its layout, each rank reads and validates its 1/P slice of the rows
    in set-up and the slices are allgathered; grid items (model chunks, static), then chi2 items (galaxy block x
    model chunk, dynamic; the decomposition of ``hpcfit.gridfit.chi2_stage.decompose``, >= 256 items when the
    problem allows); the partial records go to the galaxies' owner ranks (Alltoallv), which fold, finalise and
    write their rows; the FITS results table is written by every rank, its rows (``table="ecsv"``: rank 0, after
    a Gatherv)."""
    from hpcfit.gridfit.chi2_stage import decompose

    g, n = size["galaxies"], size.get("models", p["n_models"])
    parts = decompose(g, n, 256 * 2**20)
    chunk, block = size.get("chunk") or parts.chunk, parts.block
    n_chunks, n_blocks = math.ceil(n / chunk), math.ceil(g / block)
    items = n_chunks * n_blocks
    over = m.over(ranks)
    c = m.ranks_per_node(ranks)
    read = p["read_catalog"]
    per_galaxy_plan = p["plan_b"] - read.get("ecsv", 0.0) + read.get(catalogue, read.get("ecsv", 0.0))
    prepare_fixed = p["prepare"] - p["plan"] + p["plan_a"]
    net = m.net_bandwidth / c if ranks > c else m.intra_bandwidth
    steps = math.ceil(math.log2(ranks)) if ranks > 1 else 0
    if ranks == 1 or "slice" not in p:  # the whole catalogue parsed in plan (and broadcast)
        prepare = prepare_fixed + per_galaxy_plan * g
        share = g * p["broadcast_bytes"] * steps / net  # a binomial tree, log2 P steps of the whole catalogue
    else:  # rank 0: the layout; every rank: its slice, validated, then an Allgatherv of the arrays
        layout, piece = p["layout"][catalogue], p["slice"][catalogue]
        prepare = prepare_fixed + layout["a"] + layout["b"] * g
        share = ((piece["a"] + piece["b"] * math.ceil(g / ranks)) * over
                 + g * p["gather_bytes"] * (ranks - 1) / ranks / net + steps * m.net_latency)
    grid_bytes = n * 8 * (6 + 2 + 1)  # every chunk to every rank: band fluxes, parameters, luminosity
    ckpt_bytes = block * p["record_bytes"] * 1.05  # a chi2 item's checkpoint: its partial records (+ pickle)
    # a worker's wait for its next item: a claim on the shared counter with rank 0 busy in numpy (claim_latency.py;
    # the chi2 kernel is numpy), else the helper-thread round trip measured in the gridfit runs (or cubefit's)
    claim = (m.claim or {}).get("numpy")
    thread = p["t_request"] if not math.isnan(p["t_request"]) else T_REQUEST_THREAD
    request = (claim if claim is not None else thread) if ranks > 1 else 0.0
    # exchange: each rank sends the records of its items' galaxies owned elsewhere, (P - 1) / P of them
    exchanged = g * n_chunks * p["record_bytes"] / ranks * (ranks - 1) / ranks
    exchange = exchanged * ((c - 1) / max(ranks - 1, 1) / m.intra_bandwidth
                            + (ranks - c) / max(ranks - 1, 1) * c / m.net_bandwidth) if ranks > 1 else 0.0
    rounds = math.ceil(math.ceil(g / ranks) * n_chunks * p["record_bytes"] / (256 * 2**20))
    latency = rounds * (m.intra_latency + (ranks > c) * ranks * m.net_latency) if ranks > 1 else 0.0
    if table == "fits" and ranks > 1 and "table_fits" in p:  # each rank encodes and writes its rows, one call
        encode = p["table_fits"]
        results_table = ((encode["a"] + encode["b"] * math.ceil(g / ranks)) * over
                         + g * p["table_row_bytes"] / m.file_bandwidth(ranks) + m.collective_round)
    else:  # rank 0 after a Gatherv
        results_table = g * (p["t_table_cpu"] + p["table_row_bytes"]
                             / (m.net_bandwidth if ranks > c else m.intra_bandwidth))
    galaxy_bytes = GRIDFIT_GALAXY_BYTES
    output = (g / ranks * p["t_output_galaxy"] * over if not m.shared_fs
              else g * galaxy_bytes / m.file_bandwidth(ranks))
    return {**_common(p, m, ranks, "gridfit"),
            "prepare: catalogue layout (one rank: the whole read), filters (rank 0)": prepare,
            "set-up: catalogue slice per rank + Allgatherv, filters, model (every rank)": p["setup_a"] * over + share,
            "work: model chunks": math.ceil(n_chunks / ranks) * (chunk * p["t_model"] * over
                                                                 + m.checkpoint(chunk * 80, ranks)),
            "between: every chunk to every rank": grid_bytes * (ranks - 1) / ranks / m.intra_bandwidth,
            "work: chi2 items (chi2, scale, best fit, moments)": math.ceil(items / ranks) * (
                block * chunk * p["t_pair"] * over + m.checkpoint(ckpt_bytes, ranks) + request),
            "write: partial records to the owner ranks (Alltoallv)": exchange + latency,
            "write: fold + finalise (each rank its galaxies)": g / ranks * (n_chunks * p["t_fold"]
                                                                           + p["t_finalise"]) * over,
            "write: per-galaxy output (each rank its rows)": output,
            "write: results table (FITS: each rank its rows)": results_table}


def cubefit(ranks: int, size: dict[str, Any], p: dict[str, Any], m: Machine, workload: str = "cubefit", *,
            fill: bool = False, server: bool = False, separate: bool = False) -> dict[str, float]:
    """F fits in items of ``chunk``; dynamic self-scheduling; every rank writes its items' pieces of 12 maps, each
    map's pieces as one union-of-hyperslabs write (``hpcfit.io.piece_union``: one call, plus the selection's CPU per
    piece); ``separate=True``: one write per piece, as before.

    ``workload``: what rank 0's own items do meanwhile (``cubefit``: the batched solver; ``numpy``; ``python``:
    pure Python, as a per-spectrum fitter). Items are claimed from the shared counter (one claim per item, its
    latency measured by claim_latency.py with rank 0 busy in that workload; no rank serves requests, so there is
    no saturation term). ``server=True``: the earlier scheduler, a helper thread on rank 0 answering requests
    (its measured round trip per item, and its service time per request as a capacity: ``scheduler4.json``).
    ``fill=True``: the maps created with their fill value written first (before ``fill_time='never'``)."""
    from hpcfit.cubefit.boxes import flat_range_boxes

    f, chunk = size["fits"], size.get("chunk", p["chunk"])
    shape = size.get("shape") or (math.isqrt(f), math.isqrt(f))
    items = math.ceil(f / chunk)
    busiest = math.ceil(items / ranks)
    over = m.over(ranks)
    sample_items = range(0, f, max(chunk, f // 200 // chunk * chunk or chunk))
    boxes = sum(len(flat_range_boxes(shape, a, min(a + chunk, f))) for a in sample_items) / len(sample_items)
    datasets = p["datasets"]
    per_item = chunk * p["t_fit"] * over + m.checkpoint(p["checkpoint_bytes"] / p["chunk"] * chunk, ranks)
    if server:
        served_by = workload if workload in m.service_time else "numpy"
        round_trip = T_REQUEST_THREAD if ranks > 1 else 0.0
        served = items * m.service_time[served_by] if ranks > 2 else 0.0
    else:
        claims = m.claim or {}
        claim = claims.get(workload, claims.get("numpy", p["t_request"]))
        round_trip = claim if ranks > 1 else 0.0  # a claim: one atomic operation on rank 0's window
        served = 0.0
    work = busiest * (per_item + round_trip)
    collective = f * 8 >= COLLECTIVE_MIN_BYTES
    pieces = busiest * boxes  # one rank's pieces of one map
    if not m.shared_fs:
        per_map = pieces * p["t_piece"]  # measured here (per piece, of whichever writes the runs made)
    elif ranks == 1:
        per_map = pieces * chunk * 8 / m.rank_io_bandwidth  # one process, plain HDF5: no locks to share
    else:
        call = m.collective_round if collective else m.small_write
        per_map = pieces * call if separate else call + pieces * m.union_piece
    return {**_common(p, m, ranks, "cubefit"),
            "prepare (rank 0)": p["prepare"],
            "set-up": p["setup"] * over,
            "work: fits (+ checkpoints, requests)": work,
            "work: scheduler saturated (excess)": max(0.0, served - work),
            "output: create 12 maps": datasets * m.create_dataset,
            "output: per-item pieces": datasets * per_map,
            # the maps have a fill value (NaN, status 2): HDF5 writes it over the whole dataset, then the data
            "output: bytes (fill + data)": (2 if fill else 1) * f * datasets * 8 / m.file_bandwidth(ranks)}


def calibrate(ranks: int, size: dict[str, Any], p: dict[str, Any], m: Machine, *, fill: bool = False,
              scratch: bool = False, survey: bool = True) -> dict[str, float]:
    """n science frames (+ calibration frames): headers read by every rank (the survey) and planned on rank 0,
    masters by row bands, frames dynamically, each read once and written once straight into its plane of the output
    during the work (independent writes).

    What-ifs (the code before issue 14): ``scratch=True``: calibrated frames detour through per-item scratch files
    (written during the work, read back in the write step and written into the output collectively);
    ``fill=True``: /science/images created with its fill value written (parallel HDF5 allocates at creation);
    ``survey=False``: rank 0 reads every header itself through astropy (also the model without survey_costs.json)."""
    n, pixels = size["frames"], size.get("pixels", p["pixels"])
    n_cal = size.get("calibration", p["n_calibration"])
    scale = pixels / p["pixels"]
    over = m.over(ranks)
    items = math.ceil(n / p["batch"])
    busiest = math.ceil(items / ranks)
    # a claim on the shared counter with rank 0 busy in numpy (claim_latency.py), else the runs' round trip
    round_trip = (m.claim or {}).get("numpy", p["t_request"]) if ranks > 1 else 0.0
    work = busiest * (p["batch"] * p["t_frame"] * scale * over + m.checkpoint(p["checkpoint_bytes"], ranks)
                      + round_trip)
    write_local = (p["write_a"] + p["write_b"] * scale * n / ranks) * over
    cluster = m.shared_fs
    raw, out = n * pixels * 2, n * pixels * 4
    io_work = io_write = 0.0
    if cluster and scratch:
        io_work = (raw + out) / (ranks * m.rank_bandwidth(ranks))            # raw in, scratch out (own files)
        io_write = out / (ranks * m.rank_bandwidth(ranks)) + out / m.file_bandwidth(ranks)  # scratch in, output
    elif cluster:
        io_work = science_io_bound(n, pixels, m, ranks)
    masters_io = n_cal * pixels * 2 / (ranks * m.rank_bandwidth(ranks)) if cluster else 0.0
    return {**_common(p, m, ranks, "calibrate"),
            **calibrate_prepare(ranks, n + n_cal, p, m, survey),
            "set-up: masters": (p["masters_a"] + p["masters_b"] * scale * n_cal / p["n_calibration"] / ranks) * over
            + masters_io,
            "work: read + calibrate + write": max(work, io_work),
            # parallel HDF5 allocates chunked datasets at creation and writes their fill value (one rank: no)
            "output: fill of /science/images": 0.0 if ranks == 1 or not fill else (
                out / m.file_bandwidth(ranks) if cluster else p["t_create_frame"] * scale * n),
            "output: masters, tables (+ scratch -> /science/images)": max(write_local, io_write)}


def calibrate_prepare(ranks: int, files: int, p: dict[str, Any], m: Machine, survey: bool) -> dict[str, float]:
    """calibrate's prepare term. With the survey: rank 0 lists the files (no stat per file) and broadcasts them,
    every rank reads the headers of its share (a metadata round trip to open each file on a shared file system,
    its metadata server serving at most ``metadata_rate`` opens a second to all ranks together), rank 0 gathers
    the frame records (pickled on the ranks, over the network, unpickled on rank 0) and plans from them. Without
    (before issue 14): rank 0 reads every header with astropy (``t_header``, as measured in the runs)."""
    fixed = max(p["prepare"] - p["plan"] - p.get("survey", 0.0), 0.0)  # validation, broadcasts: not scan or plan
    if not survey or "t_survey_file" not in p:
        return {"prepare: headers (rank 0)": fixed + p["t_header"] * files}
    share = math.ceil(files / ranks)
    opens = max(share * m.metadata_latency, files / m.metadata_rate) if m.shared_fs else 0.0
    gathered = files - share  # records rank 0 receives from the others
    gather = (gathered * p["survey_record_bytes"] / m.net_bandwidth + math.ceil(math.log2(ranks)) * m.net_latency
              if ranks > 1 and m.nodes(ranks) > 1 else 0.0)
    cpu = (p["t_list_file"] * files + p["t_survey_file"] * share + p["t_survey_record"] * gathered
           + p["t_plan_frame"] * files) * m.over(ranks)
    return {"prepare: survey + plan": fixed + cpu + opens + gather}


def science_io_bound(n: int, pixels: int, m: Machine, ranks: int) -> float:
    """The least time the file system allows for what calibrate's science stage must move: every raw frame read
    (2 bytes per pixel, ranks reading their own frames) and every calibrated frame written into the one output
    (4 bytes per pixel, through the file's stripes), both through the nodes' file-system clients."""
    raw, out = n * pixels * 2, n * pixels * 4
    readers = ranks * m.rank_bandwidth(ranks)  # own files: min(rank, node share, file-system share) per rank
    return max(raw / readers, out / m.file_bandwidth(ranks), (raw + out) / (m.nodes(ranks) * m.node_io_bandwidth))


JOBS = {"sample": sample, "gridfit": gridfit, "cubefit": cubefit, "calibrate": calibrate}


def predict(job: str, ranks: int, size: dict[str, Any], params: dict[str, Any], machine: Machine,
            **options: Any) -> dict[str, float]:
    """The terms of one job's wall time on ``ranks`` ranks (seconds)."""
    return JOBS[job](ranks, size, params[job], machine, **options)


def total(terms: dict[str, float]) -> float:
    return sum(terms.values())
