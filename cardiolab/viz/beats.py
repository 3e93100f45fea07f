"""Beat-to-beat series of a session: per-beat values over time, quality flags visible.

Both functions take a beat table (:func:`cardiolab.signals.beats.beat_table`, or the
``beats`` group of the derived store): dim ``beat``, ``t`` (s), one variable per
per-beat quantity (``(beat, vessel)`` for Doppler indices) and the validity flags
``valid`` (RR), ``abp_valid``, ``ldf_valid``, ``doppler_valid``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import holoviews as hv
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import CardiolabError
from .session import TIME

__all__ = ["BEAT_LABELS", "VALIDITY", "beat_points", "beat_series"]

log = logging.getLogger("cardiolab")

#: Short axis labels of beat-table variables.
BEAT_LABELS = {
    "rr": "RR interval",
    "rr_corrected": "RR interval (corrected)",
    "hr": "Heart rate",
    "sbp": "SBP",
    "dbp": "DBP",
    "map": "MAP",
    "pp": "Pulse pressure",
    "psv": "PSV",
    "edv": "EDV",
    "tamv": "TAMV",
    "ri": "Resistive index",
    "pi": "Pulsatility index",
    "flux": "LDF flux",
    "cvc": "CVC",
}
#: Which validity flags of the beat table a variable's value depends on.
VALIDITY = {
    "rr": ("valid",),
    "rr_corrected": ("valid",),
    "hr": ("valid",),
    "sbp": ("abp_valid",),
    "dbp": ("abp_valid",),
    "map": ("abp_valid",),
    "pp": ("abp_valid",),
    "abp_onset": ("abp_valid",),
    "psv": ("doppler_valid",),
    "edv": ("doppler_valid",),
    "tamv": ("doppler_valid",),
    "ri": ("doppler_valid",),
    "pi": ("doppler_valid",),
    "flux": ("ldf_valid",),
    "cvc": ("abp_valid", "ldf_valid"),
}
_VESSEL_COLORS = ("#6a3d9a", "#b15928", "#1f78b4", "#33a02c")
_VALID_COLOR = "#1f3b73"
_INVALID = dict(marker="x", color="red", size=9, line_width=2)
_FLAGGED = dict(
    marker="circle", size=11, fill_alpha=0, line_color="#ff7f00", line_width=2, color="#ff7f00"
)


def _vessels(beats: xr.Dataset) -> list[str]:
    return [str(v) for v in beats["vessel"].values] if "vessel" in beats.coords else []


def _check_variable(beats: xr.Dataset, variable: str) -> xr.DataArray:
    if "t" not in beats.variables:
        raise CardiolabError("beat table: variable 't' (R-peak time, s) missing")
    if variable not in beats.data_vars:
        numeric = [v for v in beats.data_vars if beats[v].dtype.kind == "f" and v != "t"]
        raise CardiolabError(f"beat table has no variable {variable!r}; it has {numeric}")
    da = beats[variable]
    if "beat" not in da.dims:
        raise CardiolabError(f"beat table variable {variable!r} has no 'beat' dimension")
    return da


def _value_dim(da: xr.DataArray, variable: str, vessel: str | None = None) -> hv.Dimension:
    label = BEAT_LABELS.get(variable, variable)
    if vessel is not None:
        label = f"{vessel} {label}"
    name = variable if vessel is None else f"{variable}_{vessel}"
    return hv.Dimension(name, label=label, unit=da.attrs.get("units") or None)


def _validity(beats: xr.Dataset, variable: str, vessel: str | None) -> np.ndarray:
    """Per-beat trust of ``variable`` (all flags it depends on must be true)."""
    n = beats.sizes["beat"]
    ok = np.ones(n, dtype=bool)
    for flag in VALIDITY.get(variable, ()):
        if flag not in beats.variables:
            continue
        f = beats[flag]
        if "vessel" in f.dims:
            f = f.sel(vessel=vessel) if vessel is not None else f.all("vessel")
        ok &= np.asarray(f.values, dtype=bool)
    return ok


def _flag_mask(flagged, n: int) -> np.ndarray:
    """Boolean mask of user-flagged beats from a mask or beat indices."""
    if flagged is None:
        return np.zeros(n, dtype=bool)
    arr = np.asarray(flagged)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise CardiolabError(f"flagged: a boolean mask must have one value per beat ({n})")
        return arr.copy()
    idx = arr.astype(np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise CardiolabError(f"flagged: beat indices must be in 0..{n - 1}")
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    return mask


def _frame(beats, variable, vessel, ydim) -> pd.DataFrame:
    da = beats[variable]
    if "vessel" in da.dims:
        da = da.sel(vessel=vessel)
    n = beats.sizes["beat"]
    epoch = (
        np.asarray(beats["epoch"].values, dtype=str)
        if "epoch" in beats.variables
        else np.full(n, "", dtype=str)
    )
    return pd.DataFrame(
        {
            TIME.name: np.asarray(beats["t"].values, dtype=float),
            ydim.name: np.asarray(da.values, dtype=float),
            "beat": np.arange(n),
            "valid": _validity(beats, variable, vessel),
            "epoch": epoch,
        }
    )


def _series_layers(frame, ydim, color, label, flag_mask) -> list:
    vdims = [ydim, "beat", "epoch"]
    good = frame["valid"].to_numpy()
    line = frame[[TIME.name, ydim.name]].copy()
    line.loc[~good, ydim.name] = np.nan  # breaks the line across untrusted beats
    layers = [
        hv.Curve(line, kdims=[TIME], vdims=[ydim], label=label).opts(
            backend="bokeh", color=color, line_width=1
        ),
        hv.Scatter(frame[good], kdims=[TIME], vdims=vdims, label=label).opts(
            backend="bokeh", color=color, size=3, tools=["hover"]
        ),
    ]
    bad = frame[~good & np.isfinite(frame[ydim.name])]
    if len(bad):
        layers.append(
            hv.Scatter(bad, kdims=[TIME], vdims=vdims, label="invalid").opts(
                backend="bokeh", tools=["hover"], **_INVALID
            )
        )
    marked = frame[flag_mask & np.isfinite(frame[ydim.name])]
    if len(marked):
        layers.append(
            hv.Scatter(marked, kdims=[TIME], vdims=vdims, label="flagged").opts(
                backend="bokeh", tools=["hover"], **_FLAGGED
            )
        )
    return layers


def beat_series(
    beats: xr.Dataset,
    variables: Sequence[str] = ("rr", "sbp", "flux"),
    *,
    flagged=None,
    width: int = 900,
    height: int = 160,
) -> hv.Layout:
    """Beat-to-beat series over time, one panel per variable on a shared time axis.

    Trusted beats are joined by a line (broken across untrusted ones); beats whose
    quality flags say not to trust the value (see :data:`VALIDITY`) are red crosses,
    and beats flagged by the user are ringed in orange. Doppler indices (dims
    ``beat``, ``vessel``) get one line per vessel in their panel. Hover shows the beat
    index, its time, value and epoch.

    Parameters
    ----------
    beats : xarray.Dataset
        A beat table (dim ``beat``; ``t`` in s).
    variables : sequence of str
        Beat-table variables to show, one panel each (e.g. ``"rr"`` in ms, ``"sbp"``
        in mmHg, ``"flux"`` in PU, ``"psv"`` in cm/s).
    flagged : array-like of int or bool, optional
        Beats flagged by the user: beat indices, or a boolean mask over beats.
    width, height : int
        Size of each panel's plot area (screen pixels).

    Returns
    -------
    holoviews.Layout
        One ``Overlay`` per variable, in one column; x dimension :data:`TIME` (s), y
        dimension named after the variable with its units.

    Raises
    ------
    CardiolabError
        If a variable is not in the beat table, or ``flagged`` names no beat of it.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> beats = xr.Dataset(
    ...     {
    ...         "t": ("beat", np.arange(5.0)),
    ...         "rr": ("beat", [np.nan, 1000, 990, 1500, 1010], {"units": "ms"}),
    ...         "valid": ("beat", [True, True, True, False, True]),
    ...     }
    ... )
    >>> layout = beat_series(beats, ["rr"], flagged=[2])
    >>> panel = layout.values()[0]
    >>> [el.label for el in panel]
    ['RR interval', 'RR interval', 'invalid', 'flagged']
    >>> panel.get(2).dimension_values("beat").tolist()
    [3]
    """
    if isinstance(variables, str):
        variables = [variables]
    if not variables:
        raise CardiolabError("beat_series: no variable to show")
    n = beats.sizes.get("beat", 0)
    flag_mask = _flag_mask(flagged, n)
    panels = []
    for k, variable in enumerate(variables):
        da = _check_variable(beats, variable)
        layers = []
        if "vessel" in da.dims:
            ydim = _value_dim(da, variable)
            for k, vessel in enumerate(_vessels(beats)):
                frame = _frame(beats, variable, vessel, ydim)
                color = _VESSEL_COLORS[k % len(_VESSEL_COLORS)]
                layers.extend(_series_layers(frame, ydim, color, vessel, flag_mask))
        else:
            ydim = _value_dim(da, variable)
            frame = _frame(beats, variable, None, ydim)
            label = BEAT_LABELS.get(variable, variable)
            layers.extend(_series_layers(frame, ydim, _VALID_COLOR, label, flag_mask))
        panels.append(
            hv.Overlay(layers).opts(
                backend="bokeh",
                frame_width=width,
                frame_height=height,
                legend_position="right",
                title=BEAT_LABELS.get(variable, variable),
                xlabel=None if k == len(variables) - 1 else "",
            )
        )
    return hv.Layout(panels).opts(backend="bokeh", shared_axes=True).cols(1)


def beat_points(
    beats: xr.Dataset,
    variable: str,
    *,
    vessel: str | None = None,
    width: int | None = None,
    height: int = 220,
) -> hv.Scatter:
    """Per-beat values as a selectable Scatter: row ``i`` is beat ``i``.

    Meant as the source of a :class:`holoviews.streams.Selection1D` (tap or box
    select) or :class:`holoviews.streams.BoundsX` stream, from which a dashboard
    flags beats: every beat of the table is a row, in beat order, so a selection's
    ``index`` is the list of selected beat indices (also in the ``beat`` column).
    Untrusted beats are red.

    Parameters
    ----------
    beats : xarray.Dataset
        A beat table (dim ``beat``; ``t`` in s).
    variable : str
        Beat-table variable (e.g. ``"rr"``, ms).
    vessel : str, optional
        Doppler vessel, required for ``(beat, vessel)`` variables such as ``"psv"``.
    width : int, optional
        Plot-area width (screen pixels); default: as wide as its container
        (``responsive``), as a dashboard wants.
    height : int
        Plot height (screen pixels).

    Returns
    -------
    holoviews.Scatter
        Key dimension :data:`TIME` (s); value dimensions: the variable (with units),
        ``beat`` (int), ``valid`` (bool), ``epoch``; tools ``tap``, ``box_select``,
        ``hover``.

    Raises
    ------
    CardiolabError
        If the variable is not in the beat table, or a vessel is needed and missing.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> import holoviews as hv
    >>> beats = xr.Dataset(
    ...     {"t": ("beat", [0.0, 1.0, 2.0]), "sbp": ("beat", [118.0, 121.0, 119.5])}
    ... )
    >>> points = beat_points(beats, "sbp")
    >>> selection = hv.streams.Selection1D(source=points)
    >>> selection.event(index=[1, 2])
    >>> points.iloc[selection.index].dimension_values("beat").tolist()
    [1, 2]
    """
    da = _check_variable(beats, variable)
    if "vessel" in da.dims:
        vessels = _vessels(beats)
        if vessel is None or vessel not in vessels:
            raise CardiolabError(
                f"beat_points: {variable!r} is per vessel; give vessel= one of {vessels}"
            )
    else:
        vessel = None
    ydim = _value_dim(da, variable, vessel)
    frame = _frame(beats, variable, vessel, ydim)
    label = BEAT_LABELS.get(variable, variable)
    size = (
        {"responsive": True, "height": height}
        if width is None
        else {"frame_width": width, "frame_height": height}
    )
    return hv.Scatter(
        frame, kdims=[TIME], vdims=[ydim, "beat", "valid", "epoch"], label=label
    ).opts(
        backend="bokeh",
        # a categorical colour mapper (drawn by the browser), not a colour per beat
        # (validated one by one by bokeh: 3x the time of the plot on a 1-hour session)
        color="valid",
        cmap={True: _VALID_COLOR, False: "red"},
        show_legend=False,
        size=5,
        tools=["tap", "box_select", "hover"],
        active_tools=["box_select"],
        nonselection_alpha=0.25,
        title=label,
        **size,
    )
