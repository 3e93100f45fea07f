"""Epoch summaries of beat-to-beat blood pressure and Doppler velocity.

Numerical core: per-beat arrays in, dicts of floats out. NaN beats (invalid or
unmeasured) are ignored; a statistic without any finite beat is NaN.
"""

from __future__ import annotations

import numpy as np

__all__ = ["blood_pressure_features", "doppler_features"]


def _mean(x):
    x = np.asarray(x, dtype=float)
    return float(np.mean(x[np.isfinite(x)])) if np.isfinite(x).any() else np.nan


def _sd(x):
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(np.std(x, ddof=1)) if x.size > 1 else np.nan


def blood_pressure_features(sbp, dbp, map_) -> dict:
    """Mean and variability of beat-to-beat arterial pressure over an epoch.

    Parameters
    ----------
    sbp, dbp, map_ : array-like of float
        Systolic, diastolic and mean arterial pressure per beat (mmHg); NaN for
        excluded beats.

    Returns
    -------
    dict
        ``sbp``, ``dbp``, ``map`` means (mmHg); ``pp`` mean pulse pressure
        ``sbp - dbp`` over beats where both are known (mmHg); ``sbp_sd``,
        ``dbp_sd`` standard deviations (mmHg, ddof 1).
    """
    s = np.asarray(sbp, dtype=float)
    d = np.asarray(dbp, dtype=float)
    return {
        "sbp": _mean(s),
        "dbp": _mean(d),
        "map": _mean(map_),
        "pp": _mean(s - d),
        "sbp_sd": _sd(s),
        "dbp_sd": _sd(d),
    }


def doppler_features(psv, edv, tamv, ri, pi, vessel) -> dict:
    """Mean Doppler indices of one vessel over an epoch.

    Parameters
    ----------
    psv, edv, tamv : array-like of float
        Peak systolic, end-diastolic and time-averaged maximum velocity per beat
        (cm/s); NaN for excluded beats.
    ri, pi : array-like of float
        Resistive (Pourcelot) and pulsatility (Gosling) index per beat (1).
    vessel : str
        Vessel name, the prefix of the keys (e.g. ``"femoral"``, ``"mca"``).

    Returns
    -------
    dict
        ``<vessel>_psv``, ``<vessel>_edv``, ``<vessel>_tamv`` (cm/s) and
        ``<vessel>_ri``, ``<vessel>_pi`` (1): means over the finite beats.
    """
    values = {"psv": psv, "edv": edv, "tamv": tamv, "ri": ri, "pi": pi}
    return {f"{vessel}_{k}": _mean(v) for k, v in values.items()}
