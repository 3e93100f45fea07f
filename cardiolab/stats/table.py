"""The features table at the door of every model: one check, one set of messages.

Every model of :mod:`cardiolab.stats` (phase contrasts, time courses, ``fit_all``)
starts from the rows of one feature in one protocol epoch of the features table
(:func:`cardiolab.pipeline.features_table`). :func:`check_features_table` selects
those rows, checks them, and says what is wrong in a :class:`~cardiolab.errors.ModelError`
whose message starts with the feature and the epoch and names the column at fault,
before statsmodels is called.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ModelError
from ..labels import PHASES

__all__ = ["ID_COLUMNS", "FeatureRows", "check_features_table"]

#: The identifier columns of a features table (one row per subject x session x epoch).
ID_COLUMNS = ("subject", "session", "phase", "day", "epoch")

#: Rows listed by name in the "dropped rows" flag (the rest are counted).
_LISTED = 10


@dataclass(frozen=True, eq=False)
class FeatureRows:
    """The checked rows of one feature in one epoch (:func:`check_features_table`).

    Attributes
    ----------
    rows : pandas.DataFrame
        The epoch's rows with every value the model needs, index ``0..n-1``: columns
        ``subject`` (as in the table), ``session`` (str), ``phase`` (str, one of
        :data:`cardiolab.labels.PHASES`), ``day`` (float, days from the phase
        anchor), the feature under its own name (float) and the covariates (as in
        the table). Rows with a missing feature, day or covariate are dropped (see
        ``flags``).
    flags : list of str
        What a reader of the results should know about the rows, e.g. ``"dropped 2
        row(s) with a missing hr or day: S01 R+0, S03 FD5"``.
    units : str
        The feature's units (``table.attrs["units"][feature]``), ``""`` where unknown.
    feature, epoch : str
        What the rows are.
    """

    rows: pd.DataFrame
    flags: list[str]
    units: str
    feature: str
    epoch: str


def _fail(feature, epoch, message: str) -> ModelError:
    return ModelError(f"{feature!r} in epoch {epoch!r}: {message}")


def _numeric(values: pd.Series, feature, epoch) -> pd.Series:
    """The feature's values as float; a ModelError for values that are not numbers."""
    kind = values.dtype
    if pd.api.types.is_bool_dtype(kind):
        raise _fail(feature, epoch, f"column {feature!r} is boolean, not a measurement")
    if pd.api.types.is_numeric_dtype(kind):
        return values.astype(float)
    if not (pd.api.types.is_object_dtype(kind) or pd.api.types.is_string_dtype(kind)):
        raise _fail(feature, epoch, f"column {feature!r} has dtype {kind}, not numbers")
    out = pd.to_numeric(values, errors="coerce").astype(float)
    bad = values[out.isna() & values.notna()]
    if len(bad):
        shown = sorted({repr(v) for v in bad})[:5]
        raise _fail(
            feature,
            epoch,
            f"column {feature!r} is not numeric ({len(bad)} value(s) that are not "
            f"numbers, e.g. {', '.join(shown)})",
        )
    return out


