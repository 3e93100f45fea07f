"""Every feature's models at once: :func:`fit_all` and the stored results table.

For each feature x epoch of a campaign's features table, :func:`fit_all` fits the
phase contrasts (:func:`~cardiolab.stats.mixed.phase_contrasts`) and the
adaptation/recovery time course (:func:`~cardiolab.stats.timecourse.fit_time_course`)
as one dask task, and gathers one tidy table: ``feature``, ``epoch``, ``model``
(``contrast`` / ``time_course``), ``term``, ``estimate``, ``ci_low``, ``ci_high``,
``df`` (Satterthwaite degrees of freedom of a contrast), ``ci_method`` (how the
interval was made: ``Satterthwaite t`` for contrasts by default, ``profile
likelihood``... for the time course), ``p``, ``p_holm``, ``converged``, ``flags``,
``units``. A model that cannot be fitted
(too few subjects, no variance, ...) is a row with ``model`` set and ``error`` filled,
so that a batch never stops on one feature. The table is written to the derived store
(one Parquet object ``stats/results.parquet``, :mod:`cardiolab.derived`) and read back
by :func:`read_results`.
"""

from __future__ import annotations

import difflib
import logging
import re
import textwrap
import time
import warnings

import numpy as np
import pandas as pd

from .. import __version__
from ..derived import as_store
from ..errors import CardiolabError, ModelError
from ..parallel import run_tasks
from .table import ID_COLUMNS

log = logging.getLogger("cardiolab")

__all__ = [
    "MODELS",
    "RESULT_COLUMNS",
    "SKIPPED_FEATURES",
    "SUMMARY_ERROR_CHARS",
    "SUMMARY_FLAGS_CHARS",
    "feature_columns",
    "feature_epochs",
    "feature_models",
    "fit_all",
    "fit_feature",
    "read_results",
    "results_summary",
    "write_results",
]

#: Columns of the tidy results table.
RESULT_COLUMNS = [
    "feature",
    "epoch",
    "model",
    "term",
    "estimate",
    "ci_low",
    "ci_high",
    "df",
    "ci_method",
    "p",
    "p_holm",
    "converged",
    "flags",
    "error",
    "units",
]

#: Bookkeeping columns of the features table that are counts, not physiology: not
#: modelled unless asked for by name. Besides these, every column named ``n_<what>``
#: (beats used per channel: ``n_nn``, ``n_beats_abp``, ``n_beats_<vessel>``...) is one.
SKIPPED_FEATURES = ("n_beats", "brs_n_sequences", "brs_n_up", "brs_n_down", "brs_tf_n_bins")


def _is_count(column: str) -> bool:
    return column in SKIPPED_FEATURES or column.startswith("n_")


def feature_columns(table: pd.DataFrame) -> list[str]:
    """The feature columns of a features table that :func:`fit_all` models by default.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per session x epoch (:func:`cardiolab.pipeline.features_table`).

    Returns
    -------
    list of str
        Numeric columns other than the identifiers (subject, session, phase, day,
        epoch) and the counts (:data:`SKIPPED_FEATURES` and every ``n_<what>``).
    """
    return [
        c
        for c in table.columns
        if c not in ID_COLUMNS and not _is_count(c) and pd.api.types.is_numeric_dtype(table[c])
    ]


def feature_epochs(table: pd.DataFrame, feature: str) -> list[str]:
    """The epochs in which a feature has at least one finite value, in table order.

    Recorded features have values in the protocol epochs; a measurement of a whole
    session only in the ``session`` epoch (:func:`cardiolab.pipeline.features_table`).

    Parameters
    ----------
    table : pandas.DataFrame
        A features table.
    feature : str
        One of its columns.

    Returns
    -------
    list of str
    """
    values = pd.to_numeric(table[feature], errors="coerce").to_numpy(dtype=float)
    epochs = table["epoch"].astype(str)
    return list(dict.fromkeys(epochs[np.isfinite(values)]))


def _error_row(feature, epoch, model, err, units) -> dict:
    return {
        "feature": feature,
        "epoch": epoch,
        "model": model,
        "term": "",
        "estimate": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "df": np.nan,
        "ci_method": "",
        "p": np.nan,
        "p_holm": np.nan,
        "converged": False,
        "flags": "",
        "error": str(err),
        "units": units,
    }


