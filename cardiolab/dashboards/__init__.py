"""Panel dashboards built from :mod:`cardiolab.viz`: one served app, three pages.

- :class:`SessionReview`: the linked signal view, the beat table, beat flagging with
  an audit trail and features recomputed on the spot.
- :class:`CohortPage`: a feature across the crew: timeline with the fitted time course,
  forest plot and table of phase contrasts, time constants, downloads.
- :class:`CampaignPage`: subjects x sessions processing status, quality, failures.

:func:`serve` serves them (``cardiolab serve CATALOG``); each page also works inline in
a notebook (``SessionReview(catalog)`` as the last expression of a cell).
"""

from .app import PAGES, app_pages, serve
from .auth import AuthError, add_user, hash_password, verify_password
from .campaign import CampaignPage
from .cohort import CohortPage
from .session_review import SessionReview

__all__ = [
    "PAGES",
    "AuthError",
    "CampaignPage",
    "CohortPage",
    "SessionReview",
    "add_user",
    "app_pages",
    "hash_password",
    "serve",
    "verify_password",
]
