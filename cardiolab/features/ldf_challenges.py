"""Skin micro-circulation challenges read by laser Doppler flowmetry (LDF).

Two standard provocations of the cutaneous microcirculation, each summarised by a few
landmarks of the flux time course (reviewed by Cracowski et al. 2006, Trends Pharmacol Sci
27:503-508, "Methodological issues in the assessment of skin microvascular endothelial
function in humans"; and Roustit & Cracowski 2012, Microcirculation 19:47-64, "Assessment
of endothelial and neurovascular function in human skin microcirculation"):

* :func:`porh_response`: post-occlusive reactive hyperaemia (PORH). A cuff occludes the
  arm for a few minutes; flux falls to the *biological zero* (BZ, the signal of cells
  moving without net flow); on release it overshoots to a peak and returns to baseline.
* :func:`local_heating_response`: local thermal hyperaemia (Minson et al. 2001,
  J Appl Physiol 91:1619-1626, "Nitric oxide and neurally mediated regulation of skin
  blood flow during local heating"). Heating the probe holder to 42 degC gives an initial
  axon-reflex peak within minutes, a nadir, and a NO-dependent plateau after 20-30 min;
  heating to 44 degC (or sodium nitroprusside) then gives the maximal flux, and each
  landmark is expressed as a percentage of the maximal cutaneous vascular conductance
  (CVCmax).

Cutaneous vascular conductance is CVC = flux / MAP (PU/mmHg, SCIENCE.md).

Why hand-written: no maintained Python library computes these landmarks (PeriSoft and
moorVMS, the LDF vendors' programs, are closed and not scriptable; NeuroKit2 and
scipy have no LDF challenge analysis). The numerics are simple (window means, a moving
average from :func:`scipy.ndimage.uniform_filter1d`, trapezoidal integration); what the
code pins down is *which* windows and smoothing are used, all of them parameters.

Conventions shared by both functions. Times are in seconds on the same clock as ``t``;
windows are half-open ``[start, stop)``. The flux is smoothed with a centred moving
average of ``smooth_s`` seconds before any peak, nadir or return-to-baseline is searched
for (it removes the cardiac pulsation and the fast laser speckle noise, which otherwise
bias a maximum upwards); window means use the raw flux (NaN samples ignored). When a
landmark cannot be computed its value is NaN and the ``reason`` key of the returned dict
says why (e.g. which minimum window applies); the key is absent when everything was
computed. CVC forms are NaN without ``map_mmhg`` (not an error: no ``reason``).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from ..errors import SessionFormatError, SignalQualityError

__all__ = [
    "HEATING_OUTPUTS",
    "PORH_OUTPUTS",
    "local_heating_response",
    "porh_response",
]

#: PORH output -> (units, long_name).
PORH_OUTPUTS = {
    "baseline_flux": ("PU", "mean flux before the occlusion"),
    "bz_flux": ("PU", "biological zero: mean flux in the last part of the occlusion"),
    "peak_flux": ("PU", "peak of the smoothed flux after release"),
    "time_to_peak": ("s", "time from release to the peak flux"),
    "peak_pct_baseline": ("%", "peak flux as percent of baseline flux"),
    "peak_minus_bz": ("PU", "peak flux minus biological zero"),
    "hyperaemic_area": ("PU s", "area of smoothed flux above baseline after release"),
    "hyperaemia_duration": ("s", "time from release to the return to baseline (or limit)"),
    "area_limited": ("1", "1 if the area stopped at the limit, not at a return to baseline"),
    "baseline_cvc": ("PU/mmHg", "baseline cutaneous vascular conductance"),
    "bz_cvc": ("PU/mmHg", "biological zero as conductance"),
    "peak_cvc": ("PU/mmHg", "peak cutaneous vascular conductance"),
    "peak_minus_bz_cvc": ("PU/mmHg", "peak minus biological zero, as conductance"),
    "hyperaemic_area_cvc": ("PU s/mmHg", "hyperaemic area as conductance"),
}

_HEATING_LANDMARKS = ("baseline", "initial_peak", "nadir", "plateau")

#: Local heating output -> (units, long_name).
HEATING_OUTPUTS = {
    "baseline_flux": ("PU", "mean flux before heating"),
    "initial_peak_flux": ("PU", "axon-reflex initial peak of the smoothed flux"),
    "time_to_initial_peak": ("s", "time from heating start to the initial peak"),
    "nadir_flux": ("PU", "minimum of the smoothed flux after the initial peak"),
    "time_to_nadir": ("s", "time from heating start to the nadir"),
    "plateau_flux": ("PU", "mean flux over the last part of the heating"),
    "max_flux": ("PU", "mean flux over the last part of maximal heating"),
    **{f"{k}_cvc": ("PU/mmHg", f"{k.replace('_', ' ')} conductance") for k in _HEATING_LANDMARKS},
    "max_cvc": ("PU/mmHg", "maximal cutaneous vascular conductance (CVCmax)"),
    **{
        f"{k}_pct_max": ("%", f"{k.replace('_', ' ')} flux, percent of maximal flux")
        for k in _HEATING_LANDMARKS
    },
    **{
        f"{k}_pct_cvcmax": ("%", f"{k.replace('_', ' ')} CVC, percent of CVCmax")
        for k in _HEATING_LANDMARKS
    },
}


# -- input checks -------------------------------------------------------------------------


def _signal(t, flux, map_mmhg):
    """Float copies of ``t``, ``flux`` and MAP (scalar, per-sample array or None)."""
    t = np.array(t, dtype=float)
    x = np.array(flux, dtype=float)
    if t.ndim != 1:
        raise SignalQualityError(f"t: expected a 1-D array of times (s), got shape {t.shape}")
    if x.shape != t.shape:
        raise SignalQualityError(f"flux: shape {x.shape} differs from t's {t.shape}")
    if not np.all(np.isfinite(t)):
        raise SignalQualityError("t: NaN or infinite times")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise SignalQualityError("t: times must increase strictly")
    if np.any(np.isinf(x)):
        raise SignalQualityError("flux: infinite samples")
    if map_mmhg is not None:
        m = np.array(map_mmhg, dtype=float)
        if m.ndim == 0:
            m = np.full(t.shape, float(m))
        elif m.shape != t.shape:
            raise SignalQualityError(
                f"map_mmhg: expected a scalar or an array shaped like t {t.shape}, "
                f"got shape {m.shape}"
            )
        finite = m[np.isfinite(m)]
        if finite.size and not (np.all(finite > 10) and np.all(finite < 300)):
            raise SignalQualityError(
                f"map_mmhg: values {finite.min():.3g}-{finite.max():.3g} are not mean "
                "arterial pressures in mmHg (expected 10-300)"
            )
        map_mmhg = m
    return t, x, map_mmhg


def _window(win, name):
    """``(start, stop)`` floats of a protocol window; malformed -> SessionFormatError."""
    try:
        a, b = (float(v) for v in win)
    except (TypeError, ValueError):
        raise SessionFormatError(f"{name}: expected (start, stop) in s, got {win!r}") from None
    if not (np.isfinite(a) and np.isfinite(b)) or b <= a:
        raise SessionFormatError(f"{name}: stop {b} s must be after start {a} s")
    return a, b


def _fs(t):
    """Sampling rate (Hz) from the median step of ``t``."""
    return 1.0 / float(np.median(np.diff(t))) if t.size > 1 else np.nan


def _covered(t, x, a, b):
    """Seconds of finite flux inside ``[a, b)``."""
    sel = (t >= a) & (t < b)
    return float(np.count_nonzero(np.isfinite(x[sel]))) / _fs(t) if t.size > 1 else 0.0


def _mean(t, x, a, b):
    """Mean of ``x`` over ``[a, b)`` ignoring NaN (NaN if nothing finite)."""
    v = x[(t >= a) & (t < b)]
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else np.nan


def _smooth(x, fs, smooth_s):
    """Centred moving average of ``smooth_s`` s; NaN samples stay NaN (no filling)."""
    n = max(int(round(smooth_s * fs)), 1)
    ok = np.isfinite(x)
    num = uniform_filter1d(np.where(ok, x, 0.0), n, mode="nearest")
    den = uniform_filter1d(ok.astype(float), n, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~ok] = np.nan
    return out


def _windowed_mean(t, x, a, b, min_s, what, reasons):
    """Mean flux over ``[a, b)``, NaN plus a reason when under ``min_s`` s of data."""
    have = _covered(t, x, a, b)
    if have < min_s:
        reasons.append(f"{what}: {have:.1f} s of flux in [{a:g}, {b:g}) s, minimum {min_s:g} s")
        return np.nan
    return _mean(t, x, a, b)


def _cvc(value, t, m, a, b):
    """``value / MAP``, MAP averaged over ``[a, b)``; NaN without MAP."""
    if m is None or not np.isfinite(value):
        return np.nan
    return value / _mean(t, m, a, b)


def _finish(out, reasons):
    """Plain floats, plus ``reason`` when anything could not be computed."""
    out = {k: float(v) for k, v in out.items()}
    if reasons:
        out["reason"] = "; ".join(reasons)
    return out


# -- PORH -----------------------------------------------------------------------------------


def porh_response(
    t,
    flux,
    *,
    occlusion,
    release,
    map_mmhg=None,
    baseline=None,
    baseline_window_s=120.0,
    bz_window_s=60.0,
    smooth_s=3.0,
    area_limit_s=300.0,
    min_window_s=20.0,
    min_release_s=60.0,
) -> dict:
    """Post-occlusive reactive hyperaemia (PORH) landmarks of a laser Doppler flux record.

    Method (Cracowski et al. 2006, Trends Pharmacol Sci 27:503; Roustit & Cracowski 2012,
    Microcirculation 19:47): baseline flux before the occlusion, biological zero (BZ)
    at the end of the occlusion, peak flux and time to peak after release, hyperaemic
    area above baseline, the peak as percent of baseline and as peak - BZ, and the
    conductance (CVC = flux / MAP) forms of these. Hand-written: no maintained library
    computes them (see the module docstring).

    Parameters
    ----------
    t : array-like of float, shape (n,)
        Sample times (s), strictly increasing, evenly sampled (e.g. 32 Hz).
    flux : array-like of float, shape (n,)
        Laser Doppler flux (PU). NaN samples (dropouts) are ignored, never filled.
    occlusion : (float, float)
        Start and stop (s) of the cuff occlusion (the protocol's occlusion epoch).
    release : (float, float)
        Start and stop (s) of the post-release recording (the release epoch); its start
        is the moment of cuff release (usually the occlusion's stop).
    map_mmhg : float or array-like of shape (n,), optional
        Mean arterial pressure (mmHg): one value, or one per flux sample (then each
        quantity is divided by the mean MAP over the window it was measured in).
    baseline : (float, float), optional
        Baseline epoch (s). Default: the ``baseline_window_s`` seconds before the
        occlusion starts. With an epoch, its last ``baseline_window_s`` seconds are used.
    baseline_window_s : float
        Length of the baseline window (s), ending at the baseline epoch's end (or at the
        occlusion start). Default 120 s: the last two minutes of rest, long enough to
        average over a few cycles of the slower vasomotion waves.
    bz_window_s : float
        Biological zero = mean flux over the *last* ``bz_window_s`` seconds of the
        occlusion (default 60 s), after the fall of flux at cuff inflation.
    smooth_s : float
        Width (s) of the centred moving average applied before the peak and the return
        to baseline are searched for (default 3 s: covers 2-4 cardiac cycles and removes
        the pulsation without flattening a peak that is reached within seconds).
    area_limit_s : float
        The peak is searched for, and the hyperaemic area integrated, from release until
        the smoothed flux first returns to baseline after the peak, or for at most
        ``area_limit_s`` seconds (default 300 s), or to the end of the release epoch,
        whichever is first.
    min_window_s : float
        Minimum seconds of finite flux in the baseline and BZ windows (default 20 s).
    min_release_s : float
        Minimum seconds of finite flux after release (default 60 s), enough for the peak
        (reached within ~5-30 s) and most of the decay.

    Returns
    -------
    dict of str to float
        Keys and units in :data:`PORH_OUTPUTS`: ``baseline_flux``, ``bz_flux``,
        ``peak_flux``, ``peak_minus_bz`` (PU); ``time_to_peak``, ``hyperaemia_duration``
        (s); ``peak_pct_baseline`` (% = 100 peak / baseline); ``hyperaemic_area``
        (PU s); ``area_limited`` (1 if the area hit ``area_limit_s`` or the end of the
        epoch before the flux returned to baseline, else 0); ``baseline_cvc``,
        ``bz_cvc``, ``peak_cvc``, ``peak_minus_bz_cvc`` (PU/mmHg) and
        ``hyperaemic_area_cvc`` (PU s/mmHg), NaN without MAP. ``reason`` (str) is
        present when a value is NaN for lack of data, naming the minimum that applies.

    Raises
    ------
    SignalQualityError
        ``t``/``flux``/``map_mmhg`` of the wrong shape, unordered times, infinite flux,
        MAP outside 10-300 mmHg.
    SessionFormatError
        A window that is not ``(start, stop)`` with stop after start, or a release that
        starts before the occlusion does.
    """
    t, x, m = _signal(t, flux, map_mmhg)
    o0, o1 = _window(occlusion, "occlusion")
    r0, r1 = _window(release, "release")
    if r0 < o0:
        raise SessionFormatError(f"release: starts at {r0} s, before the occlusion ({o0} s)")
    b1 = _window(baseline, "baseline")[1] if baseline is not None else o0
    b0 = b1 - baseline_window_s
    if baseline is not None:
        b0 = max(b0, _window(baseline, "baseline")[0])
    reasons: list[str] = []
    out = dict.fromkeys(PORH_OUTPUTS, np.nan)

    base = _windowed_mean(t, x, b0, b1, min_window_s, "baseline", reasons)
    z0 = max(o1 - bz_window_s, o0)
    bz = _windowed_mean(t, x, z0, o1, min_window_s, "biological zero", reasons)
    out.update(baseline_flux=base, bz_flux=bz)
    out["baseline_cvc"] = _cvc(base, t, m, b0, b1)
    out["bz_cvc"] = _cvc(bz, t, m, z0, o1)

    have = _covered(t, x, r0, r1)
    if have < min_release_s:
        reasons.append(
            f"release: {have:.1f} s of flux in [{r0:g}, {r1:g}) s, minimum {min_release_s:g} s"
        )
        return _finish(out, reasons)
    fs = _fs(t)
    sel = (t >= r0) & (t < min(r1, r0 + area_limit_s))
    tr, s = t[sel], _smooth(x, fs, smooth_s)[sel]
    i_peak = int(np.nanargmax(s))
    peak, t_peak = float(s[i_peak]), float(tr[i_peak])
    half = 0.5 * smooth_s
    out.update(peak_flux=peak, time_to_peak=t_peak - r0, peak_minus_bz=peak - bz)
    out["peak_pct_baseline"] = 100.0 * peak / base
    out["peak_cvc"] = _cvc(peak, t, m, t_peak - half, t_peak + half)
    out["peak_minus_bz_cvc"] = out["peak_cvc"] - out["bz_cvc"]
    if not np.isfinite(base):
        return _finish(out, reasons)  # no area without a baseline (reason given above)

    # return to baseline: first smoothed sample at or below baseline after the peak
    limit = float(tr[-1])
    after = np.flatnonzero((tr > t_peak) & (s <= base))
    t_end = float(tr[after[0]]) if after.size and tr[after[0]] <= limit else limit
    out["area_limited"] = float(not (after.size and tr[after[0]] <= limit))
    inside = tr <= t_end
    excess = np.clip(s[inside] - base, 0.0, None)
    ok = np.isfinite(excess)
    area = float(np.trapezoid(excess[ok], tr[inside][ok]))
    out.update(hyperaemic_area=area, hyperaemia_duration=t_end - r0)
    if m is not None:
        out["hyperaemic_area_cvc"] = area / _mean(t, m, r0, t_end + 1.0 / fs)
    return _finish(out, reasons)


# -- local heating ------------------------------------------------------------------------


def local_heating_response(
    t,
    flux,
    *,
    heating_start,
    maximal=None,
    map_mmhg=None,
    heating_stop=None,
    baseline=None,
    baseline_window_s=120.0,
    peak_window_s=300.0,
    nadir_search_s=900.0,
    plateau_window_s=300.0,
    max_window_s=300.0,
    smooth_s=30.0,
    min_window_s=60.0,
) -> dict:
    """Local thermal hyperaemia landmarks: axon-reflex peak, nadir, plateau, % CVCmax.

    Method (Minson et al. 2001, J Appl Physiol 91:1619; Roustit & Cracowski 2012,
    Microcirculation 19:47): local heating of the skin under the probe to 42 degC gives a
    first peak within minutes (axon reflex), a nadir, then a plateau sustained mainly by
    nitric oxide; heating to 43-44 degC (or sodium nitroprusside) gives the maximal
    flux. Each landmark is reported in PU, as conductance (PU/mmHg) and as percent of
    the maximal flux or of the maximal CVC. Hand-written: no maintained library computes
    them (see the module docstring).

    Parameters
    ----------
    t : array-like of float, shape (n,)
        Sample times (s), strictly increasing, evenly sampled.
    flux : array-like of float, shape (n,)
        Laser Doppler flux (PU); NaN samples are ignored, never filled.
    heating_start : float
        Time (s) the local heater starts (the 42 degC heating epoch's start).
    maximal : (float, float), optional
        The maximal-heating (44 degC) or SNP epoch (s). Without it the maximum and the
        percentages are NaN (no ``reason``: not asked for).
    map_mmhg : float or array-like of shape (n,), optional
        Mean arterial pressure (mmHg), one value or one per sample (then each landmark
        is divided by the mean MAP over its own window).
    heating_stop : float, optional
        End (s) of the 42 degC heating; default the start of ``maximal`` or else the
        last sample.
    baseline : (float, float), optional
        Baseline epoch (s); its last ``baseline_window_s`` seconds are used. Default:
        the ``baseline_window_s`` seconds before ``heating_start``.
    baseline_window_s : float
        Baseline window length (s), default 120.
    peak_window_s : float
        The initial peak is the maximum of the smoothed flux in the first
        ``peak_window_s`` seconds of heating (default 300 s: the axon-reflex peak comes
        within ~2-5 min at a 0.1 degC/s heating rate).
    nadir_search_s : float
        The nadir is the minimum of the smoothed flux between the initial peak and
        ``heating_start + nadir_search_s`` (default 900 s) or the plateau window,
        whichever comes first.
    plateau_window_s : float
        Plateau = mean flux over the last ``plateau_window_s`` seconds (default 300) of
        the heating (before ``heating_stop``).
    max_window_s : float
        Maximum = mean flux over the last ``max_window_s`` seconds (default 300) of the
        ``maximal`` epoch, where the maximal dilation has stabilised.
    smooth_s : float
        Width (s) of the centred moving average before the peak and nadir are searched
        for (default 30 s). The landmarks evolve over minutes: 30 s removes cardiac,
        respiratory and myogenic fluctuations and lowers the peak of the simulator's
        axon-reflex curve by < 0.5 %; 10 s leaves a larger vasomotion bias (on
        :func:`cardiolab.simulate.ldf_challenges.simulate_local_heating`, 30 seeds:
        nadir -9 % with 10 s, -5 % with 30 s). Being a minimum of a fluctuating signal,
        the nadir stays biased low by the slow (endothelial, neurogenic) vasomotion
        that no smoothing of this width removes.
    min_window_s : float
        Minimum seconds of finite flux for the baseline, plateau and maximum windows and
        for the peak search (default 60 s).

    Returns
    -------
    dict of str to float
        Keys and units in :data:`HEATING_OUTPUTS`: ``baseline_flux``,
        ``initial_peak_flux``, ``nadir_flux``, ``plateau_flux``, ``max_flux`` (PU);
        ``time_to_initial_peak``, ``time_to_nadir`` (s from heating start);
        ``<landmark>_cvc`` and ``max_cvc`` (PU/mmHg, NaN without MAP);
        ``<landmark>_pct_max`` (% of the maximal flux, NaN without ``maximal``);
        ``<landmark>_pct_cvcmax`` (% of CVCmax, NaN without ``maximal`` or MAP);
        landmarks are ``baseline``, ``initial_peak``, ``nadir``, ``plateau``.
        ``reason`` (str) is present when a value is NaN for lack of data.

    Raises
    ------
    SignalQualityError
        Wrong shapes, unordered times, infinite flux, MAP outside 10-300 mmHg.
    SessionFormatError
        A malformed window, or a heating stop not after its start.
    """
    t, x, m = _signal(t, flux, map_mmhg)
    h0 = float(heating_start)
    mx = _window(maximal, "maximal") if maximal is not None else None
    h1 = float(heating_stop) if heating_stop is not None else (mx[0] if mx else float(t[-1]))
    _window((h0, h1), "heating")
    b1 = _window(baseline, "baseline")[1] if baseline is not None else h0
    b0 = b1 - baseline_window_s
    if baseline is not None:
        b0 = max(b0, _window(baseline, "baseline")[0])
    reasons: list[str] = []
    out = dict.fromkeys(HEATING_OUTPUTS, np.nan)
    windows = {}  # landmark -> the window its MAP is averaged over

    out["baseline_flux"] = _windowed_mean(t, x, b0, b1, min_window_s, "baseline", reasons)
    windows["baseline"] = (b0, b1)
    p0 = max(h1 - plateau_window_s, h0)
    out["plateau_flux"] = _windowed_mean(t, x, p0, h1, min_window_s, "plateau", reasons)
    windows["plateau"] = (p0, h1)
    if mx is not None:
        m0 = max(mx[1] - max_window_s, mx[0])
        out["max_flux"] = _windowed_mean(t, x, m0, mx[1], min_window_s, "maximal", reasons)
        windows["max"] = (m0, mx[1])

    fs = _fs(t)
    s = _smooth(x, fs, smooth_s)
    half = 0.5 * smooth_s
    w_end = min(h0 + peak_window_s, h1)
    if _covered(t, x, h0, w_end) < min_window_s:
        reasons.append(
            f"initial peak: {_covered(t, x, h0, w_end):.1f} s of flux in [{h0:g}, {w_end:g}) s,"
            f" minimum {min_window_s:g} s"
        )
    else:
        sel = np.flatnonzero((t >= h0) & (t < w_end))
        i = sel[int(np.nanargmax(s[sel]))]
        out["initial_peak_flux"], out["time_to_initial_peak"] = float(s[i]), float(t[i] - h0)
        windows["initial_peak"] = (t[i] - half, t[i] + half)
        n_end = min(h0 + nadir_search_s, p0)
        sel = np.flatnonzero((t > t[i]) & (t < n_end) & np.isfinite(s))
        if sel.size == 0:
            reasons.append(f"nadir: no flux between the initial peak and {n_end:g} s")
        else:
            j = sel[int(np.argmin(s[sel]))]
            out["nadir_flux"], out["time_to_nadir"] = float(s[j]), float(t[j] - h0)
            windows["nadir"] = (t[j] - half, t[j] + half)

    for k, (a, b) in windows.items():
        out[f"{k}_cvc"] = _cvc(out[f"{k}_flux"], t, m, a, b)
    for k in _HEATING_LANDMARKS:
        out[f"{k}_pct_max"] = 100.0 * out[f"{k}_flux"] / out["max_flux"]
        out[f"{k}_pct_cvcmax"] = 100.0 * out[f"{k}_cvc"] / out["max_cvc"]
    return _finish(out, reasons)
