"""cardiolab.viz: session view, beat series and cohort plots (structure, numbers, render).

A 1-minute session with a 1 kHz ECG is simulated once (module fixture) and its beat
table computed; the cohort plots are fed real phase contrasts and a real time course
fitted to a small features table drawn from the simulator's effects model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import holoviews as hv
import numpy as np
import pandas as pd
import pytest
from holoviews.operation import decimate
from holoviews.operation.datashader import rasterize
from holoviews.streams import RangeX, RangeXY

from cardiolab.errors import CardiolabError, SessionFormatError
from cardiolab.viz import (
    beat_points,
    beat_series,
    epoch_spans,
    forest_plot,
    session_view,
    tau_profile,
    timeline,
)
from cardiolab.viz.cohort import LR_CUTOFF, PHASE_AXES

PNG_DIR = Path("/tmp/viz_png")
#: PNG snapshots for a human are written only on request (each costs a browser start)
WRITE_PNG = os.environ.get("CARDIOLAB_VIZ_PNG", "") not in ("", "0")


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session_and_beats(tmp_path_factory):
    """A simulated 1-minute session (ECG 1 kHz, ABP, LDF, two Doppler vessels) and beats."""
    from cardiolab.catalog import open_catalog
    from cardiolab.signals.beats import beat_table
    from cardiolab.simulate import simulate_campaign

    path = tmp_path_factory.mktemp("viz") / "sim"
    simulate_campaign(
        path,
        n_subjects=1,
        schedule=["R+0"],
        duration_min=1,
        rates={"ecg": 1000.0},
        seed=11,
        workers=1,
        progress=False,
    )
    session = open_catalog(path / "data_catalog.yaml").open_session("S01", "R+0")
    return session, beat_table(session)


SCHEDULE = ["L-60", "L-30", "FD5", "FD15", "FD25", "R+0", "R+1", "R+3", "R+10", "R+30"]


def _features_table(n_subjects=8, pre=62.0, A=4.0, tau_a=5.0, D=10.0, tau_r=3.0, seed=0):
    """A features table drawn from the simulator's effects model (hr, bpm)."""
    from cardiolab.labels import parse_session_label

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_subjects):
        pre_i = pre * (1 + 0.1 * rng.standard_normal())
        for label in SCHEDULE:
            s = parse_session_label(label)
            effect = {
                "pre": 0.0,
                "in": A * (1 - np.exp(-s.day / tau_a)),
                "post": D * np.exp(-s.day / tau_r),
            }[s.phase]
            rows.append(
                dict(
                    subject=f"S{i + 1:02d}",
                    session=label,
                    phase=s.phase,
                    day=s.day,
                    epoch="supine",
                    hr=pre_i + effect + 1.5 * rng.standard_normal(),
                )
            )
    table = pd.DataFrame(rows)
    table.attrs["units"] = {"hr": "bpm"}
    return table


@pytest.fixture(scope="module")
def features():
    return _features_table()


@pytest.fixture(scope="module")
def contrasts(features):
    mixed = pytest.importorskip("cardiolab.stats.mixed", reason="cardiolab.stats.mixed absent")
    return mixed.phase_contrasts(features, "hr")


@pytest.fixture(scope="module")
def time_course(features):
    tc = pytest.importorskip(
        "cardiolab.stats.timecourse", reason="cardiolab.stats.timecourse absent"
    )
    return tc.fit_time_course(features, "hr")


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _walk(obj):
    """Every DynamicMap reachable from obj through operation/overlay callbacks."""
    if isinstance(obj, hv.DynamicMap):
        yield obj
        for inp in obj.callback.inputs:
            yield from _walk(inp)


def _elements(overlay, kind):
    """Layers of ``kind`` in an overlay (or the element itself: a lone layer)."""
    layers = overlay if isinstance(overlay, hv.Overlay) else [overlay]
    return [el for el in layers if isinstance(el, kind)]


def _evaluate(panel):
    return panel[()] if isinstance(panel, hv.DynamicMap) else panel


def _figures(bokeh_obj):
    from bokeh.models import GridPlot

    if isinstance(bokeh_obj, GridPlot):
        return [child[0] for child in bokeh_obj.children]
    return [bokeh_obj]