#: The models fitted for each feature and epoch: (key in result tables, name shown).
MODELS = (("contrast", "phase contrasts"), ("time_course", "time course"))


def _fit_each_model(table: pd.DataFrame, feature: str, epoch: str) -> list[tuple]:
    """Each of :data:`MODELS` fitted on its own: ``[(key, name, result, error)]``.

    The one home of fitting a feature's models (:func:`feature_models` for the pages
    and reports, :func:`fit_feature` for :func:`fit_all`). A model that cannot be
    fitted has ``result`` None and ``error`` its message: a
    :class:`~cardiolab.errors.CardiolabError`'s (too few subjects, ...) as it is, any
    other failure (statsmodels, numpy) with its type, logged. Warnings of the fits
    (convergence) are not shown: what matters of them is in each result's ``flags``.
    """
    from .mixed import phase_contrasts
    from .timecourse import fit_time_course

    fits = {"contrast": phase_contrasts, "time_course": fit_time_course}
    out = []
    for key, name in MODELS:
        result, error = None, ""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = fits[key](table, feature, epoch=epoch)
        except CardiolabError as err:
            error = str(err)
        except Exception as err:  # statsmodels/numpy failures are recorded, not raised
            log.warning("%s %s %s could not be fitted: %r", feature, epoch, name, err)
            error = f"{type(err).__name__}: {err}"
        out.append((key, name, result, error))
    return out


def feature_models(table: pd.DataFrame, feature: str, epoch: str) -> tuple:
    """The phase contrasts and the time course of one feature in one epoch, as objects.

    What the Cohort page and the cohort report show: each model is fitted on its own
    (:func:`~cardiolab.stats.mixed.phase_contrasts`,
    :func:`~cardiolab.stats.timecourse.fit_time_course`) and one that cannot be fitted
    is ``None``, with the reason.

    Parameters
    ----------
    table : pandas.DataFrame
        A features table (:func:`cardiolab.pipeline.features_table`).
    feature, epoch : str
        What to model.

    Returns
    -------
    tuple
        ``(contrasts, time_course, errors)``: a
        :class:`~cardiolab.stats.mixed.PhaseContrasts` or None, a
        :class:`~cardiolab.stats.timecourse.TimeCourse` or None, and a list of
        ``(model, message)`` of the models that could not be fitted (``model`` is
        ``"phase contrasts"`` or ``"time course"``; the message of the
        :class:`~cardiolab.errors.CardiolabError`, or the type and message of another
        failure of the fit).
    """
    fitted = _fit_each_model(table, feature, epoch)
    errors = [(name, error) for _, name, result, error in fitted if result is None]
    return fitted[0][2], fitted[1][2], errors


def fit_feature(table: pd.DataFrame, feature: str, epoch: str) -> pd.DataFrame:
    """Phase contrasts and time course of one feature in one epoch, as tidy rows.

    Never raises for a model that cannot be fitted: the failure is a row with
    ``error`` set (as :func:`feature_models` gives it).

    Parameters
    ----------
    table : pandas.DataFrame
        A features table (:func:`cardiolab.pipeline.features_table`).
    feature, epoch : str
        What to model.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RESULT_COLUMNS`.
    """
    units = table.attrs.get("units", {}).get(feature, "")
    rows = []
    for model, _, result, error in _fit_each_model(table, feature, epoch):
        if result is None:
            rows.append(pd.DataFrame([_error_row(feature, epoch, model, error, units)]))
            continue
        frame = result.to_frame()
        frame["flags"] = "; ".join(result.flags)
        frame["error"] = ""
        frame["units"] = units
        if model == "contrast" and "p_holm" not in frame:
            holm = result.table["p_holm"]
            frame["p_holm"] = frame["term"].map(holm)
        rows.append(frame)
    out = pd.concat(rows, ignore_index=True)
    for col in RESULT_COLUMNS:
        if col not in out:
            out[col] = np.nan
    out["feature"], out["epoch"] = feature, epoch
    return out[RESULT_COLUMNS]


def _fit_job(table: pd.DataFrame, job: tuple[str, str]) -> pd.DataFrame:
    """One task of :func:`fit_all`: ``job`` is (feature, epoch)."""
    return fit_feature(table, *job)


