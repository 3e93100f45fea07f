"""Linked multi-channel view of one recording session, with beats and protocol epochs.

The raw signals are drawn through :func:`holoviews.operation.datashader.rasterize`
(dynamic): a 1-hour 1 kHz ECG is read from its (dask) store once, then only the
visible time range is aggregated at screen resolution on each zoom or pan. Beat
markers (R-peaks, SBP/DBP, PSV/EDV) are HoloViews ``Scatter`` elements, decimated
when they exceed :data:`MAX_MARKERS` points.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import holoviews as hv
import numpy as np
import pandas as pd
import xarray as xr
from holoviews.operation import decimate
from holoviews.operation.datashader import rasterize

from ..errors import CardiolabError, SessionFormatError

__all__ = [
    "CHANNEL_COLORS",
    "EPOCH_COLORS",
    "M4_MIN_PER_PIXEL",
    "MAX_MARKERS",
    "TIME",
    "epoch_spans",
    "session_view",
]

log = logging.getLogger("cardiolab")

#: The one time dimension of every session and beat plot (shared x axis).
TIME = hv.Dimension("time", label="Time", unit="s")
#: Beat markers per element above which they are decimated (dynamically).
MAX_MARKERS = 20_000
#: Visible samples per pixel column above which a trace is M4-reduced before
#: datashader draws it (below, the reduction saves little and changes more pixels).
M4_MIN_PER_PIXEL = 128
#: Trace colour per raw group.
CHANNEL_COLORS = {"ecg": "#1f3b73", "abp": "#a3222b", "ldf": "#2e7d32", "doppler": "#6a3d9a"}
#: Shading of protocol epochs, by label (others cycle through ``_SPAN_CYCLE``).
EPOCH_COLORS = {"supine": "#8fb3d9", "stand": "#f2b880", "tilt": "#f2b880", "lbnp": "#c9a0dc"}
_SPAN_CYCLE = ("#b5d99c", "#e6c0c0", "#c0c0e6", "#d9d98f")
_MARK = {
    "peak": dict(marker="inverted_triangle", color="#e66100", size=7),
    "high": dict(marker="triangle", color="#e66100", size=6),
    "low": dict(marker="inverted_triangle", color="#1a85ff", size=6),
    "bad": dict(marker="x", color="red", size=8, line_width=2),
}
#: group -> (variable, axis label)
_CHANNELS = {
    "ecg": ("ecg", "ECG"),
    "abp": ("abp", "Arterial pressure"),
    "ldf": ("flux", "LDF flux"),
    "doppler": ("velocity", "velocity"),
}


# --------------------------------------------------------------------------------------
# protocol epochs
# --------------------------------------------------------------------------------------


def _protocol_rows(protocol) -> pd.DataFrame:
    """``label``, ``start``, ``stop`` rows from any accepted protocol form."""
    if isinstance(protocol, xr.DataTree):
        if "protocol" in protocol.children:
            protocol = protocol["protocol"]
        protocol = protocol.to_dataset(inherit=False)
    if isinstance(protocol, xr.Dataset):
        missing = [v for v in ("label", "start", "stop") if v not in protocol.variables]
        if missing:
            raise SessionFormatError(f"protocol group: variables {missing} missing")
        rows = pd.DataFrame(
            {
                "label": [str(v) for v in protocol["label"].values],
                "start": np.asarray(protocol["start"].values, dtype=float),
                "stop": np.asarray(protocol["stop"].values, dtype=float),
            }
        )
    elif isinstance(protocol, pd.DataFrame):
        missing = [c for c in ("label", "start", "stop") if c not in protocol.columns]
        if missing:
            raise CardiolabError(f"protocol table: columns {missing} missing")
        rows = protocol[["label", "start", "stop"]].astype({"start": float, "stop": float})
        rows = rows.assign(label=rows["label"].astype(str)).reset_index(drop=True)
    elif isinstance(protocol, Iterable):
        rows = []
        for e in protocol:
            if isinstance(e, Mapping):
                rows.append((str(e["label"]), float(e["start"]), float(e["stop"])))
            else:
                label, start, stop = e
                rows.append((str(label), float(start), float(stop)))
        rows = pd.DataFrame(rows, columns=["label", "start", "stop"])
    else:
        raise CardiolabError(
            f"protocol must be a protocol group, a session or (label, start, stop) rows, "
            f"not {type(protocol).__name__}"
        )
    bad = rows.index[~(rows["stop"] > rows["start"])].tolist()
    if bad:
        raise SessionFormatError(
            f"protocol epochs {rows.loc[bad, 'label'].tolist()}: stop must be after start"
        )
    return rows


def _epoch_color_map(labels) -> dict:
    out, k = {}, 0
    for lab in dict.fromkeys(labels):
        if lab in EPOCH_COLORS:
            out[lab] = EPOCH_COLORS[lab]
        else:
            out[lab] = _SPAN_CYCLE[k % len(_SPAN_CYCLE)]
            k += 1
    return out


def epoch_spans(protocol, *, alpha: float = 0.2) -> hv.VSpans:
    """Shaded time spans of a session's protocol epochs, one span per epoch.

    Parameters
    ----------
    protocol : xarray.Dataset, xarray.DataTree, pandas.DataFrame or iterable
        The ``protocol`` group of the data model (or the session node that holds
        it), a table with columns ``label``, ``start``, ``stop``, or
        ``(label, start, stop)`` tuples. Times in s from the session start.
    alpha : float
        Opacity of the shading.

    Returns
    -------
    holoviews.VSpans
        Key dimensions ``start``, ``stop`` (s); value dimension ``epoch`` (the
        label), coloured by label, with the label in the hover tooltip.

    Raises
    ------
    SessionFormatError
        If the protocol lacks a variable or an epoch stops before it starts.

    Examples
    --------
    >>> spans = epoch_spans([("supine", 0.0, 300.0), ("stand", 300.0, 600.0)])
    >>> len(spans)
    2
    >>> spans.dimension_values("epoch").tolist()
    ['supine', 'stand']
    """
    rows = _protocol_rows(protocol).rename(columns={"label": "epoch"})
    start = hv.Dimension("start", label="Epoch start", unit="s")
    stop = hv.Dimension("stop", label="Epoch stop", unit="s")
    colors = _epoch_color_map(rows["epoch"])
    return hv.VSpans(rows[["start", "stop", "epoch"]], kdims=[start, stop], vdims=["epoch"]).opts(
        backend="bokeh",
        color=hv.dim("epoch").categorize(colors, default="#cccccc"),
        alpha=alpha,
        line_width=0,
        tools=["hover"],
    )


def _epoch_shading(rows: pd.DataFrame, *, labels: bool, alpha: float = 0.2):
    """A bokeh plot hook that shades the protocol epochs (and labels them at the top).

    Drawn as bokeh ``BoxAnnotation`` / ``Label`` annotations of the figure, under the
    signal, rather than as a :func:`epoch_spans` layer of the overlay: on the 5-panel
    view of a 1-hour session, the spans as HoloViews layers took 0.2-0.25 s of the
    page build and a glyph renderer each in the browser. Idempotent: the hook runs
    again on every redraw and adds nothing twice.
    """
    from bokeh.models import BoxAnnotation, Label

    colors = _epoch_color_map(rows["label"])
    epochs = list(rows.itertuples(index=False))

    def shade(plot, element):
        fig = plot.state
        if any(_EPOCH_TAG in getattr(a, "tags", ()) for a in fig.center):
            return
        for e in epochs:
            fig.add_layout(
                BoxAnnotation(
                    left=e.start,
                    right=e.stop,
                    fill_color=colors[e.label],
                    fill_alpha=alpha,
                    line_alpha=0,
                    level="underlay",
                    tags=[_EPOCH_TAG],
                )
            )
            if labels:
                fig.add_layout(
                    Label(
                        x=(e.start + e.stop) / 2,
                        y=(fig.frame_height or 0) - 4,
                        x_units="data",
                        y_units="screen",
                        text=e.label,
                        text_align="center",
                        text_baseline="top",
                        text_font_size="9pt",
                        text_color="#444444",
                        tags=[_EPOCH_TAG],
                    )
                )

    return shade


_EPOCH_TAG = "cardiolab-epoch"


# --------------------------------------------------------------------------------------
# signals
# --------------------------------------------------------------------------------------


def _group(session: xr.DataTree, name: str) -> xr.Dataset | None:
    return session[name].to_dataset(inherit=False) if name in session.children else None


def _units(da: xr.DataArray, where: str) -> str | None:
    units = da.attrs.get("units")
    if units is None:
        log.warning("session_view: %s has no units attribute; its axis says so", where)
    return units


def _load_once(da: xr.DataArray) -> np.ndarray:
    """The samples as float64, computed once (a dask array chunk by chunk).

    float64, not float32: HoloViews' rasterize can build an Image whose float32
    coordinates disagree with its bounds ("Supplied Image bounds do not match"), and
    one dtype means one datashader compilation.
    """
    data = da.data
    if hasattr(data, "compute"):
        return np.asarray(data.astype(np.float64).compute())
    return np.asarray(data, dtype=np.float64)


def _window_extremum(values, starts, stops, *, mode="max") -> np.ndarray:
    """Sample index of the max (min) of ``values`` in each ``[start, stop)`` window.

    Windows are increasing; a window is cut at the start of the next valid one.
    Empty windows, all-NaN windows and windows outside the signal give -1; ties give
    the first sample. One ``ufunc.reduceat`` over the segments between window
    edges, then the first sample of each segment that equals its extremum.
    """
    n = values.size
    starts = np.asarray(starts, dtype=np.int64)
    stops = np.asarray(stops, dtype=np.int64)
    out = np.full(starts.size, -1, dtype=np.int64)
    ok = (starts >= 0) & (stops > starts) & (starts < n)
    if not ok.any():
        return out
    idx = np.flatnonzero(ok)
    a = starts[idx]
    b = np.minimum(np.minimum(stops[idx], n), np.r_[a[1:], n])  # disjoint by construction
    # segments between consecutive window edges: each window is one of them
    edges = np.unique(np.r_[a, b])
    lo = int(edges[0])
    fill = -np.inf if mode == "max" else np.inf
    seg = values[lo : int(edges[-1])]
    seg = np.where(np.isnan(seg), fill, seg)
    reduce = np.maximum.reduceat if mode == "max" else np.minimum.reduceat
    extreme = reduce(seg, edges[:-1] - lo)
    # first sample of each segment equal to its extremum
    hit = np.flatnonzero(seg == np.repeat(extreme, np.diff(edges)))
    owner = np.searchsorted(edges, hit + lo, side="right") - 1
    first_owner, first = np.unique(owner, return_index=True)
    pos = np.full(edges.size - 1, -1, dtype=np.int64)
    pos[first_owner] = hit[first] + lo
    win = np.searchsorted(edges, a)
    got = pos[win]
    good = (got >= 0) & np.isfinite(extreme[win]) & (b > a)
    out[idx[good]] = got[good]
    return out


def _visible_slice(time: np.ndarray, x_range) -> slice:
    """Sample slice covering ``x_range`` (s) plus one sample each side (time sorted)."""
    if x_range is None or time.size == 0:
        return slice(0, time.size)
    a, b = (float(x) for x in x_range)
    if not (np.isfinite(a) and np.isfinite(b)) or b < a:
        return slice(0, time.size)
    i0 = max(int(np.searchsorted(time, a, side="left")) - 1, 0)
    i1 = min(int(np.searchsorted(time, b, side="right")) + 1, time.size)
    return slice(i0, i1)


def _m4(time: np.ndarray, values: np.ndarray, bins: int) -> np.ndarray:
    """Indices of the M4 samples of a curve (Jugel et al. 2014): the first and last
    samples, and the first, last, min and max of each of ``bins`` equal time bins
    between them (``tsdownsample``; a bin holding NaN keeps one, so gaps stay gaps).

    With bins aligned to the screen's pixel columns, a line through these samples
    covers exactly the pixels of the whole curve; equal time bins are not aligned,
    so several per column are used. At 8 per column, on a 1-hour session drawn
    900 px wide (ECG, pressure, Doppler; whole record and two zooms), at most 0.3 %
    of the drawn pixels differ, single pixels where a bin straddles two columns.
    """
    from tsdownsample import NaNM4Downsampler

    n = values.size
    inner = NaNM4Downsampler().downsample(time[1:-1], values[1:-1], n_out=4 * bins) + 1
    return np.r_[0, inner, n - 1]


def _trace(values, time, ydim, color, width, height, span=None, streams=()) -> hv.DynamicMap:
    """A rasterised (dynamic, datashader) curve of one signal.

    The curve handed to datashader is cut to the visible time range first (a
    ``RangeX`` stream and a binary search on the sorted time), so that a zoom into a
    long recording aggregates only the samples on screen, not the whole record.
    When more than :data:`M4_MIN_PER_PIXEL` samples per pixel column are on screen,
    only their M4 samples (:func:`_m4`, 8 bins per column) go to datashader: the
    same image to 0.3 % of its pixels, at a fraction of the cost (a 1-hour 1 kHz
    ECG: 3.6 M samples -> 29 k, one image 0.28 s -> 0.02 s).

    ``span`` is the x range (s) the plot opens on (default: the signal's extent): the
    plot sets it on its range stream once drawn, and a range that is unchanged does
    not aggregate the image a second time. ``streams`` (e.g. a ``Tap``) get the image
    as their source.
    """
    frame = pd.DataFrame({TIME.name: time, ydim.name: values}, copy=False)

    def visible(x_range=None):
        part = _visible_slice(time, x_range)
        rows = frame.iloc[part]
        if part.stop - part.start > M4_MIN_PER_PIXEL * width:
            rows = rows.iloc[_m4(time[part], values[part], 8 * width)]
        return hv.Curve(rows, kdims=[TIME], vdims=[ydim])

    if span is None and time.size:
        span = (float(time[0]), float(time[-1]))
    source = hv.DynamicMap(visible, streams=[hv.streams.RangeX(x_range=span)])
    # width/height: the grid of a static render; a live plot follows its own size.
    # No range stream of rasterize's own: the source's RangeX already cuts the curve
    # to the view and the image covers the curve it is given (its own range stream
    # would also pass a whole-second zoom's integer bounds on to datashader, which
    # compiles a second, int-typed set of kernels for them: 6 s once)
    image = rasterize(source, width=width, height=height, streams=[hv.streams.PlotSize])
    for stream in streams:
        stream.source = image
    return image.opts(
        backend="bokeh",
        cmap=[color],
        colorbar=False,
        tools=[],
        default_tools=["save", "xpan", "xwheel_zoom", "xbox_zoom", "reset"],
    )


def _markers(x, y, beat, ydim, label, style) -> hv.Element | hv.DynamicMap | None:
    keep = np.isfinite(x) & np.isfinite(y)
    if not keep.any():
        return None
    frame = pd.DataFrame({TIME.name: x[keep], ydim.name: y[keep], "beat": beat[keep]})
    scatter = hv.Scatter(frame, kdims=[TIME], vdims=[ydim, "beat"], label=label).opts(
        backend="bokeh", tools=["hover"], **style
    )
    if keep.sum() > MAX_MARKERS:
        return decimate(scatter, max_samples=MAX_MARKERS, dynamic=True)
    return scatter


def _beat_array(beats, name, vessel=None) -> np.ndarray | None:
    if beats is None or name not in beats.variables:
        return None
    da = beats[name]
    if "vessel" in da.dims:
        if vessel is None or vessel not in [str(v) for v in beats["vessel"].values]:
            return None
        da = da.isel(vessel=[str(v) for v in beats["vessel"].values].index(vessel))
    return np.asarray(da.values)


def _ecg_marks(beats, values, fs, t0, ydim):
    t = _beat_array(beats, "t")
    if t is None:
        return []
    r = _beat_array(beats, "r_sample")
    if r is None:
        r = np.round((t - t0) * fs).astype(np.int64)
    r = np.asarray(r, dtype=np.int64)
    inside = (r >= 0) & (r < values.size)
    y = np.full(t.size, np.nan)
    y[inside] = values[r[inside]]
    beat = np.arange(t.size)
    flag = _beat_array(beats, "rr_flag")
    bad = flag != 0 if flag is not None else np.zeros(t.size, dtype=bool)
    return [
        _markers(t[~bad], y[~bad], beat[~bad], ydim, "R-peak", _MARK["peak"]),
        _markers(t[bad], y[bad], beat[bad], ydim, "R-peak (RR flagged)", _MARK["bad"]),
    ]


def _abp_marks(beats, values, fs, t0, ydim):
    onset = _beat_array(beats, "abp_onset")
    sbp, dbp = _beat_array(beats, "sbp"), _beat_array(beats, "dbp")
    if onset is None or sbp is None or dbp is None:
        return []
    beat = np.arange(onset.size)
    valid = _beat_array(beats, "abp_valid")
    valid = np.ones(onset.size, dtype=bool) if valid is None else valid.astype(bool)
    a = np.where(np.isfinite(onset), np.ceil((onset - t0) * fs - 1e-9), -1).astype(np.int64)
    b = np.r_[a[1:], -1]
    b = np.where(b > a, b, -1)
    i_sys = _window_extremum(values, a, b, mode="max")
    t_sys = np.where(i_sys >= 0, t0 + i_sys / fs, np.nan)
    return [
        _markers(t_sys[valid], sbp[valid], beat[valid], ydim, "SBP", _MARK["high"]),
        _markers(onset[valid], dbp[valid], beat[valid], ydim, "DBP", _MARK["low"]),
        _markers(t_sys[~valid], sbp[~valid], beat[~valid], ydim, "invalid beat", _MARK["bad"]),
    ]


def _doppler_marks(beats, values, fs, t0, ydim, vessel):
    t = _beat_array(beats, "t")
    psv, edv = _beat_array(beats, "psv", vessel), _beat_array(beats, "edv", vessel)
    if t is None or psv is None or edv is None:
        return []
    beat = np.arange(t.size)
    valid = _beat_array(beats, "doppler_valid", vessel)
    valid = np.ones(t.size, dtype=bool) if valid is None else valid.astype(bool)
    # PSV: the envelope's maximum between consecutive R-peaks; EDV: its minimum between
    # consecutive PSVs (the end-diastole of beat i precedes the upstroke of beat i + 1)
    r = np.round((t - t0) * fs).astype(np.int64)
    i_pk = _window_extremum(values, r, np.r_[r[1:], -1], mode="max")
    nxt = np.r_[i_pk[1:], -1]
    i_ed = _window_extremum(values, i_pk, np.where(nxt > i_pk, nxt, -1), mode="min")
    t_pk = np.where(i_pk >= 0, t0 + i_pk / fs, np.nan)
    t_ed = np.where(i_ed >= 0, t0 + i_ed / fs, np.nan)
    return [
        _markers(t_pk[valid], psv[valid], beat[valid], ydim, "PSV", _MARK["high"]),
        _markers(t_ed[valid], edv[valid], beat[valid], ydim, "EDV", _MARK["low"]),
        _markers(t_pk[~valid], psv[~valid], beat[~valid], ydim, "invalid beat", _MARK["bad"]),
    ]


def _resolve_channels(session, channels) -> list[tuple[str, str | None]]:
    """(group, vessel) pairs in display order; ``"doppler"`` expands to every vessel."""
    available = [g for g in _CHANNELS if g in session.children]
    wanted = available if channels is None else list(channels)
    if isinstance(channels, str):
        wanted = [channels]
    out = []
    for ch in wanted:
        group, _, vessel = str(ch).partition(":")
        if group not in _CHANNELS:
            raise CardiolabError(
                f"session_view: unknown channel {ch!r}; choose from {list(_CHANNELS)} "
                "(or 'doppler:<vessel>')"
            )
        if group not in session.children:
            raise SessionFormatError(
                f"session {_where(session)}: no {group!r} group to show (it has "
                f"{sorted(session.children)})"
            )
        if group == "doppler":
            ds = _group(session, "doppler")
            vessels = _vessel_names(ds)
            if vessel and vessel not in vessels:
                raise SessionFormatError(
                    f"session {_where(session)}: no Doppler vessel {vessel!r} (it has {vessels})"
                )
            out.extend(("doppler", v) for v in ([vessel] if vessel else vessels))
        else:
            out.append((group, None))
    if not out:
        raise SessionFormatError(f"session {_where(session)}: no signal group to show")
    return out


def _vessel_names(ds: xr.Dataset) -> list[str]:
    if "vessel" in ds.coords:
        return [str(v) for v in ds["vessel"].values]
    return [f"vessel {i}" for i in range(ds.sizes.get("vessel", 1))]


def _where(session) -> str:
    a = session.attrs
    if "subject" in a and "session" in a:
        return f"{a['subject']}/{a['session']}"
    return session.path


def session_view(
    session: xr.DataTree,
    beats: xr.Dataset | None = None,
    *,
    channels: Sequence[str] | None = None,
    rasterize: bool = True,
    width: int = 900,
    height: int = 170,
    ecg_streams: Sequence[hv.streams.Stream] = (),
) -> hv.Layout:
    """Linked view of a session's signals on one time axis, with beats and epochs.

    One panel per channel (ECG, arterial pressure, LDF flux, one per Doppler
    vessel), stacked in one column and sharing the time axis (zoom one, all follow).
    Each panel overlays the signal, the beat markers of ``beats`` (ECG: R-peaks;
    pressure: SBP at the beat's maximum and DBP at the pulse onset; Doppler: PSV at
    the envelope's maximum and EDV at its minimum before the next upstroke; beats
    that the beat table flags are red crosses) and the protocol epochs shaded
    (:func:`epoch_spans`, labelled in the first panel).

    Each signal is read from the (dask-backed) session once, as float64; with
    ``rasterize=True`` it is drawn through a dynamic datashader ``rasterize``, so only
    the visible time range is aggregated at screen resolution on each zoom.

    Parameters
    ----------
    session : xarray.DataTree
        A session node of the data model (groups ``ecg``, ``abp``, ``ldf``,
        ``doppler``, ``protocol``, any of them may be absent).
    beats : xarray.Dataset, optional
        Its beat table (:func:`cardiolab.signals.beats.beat_table`, or the ``beats``
        group of the derived store). Without it, no beat markers are drawn.
    channels : sequence of str, optional
        Groups to show, in order: ``"ecg"``, ``"abp"``, ``"ldf"``, ``"doppler"``
        (every vessel) or ``"doppler:<vessel>"``. Default: every group present.
    rasterize : bool
        Draw signals through datashader (default). ``False`` draws plain bokeh
        curves: only for short recordings (a few 10^5 samples).
    width, height : int
        Size of each panel (screen pixels).
    ecg_streams : sequence of holoviews.streams.Stream
        Streams whose source is the ECG signal (e.g. a ``holoviews.streams.Tap``:
        a click on the ECG panel gives its time ``x`` in s), for a review page that
        adds beats where the reviewer clicks.

    Returns
    -------
    holoviews.Layout
        One column of panels (``DynamicMap`` overlays when rasterised, ``Overlay``
        otherwise); the x dimension of every panel is :data:`TIME` (s), y axes are
        labelled with the channel's units.

    Raises
    ------
    SessionFormatError
        If a requested group or vessel is missing.
    CardiolabError
        If a channel name is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from cardiolab import schema
    >>> ecg = schema.signal_group(np.sin(np.arange(5000) / 50.0), 500.0, "ecg")
    >>> proto = schema.protocol_group([("supine", 0.0, 5.0), ("stand", 5.0, 10.0)])
    >>> node = schema.session_node({"ecg": ecg, "protocol": proto})
    >>> view = session_view(node)
    >>> [type(panel).__name__ for panel in view.values()]
    ['DynamicMap']
    >>> plain = session_view(node, rasterize=False).values()[0]
    >>> plain.Curve.I.kdims, plain.Curve.I.vdims
    ([Dimension('time', label='Time', unit='s')], [Dimension('ecg', label='ECG', unit='mV')])
    """
    do_raster = rasterize
    chans = _resolve_channels(session, channels)
    groups = {g: _group(session, g) for g, _ in chans}
    times = {g: ds.indexes["time"].to_numpy() for g, ds in groups.items()}
    # the shared time axis opens on the union of the channels' extents
    extents = [t for t in times.values() if t.size]
    span = (
        (min(float(t[0]) for t in extents), max(float(t[-1]) for t in extents)) if extents else None
    )
    proto = _group(session, "protocol")
    rows = _protocol_rows(proto) if proto is not None and proto.sizes.get("epoch", 0) else None
    panels = []
    for k, (group, vessel) in enumerate(chans):
        ds, time = groups[group], times[group]
        variable, label = _CHANNELS[group]
        da = ds[variable]
        where = f"{_where(session)} {group}/{variable}"
        if vessel is not None and "vessel" in da.dims:
            da = da.isel(vessel=_vessel_names(ds).index(vessel))
            label = f"{vessel.upper() if len(vessel) <= 3 else vessel.capitalize()} {label}"
        if "sampling_rate" not in ds.attrs:
            raise SessionFormatError(f"{where}: group attribute 'sampling_rate' missing")
        fs = float(ds.attrs["sampling_rate"])
        name = variable if vessel is None else f"{variable}_{vessel}"
        ydim = hv.Dimension(name, label=label, unit=_units(da, where))
        if not do_raster and da.size > 500_000:
            log.warning(
                "session_view: %s has %d samples drawn without rasterize; the browser "
                "may struggle (use rasterize=True)",
                where,
                da.size,
            )
        values = _load_once(da)
        t0 = float(time[0]) if time.size else 0.0
        color = CHANNEL_COLORS[group]
        streams = ecg_streams if group == "ecg" else ()
        if do_raster:
            layers = [_trace(values, time, ydim, color, width, height, span, streams)]
        else:
            frame = pd.DataFrame({TIME.name: time, ydim.name: values}, copy=False)
            layers = [
                hv.Curve(frame, kdims=[TIME], vdims=[ydim]).opts(
                    backend="bokeh", color=color, line_width=1
                )
            ]
        if beats is not None:
            if group == "ecg":
                marks = _ecg_marks(beats, values, fs, t0, ydim)
            elif group == "abp":
                marks = _abp_marks(beats, values, fs, t0, ydim)
            elif group == "doppler":
                marks = _doppler_marks(beats, values, fs, t0, ydim, vessel)
            else:
                marks = []
            layers.extend(m for m in marks if m is not None)
        hooks = [_epoch_shading(rows, labels=k == 0)] if rows is not None else []
        overlay = hv.Overlay(layers) if not do_raster else _overlay(layers)
        # a lone rasterised trace is an Image, which has no legend
        legend = dict(legend_position="right", show_legend=True) if len(layers) > 1 else {}
        panels.append(
            overlay.opts(
                backend="bokeh",
                frame_width=width,
                frame_height=height,
                title=_where(session) if k == 0 else "",
                xlabel=None if k == len(chans) - 1 else "",
                hooks=hooks,
                **legend,
            )
        )
        if not do_raster:
            for stream in streams:
                stream.source = panels[-1]
    return hv.Layout(panels).opts(backend="bokeh", shared_axes=True).cols(1)


def _overlay(layers):
    """``a * b * ...`` (a DynamicMap when the first layer is one)."""
    out = layers[0]
    for layer in layers[1:]:
        out = out * layer
    return out
