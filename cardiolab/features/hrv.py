"""Heart rate variability of one epoch: time- and frequency-domain indices.

Numerical core only (NumPy arrays in, dicts of floats out). Definitions follow the
Task Force (1996) and, where a choice is open, NeuroKit2's ``hrv_time`` and
``hrv_frequency`` so that results can be compared one to one:

* pNN50 divides NN50 by the number of NN intervals (Task Force; NeuroKit2 likewise).
* The Welch segment is half the record long (two cycles of the lowest resolvable
  frequency ``f_min = 4 / duration``), Hann window, 50 % overlap, zero-padded to twice
  its length; the PSD is read from ``f_min`` upwards and each band is integrated by the
  trapezoidal rule over the bins ``lo <= f < hi`` (as NeuroKit2's ``signal_power``).
* The tachogram is interpolated quadratically at 4 Hz by default (NeuroKit2
  interpolates quadratically, at 100 Hz unless ``interpolation_rate=4``, the Kubios
  rate); cubic spline and linear are available. Detrending is the removal of the
  mean by default (NeuroKit2's default); ``"linear"`` is available.

Two deliberate differences from NeuroKit2 (0.2.13) defaults, documented for users
comparing numbers: NeuroKit2 normalises the PSD to its maximum unless
``normalize=False`` (its band powers are then not in ms²), and its ``TP`` adds the
VHF band (0.4-0.5 Hz); here ``total_power`` is VLF + LF + HF (Task Force, <= 0.4 Hz),
and ``lf_nu``/``hf_nu`` are in normalised units ``100 LF / (LF + HF)``
(NeuroKit2's ``LFn`` is ``LF / TP``).
"""

from __future__ import annotations

import numpy as np
import scipy.interpolate
import scipy.signal

__all__ = ["hrv_time", "hrv_frequency", "HRV_BANDS"]

#: Task Force (1996) frequency bands (Hz).
HRV_BANDS = {"vlf": (0.0033, 0.04), "lf": (0.04, 0.15), "hf": (0.15, 0.40)}

_NAN_FREQ = {k: np.nan for k in ("vlf", "lf", "hf", "total_power", "lf_hf", "lf_nu", "hf_nu")}


def hrv_time(rr_ms) -> dict:
    """Time-domain HRV indices of one epoch.

    Parameters
    ----------
    rr_ms : array-like of float
        Successive RR (NN) intervals (ms), in beat order; NaN marks an excluded
        interval. Successive differences that involve a NaN are dropped.

    Returns
    -------
    dict
        ``hr`` mean of ``60000 / rr`` (bpm); ``mean_nn`` (ms); ``sdnn`` (ms, ddof 1);
        ``rmssd`` root mean square of successive differences (ms); ``pnn50``
        percentage of successive differences > 50 ms, relative to the number of NN
        intervals (%); ``n_nn`` number of intervals used. NaN where undefined.
    """
    rr = np.asarray(rr_ms, dtype=float)
    ok = np.isfinite(rr)
    n = int(ok.sum())
    out = {"hr": np.nan, "mean_nn": np.nan, "sdnn": np.nan, "rmssd": np.nan, "pnn50": np.nan}
    out["n_nn"] = n
    if n == 0:
        return out
    nn = rr[ok]
    out["hr"] = float(np.mean(60000.0 / nn))
    out["mean_nn"] = float(np.mean(nn))
    if n > 1:
        out["sdnn"] = float(np.std(nn, ddof=1))
    d = np.diff(rr)
    d = d[np.isfinite(d)]
    if d.size:
        out["rmssd"] = float(np.sqrt(np.mean(d**2)))
        out["pnn50"] = float(100.0 * np.count_nonzero(np.abs(d) > 50.0) / n)
    return out


def _band_power(f, p, lo, hi):
    sel = (f >= lo) & (f < hi)
    if np.count_nonzero(sel) < 2:
        return np.nan
    power = float(np.trapezoid(p[sel], f[sel]))
    return power if power > 0 else np.nan