def fit_all(
    table: pd.DataFrame,
    features: list[str] | None = None,
    client=None,
    *,
    epochs: list[str] | None = None,
    store=None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Fit phase contrasts and the time course of every feature x epoch, in parallel.

    Parameters
    ----------
    table : pandas.DataFrame
        A features table (:func:`cardiolab.pipeline.features_table`): columns
        ``subject``, ``session``, ``phase``, ``day``, ``epoch`` and one per feature;
        units in ``table.attrs["units"]``.
    features : list of str, optional
        Features to model (default: every numeric feature column except the counts:
        :data:`SKIPPED_FEATURES` and every ``n_<what>`` column).
    client : distributed.Client or "sync", optional
        Where to run (:func:`cardiolab.parallel.run_tasks`). ``None`` starts a
        ``LocalCluster`` sized to the machine (or connects to ``scheduler`` /
        ``$CARDIOLAB_SCHEDULER``); ``"sync"`` fits in this process.
    epochs : list of str, optional
        Epochs to model (default: all in the table). A feature is modelled in the
        epochs where it has a value: a feature x epoch with no value at all (a
        measurement of a whole session in the ``supine`` epoch, a recorded feature in
        the ``session`` epoch of the measurements: see
        :func:`cardiolab.pipeline.features_table`) is skipped, unless both the
        feature and the epoch were named, when its row says why it could not be
        fitted.
    store : str or pathlib.Path, optional
        A derived store (folder): the table is written there as group ``stats``.
    scheduler : str, optional
        Address of an existing dask scheduler.
    workers : int, optional
        Workers of the LocalCluster.
    progress : bool
        Show a progress bar of features done.

    Returns
    -------
    pandas.DataFrame
        One row per feature x epoch x model x term (columns :data:`RESULT_COLUMNS`);
        ``attrs["seconds"]`` holds the wall time.

    Raises
    ------
    ModelError
        A requested feature or epoch is not in the table.

    Examples
    --------
    >>> from cardiolab.pipeline import features_table
    >>> results = fit_all(features_table("data_catalog.yaml"))  # doctest: +SKIP
    >>> results.query("model == 'time_course' and term == 'tau_r'")  # doctest: +SKIP
    """
    missing = [c for c in ID_COLUMNS if c not in table.columns]
    if missing:
        raise ModelError(f"features table: missing column(s) {missing} (needs {list(ID_COLUMNS)})")
    all_features = feature_columns(table)
    named = features is not None and epochs is not None
    features = all_features if features is None else list(features)
    unknown = [f for f in features if f not in table.columns]
    if unknown:
        close = sorted({c for f in unknown for c in difflib.get_close_matches(f, all_features)})
        has = (
            f"it has {all_features}"
            if len(all_features) <= 20
            else f"it has {len(all_features)} features"
        )
        hint = f"; close names: {close}" if close else ""
        raise ModelError(f"features table: no feature {unknown} ({has}{hint})")
    present = list(dict.fromkeys(table["epoch"].astype(str)))
    epochs = present if epochs is None else list(epochs)
    absent = [e for e in epochs if e not in present]
    if absent:
        raise ModelError(f"features table: no epoch {absent} (it has {present})")

    having = {f: set(feature_epochs(table, f)) for f in features}
    jobs = [(f, e) for f in features for e in epochs if named or e in having[f]]
    t0 = time.perf_counter()
    # a few jobs per dask task: enough tasks to balance, few enough to keep overhead low
    frames = run_tasks(
        _fit_job,
        jobs,
        shared=table,
        client=client,
        scheduler=scheduler,
        workers=workers,
        progress=progress,
        desc="fitting features",
        unit="model",
        batches_per_worker=8,
    ).results
    order = {job: i for i, job in enumerate(jobs)}
    frames.sort(key=lambda f: order[(f["feature"].iat[0], f["epoch"].iat[0])])
    results = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
    )
    results.attrs["seconds"] = time.perf_counter() - t0
    if store is not None:
        write_results(results, store)
    return results


def write_results(results: pd.DataFrame, store, *, storage_options=None) -> str:
    """Write a :func:`fit_all` table into a derived store, atomically.

    Parameters
    ----------
    results : pandas.DataFrame
        A :func:`fit_all` table.
    store : str, pathlib.Path or cardiolab.derived.DerivedStore
        The derived store (a folder or an fsspec URL).
    storage_options : dict, optional
        fsspec options of a URL.

    Returns
    -------
    str
        The object written (``<store>/stats/results.parquet``,
        :meth:`cardiolab.derived.DerivedStore.write_results`).
    """
    table = results.reset_index(drop=True).copy()
    for col in ("feature", "epoch", "model", "term", "ci_method", "flags", "error", "units"):
        table[col] = table[col].astype(str)
    table["converged"] = table["converged"].astype(bool)
    attrs = {
        "cardiolab_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "n_features": int(results["feature"].nunique()) if len(results) else 0,
        "seconds": float(results.attrs.get("seconds", np.nan)),
        "description": "fit_all: phase contrasts and time courses of every feature x epoch",
    }
    return as_store(store, storage_options).write_results(table, attrs)


def read_results(store, *, storage_options=None) -> pd.DataFrame:
    """The results table :func:`fit_all` wrote into a derived store.

    Parameters
    ----------
    store : str, pathlib.Path or cardiolab.derived.DerivedStore
    storage_options : dict, optional

    Raises
    ------
    CardiolabError
        No results there yet (names the store and the command that makes them).
    """
    table = as_store(store, storage_options).read_results()
    if table is None:
        raise CardiolabError(f"{store}: no model results yet; run `cardiolab fit CATALOG` first")
    out = table[[c for c in RESULT_COLUMNS if c in table]]
    out.attrs.update({k: v for k, v in table.attrs.items() if isinstance(v, str | int | float)})
    return out


#: Longest error message and flag text :func:`results_summary` prints on one line
#: (characters); the full text is in the results table's ``error`` and ``flags``.
SUMMARY_ERROR_CHARS = 300
SUMMARY_FLAGS_CHARS = 240


def _one_line(text: str, limit: int) -> str:
    """``text`` on one line (whitespace collapsed), cut to at most ``limit`` characters:
    after its last whole ``"; "``-separated part (flags are joined so) if that keeps
    half of it, else at a word; the cut says how many parts it left out
    (``… (+2 more)``)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    room = limit - len(" … (+99 more)")
    end = text.rfind("; ", 0, room)
    if end > room // 2:
        head, rest = text[:end] + ";", text[end + 2 :]
        more = rest.count("; ") + 1
    else:
        head = text[:room].rsplit(" ", 1)[0]
        more = text[len(head) :].count("; ")
    return f"{head} … (+{more} more)" if more else f"{head} …"


def _named(text: str, name: str, placeholder: str) -> str:
    """``text`` with ``name`` as a whole word (not part of a longer name) replaced."""
    return re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", placeholder, text)


def _reason_lines(models: pd.DataFrame, column: str, limit: int) -> list[str]:
    """One line per model and its reason; models whose reasons differ only by their
    feature and epoch names as one group: the shared reason, then every model named."""
    texts = [" ".join(str(t).split()) for t in models[column]]
    keys = [
        _named(_named(t, e, "<epoch>"), f, "<feature>")
        for t, f, e in zip(texts, models["feature"], models["epoch"], strict=True)
    ]
    lines = []
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):  # grouped by the whole reason, shown cut
        groups.setdefault(key, []).append(i)
    for key, members in groups.items():
        rows = models.iloc[members]
        if len(members) == 1:
            row = rows.iloc[0]
            text = _one_line(texts[members[0]], limit)
            lines.append(f"  {row['feature']}/{row['epoch']} {row['model']}: {text}")
            continue
        lines.append(f"  {len(members)} models: {_one_line(key, limit)}")
        named = "; ".join(
            f"{model}: "
            + ", ".join(f"{f}/{e}" for f, e in zip(g["feature"], g["epoch"], strict=True))
            for model, g in rows.groupby("model", sort=False)
        )
        lines += textwrap.wrap(named, 100, initial_indent="    ", subsequent_indent="    ")
    return lines


