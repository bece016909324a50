"""A synthetic night for the calibrate job: ``hpcfit demo calibrate`` and ``python -m hpcfit.calibrate.demo DIR``.

The night (``hpcfit.calibrate.kernels.synthetic.make_night``) has bias, dark, flat and science frames in the eloy reference's
folders, with known truth; the config next to it calibrates it with the default settings.

    python -m hpcfit.calibrate.demo DIR [--shape 128 160] [--science 4] [--no-config]

writes the night under ``DIR/night`` and (unless --no-config) ``DIR/calibrate_synthetic.yaml``;

    python -m hpcfit.calibrate.demo DIR --masters-for FRAME.fits [--dark-exptime 60]

writes noise-free synthetic masters of that frame's shape instead (``DIR/bias.fits`` in ADU, ``DIR/dark.fits``:
the dark signal of --dark-exptime seconds, ``DIR/flat.fits``), e.g. for raw science frames that came without
calibration frames (configs/calibrate_m13.yaml).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

CONFIG = """\
# hpcfit demo: calibrate a synthetic night (bias, darks, flats, science frames with known truth).
# Made by: python -m hpcfit.calibrate.demo {directory}
job: calibrate
output: {output}
calibrate:
  inputs: [{inputs}]
  classify_by: header            # IMAGETYP ('Bias Frame', 'Dark Frame', 'Flat Field', 'Light Frame')
  combine:
    method: median
    sigma_clip: {{low: 3, high: 3, iters: 5}}
    min_frames: 3
  uncertainty: true              # gain and read noise from the GAIN and RDNOISE keywords
  fits_dir: {fits_dir}
run:
  progress_interval: 2
"""


def write_night(directory: str | Path, *, shape: tuple[int, int] = (128, 160), n_science: int = 4,
                seed: int = 2024):
    """Write the synthetic night under ``directory`` and return its truth (``NightTruth``)."""
    from hpcfit.calibrate.kernels.synthetic import make_night

    return make_night(Path(directory), shape=shape, n_science=n_science, seed=seed)


def write_demo(directory: Path, *, shape: tuple[int, int] = (128, 160), n_science: int = 4) -> Path:
    """The night under ``directory/night`` and its config ``directory/calibrate_synthetic.yaml``."""
    directory = Path(directory)
    write_night(directory / "night", shape=shape, n_science=n_science)
    config = directory / "calibrate_synthetic.yaml"
    config.write_text(CONFIG.format(directory=directory, output="calibrate_demo.h5", inputs="night",
                                    fits_dir="calibrate_demo_fits"))
    return config


def write_synthetic_masters(directory: str | Path, shape: tuple[int, int], *, dark_exptime: float = 60.0,
                            bias_level: float = 100.0, seed: int = 7) -> dict[str, Path]:
    """Noise-free synthetic bias (ADU), dark (ADU in ``dark_exptime`` s) and flat (median 1) FITS files."""
    from astropy.io import fits

    from hpcfit.calibrate.kernels.synthetic import make_masters

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bias, dark_rate, flat = make_masters(shape, bias_level=bias_level, seed=seed)
    out = {}
    for kind, data, cards in (("bias", bias, {}), ("dark", dark_rate * np.float32(dark_exptime),
                                                   {"EXPTIME": dark_exptime}), ("flat", flat, {})):
        hdu = fits.PrimaryHDU(data.astype(np.float32))
        hdu.header["IMAGETYP"] = f"Master {kind}"
        hdu.header.update(cards)
        hdu.header.add_history("synthetic master (hpcfit.calibrate.kernels.synthetic.make_masters), not a measurement")
        out[kind] = directory / f"{kind}.fits"
        hdu.writeto(out[kind], overwrite=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcfit.calibrate.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--shape", type=int, nargs=2, default=(128, 160), metavar=("NY", "NX"))
    parser.add_argument("--science", type=int, default=4, help="science frames")
    parser.add_argument("--no-config", action="store_true", help="write only the frames")
    parser.add_argument("--masters-for", type=Path, metavar="FRAME",
                        help="write synthetic master files of this raw frame's shape instead of a night")
    parser.add_argument("--dark-exptime", type=float, default=60.0, help="exposure of the synthetic dark (s)")
    args = parser.parse_args(argv)
    if args.masters_for:
        from hpcfit.calibrate.kernels.reading import output_shape

        files = write_synthetic_masters(args.directory, output_shape(args.masters_for),
                                        dark_exptime=args.dark_exptime)
        print("synthetic masters written: " + ", ".join(str(p) for p in files.values()))
    elif args.no_config:
        write_night(args.directory, shape=tuple(args.shape), n_science=args.science)
        print(f"synthetic night written under {args.directory}")
    else:
        config = write_demo(args.directory, shape=tuple(args.shape), n_science=args.science)
        print(f"synthetic night written under {args.directory / 'night'}; config: {config}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
