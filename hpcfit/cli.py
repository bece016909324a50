"""The ``hpcfit`` command line: run, merge, submit, validate, demo, inspect, plot, export, schema.

Every verb works the same under ``mpiexec -n N hpcfit ...`` / ``srun hpcfit ...`` and as a plain serial command.
Exit codes: 0 success, 1 a fatal error during the run, 2 a configuration or usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hpcfit._version import __version__
from hpcfit.runtime.errors import EXIT_CONFIG, EXIT_OK
from hpcfit.runtime.log import level_for, logger, setup_logging

_EPILOG = """\
examples:
  hpcfit validate configs/cubefit_l1448.yaml
  mpiexec -n 4 hpcfit run configs/cubefit_l1448.yaml --set cubefit.chunk_n_max=200
  srun hpcfit run my.yaml                      (inside an sbatch script; see jobscripts/)
  hpcfit inspect l1448_fit.h5
  hpcfit export l1448_fit.h5 -o l1448_maps.fits  (cubefit maps as FITS images with the celestial WCS)
  hpcfit schema cubefit                        (every config key, its type, default and meaning)
  hpcfit schema --json cubefit > cubefit.schema.json   (JSON Schema for editors; see docs/editors.md)
exit codes: 0 success, 1 fatal error during the run (message names the rank and work item), 2 config/usage error
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcfit",
        description="Run astronomy model fits and samplings on MPI: one YAML config in, one HDF5 file out. "
                    "Jobs: sample (photometry training sets), gridfit (grid SED fitting), cubefit (fit an "
                    "astropy model to every spectrum/plane of a cube), calibrate (CCD reduction).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"hpcfit {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    # Every verb takes -v / -q: messages go through logging (hpcfit.runtime.log); progress lines are not messages.
    talk = argparse.ArgumentParser(add_help=False)
    talk.add_argument("-v", "--verbose", action="count", default=0, help="more messages (debug)")
    talk.add_argument("-q", "--quiet", action="count", default=0,
                      help="only warnings and errors (-qq: only errors); progress follows run.progress")

    def overrides(p: argparse.ArgumentParser) -> None:
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                       help="override one config key (value parsed as YAML); repeatable, e.g. "
                            "--set run.schedule=static --set output=other.h5")

    run = verbs.add_parser("run", parents=[talk], help="run the job described by a config file",
                           description="Validate CONFIG on rank 0, plan the work, run it on all ranks and write "
                                       "one HDF5 file. Launch under mpiexec/mpirun/srun for parallel runs.")
    run.add_argument("config", help="YAML config file")
    run.add_argument("--resume", action="store_true",
                     help="continue an interrupted run: skip the work items saved in <output>.parts/ (automatic "
                          "when SLURM restarts a requeued job); refused if the config changed")
    run.add_argument("--slice", metavar="K/N",
                     help="run only slice K of N (0-based) of the work items and save them in <output>.parts/ "
                          "for `hpcfit merge`; `auto` takes K and N from SLURM_ARRAY_TASK_ID/_COUNT")
    run.add_argument("--keep-parts", action="store_true", help="keep <output>.parts/ after writing the output")
    overrides(run)

    merge = verbs.add_parser("merge", parents=[talk], help="combine the slices of a job array into the output file",
                             description="Check that every slice of CONFIG (hpcfit run CONFIG --slice K/N) is "
                                         "present, complete and computed with this config, then write the output "
                                         "file with the same content as a single run. Run it under mpiexec/srun "
                                         "for a parallel write.")
    merge.add_argument("config", help="YAML config file the slices were run with")
    merge.add_argument("--keep-parts", action="store_true", help="keep <output>.parts/ after merging")
    overrides(merge)

    submit = verbs.add_parser("submit", parents=[talk], help="write and submit SLURM scripts for a config (array + merge)",
                              description="Write sbatch scripts for CONFIG (a job array of N slices, each an MPI "
                                          "job, and a merge job chained with --dependency=afterok; or one plain "
                                          "MPI job without --array) and submit them with sbatch, printing the "
                                          "job ids. --dry-run writes the scripts without submitting.")
    submit.add_argument("config", help="YAML config file")
    submit.add_argument("--array", type=int, metavar="N", help="number of slices (array tasks); omit for one job")
    submit.add_argument("--ntasks", type=int, default=None, metavar="R", help="MPI ranks per job / array task")
    submit.add_argument("--nodes", type=int, default=None, help="nodes per job / array task")
    submit.add_argument("--time", default="01:00:00", help="time limit per job (default: %(default)s)")
    submit.add_argument("--partition", default=None, help="SLURM partition")
    submit.add_argument("--account", default=None, help="SLURM account")
    submit.add_argument("--module", action="append", default=[], metavar="NAME",
                        help="module to load in the scripts (repeatable), e.g. --module openmpi --module hdf5/mpi")
    submit.add_argument("--script-dir", default=None, help="where to write the scripts (default: beside the output)")
    submit.add_argument("--dry-run", action="store_true", help="write the scripts, do not submit")
    overrides(submit)

    val = verbs.add_parser("validate", parents=[talk], help="check a config file without running anything",
                           description="Make every check `run` makes before work starts (keys, types, ranges, "
                                       "units, input files and their contents: the work is planned; the output's "
                                       "folder takes new files and the output fits in its free space) and report "
                                       "every problem in CONFIG as FILE:LINE: key.path: message (allowed: ...). "
                                       "Exit code 0 when valid, 2 otherwise.")
    val.add_argument("config", help="YAML config file")
    val.add_argument("--plan", action="store_true",
                     help="also print the plan: the number of work items and their size")
    overrides(val)

    demo = verbs.add_parser("demo", parents=[talk], help="write a ready example config and run it",
                            description="Write a demo config (and its data, when synthetic) into OUTPUT_DIR and "
                                        "run it. Run under mpiexec to see it in parallel.")
    demo.add_argument("job", help="job to demonstrate (cubefit, sample, gridfit, calibrate)")
    demo.add_argument("--output-dir", default="demo_output", help="where to put the config, data and results "
                                                                   "(default: %(default)s)")
    overrides(demo)

    insp = verbs.add_parser("inspect", parents=[talk], help="summarise an hpcfit output file",
                            description="Print the provenance, contents (shapes, types, units, NaN counts) and "
                                        "fit status counts of an hpcfit HDF5 file.")
    insp.add_argument("file", help="HDF5 file written by hpcfit")
    insp.add_argument("--config", action="store_true", help="also print the config text stored in the file")

    plot = verbs.add_parser("plot", parents=[talk], help="draw the figure(s) of an output file",
                            description="Draw the figure of any hpcfit output file; the file's job draws it. "
                                        "cubefit: the parameter and status maps. gridfit: the observed SED of one "
                                        "galaxy with its best model and the likelihood of each parameter "
                                        "(--galaxy). sample: a corner plot of theta (FILE_corner.png) and "
                                        "colour-colour plots of the simulated photometry (FILE_colours.png), from "
                                        "at most --max-points rows. calibrate: the master bias, dark and flat and "
                                        "one science frame with its bad pixels in red (--frame).")
    plot.add_argument("file", help="HDF5 file written by hpcfit")
    plot.add_argument("--output", "-o", help="PNG file to write (default: FILE with .png; sample files write "
                                             "<stem>_corner.png and <stem>_colours.png)")
    # Each job accepts the options its Job.plot_options names; _plot refuses the others for its files.
    plot.add_argument("--galaxy", help="gridfit: the galaxy id, or its row number (default: the first row)")
    plot.add_argument("--frame", help="calibrate: the science frame, by name or index (default: the first)")
    plot.add_argument("--max-points", dest="max_points", metavar="N",
                      help="sample: read and draw at most N rows, evenly spread over the file (default: 50000)")

    export = verbs.add_parser("export", parents=[talk], help="write an output file's maps to FITS",
                              description="Write the maps of an hpcfit output file to one FITS file that any FITS "
                                          "viewer opens. cubefit: one image HDU per fitted parameter (EXTNAME = "
                                          "its name, BUNIT = its unit, the cube's celestial WCS), ERR_<name> "
                                          "uncertainty maps, the STATUS map (0 converged, 1 warning, 2 failed) and "
                                          "FITINFO_<key> maps. Same as CubefitResult(FILE).to_fits(OUT) in Python.")
    export.add_argument("file", help="HDF5 file written by hpcfit (cubefit)")
    export.add_argument("--output", "-o", required=True, metavar="OUT.fits", help="FITS file to write")
    export.add_argument("--overwrite", action="store_true", help="replace OUT.fits if it exists")

    schema = verbs.add_parser("schema", parents=[talk], help="print the config keys of a job",
                              description="Print every config key of JOB with its type, default and meaning "
                                          "(markdown), as in docs/config_reference.md; with --json, the JSON "
                                          "Schema of a whole JOB config for editors (see docs/editors.md).")
    schema.add_argument("job", nargs="?", help="job name (default: the engine keys and every job)")
    schema.add_argument("--json", action="store_true",
                        help="print the JSON Schema (draft 2020-12) of a JOB config: keys, types, allowed values, "
                             "defaults, meanings, required keys; unknown keys refused")
    return parser


