"""`hpcfit schema --json JOB`: the JSON Schema editors read agrees with the loader on the example configs, on
unknown keys and on values outside the choices."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from hpcfit.cli import main
from hpcfit.config.errors import ConfigError
from hpcfit.engine.run import load_config
from hpcfit.registry import JOBS, available_jobs, config_json_schema

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def _validator(job: str) -> jsonschema.Draft202012Validator:
    schema = config_json_schema(job)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(job: str, values: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(job).iter_errors(values)]


@pytest.mark.parametrize("job", available_jobs())
def test_cli_prints_a_valid_draft_2020_12_schema(job, capsys):
    assert main(["schema", "--json", job]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["job"] == {"enum": [job], "description": "Which job to run."}
    assert schema["additionalProperties"] is False and set(schema["required"]) >= {"job", "output"}
    assert schema["properties"][job]["additionalProperties"] is False
    run = schema["properties"]["run"]["properties"]
    assert run["hdf5_transfer"]["enum"] == ["auto", "collective", "independent"]
    assert run["hdf5_transfer"]["default"] == "auto" and "MPI-IO" in run["hdf5_transfer"]["description"]
    assert run["blas_threads"] == {**run["blas_threads"], "type": "integer", "minimum": 1, "default": 1}


def test_cli_schema_json_needs_a_known_job(capsys):
    assert main(["schema", "--json"]) == 2
    assert "needs a job" in capsys.readouterr().err
    assert main(["schema", "--json", "nojob"]) == 2
    assert "unknown job 'nojob'" in capsys.readouterr().err


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_example_config_validates(config):
    values = yaml.safe_load(config.read_text())
    assert _errors(values["job"], values) == []


@pytest.mark.parametrize("job", available_jobs())
def test_every_demo_config_validates(job, tmp_path):
    config = JOBS.load(job)().demo(tmp_path)
    values = yaml.safe_load(Path(config).read_text())
    assert _errors(job, values) == []


def test_unknown_key_wrong_choice_wrong_type_and_missing_key_fail():
    values = yaml.safe_load((REPO / "configs" / "sample_agnfinder.yaml").read_text())
    assert _errors("sample", {**values, "outptu": "x.h5"})
    assert _errors("sample", {**values, "run": {"schedule": "dynamc"}})
    assert _errors("sample", {**values, "run": {"blas_threads": 0}})
    assert _errors("sample", {**values, "run": {"overwrite": "yes"}})
    assert _errors("sample", {**values, "sample": {**values["sample"], "bogus": 1}})
    assert _errors("sample", {key: v for key, v in values.items() if key != "output"})
    assert _errors("sample", {**values, "job": "gridfit"})  # the schema of one job is for that job's configs
    assert _errors("sample", {**values, "run": None}) == []  # `run:` with nothing under it is allowed


def _enum_keys(schema: dict, prefix: str = "") -> list[tuple[str, list]]:
    """Dotted paths of the keys with a plain list of allowed values, through the config's sections."""
    found = []
    for name, spec in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        if "enum" in spec and path != "job":
            found.append((path, spec["enum"]))
        if spec.get("type") in ("object", ["object", "null"]) and "properties" in spec:
            found.extend(_enum_keys(spec, path + "."))
    return found


def _set(values: dict, dotted: str, value) -> dict:
    out = json.loads(json.dumps(values))
    node = out
    *parents, last = dotted.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value
    return out


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_schema_and_loader_agree_on_every_choice_and_unknown_key(config):
    """Every key with allowed values, set to a value outside them, and an unknown key in every section: the loader
    refuses each (naming the key) and so does the JSON Schema."""
    values = yaml.safe_load(config.read_text())
    job = values["job"]
    schema = config_json_schema(job)
    keys = _enum_keys(schema)
    assert len(keys) >= 3
    sections = [""] + [f"{path}." for path, spec in _sections(schema)]
    cases = [(path, "not-a-choice") for path, _ in keys] + [(f"{s}no_such_key", 1) for s in sections]
    for path, bad in cases:
        assert _errors(job, _set(values, path, bad)), f"the JSON Schema accepts {path}={bad}"
        with pytest.raises(ConfigError) as info:
            load_config(str(config), [f"{path}={bad}"], jobs=JOBS)
        assert path in str(info.value), f"the loader accepts {path}={bad}"


def _sections(schema: dict, prefix: str = "") -> list[tuple[str, dict]]:
    found = []
    for name, spec in schema.get("properties", {}).items():
        if spec.get("type") == ["object", "null"] and "properties" in spec:
            found.append((f"{prefix}{name}", spec))
            found.extend(_sections(spec, f"{prefix}{name}."))
    return found
