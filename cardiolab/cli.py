"""The ``cardiolab`` command line: demo, info, validate, process, fit, serve, lab, passwd,
trail, report.

Errors that a user can cause (a bad catalog, a missing file, a feature the table does
not have) are printed as one clear message, without a traceback, and the command exits
with status 2. A run that goes through but achieves nothing exits with status 1:
``process`` when a session failed, ``fit`` (and ``demo``'s fit step) when no model could
be fitted, after its summary has said why for each.

Every command that opens a catalog (info, validate, process, fit, serve) takes
``--storage-option KEY=VALUE`` (repeatable): fsspec options merged over the catalog's
``storage_options`` section (:mod:`cardiolab.storage_options`), e.g. for a catalog on
an S3-compatible server::

    cardiolab info s3://bucket/tg2/data_catalog.yaml \
        --storage-option client_kwargs.endpoint_url=http://127.0.0.1:9000 \
        --storage-option anon=true
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import CardiolabError
from .lab import DEFAULT_PORT as LAB_PORT
from .paths import expand_path
from .storage_options import parse_storage_option, storage_options_from_pairs

log = logging.getLogger("cardiolab")

#: The setting that says where the demo campaign is: ``cardiolab demo`` and ``lab``, the
#: notebooks (:func:`cardiolab.demo.demo_catalog`) and the repo's data_catalog.yaml read it.
DEMO_DIR_VARIABLE = "CARDIOLAB_DEMO_DIR"
#: Where ``cardiolab demo`` puts the demo campaign unless told otherwise; the repo's
#: data_catalog.yaml points at the same place through its ``data_root``.
DEMO_DIR_EXPR = f"${{{DEMO_DIR_VARIABLE}:-${{XDG_CACHE_HOME:-~/.cache}}/cardiolab/demo}}"


def default_demo_dir() -> Path:
    """The demo campaign's folder: ``$CARDIOLAB_DEMO_DIR`` or the user's cache."""
    return Path(expand_path(DEMO_DIR_EXPR))


def _cmd_demo(args) -> int:
    from .demo import prepare_demo
    from .simulate.campaign import STORE_NAME

    made = prepare_demo(
        args.path,
        n_subjects=args.subjects,
        seed=args.seed,
        force=args.force,
        process=not args.no_process,
        workers=args.workers,
        progress=not args.quiet,
        say=lambda message: print(message, flush=True),
    )
    catalog, path = made.catalog, made.catalog.parent
    status = 0  # 1 when the models were fitted and none could be
    if made.report is not None:
        _print_report(made.report)
        if not args.no_fit:
            print("fitting the models of every feature (contrasts and time courses) ...")
            status = _fit(catalog, None, args.workers, args.quiet, command="demo")
    print(f"catalog: {catalog}")
    print(f"store:   {path / STORE_NAME}")
    print(f"truth:   {path / 'truth'}")
    if args.no_process or args.no_serve:
        print(f"next:    cardiolab serve {catalog}")
        return status
    return _serve(catalog, "127.0.0.1", args.port, None, None, show=False) or status


def _serve(catalog, address, port, credentials, oauth_provider, *, show=False, **options) -> int:
    from .dashboards import serve

    server = serve(
        catalog,
        address=address,
        port=port,
        credentials=credentials,
        oauth_provider=oauth_provider,
        show=show,
        start=False,
        verbose=False,
        **options,
    )
    host = "localhost" if address in ("127.0.0.1", "localhost") else address
    print(
        f"dashboard: http://{host}:{server.port}/session  (also /cohort, /campaign); "
        "Ctrl+C stops it",
        flush=True,
    )
    try:
        server.start()
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _cmd_serve(args) -> int:
    return _serve(
        _open(args),
        args.address,
        args.port,
        args.credentials,
        args.oauth_provider,
        show=args.show,
        sign_in_hours=args.sign_in_hours,
    )


def _cmd_lab(args) -> int:
    from . import lab
    from .demo import demo_catalog

    # absolute: the kernels start in the notebooks' folder, not here
    folder = (Path(expand_path(args.path)) if args.path else default_demo_dir()).resolve()
    notebooks = Path(expand_path(args.notebook_dir)) if args.notebook_dir else None
    extra = args.jupyter_args[1:] if args.jupyter_args[:1] == ["--"] else args.jupyter_args
    command = lab.jupyter_lab_command(  # checked before the demo is made
        notebooks or lab.default_notebook_dir(),
        port=args.port,
        open_browser=not args.no_browser,
        extra_args=extra,
    )
    print(f"making sure the demo campaign is ready in {folder} ...", flush=True)
    catalog = demo_catalog(folder, workers=args.workers, progress=not args.quiet)
    print(f"catalog: {catalog}\n{DEMO_DIR_VARIABLE}={folder} (the notebooks' demo)", flush=True)
    return lab.launch(command, lab.notebook_environment(folder, DEMO_DIR_VARIABLE))


def _cmd_passwd(args) -> int:
    import getpass
    import os

    from .dashboards.auth import add_user

    password = os.environ.get("CARDIOLAB_PASSWORD")
    if not password:
        password = getpass.getpass(f"password for {args.user}: ")
        if password != getpass.getpass("again: "):
            print("cardiolab passwd: the two passwords differ", file=sys.stderr)
            return 2
    path = add_user(args.file, args.user, password)
    print(f"{args.user} added to {path} (scrypt hash)")
    return 0


def _print_report(report) -> None:
    print(repr(report))
    failures = report.failures
    if len(failures):
        print("failures:")
        print(failures.to_string(index=False))
    skipped = report.sessions[report.sessions["status"] == "skipped"]
    if len(skipped):
        print("skipped, another run holds them (run again when it is done):")
        print(skipped[["subject", "session", "error"]].to_string(index=False))


def _open(args):
    """The command's catalog, opened with its ``--storage-option`` options."""
    from .catalog import open_catalog

    return open_catalog(args.catalog, storage_options=args.storage_options)