def _save_png(obj, path: Path) -> Path | None:
    """PNG of a HoloViews object for a human to look at: headless Chromium, if any."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    html = path.with_suffix(".html")
    html.write_text(file_html(hv.render(obj, backend="bokeh"), INLINE, path.stem))
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1250,1150",
        "--virtual-time-budget=5000",
        f"--screenshot={path}",
        html.as_uri(),
    ]
    subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    return path if path.exists() and path.stat().st_size > 0 else None


# --------------------------------------------------------------------------------------
# epochs
# --------------------------------------------------------------------------------------


def test_epoch_spans_from_rows_table_and_group(session_and_beats):
    spans = epoch_spans([("supine", 0.0, 300.0), ("stand", 300.0, 600.0)])
    assert isinstance(spans, hv.VSpans)
    assert spans.dimension_values("epoch").tolist() == ["supine", "stand"]
    np.testing.assert_array_equal(spans.dimension_values("start"), [0.0, 300.0])
    np.testing.assert_array_equal(spans.dimension_values("stop"), [300.0, 600.0])
    table = pd.DataFrame({"label": ["a"], "start": [1.0], "stop": [2.5]})
    assert epoch_spans(table).dimension_values("stop").tolist() == [2.5]
    session, _ = session_and_beats
    proto = session["protocol"].to_dataset(inherit=False)
    from_group = epoch_spans(proto)
    assert len(from_group) == proto.sizes["epoch"]
    np.testing.assert_array_equal(from_group.dimension_values("start"), proto["start"].values)


def test_epoch_spans_rejects_reversed_epoch():
    with pytest.raises(SessionFormatError, match="stand"):
        epoch_spans([("supine", 0.0, 300.0), ("stand", 600.0, 300.0)])


# --------------------------------------------------------------------------------------
# session view
# --------------------------------------------------------------------------------------


def test_session_view_one_panel_per_channel_on_one_time_axis(session_and_beats):
    session, beats = session_and_beats
    view = session_view(session, beats)
    panels = view.values()
    # ECG, arterial pressure, LDF, one per Doppler vessel
    assert len(panels) == 5
    ydims = []
    for panel in panels:
        assert isinstance(panel, hv.DynamicMap)
        overlay = _evaluate(panel)
        (image,) = _elements(overlay, hv.Image)
        assert image.kdims[0].name == "time" and image.kdims[0].unit == "s"
        ydims.append(image.kdims[1])
        # LDF has no beat markers: its panel is the image alone
        for el in _elements(overlay, hv.Scatter):
            if isinstance(el, hv.Scatter):
                assert el.kdims[0].name == "time"
    assert [d.name for d in ydims] == ["ecg", "abp", "flux", "velocity_femoral", "velocity_mca"]
    assert [d.unit for d in ydims] == ["mV", "mmHg", "PU", "cm/s", "cm/s"]


def test_session_view_is_rasterized_dynamically(session_and_beats):
    session, _ = session_and_beats
    view = session_view(session, channels=["ecg"])
    (panel,) = view.values()
    ops = [dm.callback.operation for dm in _walk(panel) if hasattr(dm.callback, "operation")]
    assert any(isinstance(op, rasterize) for op in ops)
    plain = session_view(session, channels=["ecg"], rasterize=False).values()[0]
    assert isinstance(plain, hv.Overlay)
    (curve,) = _elements(plain, hv.Curve)
    assert len(curve) == session["ecg"].sizes["time"] == 60_000


def test_window_extremum_matches_a_direct_search():
    """Max/min position per window, against a per-window nanargmax: gaps between
    windows, windows cut by the next start, NaN, all-NaN and out-of-range windows."""
    from cardiolab.viz.session import _window_extremum

    def direct(v, a, b, mode):
        valid = [(s, e) for s, e in zip(a, b, strict=True) if 0 <= s < v.size and e > s]
        out = []
        for s, e in zip(a, b, strict=True):
            if not (0 <= s < v.size and e > s):
                out.append(-1)
                continue
            nxt = [x for x, _ in valid if x > s] + [v.size]
            seg = v[s : min(e, v.size, nxt[0])]
            if seg.size == 0 or np.isnan(seg).all():
                out.append(-1)
            else:
                out.append(s + int(np.nanargmax(seg) if mode == "max" else np.nanargmin(seg)))
        return np.array(out)

    rng = np.random.default_rng(3)
    for trial in range(400):
        n = int(rng.integers(5, 2000))
        v = rng.normal(size=n)
        v[rng.random(n) < 0.05] = np.nan
        if trial % 5 == 0:
            v = np.round(v)  # ties: the first sample wins
        k = int(rng.integers(1, 30))
        a = np.unique(rng.integers(-5, n + 5, k))
        b = np.r_[a[1:], -1]
        b = np.where(rng.random(a.size) < 0.2, -1, b)
        b = np.where(rng.random(a.size) < 0.3, a + rng.integers(0, 15, a.size), b)
        for mode in ("max", "min"):
            np.testing.assert_array_equal(
                _window_extremum(v, a, b, mode=mode), direct(v, a, b, mode)
            )


def test_m4_reduction_draws_the_same_pixels():
    """datashader image of a 20-min 1 kHz trace and of its M4 samples (8 bins per
    pixel column): at most 0.5 % of the drawn pixels differ, whole view and zooms."""
    import datashader as ds

    from cardiolab.viz.session import _m4, _visible_slice

    rng = np.random.default_rng(0)
    t = np.arange(1_200_000) / 1000.0
    beat = np.sin(2 * np.pi * 1.1 * t) ** 41  # sharp, ECG-like peaks
    y = beat + 0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * 0.1 * t)
    y[500_000:503_000] = np.nan  # a dropout stays a gap
    width, height = 900, 170
    for x_range in [(0.0, t[-1]), (100.25, 700.75), (1000.5, 1130.0)]:
        part = _visible_slice(t, x_range)
        tt, yy = t[part], y[part]
        idx = _m4(tt, yy, 8 * width)
        assert idx.size <= 32 * width + 2 and idx[0] == 0 and idx[-1] == tt.size - 1
        canvas = ds.Canvas(
            plot_width=width,
            plot_height=height,
            x_range=x_range,
            y_range=(float(np.nanmin(yy)), float(np.nanmax(yy))),
        )
        full = canvas.line(pd.DataFrame({"t": tt, "y": yy}), "t", "y", agg=ds.any()).values
        reduced = canvas.line(
            pd.DataFrame({"t": tt[idx], "y": yy[idx]}), "t", "y", agg=ds.any()
        ).values
        assert (full != reduced).sum() <= 0.005 * full.sum(), x_range
        if x_range[0] == 0.0:
            assert np.isnan(yy[idx]).any()  # the gap is kept


def test_session_view_aggregates_each_trace_once_when_drawn(session_and_beats, monkeypatch):
    """First draw: one datashader aggregation per panel (the plot's first range
    update, equal to the opening range, does not aggregate again)."""
    import datashader

    session, beats = session_and_beats
    calls = []
    original = datashader.Canvas.line

    def counting(self, source, *args, **kwargs):
        calls.append(len(source))
        return original(self, source, *args, **kwargs)

    monkeypatch.setattr(datashader.Canvas, "line", counting)
    hv.render(session_view(session, beats), backend="bokeh")
    assert len(calls) == 5


def test_session_view_aggregates_only_the_visible_range(session_and_beats):
    session, _ = session_and_beats
    (panel,) = session_view(session, channels=["ecg"]).values()
    dmaps = list(_walk(panel))
    streams = [s for dm in dmaps for s in dm.streams if isinstance(s, RangeX | RangeXY)]
    assert any(isinstance(s, RangeX) for s in streams)
    for s in streams:
        s.update(x_range=(20.0, 30.0))
    hv.streams.Stream.trigger(streams)
    # the curve handed to datashader: 10 s at 1 kHz plus one sample on each side
    source = next(dm for dm in dmaps if any(isinstance(s, RangeX) for s in dm.streams))
    curve = source[()]
    assert len(curve) == 10_001 + 2
    t = curve.dimension_values("time")
    assert t[0] <= 20.0 <= t[1] and t[-2] <= 30.0 <= t[-1]
    (image,) = _elements(_evaluate(panel), hv.Image)
    # the image covers the curve it is given: the view and one sample each side
    assert image.range("time") == pytest.approx((t[0], t[-1]), abs=1e-9)


def test_session_view_beat_markers_sit_on_the_beats(session_and_beats):
    session, beats = session_and_beats
    overlays = [_evaluate(p) for p in session_view(session, beats).values()]
    ecg = session["ecg"].to_dataset(inherit=False)["ecg"].values
    t = beats["t"].values
    ok = beats["rr_flag"].values == 0
    # R-peaks: at the beat times, on the ECG samples of the R-peaks
    rpk = next(el for el in overlays[0] if isinstance(el, hv.Scatter) and el.label == "R-peak")
    np.testing.assert_allclose(rpk.dimension_values("time"), t[ok], atol=1e-12)
    np.testing.assert_allclose(
        rpk.dimension_values("ecg"), ecg[beats["r_sample"].values[ok]], rtol=1e-6
    )
    np.testing.assert_array_equal(rpk.dimension_values("beat"), np.flatnonzero(ok))
    # SBP: the beat table's value, at the pressure maximum between consecutive onsets
    abp = session["abp"].to_dataset(inherit=False)
    p, fs = abp["abp"].values, abp.attrs["sampling_rate"]
    sbp = next(el for el in overlays[1] if el.label == "SBP")
    beat = sbp.dimension_values("beat").astype(int)
    assert beat.size >= 0.8 * beats["abp_valid"].values.sum()
    np.testing.assert_allclose(sbp.dimension_values("abp"), beats["sbp"].values[beat])
    onset = beats["abp_onset"].values
    x = sbp.dimension_values("time")
    assert np.all((x >= onset[beat]) & (x < onset[beat + 1]))
    i = np.rint(x * fs).astype(int)
    a, b = np.ceil(onset[beat] * fs - 1e-9).astype(int), np.ceil(onset[beat + 1] * fs - 1e-9)
    window_max = [p[i0 : int(i1)].max() for i0, i1 in zip(a, b, strict=True)]
    np.testing.assert_allclose(p[i], window_max, rtol=1e-6)
    # the smoothed SBP of the table is within 3 mmHg of the raw maximum it marks
    assert np.max(np.abs(p[i] - beats["sbp"].values[beat])) < 3.0
    # DBP at the pulse onsets
    dbp = next(el for el in overlays[1] if el.label == "DBP")
    np.testing.assert_allclose(dbp.dimension_values("time"), onset[dbp.dimension_values("beat")])
    # PSV: after its R-peak and before the next one's pulse; EDV after the PSV
    for overlay, vessel in zip(overlays[3:], ["femoral", "mca"], strict=True):
        psv = next(el for el in overlay if el.label == "PSV")
        beat = psv.dimension_values("beat").astype(int)
        np.testing.assert_allclose(
            psv.dimension_values(f"velocity_{vessel}"),
            beats["psv"].sel(vessel=vessel).values[beat],
        )
        lag = psv.dimension_values("time") - t[beat]
        assert np.all(lag > 0.05) and np.median(lag) < 0.5
        edv = next(el for el in overlay if el.label == "EDV")
        common = np.intersect1d(edv.dimension_values("beat"), beat)
        t_pk = dict(zip(beat, psv.dimension_values("time"), strict=True))
        t_ed = dict(zip(edv.dimension_values("beat"), edv.dimension_values("time"), strict=True))
        assert all(t_ed[k] > t_pk[k] for k in common)


def test_session_view_renders_with_one_shared_time_axis(session_and_beats):
    session, beats = session_and_beats
    view = session_view(session, beats, width=800, height=150)
    plot = hv.render(view, backend="bokeh")
    figures = _figures(plot)
    assert len(figures) == 5
    assert len({id(f.x_range) for f in figures}) == 1
    assert figures[0].yaxis[0].axis_label == "ECG (mV)"
    assert figures[1].yaxis[0].axis_label == "Arterial pressure (mmHg)"
    assert figures[-1].xaxis[0].axis_label == "Time (s)"
    # protocol epochs shaded under every panel, labelled at the top of the first
    from bokeh.models import BoxAnnotation, Label

    proto = session["protocol"].to_dataset(inherit=False)
    epochs = list(zip(proto["start"].values, proto["stop"].values, strict=True))
    for k, fig in enumerate(figures):
        boxes = [a for a in fig.center if isinstance(a, BoxAnnotation)]
        np.testing.assert_allclose([(b.left, b.right) for b in boxes], epochs, rtol=1e-12)
        assert all(b.level == "underlay" and b.fill_alpha == 0.2 for b in boxes)
        labels = [a.text for a in fig.center if isinstance(a, Label)]
        assert labels == ([str(v) for v in proto["label"].values] if k == 0 else [])
    # a zoom redraws the panels: no second set of epochs
    live = hv.renderer("bokeh").get_plot(view)
    streams = [s for p in view.values() for dm in _walk(p) for s in dm.streams]
    zoom = [s for s in streams if isinstance(s, RangeX)]
    for s in zoom:
        s.update(x_range=(10.0, 20.0))
    hv.streams.Stream.trigger(zoom)
    for fig in _figures(live.state):
        assert len([a for a in fig.center if isinstance(a, BoxAnnotation)]) == len(epochs)


def test_session_view_channel_choice_and_errors(session_and_beats):
    session, beats = session_and_beats
    (only,) = session_view(session, beats, channels=["doppler:mca"]).values()
    (image,) = _elements(_evaluate(only), hv.Image)
    assert image.kdims[1].name == "velocity_mca"
    with pytest.raises(CardiolabError, match="unknown channel 'bp'"):
        session_view(session, channels=["bp"])
    with pytest.raises(SessionFormatError, match="carotid"):
        session_view(session, channels=["doppler:carotid"])
    ecg_only = session.copy()
    for group in ("abp", "ldf", "doppler"):
        del ecg_only[group]
    with pytest.raises(SessionFormatError, match="no 'abp' group"):
        session_view(ecg_only, channels=["abp"])
    assert len(session_view(ecg_only, beats).values()) == 1


# --------------------------------------------------------------------------------------
# beats
# --------------------------------------------------------------------------------------


def test_beat_series_panels_flags_and_render(session_and_beats):
    _, beats = session_and_beats
    n = beats.sizes["beat"]
    layout = beat_series(beats, ("rr", "sbp", "flux", "psv"), flagged=[5, 7])
    panels = layout.values()
    assert len(panels) == 4
    for panel in panels:
        assert all(el.kdims[0].name == "time" for el in panel)
    # RR: untrusted beats (RR flagged) with a value are the red crosses
    rr = beats["rr"].values
    bad = np.flatnonzero(~beats["valid"].values & np.isfinite(rr))
    crosses = [el for el in panels[0] if el.label == "invalid"]
    got = crosses[0].dimension_values("beat") if crosses else np.array([], dtype=int)
    np.testing.assert_array_equal(got, bad)
    # SBP: untrusted pressure beats; the line is broken (NaN) exactly there
    sbp_bad = np.flatnonzero(~beats["abp_valid"].values & np.isfinite(beats["sbp"].values))
    assert sbp_bad.size > 0
    (cross,) = [el for el in panels[1] if el.label == "invalid"]
    np.testing.assert_array_equal(cross.dimension_values("beat"), sbp_bad)
    (line,) = _elements(panels[1], hv.Curve)
    assert np.all(np.isnan(line.dimension_values("sbp")[sbp_bad]))
    # user flags: beats 5 and 7, in every panel where they have a value
    (ring,) = [el for el in panels[0] if el.label == "flagged"]
    np.testing.assert_array_equal(ring.dimension_values("beat"), [5, 7])
    np.testing.assert_allclose(ring.dimension_values("rr"), rr[[5, 7]])
    # Doppler: one line per vessel
    assert {el.label for el in _elements(panels[3], hv.Curve)} == {"femoral", "mca"}
    mask = np.zeros(n, dtype=bool)
    mask[[5, 7]] = True
    same = beat_series(beats, ["rr"], flagged=mask).values()[0]
    ring_mask = next(el for el in same if el.label == "flagged")
    np.testing.assert_array_equal(ring_mask.dimension_values("beat"), [5, 7])
    figures = _figures(hv.render(layout, backend="bokeh"))
    assert len({id(f.x_range) for f in figures}) == 1
    with pytest.raises(CardiolabError, match="'nope'"):
        beat_series(beats, ["nope"])
    with pytest.raises(CardiolabError, match="beat indices"):
        beat_series(beats, ["rr"], flagged=[n + 3])


def test_beat_points_exposes_the_beat_index_for_selection(session_and_beats):
    _, beats = session_and_beats
    n = beats.sizes["beat"]
    points = beat_points(beats, "rr")
    assert isinstance(points, hv.Scatter)
    assert [d.name for d in points.vdims] == ["rr", "beat", "valid", "epoch"]
    assert points.vdims[0].unit == "ms"
    # row i is beat i
    np.testing.assert_array_equal(points.dimension_values("beat"), np.arange(n))
    np.testing.assert_allclose(points.dimension_values("time"), beats["t"].values)
    opts = hv.Store.lookup_options("bokeh", points, "plot").kwargs
    assert {"tap", "box_select"} <= set(opts["tools"])
    selection = hv.streams.Selection1D(source=points)
    selection.event(index=[3, 10, 11])
    assert points.iloc[selection.index].dimension_values("beat").tolist() == [3, 10, 11]
    t = beats["t"].values
    bounds = hv.streams.BoundsX(source=points)
    bounds.event(boundsx=(t[20] - 1e-6, t[24] + 1e-6))
    inside = points.select(time=bounds.boundsx).dimension_values("beat")
    np.testing.assert_array_equal(inside, np.arange(20, 25))
    femoral = beat_points(beats, "psv", vessel="femoral")
    np.testing.assert_allclose(
        femoral.dimension_values("psv_femoral"), beats["psv"].sel(vessel="femoral").values
    )
    with pytest.raises(CardiolabError, match="vessel"):
        beat_points(beats, "psv")
    # beats the detector rejects are red, the others blue (a colour mapper, per beat)
    from bokeh.models import GlyphRenderer

    marked = beats.copy()
    marked["valid"] = marked["valid"].copy(data=np.arange(n) % 7 != 3)
    fig = hv.render(beat_points(marked, "rr"), backend="bokeh")
    (glyph,) = [r for r in fig.renderers if isinstance(r, GlyphRenderer)]
    color = glyph.glyph.fill_color
    mapper = dict(zip(color.transform.factors, color.transform.palette, strict=True))
    shown = [mapper[v] for v in glyph.data_source.data[color.field]]
    expected = np.where(np.arange(n) % 7 != 3, "#1f3b73", "red")
    assert shown == expected.tolist()


# --------------------------------------------------------------------------------------
# cohort
# --------------------------------------------------------------------------------------


def test_forest_plot_points_are_the_contrasts(contrasts):
    tab = contrasts.table
    plot = forest_plot(contrasts)
    scatters = _elements(plot, hv.Scatter)
    assert [s.label for s in scatters] == ["in flight", "post-flight"]
    points = pd.concat([s.dframe() for s in scatters]).set_index("timepoint")
    assert points.index.tolist() == [str(t) for t in tab.index]  # schedule order
    np.testing.assert_allclose(points["change"], tab["estimate"], rtol=0, atol=0)
    np.testing.assert_allclose(points["p_holm"], tab["p_holm"], rtol=0, atol=0)
    np.testing.assert_allclose(points["df"], tab["df"], rtol=0, atol=0)  # hover shows df
    assert plot.opts.get().kwargs["title"].endswith(f"95% CI, {contrasts.inference}")
    assert contrasts.inference == "Satterthwaite t"  # the default
    (bars,) = _elements(plot, hv.ErrorBars)
    est = bars.dimension_values("change")
    np.testing.assert_allclose(est - bars.dimension_values("minus"), tab["ci_low"], atol=1e-12)
    np.testing.assert_allclose(est + bars.dimension_values("plus"), tab["ci_high"], atol=1e-12)
    (zero,) = _elements(plot, hv.HLine)
    assert zero.data == 0.0
    assert plot.Scatter.In_flight.vdims[0].unit == "bpm"
    # the landing-day rise of the effects model (D = 10 bpm) is inside its CI
    assert tab.loc["R+0", "ci_low"] < 10.0 < tab.loc["R+0", "ci_high"]
    pct = forest_plot(contrasts, percent=True)
    got = pd.concat([s.dframe() for s in _elements(pct, hv.Scatter)])
    np.testing.assert_allclose(got["change"], tab["percent"], atol=0)
    assert pct.Scatter.In_flight.vdims[0].unit == "%"
    fig = hv.render(plot, backend="bokeh")
    assert fig.yaxis[0].axis_label == "Change in hr from pre-flight (bpm)"


def test_timeline_curve_is_the_fitted_curve(time_course):
    tc = time_course
    layout = timeline(tc)
    panels = layout.values()
    assert [p.values()[0].kdims[0].name for p in panels] == [a for a, _ in PHASE_AXES.values()]
    curve = tc.curve()
    b0 = tc.params.loc["b0", "estimate"]
    for panel, phase in zip(panels, ["pre", "in", "post"], strict=True):
        expected = curve[curve["phase"] == phase].sort_values("day")
        fit = next(el for el in panel if el.label == "population fit")
        np.testing.assert_allclose(fit.dimension_values(0), expected["day"], atol=0)
        np.testing.assert_allclose(fit.dimension_values("hr"), expected["estimate"], atol=0)
        (band,) = _elements(panel, hv.Area)
        np.testing.assert_allclose(band.dimension_values("hr"), expected["ci_low"], atol=0)
        np.testing.assert_allclose(band.dimension_values("ci_high"), expected["ci_high"], atol=0)
        (base,) = _elements(panel, hv.HLine)
        assert base.data == pytest.approx(b0, abs=0)
        # every subject's points of the phase are drawn
        pts = pd.concat([el.dframe() for el in _elements(panel, hv.Scatter)])
        data = tc.data[tc.data["phase"] == phase]
        assert len(pts) == len(data)
        np.testing.assert_allclose(np.sort(pts["hr"]), np.sort(data["value"]), atol=0)
    figures = _figures(hv.render(layout, backend="bokeh"))
    assert len({id(f.y_range) for f in figures}) == 1  # one y axis for the three phases
    assert [f.xaxis[0].axis_label for f in figures] == [
        "Days to launch (d)",
        "Flight day (d)",
        "Days after landing (d)",
    ]


def test_timeline_from_a_table_alone(features):
    layout = timeline(table=features, feature="hr", epoch="supine")
    panels = layout.values()
    assert len(panels) == 3
    assert not any(_elements(p, hv.Area) for p in panels)
    pre = features[features["phase"] == "pre"]
    expected = pre.groupby("subject")["hr"].mean().mean()
    (base,) = _elements(panels[0], hv.HLine)
    assert base.data == pytest.approx(expected, rel=1e-12)
    # each subject's values joined in day order: one Segments for the crew
    (lines,) = _elements(panels[2], hv.Segments)
    segs = lines.dframe()
    s01 = segs[segs["subject"] == "S01"]
    rows = features[(features["subject"] == "S01") & (features["phase"] == "post")]
    rows = rows.sort_values("day")
    np.testing.assert_allclose(s01["y0"], rows["hr"].to_numpy()[:-1], atol=0)
    np.testing.assert_allclose(s01["y1"], rows["hr"].to_numpy()[1:], atol=0)
    np.testing.assert_allclose(s01["x0"], rows["day"].to_numpy()[:-1], atol=0)
    assert len(segs) == sum(
        max(n - 1, 0) for n in features[features["phase"] == "post"].groupby("subject")["hr"].size()
    )
    (points,) = _elements(panels[2], hv.Scatter)
    assert points.opts.get().kwargs["color"] == "subject"  # one colour per subject
    hv.render(layout, backend="bokeh")
    with pytest.raises(CardiolabError, match="epoch 'stand'"):
        timeline(table=features, feature="hr", epoch="stand")
    with pytest.raises(CardiolabError, match="give a time course"):
        timeline(table=features)


def test_tau_profile_marks_cut_and_interval(time_course):
    tc = time_course
    plot = tau_profile(tc, "tau_r")
    prof = tc.profile["tau_r"].sort_values("tau")
    (curve,) = _elements(plot, hv.Curve)
    np.testing.assert_allclose(curve.dimension_values("tau"), prof["tau"], atol=0)
    np.testing.assert_allclose(curve.dimension_values("lr"), prof["lr"], atol=0)
    (cut,) = _elements(plot, hv.HLine)
    assert cut.data == pytest.approx(3.841458820694124, abs=1e-12) == LR_CUTOFF
    row = tc.params.loc["tau_r"]
    (span,) = _elements(plot, hv.VSpan)
    assert span.data == pytest.approx((row["ci_low"], row["ci_high"]), rel=1e-12)
    (mark,) = _elements(plot, hv.VLine)
    assert mark.data == pytest.approx(row["estimate"])
    # the effects model's tau_r (3 days) is inside the profile interval
    assert row["ci_low"] < 3.0 < row["ci_high"]
    fig = hv.render(plot, backend="bokeh")
    assert type(fig.x_scale).__name__ == "LogScale"
    hv.render(tau_profile(tc, "tau_a"), backend="bokeh")
    with pytest.raises(CardiolabError, match="no profile of 'D'"):
        tau_profile(tc, "D")


# --------------------------------------------------------------------------------------
# snapshots for a human (opt-in)
# --------------------------------------------------------------------------------------


@pytest.mark.skipif(not WRITE_PNG, reason="set CARDIOLAB_VIZ_PNG=1 to write /tmp/viz_png/*.png")
def test_write_png_snapshots(session_and_beats, time_course):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("no headless Chromium (Debian package chromium): no PNG written")
    session, beats = session_and_beats
    written = [
        _save_png(session_view(session, beats), PNG_DIR / "session_view.png"),
        _save_png(timeline(time_course), PNG_DIR / "timeline.png"),
    ]
    assert all(p is not None and p.stat().st_size > 10_000 for p in written)


def test_session_view_decimates_dense_markers(session_and_beats, monkeypatch):
    import cardiolab.viz.session as session_module

    session, beats = session_and_beats
    monkeypatch.setattr(session_module, "MAX_MARKERS", 20)
    (panel,) = session_view(session, beats, channels=["ecg"]).values()
    n_peaks = int((beats["rr_flag"].values == 0).sum())
    assert n_peaks > 20
    decimated = [
        dm for dm in _walk(panel) if isinstance(getattr(dm.callback, "operation", None), decimate)
    ]
    assert decimated
    rpk = next(el for el in _evaluate(panel) if el.label == "R-peak")
    assert 0 < len(rpk) <= 20
    assert set(rpk.dimension_values("beat")) <= set(np.flatnonzero(beats["rr_flag"].values == 0))


def test_timeline_says_bed_rest_days_for_a_bed_rest_schedule(features):
    to_bedrest = {"L-60": "BDC-9", "L-30": "BDC-3", "FD5": "HDT5", "FD15": "HDT15", "FD25": "HDT25"}
    table = features.assign(session=features["session"].replace(to_bedrest))
    table.attrs = features.attrs
    figures = _figures(hv.render(timeline(table=table, feature="hr"), backend="bokeh"))
    assert [f.xaxis[0].axis_label for f in figures] == [
        "Days to bed rest (d)",
        "Head-down tilt day (d)",
        "Days after bed rest (d)",
    ]


# --------------------------------------------------------------------------------------
# dashboards: the models' flags, the schedule order
# --------------------------------------------------------------------------------------


def _shown_text(pane) -> tuple[str, str]:
    """The HTML a pane sends to the browser, and the text the browser shows of it."""
    import html
    import re

    sent = html.unescape(pane.get_root().text)  # Panel escapes the HTML for transport
    return sent, html.unescape(re.sub(r"<[^>]+>", "", sent))


def test_cohort_page_shows_every_flag_of_its_models_as_written(monkeypatch):
    """Every flag of the contrasts and of the time course is in the Cohort page's flags
    pane, word for word; text quoting the data (here a subject name with HTML, Markdown
    and TeX in it) shows as written, never as markup."""
    import dataclasses

    import cardiolab.stats.mixed as mixed
    from cardiolab.dashboards.cohort import CohortPage

    hostile = "subject <img src=x onerror=alert(1)> at R+0: *SE* [1e6](javascript:x) $$x$$"
    real = mixed.phase_contrasts

    def with_a_hostile_flag(*args, **kwargs):
        result = real(*args, **kwargs)
        return dataclasses.replace(result, flags=[*result.flags, hostile])

    monkeypatch.setattr(mixed, "phase_contrasts", with_a_hostile_flag)
    table = _features_table(n_subjects=4, seed=3)
    page = CohortPage(table=table, feature="hr", epoch="supine")
    flags = [("phase contrasts", f) for f in page._contrast_result.flags]
    flags += [("time course", f) for f in page._time_course.flags]
    assert page._flags.visible and hostile in page._contrast_result.flags
    sent, shown = _shown_text(page._flags)
    assert "<img" not in sent and "<em>" not in sent and "<a " not in sent
    assert f"{len(flags)} flag{'s' if len(flags) > 1 else ''}" in shown
    for what, flag in flags:
        assert f"{what}: {' '.join(flag.split())}" in shown
    assert page._flags.disable_math
    # the flags are no longer mixed into the summary above them
    assert hostile not in _shown_text(page._summary)[1]
    # the summary names the contrasts' inference method
    assert (
        "Phase contrasts: 95 % CIs and p values by Satterthwaite t" in _shown_text(page._summary)[1]
    )

    # both models unfittable: both reasons shown (the second no longer replaces the first)
    monkeypatch.setattr(mixed, "phase_contrasts", real)
    page.param.feature.objects = [*page.param.feature.objects, "flat"]
    page._table = table.assign(flat=1.0)
    page.feature = "flat"
    assert page._message.visible and not page._flags.visible
    shown = _shown_text(page._message)[1]
    assert "phase contrasts: " in shown and "time course: " in shown and "flat" in shown


def test_cohort_page_fits_once_and_updates_its_figures_in_place(monkeypatch):
    """A feature's models are fitted once per page (a switch back reuses them), and a
    switch between features whose figures have the same layers updates the shown
    DynamicMaps through their stream instead of building new figures."""
    import cardiolab.stats.results as results
    from cardiolab.dashboards.cohort import CohortPage

    calls = []
    real = results.feature_models

    def counted(table, feature, epoch):
        calls.append((feature, epoch))
        return real(table, feature, epoch)

    monkeypatch.setattr(results, "feature_models", counted)
    table = _features_table(n_subjects=6, seed=5)
    table = table.assign(hr2=table["hr"] * 1.1 + 3.0)
    table.attrs = {"units": {"hr": "bpm", "hr2": "bpm"}}
    page = CohortPage(table=table, feature="hr", epoch="supine")
    timeline_dmaps = page._timeline.object
    assert all(isinstance(p, hv.DynamicMap) for p in timeline_dmaps.values())
    page.feature = "hr2"
    page.feature = "hr"
    assert calls == [("hr", "supine"), ("hr2", "supine")]
    # same layers (hr2 is hr rescaled): the panes keep their DynamicMaps
    assert page._timeline.object is timeline_dmaps
    shown = timeline_dmaps.values()[2][()]  # the post-flight panel as drawn now
    post = table[(table["phase"] == "post")]
    (points,) = _elements(shown, hv.Scatter)
    np.testing.assert_allclose(np.sort(points.dimension_values(1)), np.sort(post["hr"]))


def test_campaign_page_orders_sessions_by_schedule():
    from cardiolab.dashboards.campaign import status_matrix
    from cardiolab.labels import parse_session_label

    labels = ["R+30", "FD5", "L-30", "R+6h", "R+0", "L-180", "FD15"]
    parsed = [parse_session_label(lab) for lab in labels]
    status = pd.DataFrame(
        {
            "subject": ["S01"] * len(labels),
            "session": labels,
            "phase": [p.phase for p in parsed],
            "day": [float(p.day) for p in parsed],
            "status": "processed",
        }
    )
    matrix = status_matrix(status)
    assert list(matrix.columns) == ["L-180", "L-30", "FD5", "FD15", "R+0", "R+6h", "R+30"]


def test_campaign_quality_heatmap_renders_with_arrow_strings():
    """pandas >= 3 stores strings as Arrow arrays when pyarrow is installed; HoloViews
    cannot reshape those into a HeatMap grid (NotImplementedError). The page's heatmap
    must render either way."""
    from cardiolab.dashboards.campaign import quality_heatmap

    pytest.importorskip("pyarrow", reason="Arrow-backed strings need pyarrow")
    status = pd.DataFrame(
        {
            "subject": pd.array(["S01", "S01", "S02", "S02"], dtype="string[pyarrow]"),
            "session": pd.array(["R+0", "L-30", "L-30", "R+0"], dtype="string[pyarrow]"),
            "phase": ["post", "pre", "pre", "post"],
            "day": [0, -30, -30, 0],
            "status": pd.array(["processed"] * 4, dtype="string[pyarrow]"),
            "valid_fraction": [0.9, 0.95, 1.0, 0.99],
            "n_beats": [100, 200, 300, 400],
        }
    )
    fig = hv.render(quality_heatmap(status), backend="bokeh")
    assert list(fig.x_range.factors) == ["L-30", "R+0"]
