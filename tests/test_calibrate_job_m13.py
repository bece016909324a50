"""The five real M13 light frames through the calibrate job: classified from IMAGETYP, calibrated with ready
(synthetic) master files of their shape, every header card surviving into the FITS copies, uncertainties from
numeric gain and read noise, and the example config configs/calibrate_m13.yaml."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits

from hpcfit.calibrate.kernels.reading import read_image
from hpcfit.calibrate.demo import write_synthetic_masters
from hpcfit.cli import main

M13 = [f"m13_raw/M13_blue_000{i}.fits" for i in range(1, 6)]
REPO = Path(__file__).resolve().parent.parent


def test_m13_frames_with_ready_masters(shared_path, tmp_path, capsys):
    paths = [shared_path(p) for p in M13]
    shape = fits.getdata(paths[0]).shape
    files = write_synthetic_masters(tmp_path / "masters", shape, dark_exptime=60.0)
    with fits.open(files["flat"], mode="update") as hdul:
        hdul[0].data[500, 600:610] = 0.0  # a dead column segment: bad pixels
    (tmp_path / "m13.yaml").write_text(f"""\
job: calibrate
output: m13.h5
calibrate:
  inputs: ["{Path(paths[0]).parent}/M13_blue_*.fits"]
  masters: {{bias: masters/bias.fits, dark: masters/dark.fits, dark_exptime: 60, flat: masters/flat.fits}}
  uncertainty: true
  gain: 1.5
  read_noise: 9.0
  fits_dir: fits
""")
    assert main(["run", str(tmp_path / "m13.yaml")]) == 0
    bias, dark60, flat = (fits.getdata(files[k]).astype(np.float32) for k in ("bias", "dark", "flat"))
    dark = dark60 / np.float32(60)
    flat = flat / np.float32(np.median(flat))
    bad = ~(flat > 0)
    with h5py.File(tmp_path / "m13.h5") as h5:
        assert [n.decode() for n in h5["science/names"][()]] == [Path(p).name for p in paths]
        assert set(h5["frames"]["kind"]) == {b"science"} and len(h5["rejected"]) == 0
        assert list(h5["science/exptime"][()]) == [5.0] * 5
        assert h5["masters/bias_groups"][0]["source"].decode().endswith("bias.fits")
        np.testing.assert_allclose(h5["masters/dark"][0], dark, rtol=1e-6)
        assert np.array_equal(h5["masters/bad_pixels"][0].astype(bool), bad) and bad.sum() == 10
        images, sigmas = h5["science/images"][()], h5["science/uncertainty"][()]
    for k, path in enumerate(paths):
        raw = read_image(path)  # physical ADU (BZERO applied)
        assert abs(np.median(raw) - 512) < 50
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = (raw.astype(np.float64) - bias - dark.astype(np.float64) * 5.0) / flat
            sigma = np.sqrt((9.0 / 1.5) ** 2 + np.maximum(raw - bias, 0) / 1.5) / flat
        assert np.array_equal(np.isnan(images[k]), bad)
        np.testing.assert_allclose(images[k][~bad], expected[~bad], rtol=2e-6, atol=2e-3)
        np.testing.assert_allclose(sigmas[k][~bad], sigma[~bad], rtol=1e-5)
        raw_header = fits.getheader(path)
        with fits.open(tmp_path / "fits" / Path(path).name) as hdul:
            header = hdul[0].header
            np.testing.assert_array_equal(hdul[0].data, images[k])
        for card in raw_header.cards:  # every card survives, except the integer scaling of the raw data
            if card.keyword in ("BZERO", "BSCALE", "BITPIX", "HISTORY", "COMMENT"):
                continue
            assert header[card.keyword] == card.value, card.keyword
        history = [str(h) for h in header["HISTORY"]]
        raw_history = [str(h) for h in raw_header["HISTORY"]]
        assert history[:len(raw_history)] == raw_history and "Process Calibrate" in raw_history[0]  # camera's own
        assert any("dark_rate * 5 s" in h for h in history) and any("ready master flat.fits" in h for h in history)
    assert "5 science frame(s) calibrated; 0 frame(s) rejected" in capsys.readouterr().out


def test_example_config_validates(shared_path, tmp_path, capsys):
    shared_path(M13[0])
    config = tmp_path / "configs" / "calibrate_m13.yaml"
    config.parent.mkdir()
    text = (REPO / "configs" / "calibrate_m13.yaml").read_text()
    config.write_text(text.replace("../../shared/data/m13_raw", str(Path(shared_path(M13[0])).parent)))
    write_synthetic_masters(config.parent / "m13_masters", (1040, 1392))
    assert main(["validate", str(config), "--plan"]) == 0
    assert "2 work item(s), 5 frames" in capsys.readouterr().out
