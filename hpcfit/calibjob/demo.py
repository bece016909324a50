"""A synthetic night for the calibrate job: ``hpcfit demo calibrate`` and ``python -m hpcfit.calibjob.demo DIR``.

The night (``hpcfit.calib.synthetic.make_night``) has bias, dark, flat and science frames in the eloy reference's
folders, with known truth; the config next to it calibrates it with the default settings.

    python -m hpcfit.calibjob.demo DIR [--shape 128 160] [--science 4] [--no-config]

writes the night under ``DIR/night`` and (unless --no-config) ``DIR/calibrate_synthetic.yaml``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CONFIG = """\
# hpcfit demo: calibrate a synthetic night (bias, darks, flats, science frames with known truth).
# Made by: python -m hpcfit.calibjob.demo {directory}
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
    from ..calib.synthetic import make_night

    return make_night(Path(directory), shape=shape, n_science=n_science, seed=seed)


def write_demo(directory: Path, *, shape: tuple[int, int] = (128, 160), n_science: int = 4) -> Path:
    """The night under ``directory/night`` and its config ``directory/calibrate_synthetic.yaml``."""
    directory = Path(directory)
    write_night(directory / "night", shape=shape, n_science=n_science)
    config = directory / "calibrate_synthetic.yaml"
    config.write_text(CONFIG.format(directory=directory, output="calibrate_demo.h5", inputs="night",
                                    fits_dir="calibrate_demo_fits"))
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcfit.calibjob.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--shape", type=int, nargs=2, default=(128, 160), metavar=("NY", "NX"))
    parser.add_argument("--science", type=int, default=4, help="science frames")
    parser.add_argument("--no-config", action="store_true", help="write only the frames")
    args = parser.parse_args(argv)
    if args.no_config:
        write_night(args.directory, shape=tuple(args.shape), n_science=args.science)
        print(f"synthetic night written under {args.directory}")
    else:
        config = write_demo(args.directory, shape=tuple(args.shape), n_science=args.science)
        print(f"synthetic night written under {args.directory / 'night'}; config: {config}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