def entry() -> int:
    """The ``hpcfit`` command: imports from cached directory listings (``hpcfit.steady_imports``, for the command's
    run only), the process settings (``hpcfit.process``: one BLAS thread per rank, malloc tuning), ``main``, then
    ignore stop signals for the process's last moments (MPI finalise, interpreter shutdown, when Python has reset
    its handlers): a late SIGUSR1 must not fail a finished run."""
    from hpcfit import steady_imports
    from hpcfit.process import configure_process

    installed = steady_imports.install()
    try:
        configure_process()
        code = main()
    finally:
        if installed:  # an in-process caller gets its standard finders back
            steady_imports.uninstall()
    from hpcfit.runtime.signals import ignore_at_exit

    ignore_at_exit()
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    setup_logging(level_for(args.verbose, args.quiet))
    if args.verb == "inspect":
        return _inspect(args)
    if args.verb == "schema":
        return _schema(args)
    if args.verb == "plot":
        return _plot(args)
    if args.verb == "export":
        return _export(args)
    if args.verb == "submit":
        from hpcfit.cluster.submit import submit_main

        return submit_main(args)

    from hpcfit.runtime.comm import MPIUnavailableError, world_comm

    try:
        comm = world_comm()
    except MPIUnavailableError as exc:
        logger.error(str(exc))
        return EXIT_CONFIG
    full_argv = ["hpcfit"] + argv
    if args.verb in ("run", "merge"):
        from hpcfit.engine.run import execute

        try:
            mode = _run_mode(args)
        except ValueError as exc:
            if comm.is_root:
                logger.error(str(exc))
            return EXIT_CONFIG
        from hpcfit.registry import JOBS

        return execute(args.config, args.overrides, comm, argv=full_argv, mode=mode, jobs=JOBS)
    if args.verb == "validate":
        return _validate(args, comm)
    if args.verb == "demo":
        return _demo(args, comm, full_argv)
    return EXIT_CONFIG


