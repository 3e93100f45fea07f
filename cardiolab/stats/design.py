"""Known-truth feature tables for the statistics: the adaptation/recovery model, sampled.

:func:`simulate_feature_table` draws a table shaped like
:func:`cardiolab.pipeline.features_table` (one row per subject x session, one feature
column) from the simulator's effects model (:mod:`cardiolab.simulate.effects`)::

    pre_i = pre + between_sd * z_i                          (subject random intercept)
    y     = pre_i + A_i (1 - exp(-day / tau_a))   in flight
    y     = pre_i + D_i exp(-day / tau_r)         after landing
    y    += residual_sd * e                                  (session-to-session noise)

with ``A_i = A + random_A_sd * a_i`` and ``D_i = D + random_D_sd * d_i``
(``z, a, d, e`` independent standard normals). It is the truth generator of the
time-course tests, the coverage benchmark and power calculations: no signals, no
beats, only the model the statistics are meant to recover.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import ModelError
from ..labels import parse_session_label
from ..simulate.effects import time_course

__all__ = ["DEFAULT_SCHEDULE", "simulate_feature_table"]

#: The demo campaign's schedule (2 pre-flight, 3 in-flight, 5 post-flight sessions).
DEFAULT_SCHEDULE = ("L-60", "L-30", "FD5", "FD15", "FD25", "R+0", "R+1", "R+3", "R+10", "R+30")


def simulate_feature_table(
    schedule: Sequence[str] = DEFAULT_SCHEDULE,
    n_subjects: int = 8,
    *,
    pre: float,
    A: float,
    tau_a: float,
    D: float,
    tau_r: float,
    between_sd: float,
    residual_sd: float,
    feature: str = "y",
    epoch: str = "supine",
    units: str = "1",
    seed: int = 0,
    random_A_sd: float = 0.0,
    random_D_sd: float = 0.0,
) -> pd.DataFrame:
    """Draw a features table from the adaptation/recovery model with known parameters.

    Parameters
    ----------
    schedule : sequence of str
        Session labels (``"L-30"``, ``"FD15"``, ``"R+3"``, ``"R+6h"``, ``"BDC-9"``,
        ``"HDT21"``...); phase and day come from
        :func:`cardiolab.labels.parse_session_label`. Default: the demo campaign's
        ten sessions :data:`DEFAULT_SCHEDULE`.
    n_subjects : int
        Number of subjects (``S01``, ``S02``...).
    pre : float
        Population pre-flight level, in ``units``.
    A : float
        In-flight change at steady state (``units``).
    tau_a : float
        In-flight adaptation time constant, days (> 0).
    D : float
        Change at landing (day 0 after landing, ``units``).
    tau_r : float
        Post-flight recovery time constant, days (> 0).
    between_sd : float
        Between-subject SD of the pre-flight level, in ``units`` (absolute; the
        simulator's effects table gives it as a fraction of ``pre``: pass
        ``fraction * pre``).
    residual_sd : float
        Session-to-session (residual) SD, in ``units``.
    feature, epoch, units : str
        Name of the value column, the epoch written in every row, and the units
        stored in ``attrs["units"][feature]``.
    seed : int
        Seed of the random generator; the same seed gives the same table.
    random_A_sd, random_D_sd : float
        Between-subject SDs of ``A`` and ``D`` (``units``); 0 for population values.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject``, ``session``, ``phase``, ``day`` (days from the phase
        anchor), ``epoch``, ``<feature>``; subjects in order, sessions in schedule
        order. ``attrs["units"]`` maps the feature to its units and
        ``attrs["truth"]`` holds the population parameters (the arguments above,
        plus ``feature``, ``epoch`` and ``n_subjects``).

    Raises
    ------
    ModelError
        For an empty schedule, fewer than one subject, a non-positive time constant
        or a negative SD.

    Examples
    --------
    >>> table = simulate_feature_table(
    ...     ["L-30", "FD10", "R+6h", "R+3"], 2, pre=62.0, A=3.0, tau_a=4.0, D=8.0,
    ...     tau_r=3.0, between_sd=7.4, residual_sd=2.0, feature="hr", units="bpm")
    >>> table.loc[:3, ["session", "phase", "day"]].to_dict("list")
    {'session': ['L-30', 'FD10', 'R+6h', 'R+3'], 'phase': ['pre', 'in', 'post', 'post'], 'day': [-30.0, 10.0, 0.25, 3.0]}
    >>> table.attrs["truth"]["tau_r"]
    3.0
    """
    labels = [parse_session_label(s) for s in schedule]
    if not labels:
        raise ModelError(f"simulate_feature_table({feature!r}): the schedule is empty")
    if int(n_subjects) < 1:
        raise ModelError(f"simulate_feature_table({feature!r}): n_subjects must be >= 1")
    for name, value in (("tau_a", tau_a), ("tau_r", tau_r)):
        if not float(value) > 0:
            raise ModelError(f"simulate_feature_table({feature!r}): {name} must be > 0 days")
    for name, value in (
        ("between_sd", between_sd),
        ("residual_sd", residual_sd),
        ("random_A_sd", random_A_sd),
        ("random_D_sd", random_D_sd),
    ):
        if not float(value) >= 0:
            raise ModelError(f"simulate_feature_table({feature!r}): {name} must be >= 0")

    n_subjects = int(n_subjects)
    n_sessions = len(labels)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((3, n_subjects))  # intercept, A, D per subject
    noise = rng.standard_normal((n_subjects, n_sessions))

    pre_i = pre + between_sd * z[0]
    a_i = A + random_A_sd * z[1]
    d_i = D + random_D_sd * z[2]
    phase = np.array([lab.phase for lab in labels])
    day = np.array([float(lab.day) for lab in labels])
    mean = time_course(
        pre_i[:, None], a_i[:, None], tau_a, d_i[:, None], tau_r, phase[None, :], day[None, :]
    )
    values = mean + residual_sd * noise

    subjects = [f"S{i + 1:02d}" for i in range(n_subjects)]
    table = pd.DataFrame(
        {
            "subject": np.repeat(subjects, n_sessions),
            "session": np.tile([lab.label for lab in labels], n_subjects),
            "phase": np.tile(phase, n_subjects),
            "day": np.tile(day, n_subjects),
            "epoch": epoch,
            feature: values.ravel(),
        }
    )
    table.attrs["units"] = {feature: units}
    table.attrs["truth"] = {
        "feature": feature,
        "epoch": epoch,
        "n_subjects": n_subjects,
        "pre": float(pre),
        "A": float(A),
        "tau_a": float(tau_a),
        "D": float(D),
        "tau_r": float(tau_r),
        "between_sd": float(between_sd),
        "residual_sd": float(residual_sd),
        "random_A_sd": float(random_A_sd),
        "random_D_sd": float(random_D_sd),
        "seed": int(seed),
    }
    return table
