"""Run provenance: what is the same on every rank is looked up once, on rank 0, and broadcast to the others."""

from __future__ import annotations

import platform

from hpcfit.runtime import provenance
from hpcfit.runtime.comm import SerialComm


class _OtherRank(SerialComm):
    """Rank 1 of two: bcast hands back what rank 0 sent."""

    rank, size = 1, 2

    def __init__(self, from_root: dict):
        self.from_root = from_root

    def bcast(self, obj, root=0):
        assert obj is None  # a non-root rank sends nothing
        return self.from_root


def _run(comm):
    return provenance.run_provenance(comm, job="sample", config_text="job: sample", config_path="c.yaml",
                                     argv=["hpcfit", "run"], start_time="now")


def test_rank_zero_looks_up_platform_and_versions_the_others_receive_them(monkeypatch):
    root = _run(SerialComm())
    assert root["platform"] == platform.platform() and root["hpcfit_version"]
    sent = {"user": "u", "working_directory": "/w", "platform": "Linux-from-rank-0",
            "versions": {"numpy_version": "1.0-from-rank-0"}}

    def forbidden(*args, **kwargs):
        raise AssertionError("only rank 0 looks this up")

    monkeypatch.setattr(provenance.platform, "platform", forbidden)
    monkeypatch.setattr(provenance, "software_versions", forbidden)
    monkeypatch.setattr(provenance, "_user", forbidden)
    other = _run(_OtherRank(sent))
    assert other["platform"] == "Linux-from-rank-0" and other["user"] == "u"
    assert other["working_directory"] == "/w" and other["numpy_version"] == "1.0-from-rank-0"