def _run_mode(args: argparse.Namespace):
    """The RunMode asked for on the command line (and by SLURM's environment)."""
    import os

    from hpcfit.engine.run import RunMode

    if args.verb == "merge":
        return RunMode(merge=True, keep_parts=args.keep_parts)
    k, n = 0, 1
    if args.slice:
        if args.slice == "auto":
            try:
                task = int(os.environ["SLURM_ARRAY_TASK_ID"])
                k = task - int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
                n = int(os.environ["SLURM_ARRAY_TASK_COUNT"])
            except (KeyError, ValueError):
                raise ValueError("--slice auto needs SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT "
                                 "(run it inside a SLURM job array)") from None
        else:
            try:
                k, n = (int(part) for part in args.slice.split("/"))
            except ValueError:
                raise ValueError(f"--slice '{args.slice}': expected K/N, e.g. 3/8, or auto") from None
        if not 0 <= k < n:
            raise ValueError(f"--slice {k}/{n}: K must be between 0 and N-1")
    requeued = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
    return RunMode(slice_k=k, slice_n=n, resume=args.resume or requeued, keep_parts=args.keep_parts)


def _validate(args: argparse.Namespace, comm) -> int:
    """Every check ``run`` makes before work starts: the same rank-0 stages (config, job checks, and the plan,
    which opens the input files), so that a config called valid here never fails ``run``'s validation.
    ``--plan`` only adds the plan summary to the output."""
    from hpcfit.engine.run import prepare
    from hpcfit.registry import JOBS

    prepared, code = prepare(args.config, args.overrides, comm, plan=True, jobs=JOBS, validating=True)
    if prepared is not None and comm.is_root:
        print(f"{args.config}: valid {prepared.job_name} configuration")
        if args.plan and prepared.plan is not None:
            for line in prepared.plan.describe():
                print(f"plan: {line}")
    return code


def _demo(args: argparse.Namespace, comm, argv: list[str]) -> int:
    from hpcfit.registry import JOBS, available_jobs, job_class
    from hpcfit.engine.run import execute
    from hpcfit.runtime.errors import fatal

    if args.job not in available_jobs():
        if comm.is_root:
            logger.error(f"unknown job '{args.job}' (allowed: {', '.join(available_jobs())})")
        return EXIT_CONFIG
    directory = Path(args.output_dir).resolve()
    config = None
    if comm.is_root:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            config = job_class(args.job)().demo(directory)
            logger.info(f"demo config written to {config}")
        except Exception as exc:  # noqa: BLE001
            fatal(comm, exc, item=f"preparing the {args.job} demo")
    config = comm.bcast(config)
    code = execute(str(config), ["run.overwrite=true"] + args.overrides, comm, argv=argv, jobs=JOBS)
    if code == EXIT_OK and comm.is_root:
        from hpcfit.io.inspect import inspect_file
        from hpcfit.config.yamlsource import load_yaml_file

        output = load_yaml_file(config).values["output"]
        output_path = Path(output) if Path(output).is_absolute() else Path(config).parent / output
        print()
        print(inspect_file(output_path))
        logger.info(f"demo output: {output_path}")
    return code


