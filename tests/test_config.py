"""The config layer: YAML with line numbers, declared keys, every problem reported at once, --set overrides."""

from __future__ import annotations

import pytest

from hpcfit.config.schema import (Bool, Choice, Field, Float, Int, ListOf, MapOf, OneOf, Optional, PathT, Record,
                                  Reporter, Section, Str, validate)
from hpcfit.config.yamlsource import load_yaml_text
from hpcfit.config.errors import ConfigError

SCHEMA = Section({
    "job": Field(Choice("a", "b")),
    "n": Field(Int(min=1), 10),
    "run": Section({"rate": Field(Float(min=0.0), 1.0), "verbose": Field(Bool(), False)}),
    "items": Field(ListOf(Int(), scalar_ok=True), []),
    "params": Field(MapOf(Record({"value": Field(Float()), "unit": Field(Optional(Str()), None)},
                                 shorthand="value")), {}),
    "path": Field(Optional(PathT()), None),
    "either": Field(OneOf(Int(), Str()), 0),
})

TEXT = """\
job: a
n: 3
run:
  rate: 2.5
items: [1, 2]
params:
  x: 1.5
  y: {value: 2, unit: m/s}
"""


def issues(text: str, *overrides: str) -> list[str]:
    source = load_yaml_text(text, "cfg.yaml")
    for o in overrides:
        source.apply_override(o)
    with pytest.raises(ConfigError, match=r"\d+ problems? in the configuration") as err:
        validate(SCHEMA, source)
    return [str(i) for i in err.value.issues]


def test_valid_config_converts_and_fills_defaults():
    cfg = validate(SCHEMA, load_yaml_text(TEXT, "cfg.yaml"))
    assert cfg.n == 3 and cfg.run.rate == 2.5 and cfg.run.verbose is False
    assert cfg.params["x"].value == 1.5 and cfg.params["x"].unit is None
    assert cfg.params["y"].unit == "m/s"
    assert cfg["items"] == [1, 2]  # dict methods shadow attribute access: use [] for such names


def test_every_problem_reported_with_line_and_path():
    bad = TEXT.replace("n: 3", "n: 0").replace("rate: 2.5", "rate: fast").replace("job: a", "job: c")
    found = issues(bad)
    assert len(found) == 3
    assert any(i.startswith("cfg.yaml:1: job:") and "allowed: a, b" in i for i in found)
    assert any(i.startswith("cfg.yaml:2: n:") and "out of range" in i for i in found)
    assert any(i.startswith("cfg.yaml:4: run.rate:") and "expected a number" in i for i in found)


def test_unknown_key_gets_did_you_mean():
    found = issues(TEXT + "run_:\n  x: 1\n" + "")
    assert any("run_: unknown key (did you mean 'run'?)" in i for i in found)
    found = issues(TEXT.replace("  rate: 2.5", "  rat: 2.5"))
    assert any(i.startswith("cfg.yaml:4: run.rat: unknown key (did you mean 'rate'?)") for i in found)


def test_nested_record_error_points_at_the_inner_key():
    found = issues(TEXT.replace("{value: 2, unit: m/s}", "{value: 2, unti: m/s}"))
    assert any(i.startswith("cfg.yaml:8: params.y.unti: unknown key (did you mean 'unit'?)") for i in found)


def test_duplicate_keys_are_errors():
    with pytest.raises(ConfigError, match="duplicate key") as err:
        load_yaml_text("job: a\nn: 1\nn: 2\n", "dup.yaml")
    assert "dup.yaml:3: n: duplicate key (first given on line 2)" in str(err.value)


def test_yaml_syntax_error_has_a_line():
    with pytest.raises(ConfigError, match="not valid YAML") as err:
        load_yaml_text("job: a\nrun: [1, 2\nn: 3\n", "bad.yaml")
    assert "bad.yaml:" in str(err.value) and "not valid YAML" in str(err.value)


def test_set_override_converts_and_is_reported_as_command_line():
    source = load_yaml_text(TEXT, "cfg.yaml")
    source.apply_override("run.rate=7")
    source.apply_override("run.verbose=true")
    cfg = validate(SCHEMA, source)
    assert cfg.run.rate == 7.0 and cfg.run.verbose is True
    found = issues(TEXT, "n=-4")
    assert any(i.startswith("--set: n:") for i in found)


def test_relative_paths_resolve_against_the_config_directory(tmp_path):
    config = tmp_path / "sub" / "c.yaml"
    config.parent.mkdir()
    config.write_text(TEXT + "path: data/x.fits\n")
    from hpcfit.config.yamlsource import load_yaml_file

    cfg = validate(SCHEMA, load_yaml_file(config))
    assert cfg.path == str(tmp_path / "sub" / "data" / "x.fits")


def test_reporter_uses_nearest_located_ancestor():
    source = load_yaml_text(TEXT, "cfg.yaml")
    report = Reporter(source)
    report("run.rate.deeper", "custom problem", ["p", "q"])
    assert str(report.issues[0]) == "cfg.yaml:4: run.rate.deeper: custom problem (allowed: p, q)"
