"""The engine's staged plans on a toy job (serial, in-process): stages run in order with the ``between`` hook in
between, which sees complete earlier stages also when they come from checkpoints; a resume computes only the
missing items of any stage; slices share out the last stage and a merge calls no hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from hpcfit.config.schema import Field, Int, Section
from hpcfit.engine.job import Job, Plan, RunContext, Stage, WorkItem
from hpcfit.engine.run import RunMode, execute
from hpcfit.runtime.comm import SerialComm
from hpcfit.runtime.errors import WorkItemError
from hpcfit.runtime.faults import ENV_VAR

N = 6
CALLS: list[dict[str, Any]] = []  # what each run saw: between calls and the items computed


class StagedToy(Job):
    """Stage "square": x_i = i^2; between: total = sum x; stage "shift": y_j = total + j (needs every x)."""

    name = "toy"
    title = "a two-stage toy"
    schema = Section({"toy": Section({"n": Field(Int(min=1), N, "items per stage")}, doc="toy", required=True)})

    def plan(self, cfg, report) -> Plan:
        n = cfg.toy.n
        return Plan.staged([Stage("square", [WorkItem(-1, f"square {i}", data=i) for i in range(n)], unit="squares"),
                            Stage("shift", [WorkItem(-1, f"shift {j}", data=j) for j in range(n)], unit="shifts")])

    def setup(self, ctx: RunContext) -> None:
        ctx.state["seen"] = {"between": [], "computed": []}
        CALLS.append(ctx.state["seen"])

    def work(self, item: WorkItem, ctx: RunContext) -> Any:
        ctx.state["seen"]["computed"].append(item.index)
        return item.data ** 2 if item.stage == 0 else ctx.state["total"] + item.data

    def between(self, ctx: RunContext, stage: int, results: dict[int, Any]) -> None:
        ctx.state["seen"]["between"].append((stage, sorted(results)))
        ctx.state["total"] = ctx.comm.allreduce(sum(v for k, v in results.items() if ctx.plan.items[k].stage == 0))

    def write(self, ctx: RunContext, results: dict[int, Any], out) -> dict[str, int]:
        n = ctx.cfg.toy.n
        out.create_dataset("square", (n,), "i8")
        out.create_dataset("shift", (n,), "i8")
        pieces = []
        for k, value in results.items():
            item = ctx.plan.items[k]
            pieces.append((("square", "shift")[item.stage], (slice(item.data, item.data + 1),), np.array([value])))
        out.write(pieces)
        return {}


class Catalog:
    def names(self) -> list[str]:
        return ["toy"]

    def load(self, name: str) -> type[Job]:
        return StagedToy


EXPECTED_SHIFT = sum(i * i for i in range(N)) + np.arange(N)


def _run(config: Path, *overrides: str, **mode: Any) -> int:
    return execute(str(config), list(overrides), SerialComm(), argv=["test"], jobs=Catalog(), mode=RunMode(**mode))


@pytest.fixture()
def config(tmp_path) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text("job: toy\noutput: toy.h5\nrun:\n  progress: none\ntoy:\n  n: 6\n")
    return path


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path) as h5:
        return h5["square"][()], h5["shift"][()]


def test_stages_run_in_order_with_between(config):
    CALLS.clear()
    assert _run(config) == 0
    square, shift = _read(config.with_name("toy.h5"))
    np.testing.assert_array_equal(square, np.arange(N) ** 2)
    np.testing.assert_array_equal(shift, EXPECTED_SHIFT)
    (seen,) = CALLS
    assert seen["between"] == [(0, list(range(N)))]  # once, after stage 0, with all of its results
    assert sorted(seen["computed"][:N]) == list(range(N)) and sorted(seen["computed"]) == list(range(2 * N))


def test_resume_after_a_failure_in_the_second_stage(config, monkeypatch):
    CALLS.clear()
    monkeypatch.setenv(ENV_VAR, f"rank=0,item={N + 2},action=raise")
    # serially the item's error reaches the caller (the CLI), naming the item and the fault
    with pytest.raises(WorkItemError, match=f"injected fault on rank 0, item {N + 2}"):
        _run(config)
    monkeypatch.delenv(ENV_VAR)
    parts = config.with_name("toy.h5.parts") / "slice-000-of-001"
    done = sorted(int(p.stem.split("-")[1]) for p in parts.glob("item-*.pkl"))
    assert done == list(range(N + 2))  # serial order: by index (equal costs)
    assert _run(config, resume=True) == 0
    seen = CALLS[-1]
    assert sorted(seen["computed"]) == list(range(N + 2, 2 * N))  # only the missing items
    assert seen["between"] == [(0, list(range(N)))]  # the first stage, from checkpoints, complete
    np.testing.assert_array_equal(_read(config.with_name("toy.h5"))[1], EXPECTED_SHIFT)


def test_resume_recomputes_a_missing_first_stage_item(config):
    CALLS.clear()
    assert _run(config, keep_parts=True) == 0
    parts = config.with_name("toy.h5.parts") / "slice-000-of-001"
    for index in (1, N + 4):
        (parts / f"item-{index:06d}.pkl").unlink()
    assert _run(config, "run.overwrite=true", resume=True) == 0
    seen = CALLS[-1]
    assert sorted(seen["computed"]) == [1, N + 4]
    assert seen["between"] == [(0, list(range(N)))]
    np.testing.assert_array_equal(_read(config.with_name("toy.h5"))[1], EXPECTED_SHIFT)


def test_slices_share_the_last_stage_and_merge_calls_no_hook(config):
    CALLS.clear()
    for k in range(3):
        assert _run(config, slice_k=k, slice_n=3) == 0
        assert sorted(CALLS[-1]["computed"]) == list(range(N)) + [N + 2 * k, N + 2 * k + 1]
    assert _run(config, merge=True) == 0
    assert CALLS[-1] == {"between": [], "computed": []}
    square, shift = _read(config.with_name("toy.h5"))
    np.testing.assert_array_equal(square, np.arange(N) ** 2)
    np.testing.assert_array_equal(shift, EXPECTED_SHIFT)
    assert _run(config, "output=many.h5", slice_k=0, slice_n=N + 1) == 2  # at most one slice per last-stage item