def _existing_file(name: str) -> Path | None:
    path = Path(name)
    if not path.is_file():
        logger.error(f"no such file: {path}")
        return None
    return path


def _inspect(args: argparse.Namespace) -> int:
    from hpcfit.io.inspect import inspect_file

    path = _existing_file(args.file)
    if path is None:
        return EXIT_CONFIG
    try:
        print(inspect_file(path, show_config=args.config))
    except OSError as exc:
        logger.error(f"{path} is not a readable HDF5 file: {exc}")
        return EXIT_CONFIG
    return EXIT_OK


_PLOT_OPTIONS = ("galaxy", "frame", "max_points")


def _job_of(path: Path, doing: str) -> str | None:
    """The job that wrote an output file (its ``job`` attribute); None, with the reason logged, when it is not an
    hpcfit output file of a job of this installation."""
    import h5py

    from hpcfit.registry import JOBS

    try:
        with h5py.File(path, "r") as h5:
            job = h5.attrs.get("job", "")
    except OSError:
        logger.error(f"{path} is not an HDF5 file: cannot {doing} it")
        return None
    job = job.decode() if isinstance(job, bytes) else str(job)
    if job not in JOBS.names():
        what = f"its job attribute '{job}' names no job of this installation" if job else "it has no job attribute"
        logger.error(f"{path} is not an hpcfit output file ({what}; jobs: {', '.join(JOBS.names())})")
        return None
    return job


def _export(args: argparse.Namespace) -> int:
    """Write FILE's maps to a FITS file through the job's reader (``hpcfit.open(FILE).to_fits``)."""
    from hpcfit.api.open import open as open_result

    path = _existing_file(args.file)
    if path is None:
        return EXIT_CONFIG
    job = _job_of(path, "export")
    if job is None:
        return EXIT_CONFIG
    result = open_result(path)  # the job's reader, found as hpcfit.open finds it
    if not hasattr(result, "to_fits"):
        logger.error(f"cannot export {path}: {job} outputs have no FITS export (hpcfit export takes cubefit "
                     "outputs: their parameter maps)")
        return EXIT_CONFIG
    output = Path(args.output)
    if output.suffix.lower() not in (".fits", ".fit", ".fts"):
        logger.error(f"-o {output}: the output must be a FITS file name (.fits, .fit or .fts)")
        return EXIT_CONFIG
    try:
        written = result.to_fits(output, overwrite=args.overwrite)
    except FileExistsError as exc:
        logger.error(str(exc))
        return EXIT_CONFIG
    except (ValueError, KeyError, OSError) as exc:
        logger.error(f"cannot export {path}: {exc}")
        return EXIT_CONFIG
    logger.info(f"wrote {written}")
    return EXIT_OK


def _plot(args: argparse.Namespace) -> int:
    """Find the job of FILE from its ``job`` attribute and let that job draw it (``Job.plot``)."""
    from hpcfit.registry import JOBS

    path = _existing_file(args.file)
    if path is None:
        return EXIT_CONFIG
    job = _job_of(path, "plot")
    if job is None:
        return EXIT_CONFIG
    cls = JOBS.load(job)
    options = {name: getattr(args, name) for name in _PLOT_OPTIONS if getattr(args, name) is not None}
    foreign = [name for name in options if name not in cls.plot_options]
    if foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        accepted = ", ".join("--" + name.replace("_", "-") for name in cls.plot_options) or "none"
        logger.error(f"{flags}: not an option for {job} files (their plot options: {accepted})")
        return EXIT_CONFIG
    try:
        written = cls().plot(path, Path(args.output) if args.output else None, options)
    except NotImplementedError as exc:  # a job without a figure (the base hook)
        logger.error(f"cannot plot {path}: {exc}")
        return EXIT_CONFIG
    except (ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # KeyError's str() adds quotes
        logger.error(f"cannot plot {path}: {message}")
        return EXIT_CONFIG
    for output in written:
        logger.info(f"wrote {output}")
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    import json

    from hpcfit.registry import available_jobs, config_json_schema, config_reference

    if args.json and args.job is None:
        logger.error(f"schema --json needs a job: hpcfit schema --json JOB (allowed: {', '.join(available_jobs())})")
        return EXIT_CONFIG
    try:
        print(json.dumps(config_json_schema(args.job), indent=2) if args.json else config_reference(args.job))
    except KeyError:
        logger.error(f"unknown job '{args.job}' (allowed: {', '.join(available_jobs())})")
        return EXIT_CONFIG
    return EXIT_OK
