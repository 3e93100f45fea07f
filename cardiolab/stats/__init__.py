"""Mixed-effects models of in-flight adaptation and post-flight deconditioning.

- :func:`fit_mixed`: statsmodels MixedLM with optimiser fallback, lme4-style tables
  and convergence/boundary flags (:class:`MixedResult`).
- :func:`phase_contrasts`: every in-flight and post-flight session against the mean
  of the pre-flight sessions, absolute and percent change, Holm-adjusted p.
- :func:`fit_time_course`: y = b0 + A(1 - exp(-t/tau_a)) in flight, + D exp(-t/tau_r)
  after landing, random intercepts; the time constants by profile likelihood.
- :func:`power_curve`: simulated power by crew size for a team's own schedule.
- :func:`fit_all`: all of it for every feature, in parallel; :func:`read_results`.
- :func:`simulate_feature_table`: campaigns with known truth at the features level.

Examples
--------
>>> from cardiolab.demo import demo_catalog
>>> from cardiolab.pipeline import features_table
>>> table = features_table(demo_catalog())                      # doctest: +SKIP
>>> phase_contrasts(table, "hr", epoch="stand").table           # doctest: +SKIP
>>> fit_time_course(table, "hr", epoch="stand").params          # doctest: +SKIP
"""

from .design import simulate_feature_table
from .mixed import MixedResult, PhaseContrasts, fit_mixed, phase_contrasts
from .power import PowerCurve, StudyDesign, power_curve
from .results import fit_all, read_results
from .timecourse import TimeCourse, fit_time_course

__all__ = [
    "MixedResult",
    "PhaseContrasts",
    "PowerCurve",
    "StudyDesign",
    "TimeCourse",
    "fit_all",
    "fit_mixed",
    "fit_time_course",
    "phase_contrasts",
    "power_curve",
    "read_results",
    "simulate_feature_table",
]
