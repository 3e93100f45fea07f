"""cardiolab: cardiovascular physiology of spaceflight and its ground analogs.

Load sessions into a labelled :class:`xarray.DataTree` (subject -> session -> group),
simulate campaigns with known truth, and (in later stages) turn them into beats,
features and mixed-effects models of in-flight adaptation and post-flight recovery.
"""

import logging

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    CardiolabError,
    CatalogError,
    SessionFormatError,
    SignalQualityError,
    UnitError,
)
from .labels import format_session_label, parse_session_label  # noqa: E402
from .schema import validate_campaign, validate_session  # noqa: E402

logging.getLogger("cardiolab").addHandler(logging.NullHandler())

__all__ = [
    "__version__",
    "CardiolabError",
    "CatalogError",
    "SessionFormatError",
    "SignalQualityError",
    "UnitError",
    "format_session_label",
    "parse_session_label",
    "validate_session",
    "validate_campaign",
]
