"""How numbers of results read on a page, in a plot's hover and in a report.

One home for the display form of the values a reviewer reads: p values (never
``0.0``), mission days (``day -60``, never ``day -60.0``), plot titles (wrapped to
the plot's width, never cut off) and result tables (:func:`display_table`). The
dashboards, the plots' hover text and the reports all call these.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd

__all__ = [
    "P_FLOOR",
    "P_COLUMNS",
    "display_table",
    "format_day",
    "format_p",
    "format_days",
    "wrap_title",
]

#: Smallest p value written as a number; below it, ``"< 0.001"``.
P_FLOOR = 1e-3
#: Columns of result tables that hold p values.
P_COLUMNS = ("p", "p_holm")
#: Mean width of a character of a bokeh title (bold 13 px sans-serif), in screen pixels.
_TITLE_CHAR_PX = 7.5


def format_p(p) -> str:
    """A p value as it is reported: ``"< 0.001"`` below 0.001, else 2 significant digits.

    Follows the APA Publication Manual (7th ed., section 6.36): exact p values to two
    or three decimals, and ``p < .001`` for smaller ones (here with the leading zero,
    as the tables' other numbers have). A p value is never written ``0.0``.

    Parameters
    ----------
    p : float or None
        A p value in [0, 1].

    Returns
    -------
    str
        ``"< 0.001"``, ``"0.0095"``, ``"0.052"``, ``"0.83"``, ``"1"``; ``""`` for a
        missing value (None, NaN).

    Raises
    ------
    ValueError
        If ``p`` is outside [0, 1].

    Examples
    --------
    >>> [format_p(p) for p in (8e-10, 0.0, 0.000999, 0.001, 0.009491, 0.05224, 0.83)]
    ['< 0.001', '< 0.001', '< 0.001', '0.001', '0.0095', '0.052', '0.83']
    """
    if p is None or (isinstance(p, float | np.floating) and math.isnan(p)):
        return ""
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"format_p: {p!r} is not a p value (outside [0, 1])")
    if p < P_FLOOR:
        return f"< {P_FLOOR:g}"
    return f"{p:.2g}"


def format_days(day) -> str:
    """A number of days without a useless decimal: ``-60``, ``0.25``; ``""`` if missing.

    Session days are whole days (``L-60``: -60) or fractions for hours after landing
    (``R+6h``: 0.25); floats of whole days lose their ``.0``.

    Examples
    --------
    >>> [format_days(d) for d in (-60.0, 5, 0.25, -0.0, float("nan"))]
    ['-60', '5', '0.25', '0', '']
    """
    if day is None:
        return ""
    day = float(day)
    if math.isnan(day):
        return ""
    return f"{day + 0.0:.6g}"  # + 0.0: -0.0 reads 0


def format_day(day) -> str:
    """A session's day relative to its phase anchor: ``"day -60"``, ``"day 0.25"``.

    Examples
    --------
    >>> format_day(-60.0)
    'day -60'
    """
    return f"day {format_days(day)}"


def wrap_title(text: str, width_px: float) -> str:
    """A plot title broken into lines that fit ``width_px`` (bokeh draws one line per
    ``\\n`` and cuts, never wraps, a longer one).

    Each line of ``text`` is wrapped at word boundaries to
    ``width_px / 7.5`` characters (a bokeh title's bold 13 px font).

    Parameters
    ----------
    text : str
        The title; existing line breaks are kept.
    width_px : float
        Width of the plot (screen pixels).

    Examples
    --------
    >>> print(wrap_title("hr (supine): profile of tau_r (open: not reached)", 200))
    hr (supine): profile of tau_r
    (open: not reached)
    """
    chars = max(int(width_px / _TITLE_CHAR_PX), 10)
    return "\n".join(
        "\n".join(textwrap.wrap(line, chars, break_on_hyphens=False) or [""])
        for line in str(text).split("\n")
    )


def display_table(frame: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """A copy of a results table for reading: p values and days as text, the rest rounded.

    Columns :data:`P_COLUMNS` become :func:`format_p` text, a ``day`` column
    :func:`format_days` text, other float columns are rounded to ``digits`` decimals.
    The input is not changed.

    Parameters
    ----------
    frame : pandas.DataFrame
        E.g. ``PhaseContrasts.table.reset_index()`` or ``TimeCourse.params``.
    digits : int
        Decimals of the other float columns.

    Returns
    -------
    pandas.DataFrame
        Same shape, index and columns.

    Examples
    --------
    >>> t = pd.DataFrame({"day": [-60.0, 0.25], "estimate": [1.234567, 2.0],
    ...                   "p": [2e-9, 0.0412]})
    >>> display_table(t).to_dict("list")
    {'day': ['-60', '0.25'], 'estimate': [1.2346, 2.0], 'p': ['< 0.001', '0.041']}
    """
    out = frame.copy()
    for col in out.columns:
        if col in P_COLUMNS:
            out[col] = [format_p(v) for v in out[col]]
        elif col == "day":
            out[col] = [format_days(v) for v in out[col]]
        elif pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].round(digits)
    return out
