"""The engine's optional survey step on toy jobs (serial, in-process): a job's survey runs after validation and
its result reaches ``plan``; a job without one is planned as before (``plan(cfg, report)``) and never surveyed; a
config error stops before the survey; a failing survey ends the job naming the stage; the fault-injection stage
``survey`` fails exactly there. (calibrate's survey on several ranks: test_calibrate_survey.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpcfit.config.schema import Field, Int, Section
from hpcfit.config.errors import ConfigError
from hpcfit.engine.job import Job, Plan, WorkItem
from hpcfit.engine.run import prepare_job
from hpcfit.runtime.comm import SerialComm
from hpcfit.runtime.errors import JobFailed
from hpcfit.runtime.faults import ENV_VAR

SEEN: list[Any] = []
SCHEMA = Section({"toy": Section({"n": Field(Int(min=1), 3, "items")}, doc="toy", required=True)})


class Plain(Job):
    name, title, schema = "plain", "no survey", SCHEMA

    def plan(self, cfg, report) -> Plan:  # no survey parameter: the engine must not pass one
        SEEN.append(("plan", None))
        return Plan([WorkItem(i, str(i)) for i in range(cfg.toy.n)])


class Surveyed(Plain):
    name, title = "surveyed", "with a survey"

    def survey(self, cfg, comm) -> Any:
        SEEN.append(("survey", comm.size))
        if cfg.toy.n == 13:
            raise RuntimeError("header of frame 13 unreadable")
        return {"files": cfg.toy.n * 10}

    def plan(self, cfg, report, survey: Any = None) -> Plan:
        SEEN.append(("plan", survey))
        return Plan([WorkItem(i, str(i)) for i in range(survey["files"])])


class Catalog:
    jobs = {"plain": Plain, "surveyed": Surveyed}

    def names(self) -> list[str]:
        return list(self.jobs)

    def load(self, name: str) -> type[Job]:
        return self.jobs[name]


def prepare(tmp_path: Path, job: str, n: Any = 3, *, plan: bool = True):
    config = tmp_path / "cfg.yaml"
    config.write_text(f"job: {job}\noutput: out.h5\ntoy: {{n: {n}}}\n")
    SEEN.clear()
    return prepare_job(str(config), [], SerialComm(), plan=plan, jobs=Catalog())


def test_the_survey_result_reaches_the_plan(tmp_path):
    prepared = prepare(tmp_path, "surveyed")
    assert SEEN == [("survey", 1), ("plan", {"files": 30})]
    assert len(prepared.plan.items) == 30


def test_a_job_without_survey_is_planned_as_before(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "rank=0,stage=survey")  # a stage this job has not: never reached
    prepared = prepare(tmp_path, "plain")
    assert SEEN == [("plan", None)] and len(prepared.plan.items) == 3
    assert not Plain.has_survey() and Surveyed.has_survey()


def test_no_survey_after_a_config_error_or_without_a_plan(tmp_path):
    with pytest.raises(ConfigError, match="toy.n"):
        prepare(tmp_path, "surveyed", n=0)
    assert SEEN == []
    assert prepare(tmp_path, "surveyed", plan=False).plan is None
    assert SEEN == []


def test_a_failing_survey_ends_the_job_naming_the_stage(tmp_path):
    with pytest.raises(JobFailed) as failed:
        prepare(tmp_path, "surveyed", n=13)
    assert "while processing survey: header of frame 13 unreadable" in failed.value.message
    assert ("plan", None) not in SEEN and all(kind != "plan" for kind, _ in SEEN)


def test_fault_injected_at_stage_survey(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "rank=0,stage=survey")
    with pytest.raises(JobFailed) as failed:
        prepare(tmp_path, "surveyed")
    assert "while processing survey: injected fault on rank 0, stage survey" in failed.value.message
    assert SEEN == []  # it fails as the survey starts
    monkeypatch.setenv(ENV_VAR, "rank=1,stage=survey")  # another rank's fault
    assert len(prepare(tmp_path, "surveyed").plan.items) == 30
