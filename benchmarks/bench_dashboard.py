"""The served dashboard: Session review first paint and zoom; Cohort feature switch.

Usage: python benchmarks/bench_dashboard.py [--runs 5] [--path DIR] [--cold] [--profile]
       python benchmarks/bench_dashboard.py --cohort [--runs 5] [--path DIR] [--baseline DIR]

Needs chromium (``/usr/bin/chromium`` or ``$CARDIOLAB_CHROMIUM``) and the
``playwright`` package; no browser is downloaded.

1. A campaign of one session of 60 min (ECG 1000 Hz, finger pressure 200 Hz, LDF
   32 Hz, two Doppler vessels at 100 Hz: 5 signal panels, 4.7 M samples), simulated
   and processed (or reused from ``--path``).
2. ``cardiolab serve`` in a subprocess (with its warm-up), on a free port.
3. First paint, in a fresh browser page per run: from navigation start
   (``performance.timeOrigin``: before the HTTP request, so the server's page build
   counts) to the first animation frame at which the bokeh document is idle, every
   bokeh figure view has finished rendering and each of the 5 rasterised signal
   images holds pixels. Also split by the Navigation Timing API: the response's
   first byte (the server built the page: Panel renders the document on the GET)
   and DOMContentLoaded. Target < 3 s. The beat plot and the tables are sent
   once the page has loaded (``pn.state.onload``): "page complete" is timed too,
   to the frame at which they are drawn as well.
4. Zoom: the shared x range of the signal panels is set through the BokehJS API
   (``x_range.setv({start, end})`` and the plot view's RangesUpdate event: what a
   wheel or box zoom does when it ends);
   timed from that call to the first animation frame at which all 5 images hold
   the server's new aggregation (new data whose x extent is the new range, within
   2 %) and every figure has finished rendering. Target < 1 s. Two zooms per
   page load; the first zoom of the server process is reported apart (it may
   compile datashader kernels), and one zoom to whole-second bounds at the end
   (JSON sends them as ints; were they handed to datashader, it would compile
   int-typed kernels, ~6 s once: the session view aggregates over the visible
   samples' float times instead).

With ``--cold``, also the first page of a server started without warm-up
(``CARDIOLAB_WARMUP=0``). With ``--profile``, the server-side page build is timed
and profiled in this process (where the time goes).

With ``--cohort``, the Cohort page instead, on a demo-sized campaign (8 subjects,
the default schedule L-60 ... R+30, 2-min sessions: the fits depend on the number of
sessions, not their length): from choosing another feature in the page's select to
(a) the loading state shown (the results dimmed under a spinner, a message) and
(b) the new feature's plots drawn (bokeh idle, every figure rendered, the timeline
titled with the new feature). Target < 2 s on 2 cores. Each page is looked at for
``--dwell`` seconds (default 5) before the next switch, as a reviewer reads it; the
served page readies the usual features in the background meanwhile (0: no time). ``--baseline DIR`` serves a
second app from the code in DIR (e.g. ``git archive main cardiolab | tar -x -C DIR``)
and switches features on both in turn, in the same run: the timings side by side.

Figures are medians; wall-clock figures depend on the machine's load, printed too.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

#: The page is painted: bokeh idle, figures rendered, 5 signal images with pixels.
#: Returns performance.now() (ms since navigation start) at that frame.
JS_PAINTED = """(n) => {
  if (!window.Bokeh || !Bokeh.documents.length || !Bokeh.index) return false;
  if (!Bokeh.documents[0].is_idle) return false;
  let images = 0;
  for (const view of Bokeh.index.all_views()) {
    const m = view.model;
    if (m.type == "Figure" && !view.has_finished()) return false;
    if (m.type == "GlyphRenderer" && m.glyph.type == "Image") {
      const img = m.data_source.data.image;
      const a = img && img.length ? img[0] : null;
      if (!a || !a.some(v => v > 0)) return false;
      images++;
    }
  }
  return images >= n ? performance.now() : false;
}"""

#: The whole page is drawn: bokeh idle, n figures (signals and the beat plot) rendered
#: and the features table present. Returns performance.now().
JS_COMPLETE = """(n) => {
  if (!window.Bokeh || !Bokeh.documents.length || !Bokeh.index) return false;
  if (!Bokeh.documents[0].is_idle) return false;
  let figures = 0, table = false;
  for (const view of Bokeh.index.all_views()) {
    const m = view.model;
    if (m.type == "Figure") {
      if (!view.has_finished()) return false;
      figures++;
    }
    if (m.type.endsWith("DataTabulator")) table = true;
  }
  return figures >= n && table ? performance.now() : false;
}"""

#: Zoom as a wheel or box zoom does when it ends: set the signal figures' shared x
#: range to [a, b], then emit bokeh's RangesUpdate event (what HoloViews' range
#: streams listen to). Remembers the current image data, to see it replaced.
JS_ZOOM = """([a, b]) => {
  const renderers = [], views = [], ranges = new Set();
  for (const view of Bokeh.index.all_views())
    if (view.model.type == "GlyphRenderer" && view.model.glyph.type == "Image")
      renderers.push(view.model);
  for (const view of Bokeh.index.all_views())
    if (view.model.type == "Figure" && view.model.renderers.some(r => renderers.includes(r))) {
      views.push(view);
      ranges.add(view.model.x_range);
    }
  window.__bench = {renderers: renderers, old: renderers.map(r => r.data_source.data),
                    t0: performance.now(), a: a, b: b};
  for (const r of ranges) r.setv({start: a, end: b});
  views[0].trigger_ranges_update_event();
  return ranges.size;
}"""

#: All images hold new data spanning the new range and the figures have rendered.
JS_ZOOMED = """() => {
  const s = window.__bench, w = s.b - s.a;
  for (let i = 0; i < s.renderers.length; i++) {
    const d = s.renderers[i].data_source.data;
    if (d === s.old[i]) return false;
    if (Math.abs(d.x[0] - s.a) > 0.02 * w || Math.abs(d.dw[0] - w) > 0.02 * w) return false;
  }
  for (const view of Bokeh.index.all_views())
    if (view.model.type == "Figure" && !view.has_finished()) return false;
  return performance.now() - s.t0;
}"""

#: The Cohort page shows a feature's plots: bokeh idle, every figure rendered and the
#: timeline titled "<feature> (<epoch>): Pre-flight". Returns performance.now().
JS_COHORT_DRAWN = """(title) => {
  if (!window.Bokeh || !Bokeh.documents.length || !Bokeh.index) return false;
  if (!Bokeh.documents[0].is_idle) return false;
  let found = false;
  for (const view of Bokeh.index.all_views()) {
    const m = view.model;
    if (m.type == "Figure" && !view.has_finished()) return false;
    if (m.type == "Title" && m.text == title) found = true;
  }
  return found ? performance.now() : false;
}"""

#: The Cohort page shows its loading state (Panel's ``loading``: css class pn-loading).
JS_COHORT_LOADING = """() => {
  if (!window.Bokeh || !Bokeh.index) return false;
  for (const view of Bokeh.index.all_views())
    if ((view.model.css_classes || []).includes("pn-loading")) return performance.now();
  return false;
}"""

#: Features the Cohort benchmark switches between (each once per run, in turn).
COHORT_FEATURES = ["sbp", "dbp", "map", "rmssd", "hf", "brs", "flux", "cvc"]

N_SIGNALS = 5
CHROMIUM = os.environ.get("CARDIOLAB_CHROMIUM", "/usr/bin/chromium")


def build(path: Path) -> Path:
    """Simulate and process one 60-min session with a 1 kHz ECG (reused if present)."""
    from cardiolab.pipeline import process_campaign
    from cardiolab.simulate import simulate_campaign

    catalog = path / "data_catalog.yaml"
    if not catalog.exists():
        t0 = time.perf_counter()
        simulate_campaign(
            path,
            n_subjects=1,
            schedule=["L-30"],
            duration_min=60,
            rates={"ecg": 1000.0},
            workers=1,
            progress=False,
        )
        print(f"simulated 1 session of 60 min (ECG 1000 Hz) in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    report = process_campaign(catalog, client="sync", progress=False)
    print(
        f"processed in {time.perf_counter() - t0:.1f} s ({report.n_done} computed, "
        f"{report.n_cached} cached, {len(report.failures)} failed)"
    )
    return catalog


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_cohort(path: Path) -> Path:
    """Simulate and process a demo-sized campaign: 8 subjects x the default schedule."""
    from cardiolab.pipeline import process_campaign
    from cardiolab.simulate import simulate_campaign

    catalog = path / "data_catalog.yaml"
    t0 = time.perf_counter()
    if not catalog.exists():
        simulate_campaign(path, n_subjects=8, duration_min=2, seed=1, workers=1, progress=False)
    report = process_campaign(catalog, client="sync", progress=False)
    print(
        f"8-subject campaign ready in {time.perf_counter() - t0:.1f} s ({report.n_done} "
        f"computed, {report.n_cached} cached, {len(report.failures)} failed)"
    )
    return catalog


class Server:
    """``cardiolab -v serve`` in a subprocess, ready when it prints its URL.

    ``code``: a folder holding the ``cardiolab`` package to serve from (the process
    runs there, so that it comes first on ``sys.path``); default: this checkout.
    """

    def __init__(self, catalog: Path, warm: bool = True, code: Path | None = None):
        self.port = _free_port()
        env = {**os.environ, "CARDIOLAB_WARMUP": "1" if warm else "0"}
        env.pop("CARDIOLAB_CREDENTIALS", None)
        code = Path(code or Path(__file__).resolve().parents[1]).resolve()
        env["PYTHONPATH"] = str(code)
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cardiolab.cli",
                "-v",
                "serve",
                str(Path(catalog).resolve()),
                "--port",
                str(self.port),
            ],
            cwd=code,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        ready = threading.Event()

        def drain():
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                if "dashboard: http" in line:
                    ready.set()

        threading.Thread(target=drain, daemon=True).start()
        while not ready.wait(0.2):
            if self.proc.poll() is not None or time.perf_counter() - t0 > 300:
                self.stop()
                raise RuntimeError("server did not start:\n" + "\n".join(self.lines))
        self.startup_s = time.perf_counter() - t0
        warm_s = [
            float(m.group(1))
            for line in self.lines
            if (m := re.search(r"warm-up: .* built in ([\d.]+) s", line))
        ]
        self.warm_up_s = warm_s[0] if warm_s else None
        self.url = f"http://localhost:{self.port}/session"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def first_paint(browser, url: str) -> dict:
    """One fresh page: ms from navigation start to painted, and the Navigation Timing split."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url, wait_until="commit", timeout=300_000)
    painted = page.wait_for_function(JS_PAINTED, arg=N_SIGNALS, polling="raf", timeout=300_000)
    nav = page.evaluate(
        "() => { const n = performance.getEntriesByType('navigation')[0];"
        " return {ttfb: n.responseStart, dcl: n.domContentLoadedEventEnd}; }"
    )
    complete = page.wait_for_function(
        JS_COMPLETE, arg=N_SIGNALS + 1, polling="raf", timeout=300_000
    )
    if errors:
        raise RuntimeError(f"page errors: {errors}")
    return {
        "paint": painted.json_value(),
        "complete": complete.json_value(),
        **nav,
        "page": page,
        "context": context,
    }


