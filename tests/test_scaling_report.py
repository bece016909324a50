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

    for job, row in summary.items():
        assert set(row) == {"speedup_64", "weak_efficiency_64", "first_bottleneck"}
        assert 1.0 < row["speedup_64"] <= 64.0
        assert 0.0 < row["weak_efficiency_64"] <= 1.5
        params = json.loads((SCALING / "parameters.json").read_text())
        assert row["first_bottleneck"] in model.predict(job, 64, report.PRODUCTION[job], params,
                                                        model.cluster(params, stripes=8))


def test_first_bottleneck_is_the_term_furthest_from_perfect_scaling(monkeypatch):
    sys.path.insert(0, str(SCALING))
    import report

    terms = {1: {"compute": 640.0, "serial": 2.0, "io": 64.0}, 64: {"compute": 10.0, "serial": 2.0, "io": 4.0}}
    monkeypatch.setattr(report.model, "predict", lambda job, p, size, params, machine, **kw: dict(terms[p]))
    # compute loses 0 s against 640/64, io 3 s against 64/64, serial 1.97 s against 2/64: io is first
    assert report.first_bottleneck("cubefit", {}, None) == "io"
