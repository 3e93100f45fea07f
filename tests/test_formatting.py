"""cardiolab.formatting: p values, days, titles and result tables as a reviewer reads them,
and the plots and pages that use them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cardiolab.formatting import display_table, format_day, format_days, format_p, wrap_title


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (0.0, "< 0.001"),
        (7.995647e-10, "< 0.001"),
        (0.000999, "< 0.001"),
        (0.001, "0.001"),
        (0.0009999999, "< 0.001"),
        (0.009491073, "0.0095"),
        (0.0524, "0.052"),
        (0.8304, "0.83"),
        (1.0, "1"),
        (np.float64(3e-5), "< 0.001"),
        (float("nan"), ""),
        (None, ""),
    ],
)
def test_format_p(p, text):
    assert format_p(p) == text


def test_format_p_refuses_what_is_not_a_p_value():
    with pytest.raises(ValueError, match="not a p value"):
        format_p(1.5)
    with pytest.raises(ValueError, match="not a p value"):
        format_p(-1e-9)


@pytest.mark.parametrize(
    ("day", "text"),
    [(-60.0, "day -60"), (-30, "day -30"), (0.25, "day 0.25"), (-0.0, "day 0"), (12.0, "day 12")],
)
def test_format_day(day, text):
    assert format_day(day) == text
    assert format_days(day) == text.removeprefix("day ")


def test_format_days_of_a_missing_day():
    assert format_days(float("nan")) == "" == format_days(None)


def test_wrap_title_keeps_every_word_within_the_width():
    title = (
        "hr (supine): profile of tau_r\nτ = 1.24 d, 95% CI 0.1 to ∞ d "
        "(open: not reached within the bounds)"
    )
    wrapped = wrap_title(title, 450)
    lines = wrapped.split("\n")
    assert len(lines) == 3
    assert max(len(line) for line in lines) <= 450 / 7.5
    assert wrapped.split() == title.split()  # no word lost or cut
    assert lines[0] == "hr (supine): profile of tau_r"


def test_display_table_formats_p_and_day_and_leaves_the_input():
    frame = pd.DataFrame(
        {
            "timepoint": ["FD5", "R+0", "R+6h"],
            "day": [5.0, 0.0, 0.25],
            "estimate": [2.00549123, 5.41747812, -0.1],
            "p": [9.491e-3, 7.99e-10, 0.5],
            "p_holm": [4.7e-2, 6.4e-9, 1.0],
            "n": [8, 8, 8],
        }
    )
    before = frame.copy()
    shown = display_table(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert shown["day"].tolist() == ["5", "0", "0.25"]
    assert shown["p"].tolist() == ["0.0095", "< 0.001", "0.5"]
    assert shown["p_holm"].tolist() == ["0.047", "< 0.001", "1"]
    np.testing.assert_array_equal(shown["estimate"], [2.0055, 5.4175, -0.1])
    assert shown["n"].tolist() == [8, 8, 8]


# --- where they are used -------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    """Phase contrasts and time course of a table drawn from the effects model, with a
    landing-day rise far beyond chance (p << 0.001) and an open tau interval title."""
    from cardiolab.stats.design import simulate_feature_table
    from cardiolab.stats.mixed import phase_contrasts
    from cardiolab.stats.timecourse import fit_time_course

    table = simulate_feature_table(
        n_subjects=8,
        pre=62.0,
        A=3.0,
        tau_a=4.0,
        D=15.0,
        tau_r=3.0,
        between_sd=5.0,
        residual_sd=1.0,
        feature="hr",
        seed=1,
    )
    return phase_contrasts(table, "hr"), fit_time_course(table, "hr")


def test_forest_plot_hover_shows_p_as_text(fitted):
    import holoviews as hv
    from bokeh.models import HoverTool

    from cardiolab.viz import forest_plot

    contrasts, _ = fitted
    assert contrasts.table["p"].min() < 1e-6
    plot = forest_plot(contrasts)
    points = pd.concat([el.dframe() for el in plot if isinstance(el, hv.Scatter)])
    assert points["p_text"].tolist() == [format_p(p) for p in contrasts.table["p"]]
    assert "< 0.001" in points["p_text"].tolist()
    fig = hv.render(plot, backend="bokeh")
    hovers = list(fig.select(HoverTool))
    assert hovers
    for hover in hovers:
        tooltips = dict(hover.tooltips)
        assert tooltips["p"] == "@{p_text}" and tooltips["p (Holm)"] == "@{p_holm_text}"
    # the legend sits outside the plot frame: it covers no point
    legend = fig.legend[0]
    assert legend in fig.right


def test_tau_profile_title_fits_its_width(fitted):
    import holoviews as hv

    from cardiolab.viz import tau_profile

    _, tc = fitted
    width = 300
    fig = hv.render(tau_profile(tc, "tau_r", width=width), backend="bokeh")
    lines = fig.title.text.split("\n")
    assert len(lines) >= 2
    assert all(len(line) * 7.5 <= width for line in lines), lines
    assert math.isfinite(tc.params.loc["tau_r", "estimate"])


def test_phase_contrasts_repr_writes_small_p_values_as_below_0_001(fitted):
    contrasts, _ = fitted
    assert "< 0.001" in repr(contrasts)
    assert " 0.0\n" not in repr(contrasts)
