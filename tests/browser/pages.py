"""What the browser shows: the live bokeh state of a page, and waits that follow it."""

from __future__ import annotations

import re

from .conftest import TIMEOUT_MS

__all__ = [
    "BOKEH_STATE",
    "BEAT_PLOT",
    "N_SIGNALS",
    "bokeh_state",
    "feature_cell",
    "open_session",
    "sign_in",
    "wait_for_plots",
]

#: What the browser shows, from the live bokeh views (not the document's models, which
#: may still hold replaced plots): document idle, every plot view finished, the plot
#: titles, and per rasterised image its pixel count, the count of pixels with signal
#: in them, and its x extent (s).
BOKEH_STATE = """() => {
  if (!window.Bokeh || !Bokeh.documents.length || !Bokeh.index) return null;
  const out = {idle: Bokeh.documents[0].is_idle, finished: true, titles: [], images: []};
  for (const view of Bokeh.index.all_views()) {
    const m = view.model;
    if (m.type == "Figure" && !view.has_finished()) out.finished = false;
    if (m.type == "Title") out.titles.push(m.text);
    if (m.type == "GlyphRenderer" && m.glyph.type == "Image") {
      const data = m.data_source.data;
      const a = data.image && data.image.length ? data.image[0] : [];
      let inked = 0;
      for (let i = 0; i < a.length; i++) if (a[i] > 0) inked++;
      out.images.push({n: a.length, inked: inked, x: data.x ? data.x[0] : null,
                       dw: data.dw ? data.dw[0] : null});
    }
  }
  return out;
}"""

#: Title of the Session review page's beat plot (RR, the default beat variable).
BEAT_PLOT = "RR interval"
#: Signal panels of a simulated session: ECG, arterial pressure, LDF, two Doppler vessels.
N_SIGNALS = 5


def bokeh_state(page) -> dict:
    return page.evaluate(BOKEH_STATE)


def wait_for_plots(page, title: str, n_images: int = 0) -> dict:
    """Wait until a plot titled ``title`` is drawn; return the browser's bokeh state.

    Drawn: the document is idle, every plot view has finished rendering, a plot
    carries ``title`` and there are ``n_images`` rasterised images or more, each with
    pixels that hold signal.
    """
    page.wait_for_function(
        """([js, title, n]) => {
          const s = eval(js)();
          return s && s.idle && s.finished && s.titles.includes(title)
                 && s.images.length >= n && s.images.every(im => im.inked > 0);
        }""",
        arg=[BOKEH_STATE, title, n_images],
        polling=250,
        timeout=TIMEOUT_MS,
    )
    return bokeh_state(page)


def sign_in(page, app, user: str, password: str, slug: str = "session") -> None:
    """Open ``slug`` of ``app`` (served behind the login) and sign in as ``user``."""
    page.goto(app.page_url(slug))
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(password)
    page.get_by_role("button", name="Login").click()
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"), timeout=TIMEOUT_MS)


def open_session(page, app, subject: str) -> tuple[str, str]:
    """The Session review page on ``subject``'s first processed session, drawn.

    Returns the session label and the signal view's title (``subject/session``).
    """
    from cardiolab.pipeline import campaign_status

    status = campaign_status(app.catalog)
    session = status[(status["status"] == "processed") & (status["subject"] == subject)].iloc[0][
        "session"
    ]
    page.goto(app.page_url("session"))
    wait_for_plots(page, BEAT_PLOT, N_SIGNALS)
    page.get_by_label("Subject", exact=True).select_option(subject)
    title = f"{subject}/{session}"
    wait_for_plots(page, title, N_SIGNALS)
    wait_for_plots(page, BEAT_PLOT, N_SIGNALS)
    return session, title


def feature_cell(page, epoch: str, column: str = "hr (bpm)") -> float:
    """The value the Session review page's Features table shows for ``epoch``."""
    table = page.locator(".tabulator").filter(has=page.locator(".tabulator-col", has_text="sdnn"))
    row = table.locator(
        ".tabulator-row",
        has=page.locator('[tabulator-field="epoch"]', has_text=re.compile(rf"^{epoch}$")),
    )
    return float(row.locator(f'[tabulator-field="{column}"]').inner_text())
