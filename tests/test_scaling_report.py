"""bench/scaling/report.py --json: per job, the cluster model's speed-up and weak efficiency at 64 ranks and the
first bottleneck, from the stored measurements (docs/scaling.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCALING = REPO / "bench" / "scaling"


def test_report_json_shape():
    proc = subprocess.run([sys.executable, str(SCALING / "report.py"), "--json"], capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert set(summary) == {"sample", "gridfit", "cubefit", "calibrate"}
    sys.path.insert(0, str(SCALING))
    import model
    import report

    params = json.loads((SCALING / "parameters.json").read_text())
    for job, row in summary.items():
        machine = report.production_machine(job, params)
        assert set(row) == {"speedup_64", "weak_efficiency_64", "first_bottleneck"} | (
            {"fs_fraction_64"} if job == "calibrate" else set())
        assert 1.0 < row["speedup_64"] <= 64.0
        # gridfit's weak scaling grows the galaxies only: the one model grid is split over more ranks, so its
        # efficiency exceeds 1 (up to 2 in the model); every other job's work per rank stays the same
        assert 0.0 < row["weak_efficiency_64"] <= (2.5 if job == "gridfit" else 1.5)
        assert row["first_bottleneck"] in model.predict(job, 64, report.PRODUCTION[job], params, machine,
                                                        **report.PRODUCTION_OPTIONS.get(job, {}))
    assert 0.0 < summary["calibrate"]["fs_fraction_64"] <= 1.0


def test_summary_uses_the_production_setting():
    """--json models the output striped as run.mpi_info auto asks for on Lustre at 64 ranks (the stripe count grows
    with the job's output size: 21 for sample's 10.8 GB, 64 for calibrate, 16 for the others) and gridfit's catalogue
    as FITS: its figures are those of that machine and those options, not of one stripe count / ECSV."""
    sys.path.insert(0, str(SCALING))
    import model
    import report
    from hpcfit.io.mpi_hints import lustre_stripes

    params = json.loads((SCALING / "parameters.json").read_text())
    summary = report.summary(params)
    stripes = {job: report.production_machine(job, params).stripes for job in summary}
    assert stripes["sample"] == lustre_stripes(64, int(report.PRODUCTION["sample"]["n"]
                                                       * params["sample"]["row_bytes"]))
    assert stripes["sample"] > 16 and stripes["calibrate"] == 64
    assert stripes["gridfit"] == stripes["cubefit"] == 16
    for job in ("sample", "gridfit"):
        machine = model.cluster(params, stripes=stripes[job])
        options = {"catalogue": "fits"} if job == "gridfit" else {}
        times = [model.total(model.predict(job, p, report.PRODUCTION[job], params, machine, **options))
                 for p in (1, 64)]
        assert summary[job]["speedup_64"] == round(times[0] / times[1], 2)
    machine = model.cluster(params, stripes=64)
    size = report.PRODUCTION["calibrate"]
    total = model.total(model.predict("calibrate", 64, size, params, machine))
    bound = model.science_io_bound(size["frames"], size["pixels"], machine, 64)
    assert summary["calibrate"]["fs_fraction_64"] == round(bound / total, 3)


def test_first_bottleneck_is_the_term_furthest_from_perfect_scaling(monkeypatch):
    sys.path.insert(0, str(SCALING))
    import report

    terms = {1: {"compute": 640.0, "serial": 2.0, "io": 64.0}, 64: {"compute": 10.0, "serial": 2.0, "io": 4.0}}
    monkeypatch.setattr(report.model, "predict", lambda job, p, size, params, machine, **kw: dict(terms[p]))
    # compute loses 0 s against 640/64, io 3 s against 64/64, serial 1.97 s against 2/64: io is first
    assert report.first_bottleneck("cubefit", {}, None) == "io"
