"""The forward-model plug-in protocol: naming a model, validating bounds/options, building, calling."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.cosmology import Planck18

from hpcfit.models.filters import Filter, FilterSet
from hpcfit.models.sed import example_plugin
from hpcfit.models.sed.builtin import BUILTIN_SPEC, DEFAULT_BOUNDS
from hpcfit.models.sed.constants import AB_ZERO_POINT_SI
from hpcfit.models.sed.loader import load_model_spec
from hpcfit.models.sed.plugin import ForwardModel, ModelSpec, as_param_dict

REFERENCE_NAMES = ("redshift", "mass", "agn_mass", "agn_torus_mass", "dust2", "tage", "tau", "agn_eb_v", "inclination")


def filters() -> FilterSet:
    wave = np.linspace(4000.0, 9000.0, 300)
    return FilterSet((Filter("a", wave, np.exp(-0.5 * ((wave - 5000) / 300) ** 2)),
                      Filter("b", wave, np.exp(-0.5 * ((wave - 7500) / 400) ** 2))))


def test_builtin_is_named_builtin_and_takes_the_reference_parameters():
    spec = load_model_spec("builtin")
    assert spec is BUILTIN_SPEC
    assert spec.param_names == REFERENCE_NAMES
    assert spec.missing_params(["redshift", "mass"]) == ["tage", "tau"]


def test_bounds_validation_names_each_problem():
    assert BUILTIN_SPEC.check_bounds(DEFAULT_BOUNDS) == []
    problems = BUILTIN_SPEC.check_bounds({"tage": (0.001, 25.0), "redshift": (-0.5, 2.0), "dust2": (1.0, 0.5),
                                          "log_mass": (8, 12)})
    text = " | ".join(problems)
    assert len(problems) == 4
    assert "tage" in text and "20" in text  # beyond the SSP library's 20 Gyr
    assert "redshift" in text and "dust2" in text and "unknown parameter 'log_mass'" in text


def test_options_validation():
    assert BUILTIN_SPEC.check_options({"cosmology": "WMAP9", "attenuation": "charlot_fall", "torus_tau_v": 20}) == []
    problems = BUILTIN_SPEC.check_options({"cosmology": "Planck99", "colour": "red", "igm": "yes", "dust2_step": 1})
    assert len(problems) == 4
    assert any("Planck99" in p for p in problems) and any("colour" in p for p in problems)


def test_builtin_builds_through_the_spec_and_satisfies_the_protocol():
    model = BUILTIN_SPEC.build(filters=filters(), options={"ssp": "synthetic", "dlnz": 0.02, "wave_resolution": 200.0},
                               bounds={"redshift": (0.5, 1.0), "dust2": (0.0, 1.0), "tage": (0.01, 5.0)})
    assert isinstance(model, ForwardModel)
    assert model.filter_names == ("a", "b") and model.wavelengths.shape == (2,)
    out = model({"redshift": [0.7, 0.8], "mass": [1e10, 1e10], "tage": [1.0, 2.0], "tau": [1.0, 1.0]})
    assert out.shape == (2, 2) and np.all(out > 0)
    with pytest.raises(ValueError, match="outside"):
        BUILTIN_SPEC.build(filters=filters(), options={"ssp": "synthetic"}, bounds={"inclination": (0, 120)})


def test_example_plugin_loads_builds_and_gives_the_analytic_flux():
    spec = load_model_spec("hpcfit.models.sed.example_plugin:SPEC")
    assert isinstance(spec, ModelSpec) and spec.param_names == ("redshift", "mass", "slope")
    model = spec.build(filters=filters(), options={}, bounds={"redshift": (0.0, 2.0)})
    z = np.array([0.3, 1.5])
    out = model(np.array([[0.3, 1e10, 0.0], [1.5, 1e10, 0.0]]))  # slope 0: flat L_nu, array form
    expected = (1 + z) * 1e14 / (4 * np.pi * Planck18.luminosity_distance(z).to_value("m") ** 2) / AB_ZERO_POINT_SI
    np.testing.assert_allclose(out, np.repeat(expected[:, None], 2, axis=1), rtol=1e-5)


def test_a_bare_factory_with_param_names_is_wrapped(monkeypatch):
    factory = example_plugin.make_power_law_model
    with pytest.raises(TypeError, match="param_names"):
        load_model_spec("hpcfit.models.sed.example_plugin:make_power_law_model")
    monkeypatch.setattr(factory, "param_names", ("redshift", "mass", "slope"), raising=False)
    spec = load_model_spec("hpcfit.models.sed.example_plugin:make_power_law_model")
    assert spec.param_names == ("redshift", "mass", "slope")
    assert spec.check_options({"anything": 1}) == []  # no declared options: passed through unchecked
    assert spec.build(filters=filters(), bounds={"redshift": (0, 1)})({"redshift": [0.5], "mass": [1.0],
                                                                        "slope": [1.0]}).shape == (1, 2)


@pytest.mark.parametrize("target, match", [("no_such_module_xyz:f", "cannot import"), ("builtin2", "expected"),
                                           ("hpcfit.models.sed.example_plugin:nope", "no attribute")])
def test_bad_model_names(target, match):
    with pytest.raises(ValueError, match=match):
        load_model_spec(target)


def test_param_normalisation():
    names = ("a", "b")
    d = as_param_dict({"a": [1.0, 2.0], "b": 3.0}, names)
    np.testing.assert_array_equal(d["b"], [3.0, 3.0])
    with pytest.raises(KeyError, match="unknown"):
        as_param_dict({"c": [1.0]}, names)
    with pytest.raises(ValueError, match="columns"):
        as_param_dict(np.zeros((4, 3)), names)
