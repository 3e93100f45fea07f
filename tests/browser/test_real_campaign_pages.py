"""The served dashboard on a campaign of real recordings (the README's catalog).

Real sessions hold one or two channels (ECG, with arterial pressure in the MIMIC
record), one protocol epoch, and pre- and post-flight sessions only: the three pages
must draw them as they are, without console errors.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from .conftest import ServedApp  # noqa: E402
from .pages import BEAT_PLOT, wait_for_plots  # noqa: E402


@pytest.fixture(scope="module")
def served_real(real_campaign):
    catalog, env, done = real_campaign
    assert done.returncode == 0, done.stdout + done.stderr
    app = ServedApp(catalog, env=env)
    yield app.start()
    app.stop()


def wait_idle(page):
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length && Bokeh.documents[0].is_idle"
    )


def test_session_page_draws_a_real_recording(served_real, page, console):
    page.goto(served_real.page_url("session"))
    # the first session: MIT-BIH 100's CSV export, one ECG panel, then the beat plot
    wait_for_plots(page, "S01/L-30", 1)
    wait_for_plots(page, BEAT_PLOT, 1)
    expect(page.get_by_text(re.compile(r"\b148 beats\b")).first).to_be_visible()
    console.check()


def test_cohort_page_loads(served_real, page, console):
    page.goto(served_real.page_url("cohort"))
    wait_idle(page)
    expect(page.get_by_text("Feature", exact=True).first).to_be_visible()
    console.check()


def test_campaign_page_lists_every_session_processed(served_real, page, console):
    page.goto(served_real.page_url("campaign"))
    expect(
        page.get_by_text(re.compile(r"5 subjects, 9 sessions; 9 processed, 0 failed"))
    ).to_be_visible()
    wait_idle(page)
    console.check()


def test_session_page_draws_a_beat_level_session(served_real, page, console):
    """An R-R file has no waveform: the page shows its beat series under its name."""
    page.goto(served_real.page_url("session"))
    wait_for_plots(page, "S01/L-30", 1)
    page.get_by_label("Subject", exact=True).select_option("S04")
    page.get_by_label("Session", exact=True).select_option("R+1")
    expect(page.get_by_text("S04/R+1 (beat-level session: no waveform)")).to_be_visible()
    expect(page.get_by_text(re.compile(r"S04 R\+1 .*: 910 beats"))).to_be_visible()
    wait_idle(page)
    console.check()
