"""Blood-pressure variability of one epoch: the spectrum of beat-to-beat systolic pressure.

Numerical core only (NumPy arrays in, dict of floats out). The systolic series is
treated exactly as the RR tachogram is by :func:`cardiolab.features.hrv.hrv_frequency`
(the same resampling, Welch estimate and band integration, called, not copied), so
that SBP LF power and RR LF power come from one method and can be set side by side
with the baroreflex (:mod:`cardiolab.features.brs`).
"""

from __future__ import annotations

import numpy as np

from ..errors import SignalQualityError, UnitError
from ..units import normalise_unit
from .hrv import HRV_BANDS, hrv_frequency

__all__ = ["bpv_spectrum", "MIN_BPV_BEATS"]

#: Fewest finite systolic values for a spectrum (fewer: NaN with a reason).
MIN_BPV_BEATS = 4


def _series(x, name: str, units: str) -> np.ndarray:
    attrs = getattr(x, "attrs", None)
    if attrs and "units" in attrs:
        try:
            ok = normalise_unit(attrs["units"]) == normalise_unit(units)
        except UnitError:
            ok = False
        if not ok:
            raise UnitError(f"{name}: units {attrs['units']!r}, expected {units!r}")
    a = np.array(getattr(x, "values", x), dtype=float)
    if a.ndim != 1:
        raise SignalQualityError(f"{name}: expected a 1-D array, got shape {a.shape}")
    return a


def bpv_spectrum(
    t_beats,
    sbp,
    *,
    vlf=HRV_BANDS["vlf"],
    lf=HRV_BANDS["lf"],
    hf=HRV_BANDS["hf"],
    **options,
) -> dict:
    """Spectral powers of beat-to-beat systolic blood pressure.

    Parameters
    ----------
    t_beats : array-like, shape (n_beats,)
        Time of each beat (s; the beat table's ``t``).
    sbp : array-like, shape (n_beats,)
        Systolic pressure of each beat (mmHg); NaN for beats not to be trusted (the
        beat table's ``sbp`` where ``abp_valid`` is False), which the interpolation
        bridges. A DataArray must be in mmHg.
    vlf, lf, hf : tuple of float
        Band edges (Hz), ``lo <= f < hi``; the Task Force (1996) HRV bands, which
        the blood-pressure literature uses too (LF 0.04-0.15 Hz holds the ~0.1 Hz
        Mayer waves of sympathetic vasomotor origin, HF the respiratory swings).
    **options
        ``resample_hz``, ``interpolation``, ``detrend``: passed to
        :func:`~cardiolab.features.hrv.hrv_frequency` (defaults 4 Hz, quadratic,
        mean removed).

    Returns
    -------
    dict
        ``sbp_vlf``, ``sbp_lf``, ``sbp_hf``, ``sbp_total_power`` (VLF + LF + HF) band
        powers (mmHg²); ``sbp_lf_hf`` (1); ``f_min`` (Hz) lowest frequency read from
        the PSD; ``reason`` (``""`` when LF and HF are defined, else why they are
        NaN: too few beats, or the epoch too short for a band).

    Raises
    ------
    SignalQualityError
        Inputs not 1-D or of different lengths.
    UnitError
        ``sbp`` given as a DataArray whose ``units`` is not mmHg.

    Notes
    -----
    Parati G, Saul JP, Di Rienzo M, Mancia G (1995) Spectral analysis of blood
    pressure and heart rate variability in evaluating cardiovascular regulation. A
    critical appraisal. Hypertension 25:1276-1286: SBP LF power rises with
    sympathetic vasomotor modulation (tilt, standing, LBNP) and is reported beside
    RR spectra and the baroreflex. The estimator is
    :func:`~cardiolab.features.hrv.hrv_frequency`'s (Welch, Hann, segment half the
    record, zero-padded, trapezoidal band integration; see its docstring), applied
    to SBP instead of RR: a band power has the input's unit squared.
    """
    t = _series(t_beats, "t_beats", "s")
    x = _series(sbp, "sbp", "mmHg")
    if t.size != x.size:
        raise SignalQualityError(f"t_beats and sbp: lengths differ ({t.size} vs {x.size} beats)")
    out = {
        "sbp_vlf": np.nan,
        "sbp_lf": np.nan,
        "sbp_hf": np.nan,
        "sbp_total_power": np.nan,
        "sbp_lf_hf": np.nan,
        "f_min": np.nan,
        "reason": "",
    }
    n = int(np.count_nonzero(np.isfinite(t) & np.isfinite(x)))
    if n < MIN_BPV_BEATS:
        return {
            **out,
            "reason": f"only {n} beats with a systolic pressure ({MIN_BPV_BEATS} needed)",
        }
    spec = hrv_frequency(t, x, vlf=vlf, lf=lf, hf=hf, **options)
    for band in ("vlf", "lf", "hf", "total_power", "lf_hf"):
        out[f"sbp_{band}"] = spec[band]
    out["f_min"] = spec["f_min"]
    missing = [b for b in ("lf", "hf") if not np.isfinite(spec[b])]
    if missing:
        duration = float(np.nanmax(t) - np.nanmin(t))
        out["reason"] = (
            f"no {'/'.join(b.upper() for b in missing)} power: {duration:.0f} s of beats "
            f"(the PSD starts at f_min = 4 / duration = {spec['f_min']:.3g} Hz)"
        )
    return out
