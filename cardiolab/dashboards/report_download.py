"""A button that downloads a report (:mod:`cardiolab.reports`) made when it is clicked.

The Cohort page has one for the feature it shows, the Session review page one for its
session::

    from cardiolab.reports import session_report
    button = report_download(
        lambda: session_report(catalog, review.subject, review.session),
        lambda: f"report_{review.subject}_{review.session}.html",
    )
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

import panel as pn

from ..errors import CardiolabError

log = logging.getLogger("cardiolab")

__all__ = ["report_download"]


def report_download(
    make_report: Callable[[], str],
    filename: Callable[[], str] | str,
    *,
    label: str = "Download report (HTML)",
    **params,
) -> pn.widgets.FileDownload:
    """A FileDownload button whose file is a report made at the click.

    Parameters
    ----------
    make_report : callable
        ``make_report() -> str``: the report's HTML (e.g.
        :func:`cardiolab.reports.session_report` with its arguments bound).
    filename : callable or str
        Name of the downloaded file, or ``filename() -> str`` (asked at each click,
        so that it follows the page's choice).
    label : str
        Text of the button.
    **params
        Other :class:`panel.widgets.FileDownload` parameters.

    Returns
    -------
    panel.widgets.FileDownload
        A report that cannot be made (e.g. a session not processed) is logged and
        downloads as a short HTML page that says why.
    """
    button = pn.widgets.FileDownload(
        filename=filename if isinstance(filename, str) else filename(),
        button_type="primary",
        label=label,
        **params,
    )

    def callback():
        if callable(filename):
            button.filename = filename()
        try:
            text = make_report()
        except CardiolabError as err:
            import html

            log.warning("report: %s", err)
            text = f"<!DOCTYPE html><p>No report: {html.escape(str(err))}</p>"
        return io.BytesIO(text.encode("utf-8"))

    button.callback = callback
    return button
