"""What the browser shows: the live bokeh state of a page, and waits that follow it."""

from __future__ import annotations

from .conftest import TIMEOUT_MS

__all__ = ["BOKEH_STATE", "BEAT_PLOT", "bokeh_state", "wait_for_plots"]

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