def zoom(page, a: float, b: float) -> float:
    """ms from setting the x range to [a, b] to all 5 images re-rasterised and drawn."""
    n_ranges = page.evaluate(JS_ZOOM, [a, b])
    if n_ranges < 1:
        raise RuntimeError("no x range found on the signal figures")
    done = page.wait_for_function(JS_ZOOMED, polling="raf", timeout=120_000)
    return done.json_value()


def profile_build(catalog: Path, runs: int) -> None:
    """Time and profile the server-side build of the Session review page, in this process."""
    import cProfile
    import pstats

    import panel as pn
    from bokeh.document import Document

    from cardiolab.catalog import open_catalog
    from cardiolab.dashboards.session_review import SessionReview

    pn.extension("tabulator")
    cat = open_catalog(catalog)
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        review = SessionReview(cat)
        t1 = time.perf_counter()
        profiler = cProfile.Profile() if i == runs else None
        if profiler:
            profiler.enable()
        review.__panel__().get_root(Document())
        if profiler:
            profiler.disable()
        times.append((t1 - t0, time.perf_counter() - t1))
        label = "cold (first in process)" if i == 0 else "warm"
        print(
            f"  build {i}: {label}: SessionReview() {t1 - t0:.2f} s, "
            f"get_root {time.perf_counter() - t1:.2f} s"
        )
    warm = times[1:]
    print(
        f"server-side page build, warm median: SessionReview() "
        f"{statistics.median(t[0] for t in warm):.2f} s + get_root "
        f"{statistics.median(t[1] for t in warm):.2f} s"
    )
    print("profile of the last warm get_root (cumulative, top 25):")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def cohort_page(browser, url: str):
    """A fresh page on the Cohort page, its first plots (hr, supine) drawn."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url, wait_until="commit", timeout=300_000)
    page.wait_for_function(
        JS_COHORT_DRAWN, arg="hr (supine): Pre-flight", polling="raf", timeout=300_000
    )
    return context, page


def switch_feature(page, feature: str) -> tuple[float | None, float]:
    """ms from choosing ``feature`` to (the loading state shown, or None; plots drawn)."""
    t0 = page.evaluate("() => performance.now()")
    page.get_by_label("Feature", exact=True).select_option(feature)
    loading = None
    drawn = page.wait_for_function(
        """([drawn, loading, title]) => {
          if (window.__loading === undefined) window.__loading = null;
          if (window.__loading === null) window.__loading = eval(loading)() || null;
          const t = eval(drawn)(title);
          return t ? [t, window.__loading] : false;
        }""",
        arg=[JS_COHORT_DRAWN, JS_COHORT_LOADING, f"{feature} (supine): Pre-flight"],
        polling="raf",
        timeout=300_000,
    ).json_value()
    page.evaluate("() => { window.__loading = undefined; }")
    if drawn[1] is not None:
        loading = drawn[1] - t0
    return loading, drawn[0] - t0


def bench_cohort(args, browser, path: Path) -> None:
    """Feature switches on the Cohort page: this code, and the baseline's if given."""
    catalog = build_cohort(path)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    codes = {"this code": None}
    if args.baseline:
        codes = {"baseline": Path(args.baseline), **codes}
    servers = {name: Server(catalog, warm=False, code=code) for name, code in codes.items()}
    try:
        pages = {}
        for name, server in servers.items():
            url = server.url.replace("/session", "/cohort")
            pages[name] = cohort_page(browser, url)
        times = {name: [] for name in servers}
        for i in range(args.runs):
            time.sleep(args.dwell)  # a reviewer reads the page before choosing another
            # a feature not shown before (no fit to reuse); each server in turn on the
            # same feature, so that the machine's load hits both alike
            feature = COHORT_FEATURES[i % len(COHORT_FEATURES)]
            for name, (_, page) in pages.items():
                loading, drawn = switch_feature(page, feature)
                times[name].append((feature, loading, drawn))
                shown = f"{loading / 1000:.2f} s" if loading is not None else "not seen"
                print(
                    f"  run {i + 1} {name:>9}: -> {feature:<6} loading state {shown}, "
                    f"plots drawn {drawn / 1000:.2f} s"
                )
        for context, _ in pages.values():
            context.close()
    finally:
        for server in servers.values():
            server.stop()
    med = statistics.median
    for name, rows in times.items():
        seen = [r[1] for r in rows if r[1] is not None]
        print(
            f"Cohort feature switch, {name}: median of {len(rows)} switches: plots drawn in "
            f"{med(r[2] for r in rows) / 1000:.2f} s (target < 2 s); loading state shown "
            + (f"in {med(seen) / 1000:.2f} s" if seen else "never")
            + f" ({len(seen)} of {len(rows)} switches)"
        )
    print(
        f"(each page looked at for {args.dwell:g} s before the next switch; "
        f"load average at the end: {os.getloadavg()[0]:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="page loads and zooms (median)")
    parser.add_argument("--path", default=None, help="folder of the campaign (kept, reused)")
    parser.add_argument("--cold", action="store_true", help="also time a server without warm-up")
    parser.add_argument("--profile", action="store_true", help="profile the server-side build")
    parser.add_argument("--cohort", action="store_true", help="time the Cohort feature switch")
    parser.add_argument(
        "--baseline", default=None, help="with --cohort: a folder with older cardiolab code"
    )
    parser.add_argument(
        "--dwell",
        type=float,
        default=5.0,
        help="with --cohort: seconds each page is looked at before the next switch",
    )
    args = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("bench_dashboard: needs the playwright package (pip install pytest-playwright)")
    if not Path(CHROMIUM).exists():
        sys.exit(
            f"bench_dashboard: no chromium at {CHROMIUM} (apt install chromium, "
            "or set CARDIOLAB_CHROMIUM)"
        )

    tmp = None
    if args.path:
        path = Path(args.path)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench_dashboard_")
        path = Path(tmp.name) / "campaign"
    launch = {"executable_path": CHROMIUM, "args": ["--no-sandbox"] if os.geteuid() == 0 else []}
    if args.cohort:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(**launch)
            bench_cohort(args, browser, path)
            browser.close()
        if tmp is not None:
            tmp.cleanup()
        return
    catalog = build(path)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(**launch)
        if args.cold:
            server = Server(catalog, warm=False)
            try:
                r = first_paint(browser, server.url)
                r["context"].close()
                print(
                    f"server without warm-up: listening after {server.startup_s:.1f} s; "
                    f"its first page painted in {r['paint'] / 1000:.2f} s "
                    f"(first byte {r['ttfb'] / 1000:.2f} s)"
                )
            finally:
                server.stop()

        server = Server(catalog, warm=True)
        try:
            print(
                f"server listening after {server.startup_s:.1f} s (warm-up "
                f"{server.warm_up_s if server.warm_up_s is not None else float('nan'):.1f} s)"
            )
            paints, ttfb, dcl, zooms, complete = [], [], [], [], []
            # bounds that are not whole seconds (a browser sends whole numbers as JSON
            # ints: that case is timed apart, at the end)
            windows = [
                (1500.25, 2100.75),
                (1790.125, 1810.625),
                (600.5, 3000.25),
                (3000.375, 3060.875),
                (0.125, 3599.875),
                (1234.5, 1834.5),
            ]
            for i in range(args.runs):
                r = first_paint(browser, server.url)
                paints.append(r["paint"])
                complete.append(r["complete"])
                ttfb.append(r["ttfb"])
                dcl.append(r["dcl"])
                times = []
                for k in range(2):
                    a, b = windows[(2 * i + k) % len(windows)]
                    times.append(zoom(r["page"], a, b))
                    zooms.append((a, b, times[-1]))
                print(
                    f"  run {i + 1}: first paint {r['paint'] / 1000:.2f} s (first byte "
                    f"{r['ttfb'] / 1000:.2f} s, DOMContentLoaded {r['dcl'] / 1000:.2f} s, "
                    f"page complete {r['complete'] / 1000:.2f} s); "
                    "zooms redrawn in " + ", ".join(f"{t / 1000:.2f}" for t in times) + " s"
                )
                r["context"].close()
            r = first_paint(browser, server.url)
            whole = zoom(r["page"], 1200.0, 1800.0)
            r["context"].close()
        finally:
            server.stop()
        browser.close()

    med = statistics.median
    print(
        f"first paint of the session page (navigation start -> 5 signal images drawn, "
        f"bokeh idle), median of {args.runs}: {med(paints) / 1000:.2f} s (target < 3 s); "
        f"of which server build (first byte) {med(ttfb) / 1000:.2f} s, browser "
        f"{(med(paints) - med(ttfb)) / 1000:.2f} s"
    )
    print(
        f"page complete (beat plot and features table drawn too), median: "
        f"{med(complete) / 1000:.2f} s"
    )
    first, rest = zooms[0], [z[2] for z in zooms[1:]]
    print(
        f"re-render after a zoom (x range set -> 5 new rasterised images drawn): first "
        f"zoom of the server process {first[2] / 1000:.2f} s; median of the next "
        f"{len(rest)}: {med(rest) / 1000:.2f} s (target < 1 s)"
    )
    print(
        f"first zoom to whole-second bounds (1200-1800 s, like Reset): {whole / 1000:.2f} s "
        "(no int-typed datashader compilation)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.profile:
        profile_build(catalog, 3)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