def results_summary(results: pd.DataFrame, *, epoch: str = "supine") -> str:
    """A short text summary of a :func:`fit_all` table, for the command line.

    Parameters
    ----------
    results : pandas.DataFrame
        A :func:`fit_all` table (or :func:`read_results`).
    epoch : str
        The epoch whose time-course estimates are listed.

    Returns
    -------
    str
        One line of counts: features, models, time, how many could not be fitted and
        how many are flagged (every model with a non-empty ``flags``, or not
        converged). Then every model that could not be fitted with its reason, one line
        each (``feature/epoch model: error``); models whose messages differ only by
        their feature and epoch names are one group (``12 models: '<feature>' in
        epoch '<epoch>': 1 subject with data...``) followed by all their names. Then,
        the same way, every flagged model with its flags. Messages longer than
        :data:`SUMMARY_ERROR_CHARS` (flags: :data:`SUMMARY_FLAGS_CHARS`) characters are
        cut, preferably after a whole ``;``-separated part, saying how many parts
        follow (``… (+2 more)``); the full text is in the table. Last, per feature of ``epoch``, and of the ``session`` epoch of the
        measurements (:data:`cardiolab.measurements.SESSION_EPOCH`), the time-course
        estimates of ``D`` (change at landing) and ``tau_r`` (recovery time constant,
        days) with their 95% CIs, ``(flagged)`` where the time course has flags.

    Examples
    --------
    >>> print(results_summary(fit_all(table, client="sync")))  # doctest: +SKIP
    2 features, 8 models in 0.1 s; 4 could not be fitted, 1 flagged
    could not be fitted:
      4 models: '<feature>' in epoch '<epoch>': 1 subject with data; ...
        contrast: hr/supine, hr/stand, sbp/supine, sbp/stand
    flagged:
      hr/supine time_course: tau_r estimate 0.1 d is on a bound of (0.1, 400)
    ...
    """
    from ..measurements import SESSION_EPOCH

    groups = ["feature", "epoch", "model"]
    text = results.assign(
        error=results["error"].fillna("").astype(str),
        flags=results["flags"].fillna("").astype(str),
        converged=results["converged"].fillna(False).astype(bool),
    )
    models = (
        text.groupby(groups, sort=False)
        .agg(error=("error", "first"), flags=("flags", "first"), converged=("converged", "all"))
        .reset_index()
    )
    failed = models[models["error"] != ""]
    flagged = models[(models["error"] == "") & ((models["flags"] != "") | ~models["converged"])]
    flagged = flagged.assign(flags=[f if f else "did not converge" for f in flagged["flags"]])
    lines = [
        f"{results['feature'].nunique()} features, {len(models)} models "
        f"in {results.attrs.get('seconds', float('nan')):.1f} s; "
        f"{len(failed)} could not be fitted, {len(flagged)} flagged",
    ]
    if len(failed):
        lines.append("could not be fitted:")
        lines += _reason_lines(failed, "error", SUMMARY_ERROR_CHARS)
    if len(flagged):
        lines.append("flagged:")
        lines += _reason_lines(flagged, "flags", SUMMARY_FLAGS_CHARS)
    flagged_keys = {
        (f, e) for f, e, m in flagged[groups].itertuples(index=False) if m == "time_course"
    }
    for shown in dict.fromkeys([epoch, SESSION_EPOCH]):
        tc = results[(results["model"] == "time_course") & (results["epoch"] == shown)]
        rows_shown = []
        for feature, rows in tc.groupby("feature", sort=False):
            terms = rows.set_index("term")
            if "D" not in terms.index or "tau_r" not in terms.index:
                continue
            d, tr = terms.loc["D"], terms.loc["tau_r"]
            mark = "  (flagged)" if (feature, shown) in flagged_keys else ""
            rows_shown.append(
                f"  {feature:<24} D {d['estimate']:9.3g} [{d['ci_low']:.3g}, {d['ci_high']:.3g}]"
                f" {rows['units'].iat[0]:<8} tau_r {tr['estimate']:6.3g} "
                f"[{tr['ci_low']:.3g}, {tr['ci_high']:.3g}]{mark}"
            )
        if rows_shown:
            lines.append(f"time course, {shown}: D (change at landing) and tau_r (days), 95% CI")
            lines += rows_shown
    return "\n".join(lines)