def check_features_table(
    table: pd.DataFrame,
    feature: str,
    epoch: str,
    *,
    covariates: Sequence[str] = (),
    min_subjects: int = 2,
    require_pre: bool = True,
    require_change: bool = False,
) -> FeatureRows:
    """The rows of one feature in one epoch, checked for a model.

    Parameters
    ----------
    table : pandas.DataFrame
        A features table (:func:`cardiolab.pipeline.features_table`): columns
        :data:`ID_COLUMNS` (``subject``, ``session``, ``phase``, ``day``, ``epoch``)
        and one per feature; units in ``table.attrs["units"]``. Not modified.
    feature : str
        The feature column, e.g. ``"hr"``.
    epoch : str
        The protocol epoch whose rows are selected.
    covariates : sequence of str
        Extra columns the model uses (merged into the table by the caller): kept as
        they are, rows where one is missing dropped.
    min_subjects : int
        Fewest subjects with data (a random effect per subject needs 2).
    require_pre : bool
        Require a pre-flight row (the models measure change from the pre-flight level).
    require_change : bool
        Require an in-flight or post-flight row (something to compare with pre-flight).

    Returns
    -------
    FeatureRows
        The rows (``day`` and the feature as float; ``session``, ``phase`` as str),
        the flags (rows dropped), the units.

    Raises
    ------
    ModelError
        With a message starting ``"'<feature>' in epoch '<epoch>': "`` and naming the
        column, for: ``table`` not a DataFrame; an identifier column missing; the
        feature missing (close names suggested, :func:`difflib.get_close_matches`);
        a covariate column missing; the epoch absent (the epochs present listed); a
        missing subject, session or phase; a phase not in
        :data:`cardiolab.labels.PHASES`; a feature that is not numeric; a feature
        all missing in the epoch; no row with the feature, day and covariates all
        present; fewer than ``min_subjects`` subjects with data; no variance; no
        pre-flight row (``require_pre``); no in-flight or post-flight row
        (``require_change``).

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({
    ...     "subject": ["S01", "S01", "S02", "S02"], "session": ["L-30", "R+0"] * 2,
    ...     "phase": ["pre", "post"] * 2, "day": [-30, 0] * 2, "epoch": "supine",
    ...     "hr": [60.0, 71.0, 64.0, None]})
    >>> checked = check_features_table(table, "hr", "supine")
    >>> checked.rows["hr"].tolist(), checked.flags
    ([60.0, 71.0, 64.0], ['dropped 1 row(s) with a missing hr or day: S02 R+0'])
    """
    if not isinstance(table, pd.DataFrame):
        raise _fail(
            feature,
            epoch,
            f"the features table must be a pandas DataFrame, got {type(table).__name__}",
        )
    absent = [c for c in ID_COLUMNS if c not in table.columns]
    if absent:
        raise _fail(
            feature,
            epoch,
            f"the features table lacks column(s) {absent} (needs {list(ID_COLUMNS)})",
        )
    if feature not in table.columns:
        candidates = [
            str(c)
            for c in table.columns
            if c not in ID_COLUMNS and pd.api.types.is_numeric_dtype(table[c])
        ]
        close = difflib.get_close_matches(str(feature), candidates, n=5, cutoff=0.5)
        hint = f"close names: {close}" if close else f"features: {candidates}"
        raise _fail(feature, epoch, f"no column {feature!r} in the features table; {hint}")
    covariates = [str(c) for c in covariates]
    absent = [c for c in covariates if c not in table.columns]
    if absent:
        raise _fail(
            feature,
            epoch,
            f"covariate column(s) {absent} not in the features table; merge them in "
            "first (e.g. table.merge(subjects[['subject', 'sex']], on='subject'))",
        )
    if int(min_subjects) < 1:
        raise _fail(feature, epoch, f"min_subjects must be >= 1, got {min_subjects!r}")

    epochs = table["epoch"].astype(str)
    if epoch not in set(epochs):
        raise _fail(
            feature,
            epoch,
            f"epoch {epoch!r} absent from column 'epoch' of the features table; "
            f"epochs: {sorted(set(epochs))}",
        )
    columns = list(dict.fromkeys(["subject", "session", "phase", "day", feature, *covariates]))
    rows = table.loc[(epochs == epoch).to_numpy(), columns]
    for col in ("subject", "session", "phase"):
        n_missing = int(rows[col].isna().sum())
        if n_missing:
            raise _fail(feature, epoch, f"column {col!r} has {n_missing} missing value(s)")
    rows = rows.assign(
        session=rows["session"].astype(str),
        phase=rows["phase"].astype(str),
        day=pd.to_numeric(rows["day"], errors="coerce").astype(float),
    )
    unknown = sorted(set(rows["phase"]) - set(PHASES))
    if unknown:
        raise _fail(
            feature, epoch, f"unknown phase(s) {unknown} in column 'phase' (expected {PHASES})"
        )
    values = _numeric(rows[feature], feature, epoch)
    if not np.isfinite(values.to_numpy()).any():
        raise _fail(feature, epoch, f"column {feature!r} is all NaN in this epoch")
    rows = rows.assign(**{feature: values})

    needed = list(dict.fromkeys([feature, "day", *covariates]))
    missing = ~np.isfinite(values.to_numpy()) | ~np.isfinite(rows["day"].to_numpy())
    missing |= rows[covariates].isna().any(axis=1).to_numpy()
    flags = []
    if missing.all():
        raise _fail(
            feature,
            epoch,
            f"no row has all of the columns {needed} present (where {feature!r} is, the "
            "day or a covariate is missing)",
        )
    if missing.any():
        dropped = rows.loc[missing, ["subject", "session"]].astype(str).agg(" ".join, axis=1)
        names = ", ".join(needed[:-1]) + f" or {needed[-1]}"
        flags.append(
            f"dropped {int(missing.sum())} row(s) with a missing {names}: "
            + ", ".join(dropped.tolist()[:_LISTED])
            + (" ..." if missing.sum() > _LISTED else "")
        )
        rows = rows.loc[~missing]
    rows = rows.reset_index(drop=True)

    n_subjects = int(rows["subject"].nunique())
    if n_subjects < min_subjects:
        raise _fail(
            feature,
            epoch,
            f"{n_subjects} subject(s) with data in column 'subject'; the model needs at "
            f"least {int(min_subjects)} (a random effect per subject needs 2 levels)",
        )
    v = rows[feature].to_numpy()
    if float(np.ptp(v)) == 0.0:
        raise _fail(
            feature,
            epoch,
            f"column {feature!r} has zero variance (every value is {v[0]:.6g}): nothing to model",
        )
    phases = set(rows["phase"])
    if require_pre and "pre" not in phases:
        raise _fail(
            feature,
            epoch,
            f"no pre-flight session (no row with phase 'pre' in column 'phase'): the "
            f"model measures change from the pre-flight level (phases: {sorted(phases)})",
        )
    if require_change and not phases & {"in", "post"}:
        raise _fail(
            feature,
            epoch,
            "no in-flight or post-flight session (no row with phase 'in' or 'post' in "
            "column 'phase'): nothing to compare with the pre-flight level",
        )

    units = table.attrs.get("units")
    units = str(units.get(feature, "")) if isinstance(units, dict) else ""
    return FeatureRows(rows=rows, flags=flags, units=units, feature=str(feature), epoch=str(epoch))
