"""The ``cardiolab`` command line: demo, info, validate.

Errors that a user can cause (a bad catalog, a missing file) are printed as one
clear message, without a traceback, and the command exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from . import __version__
from .errors import CardiolabError
from .paths import expand_path

log = logging.getLogger("cardiolab")

#: Where ``cardiolab demo`` puts the demo campaign unless told otherwise; the repo's
#: data_catalog.yaml points at the same place through its ``data_root``.
DEMO_DIR_EXPR = "${CARDIOLAB_DEMO_DIR:-${XDG_CACHE_HOME:-~/.cache}/cardiolab/demo}"


def default_demo_dir() -> Path:
    """The demo campaign's folder: ``$CARDIOLAB_DEMO_DIR`` or the user's cache."""
    return Path(expand_path(DEMO_DIR_EXPR))


def _cmd_demo(args) -> int:
    from .simulate import simulate_campaign
    from .simulate.campaign import CATALOG_NAME, STORE_NAME

    path = Path(expand_path(args.path)) if args.path else default_demo_dir()
    catalog = path / CATALOG_NAME
    if catalog.exists() and (path / STORE_NAME).exists() and not args.force:
        print(f"demo campaign already at {path} (use --force to generate it again)")
    else:
        t0 = time.perf_counter()
        print(f"generating the demo campaign ({args.subjects} subjects) in {path} ...")
        simulate_campaign(
            path,
            n_subjects=args.subjects,
            seed=args.seed,
            overwrite=args.force,
            progress=not args.quiet,
        )
        print(f"generated in {time.perf_counter() - t0:.1f} s")
    if not args.no_process:
        from .pipeline import process_campaign

        t0 = time.perf_counter()
        print("processing the demo campaign (beats and features) ...")
        report = process_campaign(catalog, workers=args.workers, progress=not args.quiet)
        _print_report(report)
    print(f"catalog: {catalog}")
    print(f"store:   {path / STORE_NAME}")
    print(f"truth:   {path / 'truth'}")
    print(f"next:    cardiolab info {catalog}")
    return 0


def _print_report(report) -> None:
    print(repr(report))
    failures = report.failures
    if len(failures):
        print("failures:")
        print(failures.to_string(index=False))


def _cmd_process(args) -> int:
    from .pipeline import process_campaign

    report = process_campaign(
        args.catalog,
        client="sync" if args.workers == 0 else None,
        scheduler=args.scheduler,
        workers=args.workers or None,
        force=args.force,
        progress=not args.quiet,
    )
    _print_report(report)
    return 0 if len(report.failures) == 0 else 1


def _cmd_info(args) -> int:
    from .catalog import open_catalog

    cat = open_catalog(args.catalog)
    sessions = cat.sessions
    print(repr(cat))
    print(
        f"{sessions['subject'].nunique()} subjects x {sessions['session'].nunique()} "
        f"session labels, {len(sessions)} sessions"
    )
    matrix = cat.matrix()
    table = matrix.replace({True: "x", False: "."})
    print(table.to_string())
    return 0


def _cmd_validate(args) -> int:
    from .catalog import open_catalog
    from .errors import SessionFormatError

    cat = open_catalog(args.catalog)
    bad = 0
    for row in cat.sessions.itertuples():
        try:
            cat.open_session(row.subject, row.session)
        except SessionFormatError as err:
            bad += 1
            print(str(err), file=sys.stderr)
    n = len(cat.sessions)
    print(f"{n - bad} of {n} sessions follow the data model")
    return 0 if bad == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardiolab",
        description="Cardiovascular physiology of spaceflight and its ground analogs.",
    )
    parser.add_argument("--version", action="version", version=f"cardiolab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="create the simulated demo campaign")
    demo.add_argument(
        "--path", help=f"folder for the demo campaign (default {DEMO_DIR_EXPR})", default=None
    )
    demo.add_argument("--subjects", type=int, default=8, help="number of subjects (default 8)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--force", action="store_true", help="generate again over an old demo")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--no-process", action="store_true", help="only generate, do not process")
    demo.add_argument("--workers", type=int, default=None, help="dask workers (default: cores)")
    demo.set_defaults(func=_cmd_demo)

    proc = sub.add_parser("process", help="beats and features of every session (dask)")
    proc.add_argument("catalog", help="path of a data_catalog.yaml")
    proc.add_argument(
        "--scheduler",
        default=None,
        help="address of an existing dask scheduler (or set CARDIOLAB_SCHEDULER)",
    )
    proc.add_argument(
        "--workers",
        type=int,
        default=None,
        help="workers of the local cluster (default: cores; 0 runs in this process)",
    )
    proc.add_argument("--force", action="store_true", help="recompute unchanged sessions too")
    proc.add_argument("--quiet", action="store_true", help="no progress bar")
    proc.set_defaults(func=_cmd_process)

    info = sub.add_parser("info", help="print a campaign's subjects x sessions matrix")
    info.add_argument("catalog", help="path of a data_catalog.yaml")
    info.set_defaults(func=_cmd_info)

    val = sub.add_parser("validate", help="check every session of a catalog against the model")
    val.add_argument("catalog", help="path of a data_catalog.yaml")
    val.set_defaults(func=_cmd_validate)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``cardiolab`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except CardiolabError as err:
        print(f"cardiolab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