def hrv_frequency(
    t_s,
    rr_ms,
    *,
    vlf=HRV_BANDS["vlf"],
    lf=HRV_BANDS["lf"],
    hf=HRV_BANDS["hf"],
    resample_hz=4.0,
    interpolation="quadratic",
    detrend="constant",
    method="welch",
) -> dict:
    """Frequency-domain HRV indices from the RR tachogram.

    Parameters
    ----------
    t_s : array-like of float
        Time of each RR interval (s): the R-peak that ends it.
    rr_ms : array-like of float
        RR intervals (ms); NaN intervals are left out (the tachogram is interpolated
        across them).
    vlf, lf, hf : tuple of float
        Band edges (Hz), ``lo <= f < hi``.
    resample_hz : float
        Rate of the evenly resampled tachogram (Hz).
    interpolation : {"quadratic", "cubic", "linear"}
        Interpolation of the tachogram: ``scipy.interpolate.interp1d`` of that kind
        (NeuroKit2's default is quadratic) or a cubic spline (Kubios). Linear
        interpolation attenuates HF power noticeably (15-30 % on 5-min series with
        beat-to-beat jitter) and is offered only for comparison.
    detrend : {"constant", "linear"}
        Trend removed from the resampled tachogram before the PSD.
    method : {"welch"}
        PSD estimator.

    Returns
    -------
    dict
        ``vlf``, ``lf``, ``hf``, ``total_power`` (VLF + LF + HF) band powers (ms²);
        ``lf_hf`` (1); ``lf_nu``, ``hf_nu`` normalised units ``100 X / (LF + HF)``;
        ``f_min`` lowest frequency read from the PSD (Hz, ``4 / duration``; VLF is
        integrated from there); ``vlf_band``, ``lf_band``, ``hf_band`` the edges used.
        Band powers are NaN when the record holds fewer than 3 intervals or no PSD
        bin falls in the band (e.g. VLF on records shorter than ~100 s).
    """
    if method != "welch":
        raise ValueError(f"method {method!r}: only 'welch' is implemented")
    if interpolation not in ("cubic", "quadratic", "linear"):
        raise ValueError(f"interpolation {interpolation!r} not in cubic, quadratic, linear")
    if detrend not in ("constant", "linear"):
        raise ValueError(f"detrend {detrend!r} not in constant, linear")
    t = np.asarray(t_s, dtype=float)
    rr = np.asarray(rr_ms, dtype=float)
    bands = {"vlf": tuple(vlf), "lf": tuple(lf), "hf": tuple(hf)}
    out = dict(_NAN_FREQ)
    out["f_min"] = np.nan
    out.update({f"{k}_band": v for k, v in bands.items()})
    ok = np.isfinite(t) & np.isfinite(rr)
    t, rr = t[ok], rr[ok]
    if t.size < 4:
        return out
    order = np.argsort(t, kind="stable")
    t, rr = t[order], rr[order]
    keep = np.r_[True, np.diff(t) > 0]
    t, rr = t[keep], rr[keep]
    # Grid, segment length and lowest frequency are computed with NeuroKit2's own
    # arithmetic: with segments of half the record, the bin spacing is ~1/duration and
    # band edges such as 0.04 Hz fall on bins, so which side of an edge a bin lands on
    # depends on floating-point rounding (VLF can change by tens of percent).
    grid = np.arange(t[0], t[-1] + 1.0 / resample_hz, 1.0 / resample_hz)
    if interpolation == "cubic":
        x = scipy.interpolate.CubicSpline(t, rr, extrapolate=False)(grid)
        x[grid < t[0]] = rr[0]
        x[grid > t[-1]] = rr[-1]
    else:
        x = scipy.interpolate.interp1d(
            t, rr, kind=interpolation, bounds_error=False, fill_value=(rr[0], rr[-1])
        )(grid)
    x = scipy.signal.detrend(x, type=detrend)
    n = x.size
    f_min = (2 * resample_hz) / (n / 2)  # two cycles in a segment of half the record
    nperseg = int((2 / f_min) * resample_hz)
    if nperseg < 8:
        return out
    f, p = scipy.signal.welch(
        x,
        fs=resample_hz,
        window="hann",
        nperseg=nperseg,
        nfft=int(nperseg * 2),
        detrend=False,
        scaling="density",
        average="mean",
    )
    sel = f >= f_min
    f, p = f[sel], p[sel]
    out["f_min"] = float(f_min)
    for k, (lo, hi) in bands.items():
        out[k] = _band_power(f, p, lo, hi)
    out["total_power"] = float(np.nansum([out["vlf"], out["lf"], out["hf"]]))
    lf_p, hf_p = out["lf"], out["hf"]
    out["lf_hf"] = lf_p / hf_p
    out["lf_nu"] = 100.0 * lf_p / (lf_p + hf_p)
    out["hf_nu"] = 100.0 * hf_p / (lf_p + hf_p)
    return out