def _cmd_process(args) -> int:
    from .pipeline import process_campaign

    report = process_campaign(
        _open(args),
        client="sync" if args.workers == 0 else None,
        scheduler=args.scheduler,
        workers=args.workers or None,
        force=args.force,
        progress=not args.quiet,
    )
    _print_report(report)
    return 0 if len(report.failures) == 0 else 1


def _fit(catalog, scheduler, workers, quiet, features=None, *, command: str = "fit") -> int:
    """Fit every feature's models, store and summarise them; 1 if none could be fitted."""
    from .catalog import as_catalog
    from .derived import derived_store
    from .pipeline import features_table
    from .stats.results import fit_all, results_summary

    cat = as_catalog(catalog)
    table = features_table(cat)
    results = fit_all(
        table,
        features=features,
        client="sync" if workers == 0 else None,
        scheduler=scheduler,
        workers=workers or None,
        store=derived_store(cat),  # with the catalog's storage options
        progress=not quiet,
    )
    print(results_summary(results))
    print(f"results: {cat.derived_path}/stats/results.parquet (cardiolab.stats.read_results)")
    if results.empty:
        print(
            f"cardiolab {command}: nothing to fit: no feature of the table"
            f"{' named by --features' if features else ''} has a value in any epoch",
            file=sys.stderr,
        )
        return 1
    if (results["error"].astype(str) != "").all():
        n = len(results.groupby(["feature", "epoch", "model"], sort=False))
        print(
            f"cardiolab {command}: nothing could be fitted: none of the {n} models (reasons above)",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_fit(args) -> int:
    return _fit(_open(args), args.scheduler, args.workers, args.quiet, args.features)


def _cmd_trail(args) -> int:
    """``trail verify``: exit 1 if a trail is broken; ``trail export``: write CSV/JSON."""
    from .trail import export_trail, verify_trail

    cat = _open(args)
    if args.trail_command == "export":
        path = export_trail(cat, args.output, subject=args.subject, session=args.session)
        print(f"review trail written to {path}")
        return 0
    table = verify_trail(cat, args.subject, args.session, against=args.against)
    if not len(table):
        print("no review trail")
        return 0
    for row in table.itertuples(index=False):
        head = f" (head {row.head})" if row.head else ""
        print(f"{row.subject} {row.session}: {row.status}: {row.message}{head}")
    return 1 if (table["status"] == "broken").any() else 0


def _cmd_info(args) -> int:
    cat = _open(args)
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


def _cmd_features(args) -> int:
    from .features.registry import feature_table

    table = feature_table()
    if args.markdown:
        cols = ["feature", "outputs", "inputs"]
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for row in table[cols].itertuples(index=False):
            cells = [f"`{row.feature}`", row.outputs, row.inputs]
            print("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        return 0
    for row in table.itertuples(index=False):
        print(f"{row.feature}\n  outputs: {row.outputs}\n  inputs: {row.inputs}")
        if row.parameters:
            print(f"  parameters: {row.parameters}")
        print(f"  source: {row.source}")
    return 0


def _cmd_validate(args) -> int:
    from .errors import SessionFormatError

    cat = _open(args)
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


def _cmd_report(args) -> int:
    from .reports import cohort_report, session_report, write_report

    if (args.subject is None) != (args.session is None):
        raise CardiolabError("report: give both --subject and --session (or neither)")
    cat = _open(args)
    if args.subject is not None:
        text = session_report(cat, args.subject, args.session)
        default = f"report_{args.subject}_{args.session}.{args.format}"
    else:
        text = cohort_report(cat, args.feature or None, args.epoch)
        default = f"report_cohort_{args.epoch}.{args.format}"
    path = write_report(text, args.output or default, overwrite=args.overwrite)
    print(f"report written to {path}")
    return 0


def _add_report_parser(sub) -> None:
    from .reports import REPORT_FORMATS

    rep = sub.add_parser(
        "report",
        help="a session report (--subject, --session) or a cohort report, as one HTML file",
    )
    rep.add_argument("catalog", help="path of a data_catalog.yaml (processed)")
    rep.add_argument("--subject", default=None, help="subject of a session report")
    rep.add_argument("--session", default=None, help="session label of a session report")
    rep.add_argument(
        "--feature",
        action="append",
        default=None,
        help="feature of the cohort report (repeatable; default hr)",
    )
    rep.add_argument("--epoch", default="supine", help="epoch of the cohort report")
    rep.add_argument("--format", choices=REPORT_FORMATS, default="html", help="file format")
    rep.add_argument(
        "--output", default=None, help="file to write (default: report_<...>.html here)"
    )
    rep.add_argument("--overwrite", action="store_true", help="replace an existing file")
    _add_storage_option(rep)
    rep.set_defaults(func=_cmd_report)


def _storage_option(text: str) -> str:
    try:
        parse_storage_option(text)  # a malformed pair is an argparse error
        return text
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_storage_option(parser) -> None:
    parser.add_argument(
        "--storage-option",
        dest="storage_options",
        action="append",
        type=_storage_option,
        default=None,
        metavar="KEY=VALUE",
        help="fsspec option for the catalog's URLs, over its storage_options section "
        "(repeatable; dots for nested keys: client_kwargs.endpoint_url=http://host:9000; "
        'VALUE as JSON when it parses: true, 5, "007")',
    )


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
    demo.add_argument("--no-serve", action="store_true", help="stop before serving the dashboard")
    demo.add_argument("--port", type=int, default=5006, help="dashboard port (default 5006)")
    demo.add_argument("--no-fit", action="store_true", help="process but do not fit the models")
    demo.add_argument(
        "--workers",
        type=int,
        default=None,
        help="dask workers (default: cores; 0 runs in this process)",
    )
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
    _add_storage_option(proc)
    proc.set_defaults(func=_cmd_process)

    fit = sub.add_parser(
        "fit", help="phase contrasts and adaptation/recovery time course of every feature"
    )
    fit.add_argument("catalog", help="path of a data_catalog.yaml (processed)")
    fit.add_argument("--features", nargs="+", default=None, help="features to fit (default all)")
    fit.add_argument(
        "--scheduler",
        default=None,
        help="address of an existing dask scheduler (or set CARDIOLAB_SCHEDULER)",
    )
    fit.add_argument(
        "--workers",
        type=int,
        default=None,
        help="workers of the local cluster (default: cores; 0 runs in this process)",
    )
    fit.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_storage_option(fit)
    fit.set_defaults(func=_cmd_fit)

    srv = sub.add_parser("serve", help="serve the review dashboard (Session, Cohort, Campaign)")
    srv.add_argument("catalog", help="path of a data_catalog.yaml")
    srv.add_argument(
        "--address",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1; others need a login)",
    )
    srv.add_argument("--port", type=int, default=5006, help="TCP port (default 5006)")
    srv.add_argument(
        "--credentials",
        default=None,
        help="JSON file of hashed passwords (cardiolab passwd); or CARDIOLAB_CREDENTIALS",
    )
    srv.add_argument(
        "--oauth-provider",
        default=None,
        help="Panel OAuth provider (github, google, azure, ...; PANEL_OAUTH_* settings)",
    )
    srv.add_argument(
        "--sign-in-hours",
        type=float,
        default=168.0,
        help="with --credentials: hours a sign-in lasts; its open pages are then "
        "disconnected (default 168, 7 days)",
    )
    srv.add_argument("--show", action="store_true", help="open a browser tab")
    _add_storage_option(srv)
    srv.set_defaults(func=_cmd_serve)

    jl = sub.add_parser(
        "lab",
        help="JupyterLab on the notebooks, with the demo campaign ready",
        description="Make sure the demo campaign exists (generated and processed on first "
        f"use), set {DEMO_DIR_VARIABLE} to its folder for the notebooks, and start "
        "JupyterLab on the notebooks folder, on 127.0.0.1. Options after -- go to "
        "`jupyter lab` as they are (e.g. -- --IdentityProvider.token=SECRET).",
    )
    jl.add_argument(
        "--path", default=None, help=f"folder of the demo campaign (default {DEMO_DIR_EXPR})"
    )
    jl.add_argument(
        "--notebook-dir",
        default=None,
        help="folder JupyterLab opens (default: the repository's notebooks/)",
    )
    jl.add_argument("--port", type=int, default=LAB_PORT, help=f"TCP port (default {LAB_PORT})")
    jl.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    jl.add_argument(
        "--workers",
        type=int,
        default=None,
        help="dask workers to process the demo (default: cores; 0 runs in this process)",
    )
    jl.add_argument("--quiet", action="store_true", help="no progress bars")
    jl.add_argument(
        "jupyter_args",
        nargs=argparse.REMAINDER,
        metavar="-- JUPYTER_ARGS",
        help="further `jupyter lab` options, after --",
    )
    jl.set_defaults(func=_cmd_lab)

    pw = sub.add_parser("passwd", help="add a reviewer to a credentials file (hashed password)")
    pw.add_argument("file", help="credentials JSON file (created if absent)")
    pw.add_argument("user", help="user name")
    pw.set_defaults(func=_cmd_passwd)

    trail = sub.add_parser("trail", help="verify or export the reviewers' audit trail")
    trail_sub = trail.add_subparsers(dest="trail_command", required=True)
    verify = trail_sub.add_parser(
        "verify", help="check the hash chain of every trail (exit 1 if one is broken)"
    )
    verify.add_argument("catalog", help="path of a data_catalog.yaml")
    verify.add_argument(
        "--against",
        default=None,
        metavar="EXPORT.json",
        help="an earlier `trail export` (JSON): its events must all still be there, "
        "unchanged (finds a trail rewritten as a whole)",
    )
    export = trail_sub.add_parser("export", help="write the trail as CSV or JSON")
    export.add_argument("catalog", help="path of a data_catalog.yaml")
    export.add_argument("output", help="file to write (.csv or .json)")
    for p in (verify, export):
        p.add_argument("--subject", default=None, help="only this subject")
        p.add_argument("--session", default=None, help="only this session (with --subject)")
        _add_storage_option(p)
        p.set_defaults(func=_cmd_trail)

    info = sub.add_parser("info", help="print a campaign's subjects x sessions matrix")
    info.add_argument("catalog", help="path of a data_catalog.yaml")
    _add_storage_option(info)
    info.set_defaults(func=_cmd_info)

    feats = sub.add_parser(
        "features", help="list the declared features: outputs, units, inputs, sources"
    )
    feats.add_argument("--markdown", action="store_true", help="a Markdown table (README)")
    feats.set_defaults(func=_cmd_features)

    val = sub.add_parser("validate", help="check every session of a catalog against the model")
    val.add_argument("catalog", help="path of a data_catalog.yaml")
    _add_storage_option(val)
    val.set_defaults(func=_cmd_validate)
    _add_report_parser(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``cardiolab`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "storage_options"):
        try:  # the pairs, parsed one by one, into one nested dict
            args.storage_options = storage_options_from_pairs(args.storage_options)
        except ValueError as err:
            parser.error(str(err))
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
