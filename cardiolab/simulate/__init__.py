"""Physiologically grounded synthetic campaigns with known truth.

:func:`simulate_campaign` writes a whole campaign (catalog, raw zarr store, truth);
:func:`default_effects` gives the population effects it draws from, and
:class:`Truth` what it drew, so that every later stage can be scored against it.
"""

from .campaign import DEFAULT_SCHEDULES, STORE_NAME, campaign_catalog, simulate_campaign
from .effects import (
    EFFECT_COLUMNS,
    MEASURED_QUANTITIES,
    QUANTITIES,
    default_effects,
    time_course,
)
from .session import RATES, Artefacts, simulate_session
from .truth import Truth

__all__ = [
    "Artefacts",
    "DEFAULT_SCHEDULES",
    "EFFECT_COLUMNS",
    "MEASURED_QUANTITIES",
    "QUANTITIES",
    "RATES",
    "STORE_NAME",
    "Truth",
    "campaign_catalog",
    "default_effects",
    "simulate_campaign",
    "simulate_session",
    "time_course",
]
