"""Dynamic cerebral autoregulation: transfer function analysis (TFA) after CARNet.

Implements the transfer function analysis of spontaneous fluctuations of mean arterial
pressure (MAP, input) and cerebral blood flow velocity (CBFV, output) recommended by the
Cerebral Autoregulation Research Network (CARNet) white paper:

    Claassen JAHR, Meel-van den Abeelen ASS, Simpson DM, Panerai RB, et al.
    "Transfer function analysis of dynamic cerebral autoregulation: A white paper from
    the International Cerebral Autoregulation Research Network."
    J Cereb Blood Flow Metab 2016; 36(4): 665-680. doi:10.1177/0271678X15626425

with the default parameters of CARNet's reference script ``tfa_car.m`` (D. Simpson,
12/12/2015, www.car-net.org/tools), as recorded with its outputs in
``shared/data/carnet/reference_tfa.json``. No code of that (GPL) script is used here; the
method is written from the white paper and the parameter notes.

:func:`transfer_function_spectra` gives the frequency-resolved estimate (gain, phase,
coherence per frequency bin); :func:`cerebral_autoregulation` averages it over the
VLF, LF and HF bands. :func:`mean_flow_index` is the time-domain correlation index Mx
(Czosnyka et al. 1996).
"""

from __future__ import annotations

import json

import numpy as np
import scipy.signal
import xarray as xr
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import SignalQualityError

__all__ = [
    "CARNET_DEFAULTS",
    "cerebral_autoregulation",
    "mean_flow_index",
    "transfer_function_spectra",
]

#: CARNet ``tfa_car.m`` default parameters (white paper, Table 2 and recommendations).
CARNET_DEFAULTS = {
    "vlf": (0.02, 0.07),
    "lf": (0.07, 0.2),
    "hf": (0.2, 0.5),
    "window_length": 102.4,
    "overlap": 59.99,
    "overlap_adjust": True,
    "spectral_smoothing": 3,
    "coherence2_thresholds": {
        3: 0.51,
        4: 0.40,
        5: 0.34,
        6: 0.29,
        7: 0.25,
        8: 0.22,
        9: 0.20,
        10: 0.18,
        11: 0.17,
        12: 0.15,
        13: 0.14,
        14: 0.13,
        15: 0.12,
    },
    "apply_coherence2_threshold": True,
    "remove_negative_phase": True,
    "remove_negative_phase_f_cutoff": 0.1,
    "min_windows": 3,
}
_SPECTRAL_KEYS = ("window_length", "overlap", "overlap_adjust", "spectral_smoothing")
_BANDS = ("vlf", "lf", "hf")
_BAND_NAMES = {"vlf": "very low frequency", "lf": "low frequency", "hf": "high frequency"}


def _as_array(x, name):
    """Float copy of a 1-D signal and its ``sampling_rate`` attr (None if absent)."""
    fs = None
    if isinstance(x, xr.DataArray):
        fs = x.attrs.get("sampling_rate")
        x = x.values
    a = np.array(x, dtype=float)  # a copy: the caller's array is never touched
    if a.ndim != 1:
        raise SignalQualityError(f"{name}: expected a 1-D signal, got shape {a.shape}")
    return a, fs


def _check_inputs(pressure, velocity, fs, allow_nan=False):
    """Validated float copies of both signals and the sampling rate (Hz).

    ``allow_nan``: NaN samples pass (the caller drops what they touch); infinite
    samples never do.
    """
    p, fs_p = _as_array(pressure, "pressure")
    v, fs_v = _as_array(velocity, "velocity")
    if fs is None:
        attrs = {float(f) for f in (fs_p, fs_v) if f is not None}
        if len(attrs) > 1:
            raise SignalQualityError(
                f"pressure and velocity: sampling_rate attrs differ ({fs_p} vs {fs_v} Hz)"
            )
        fs = attrs.pop() if attrs else 10.0
    fs = float(fs)
    if not fs > 0:
        raise SignalQualityError(f"fs: sampling rate must be positive, got {fs}")
    if p.size != v.size:
        raise SignalQualityError(
            f"pressure and velocity: lengths differ ({p.size} vs {v.size} samples)"
        )
    for name, a in (("pressure", p), ("velocity", v)):
        n_bad = int(np.count_nonzero(np.isinf(a) if allow_nan else ~np.isfinite(a)))
        if n_bad:
            what = "infinite" if allow_nan else "NaN or infinite"
            raise SignalQualityError(
                f"{name}: {n_bad} {what} samples; interpolate or cut them first"
            )
        finite = a[np.isfinite(a)]
        if a.size and not finite.size:
            raise SignalQualityError(f"{name}: every sample is NaN")
        if finite.size and np.ptp(finite) == 0:
            raise SignalQualityError(
                f"{name}: flat signal (every sample {finite[0]}), no TFA or Mx possible"
            )
    return p, v, fs


def _params(params):
    unknown = set(params) - set(CARNET_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown TFA parameters: {sorted(unknown)}")
    out = {**CARNET_DEFAULTS, **params}
    out["coherence2_thresholds"] = {
        int(k): float(c) for k, c in dict(out["coherence2_thresholds"]).items()
    }
    return out


def _segmentation(n, fs, window_length, overlap, overlap_adjust, min_windows):
    """Window length (samples), shift (samples), number of windows and overlap (%).

    CARNet rule: start from ``overlap`` % (at most 59.99 %, i.e. 4 of 5 windows would not
    overlap more than the Hann window's 50 % plus a little), count the windows that fit,
    then (``overlap_adjust``) lower the overlap so that those windows span the record.
    """
    m = int(round(window_length * fs))
    if n < m:
        raise SignalQualityError(
            f"record too short for TFA: {n} samples ({n / fs:.1f} s) < one "
            f"{window_length} s window ({m} samples)"
        )
    shift = m * (1.0 - overlap / 100.0)
    k = int(np.floor((n - m) / shift + 1e-9)) + 1
    if overlap_adjust and k > 1:
        shift = (n - m) / (k - 1)
    shift = int(np.floor(shift))
    if k < min_windows:
        raise SignalQualityError(
            f"record too short for TFA: {n / fs:.1f} s gives {k} windows of "
            f"{window_length} s, at least {min_windows} needed"
        )
    return m, shift, k, 100.0 * (m - shift) / m


def _smooth(x, n_points):
    """CARNet spectral smoothing: zero-phase ``n_points`` triangular moving average.

    A forward-backward (``filtfilt``) pass of a ``(n_points + 1) / 2`` point boxcar, with
    bin 0 replaced by bin 1 during filtering (the DC bin of mean-removed data carries no
    information) and restored afterwards.
    """
    if n_points <= 1:
        return x
    m = (int(n_points) + 1) // 2
    y = x.copy()
    y[0] = x[1]
    y = scipy.signal.filtfilt(np.ones(m) / m, [1.0], y, padtype="odd", padlen=3 * (m - 1))
    y[0] = x[0]
    return y


def _spectra(p, v, fs, prm):
    """Smoothed auto- and cross-spectra (two-sided density, bins 0 .. M/2)."""
    m, shift, k, overlap_used = _segmentation(
        p.size,
        fs,
        prm["window_length"],
        prm["overlap"],
        prm["overlap_adjust"],
        prm["min_windows"],
    )
    common = dict(
        fs=fs,
        window=scipy.signal.get_window("hann", m, fftbins=True),  # periodic Hann
        nperseg=m,
        noverlap=m - shift,
        detrend=False,
        return_onesided=False,
        scaling="density",
    )
    x = p[: m + (k - 1) * shift] - p.mean()
    y = v[: m + (k - 1) * shift] - v.mean()
    f, pxx = scipy.signal.welch(x, **common)
    _, pyy = scipy.signal.welch(y, **common)
    _, pxy = scipy.signal.csd(x, y, **common)
    half = m // 2 + 1
    f = np.abs(f[:half])
    pxx, pyy, pxy = (_smooth(s, prm["spectral_smoothing"])[:half] for s in (pxx, pyy, pxy))
    return f, pxx.real, pyy.real, pxy, k, overlap_used


def transfer_function_spectra(pressure, velocity, fs=None, **params) -> xr.Dataset:
    """Frequency-resolved pressure-to-velocity transfer function (CARNet TFA).

    Welch estimates (periodic Hann window, no zero padding, signals mean-removed over the
    whole record) of the auto-spectra of MAP and CBFV and their cross-spectrum, each
    smoothed over frequency, then ``H = Pxy / Pxx`` and ``coh2 = |Pxy|**2 / (Pxx Pyy)``.

    Parameters
    ----------
    pressure, velocity : array-like or xarray.DataArray, shape (n_samples,)
        MAP (mmHg) and CBFV (cm/s), same length, uniformly sampled at ``fs``.
    fs : float, optional
        Sampling rate (Hz). Default: the DataArrays' ``sampling_rate`` attr, else 10 Hz.
    **params
        Overrides of :data:`CARNET_DEFAULTS` (see :func:`cerebral_autoregulation`).

    Returns
    -------
    xarray.Dataset
        Dim ``frequency`` (Hz, 0 .. fs/2): ``gain`` (cm/s/mmHg), ``phase`` (degrees,
        positive when CBFV leads MAP), ``coherence`` (squared, 1), ``pxx`` (mmHg2/Hz) and
        ``pyy`` ((cm/s)2/Hz), all smoothed, none thresholded. Auto-spectra are two-sided
        densities (not doubled): band power is ``2 * sum(pxx) * df``. Attrs
        ``n_windows``, ``overlap`` (%), ``parameters`` (JSON).

    Raises
    ------
    SignalQualityError
        Lengths differ, NaN or infinite samples, a flat signal, or a record too short
        for ``min_windows`` windows.

    Notes
    -----
    ``scipy.signal.welch`` / ``csd`` do the segment averaging. Hand-written here because
    scipy has no equivalent: CARNet's overlap rule (:func:`_segmentation`) and the
    spectral smoothing with the DC-bin substitution (``filtfilt`` does the filtering).
    Source: Claassen et al. 2016 (CARNet white paper), defaults of ``tfa_car.m``.
    """
    prm = _params(params)
    p, v, fs = _check_inputs(pressure, velocity, fs)
    f, pxx, pyy, pxy, k, overlap_used = _spectra(p, v, fs, prm)
    h = pxy / pxx
    coh2 = np.abs(pxy) ** 2 / (pxx * pyy)
    ds = xr.Dataset(
        {
            "gain": ("frequency", np.abs(h), {"units": "cm/s/mmHg", "long_name": "TFA gain"}),
            "phase": (
                "frequency",
                np.degrees(np.angle(h)),
                {"units": "degree", "long_name": "TFA phase (CBFV leads MAP when positive)"},
            ),
            "coherence": (
                "frequency",
                coh2,
                {"units": "1", "long_name": "magnitude-squared coherence"},
            ),
            "pxx": ("frequency", pxx, {"units": "mmHg2/Hz", "long_name": "MAP spectral density"}),
            "pyy": (
                "frequency",
                pyy,
                {"units": "(cm/s)2/Hz", "long_name": "CBFV spectral density"},
            ),
        },
        coords={"frequency": ("frequency", f, {"units": "Hz"})},
    )
    ds.attrs.update(
        n_windows=k,
        overlap=overlap_used,
        mean_abp=float(p.mean()),
        mean_cbfv=float(v.mean()),
        parameters=json.dumps(prm),
    )
    return ds


def cerebral_autoregulation(pressure, velocity, fs=None, **params) -> xr.Dataset:
    """Dynamic cerebral autoregulation by transfer function analysis (CARNet).

    Band averages (VLF, LF, HF) of the MAP-to-CBFV transfer function of
    :func:`transfer_function_spectra`: ``gain`` and ``phase`` are the means over the bins
    of the band ``[lo, hi)`` whose squared coherence reaches the threshold for the number
    of windows (white paper Table; 5 windows -> 0.34; no threshold outside 3..15
    windows); phase also drops bins below ``remove_negative_phase_f_cutoff`` with
    negative phase (wrap-around artefact, white paper). ``coherence`` is the mean over
    all bins of the band (no threshold). ``gain_norm`` is gain / mean CBFV x 100.

    Parameters
    ----------
    pressure : array-like or xarray.DataArray, shape (n_samples,)
        Mean arterial pressure (mmHg), uniformly sampled (beat-to-beat values
        interpolated, typically to 10 Hz). Not modified.
    velocity : array-like or xarray.DataArray, shape (n_samples,)
        Cerebral blood flow velocity (cm/s), same sampling. Not modified.
    fs : float, optional
        Sampling rate (Hz). Default: the DataArrays' ``sampling_rate`` attr, else 10 Hz.
    **params
        Overrides of :data:`CARNET_DEFAULTS` (CARNet ``tfa_car.m`` defaults):
        ``vlf``, ``lf``, ``hf`` (band edges, Hz: 0.02-0.07, 0.07-0.2, 0.2-0.5),
        ``window_length`` (s, 102.4; Hann), ``overlap`` (%, 59.99), ``overlap_adjust``
        (True: overlap lowered so the windows span the record), ``spectral_smoothing``
        (points of the triangular smoother, 3), ``coherence2_thresholds`` (dict
        n_windows -> threshold), ``apply_coherence2_threshold`` (True),
        ``remove_negative_phase`` (True), ``remove_negative_phase_f_cutoff`` (Hz, 0.1),
        ``min_windows`` (3, fewest windows for which the white paper gives a coherence
        threshold; cardiolab's own choice, CARNet only warns).

    Returns
    -------
    xarray.Dataset
        Dim ``band`` (``vlf``, ``lf``, ``hf``; coords ``f_lo``, ``f_hi`` in Hz):
        ``gain`` (cm/s/mmHg), ``gain_norm`` (%/mmHg), ``gain_pct`` (%/%: gain x mean
        MAP / mean CBFV, CARNet's gain with both signals normalised), ``phase`` (degree),
        ``coherence`` (1, band mean of coh2), ``n_bins`` (bins used for gain); scalars
        ``n_windows`` and ``overlap`` (%). NaN where no bin of a band passes the
        threshold. Attrs ``mean_abp`` (mmHg), ``mean_cbfv`` (cm/s), ``coherence2_threshold``
        (NaN if none applied), ``parameters`` (JSON of every parameter used), ``source``.

    Raises
    ------
    SignalQualityError
        If pressure and velocity lengths differ, either has NaN or infinite samples or is
        flat (e.g. an all-zero channel), or the record is shorter than ``min_windows``
        windows (at the defaults: 184.3 s).
    TypeError
        For an unknown parameter name.

    Notes
    -----
    Spectra come from ``scipy.signal.welch``/``csd``; the CARNet overlap rule, spectral
    smoothing, coherence thresholding and band averaging have no scipy equivalent and
    are written here. Checked against ``tfa_car.m`` run on CARNet's sample data (see
    ``tests/test_features_cerebral.py``).

    References
    ----------
    Claassen JAHR et al. (2016) J Cereb Blood Flow Metab 36:665-680 (CARNet white paper);
    Simpson DM, ``tfa_car.m`` (2015), www.car-net.org/tools.
    """
    prm = _params(params)
    spec = transfer_function_spectra(pressure, velocity, fs, **params)
    f = spec["frequency"].values
    gain = spec["gain"].values
    phase = spec["phase"].values
    coh2 = spec["coherence"].values
    k = spec.attrs["n_windows"]
    threshold = prm["coherence2_thresholds"].get(k) if prm["apply_coherence2_threshold"] else None
    ok = coh2 >= threshold if threshold is not None else np.ones(f.size, bool)
    phase_ok = ok.copy()
    if prm["remove_negative_phase"]:
        phase_ok &= ~((phase < 0) & (f < prm["remove_negative_phase_f_cutoff"]))

    rows = {"gain": [], "phase": [], "coherence": [], "n_bins": []}
    for b in _BANDS:
        lo, hi = prm[b]
        in_band = (f >= lo) & (f < hi)
        g, ph = gain[in_band & ok], phase[in_band & phase_ok]
        rows["gain"].append(g.mean() if g.size else np.nan)
        rows["phase"].append(ph.mean() if ph.size else np.nan)
        rows["coherence"].append(coh2[in_band].mean() if in_band.any() else np.nan)
        rows["n_bins"].append(g.size)
    mean_cbfv = spec.attrs["mean_cbfv"]
    gain_arr = np.array(rows["gain"])
    ds = xr.Dataset(
        {
            "gain": ("band", gain_arr, {"units": "cm/s/mmHg", "long_name": "TFA gain"}),
            "gain_norm": (
                "band",
                gain_arr / mean_cbfv * 100.0,
                {"units": "%/mmHg", "long_name": "TFA gain normalised by mean CBFV"},
            ),
            "gain_pct": (
                "band",
                gain_arr * spec.attrs["mean_abp"] / mean_cbfv,
                {
                    "units": "%/%",
                    "long_name": "TFA gain with CBFV and MAP both in % of their means",
                },
            ),
            "phase": (
                "band",
                np.array(rows["phase"]),
                {"units": "degree", "long_name": "TFA phase (CBFV leads MAP when positive)"},
            ),
            "coherence": (
                "band",
                np.array(rows["coherence"]),
                {"units": "1", "long_name": "band mean of magnitude-squared coherence"},
            ),
            "n_bins": (
                "band",
                np.array(rows["n_bins"]),
                {"units": "1", "long_name": "frequency bins above coherence threshold"},
            ),
            "n_windows": ((), k, {"units": "1", "long_name": "number of Welch windows"}),
            "overlap": (
                (),
                spec.attrs["overlap"],
                {"units": "%", "long_name": "window overlap used"},
            ),
        },
        coords={
            "band": list(_BANDS),
            "f_lo": ("band", [prm[b][0] for b in _BANDS], {"units": "Hz"}),
            "f_hi": ("band", [prm[b][1] for b in _BANDS], {"units": "Hz"}),
            "band_name": ("band", [_BAND_NAMES[b] for b in _BANDS]),
        },
    )
    ds.attrs.update(
        mean_abp=spec.attrs["mean_abp"],
        mean_cbfv=mean_cbfv,
        coherence2_threshold=np.nan if threshold is None else threshold,
        parameters=spec.attrs["parameters"],
        source="Claassen et al. 2016 J Cereb Blood Flow Metab 36:665 (CARNet); tfa_car.m",
    )
    return ds


def _count(length_s, unit_s, name, unit_name):
    """``length_s / unit_s`` as an int, or ValueError if it is not a whole number."""
    k = int(round(length_s / unit_s))
    if k < 1 or abs(k * unit_s - length_s) > 1e-9 * max(abs(length_s), 1.0):
        raise ValueError(f"{name} = {length_s} s is not a whole number of {unit_name} ({unit_s} s)")
    return k


def mean_flow_index(
    pressure,
    velocity,
    fs=None,
    *,
    block_s=3.0,
    window_s=60.0,
    step_s=None,
    min_valid_fraction=0.75,
) -> xr.Dataset:
    """Mean flow index Mx: moving correlation of MAP and CBFV (Czosnyka et al. 1996).

    MAP and CBFV are averaged over consecutive non-overlapping ``block_s`` blocks; in
    each ``window_s`` window (``window_s / block_s`` blocks, 20 at the defaults) the
    Pearson correlation coefficient of the block means is Mx of that window, and the
    record's Mx is the arithmetic mean over windows. Mx near +1: CBFV follows MAP
    passively (impaired autoregulation); near 0 or negative: intact autoregulation.

    Parameters
    ----------
    pressure : array-like or xarray.DataArray, shape (n_samples,)
        Mean arterial (or cerebral perfusion) pressure (mmHg), uniformly sampled.
        NaN samples allowed (see Notes). Not modified.
    velocity : array-like or xarray.DataArray, shape (n_samples,)
        Cerebral blood flow velocity (cm/s), same sampling. NaN allowed. Not modified.
    fs : float, optional
        Sampling rate (Hz). Default: the DataArrays' ``sampling_rate`` attr, else 10 Hz.
        ``block_s * fs`` is rounded to whole samples.
    block_s : float
        Averaging block (s), 3 s.
    window_s : float
        Correlation window (s), 60 s; a whole number of blocks.
    step_s : float, optional
        Shift between window starts (s), rounded to whole samples; each window's blocks
        start at the window's first sample. Default ``window_s``:
        non-overlapping windows, so each block enters one window and the windows are
        independent (cardiolab's choice; a 10 s step, i.e. windows overlapping by 50 s, is a
        common alternative for a smoother Mx time course -- pass ``step_s=...``; the mean
        then weights central blocks more).
    min_valid_fraction : float
        Fewest valid blocks a window needs, as a fraction of its blocks (0.75: 15 of 20,
        and never fewer than 3). cardiolab's choice; the papers give no number.

    Returns
    -------
    xarray.Dataset
        ``mx`` (1, scalar: mean over valid windows), ``mx_window`` (1, dim ``window``
        whose coordinate is the window start in s from the first sample; NaN for a
        rejected window), ``n_blocks`` (dim ``window``: valid blocks used), ``n_windows``
        (windows with a valid Mx, averaged into ``mx``), ``n_windows_rejected`` (windows
        with too few valid blocks, or a constant MAP or CBFV over their valid blocks).
        Attrs ``parameters`` (JSON: fs, block_s, window_s, step_s, min_valid_fraction,
        blocks_per_window, min_blocks, block_samples) and ``source``.

    Raises
    ------
    SignalQualityError
        Lengths differ, infinite samples, an all-NaN or flat signal, a record shorter
        than one window of whole blocks, or no window with enough valid blocks.
    ValueError
        ``window_s`` not a whole number of blocks, ``block_s`` or ``step_s`` shorter
        than one sample, or ``min_valid_fraction`` outside (0, 1].

    Notes
    -----
    Missing data: a block with a NaN sample in either signal is dropped (both its
    means); a window then correlates the remaining pairs, and is rejected (NaN,
    counted in ``n_windows_rejected``) with fewer than ``min_blocks`` of them. Samples
    after the last whole window are not used. Vectorised: strided (window, block,
    sample) views of the samples, block means, then one masked correlation per row.

    References
    ----------
    Czosnyka M, Smielewski P, Kirkpatrick P, Menon DK, Pickard JD (1996). Monitoring of
    cerebral autoregulation in head-injured patients. Stroke 27:1829-1834.
    """
    if not 0.0 < min_valid_fraction <= 1.0:
        raise ValueError(f"min_valid_fraction must be in (0, 1], got {min_valid_fraction}")
    p, v, fs = _check_inputs(pressure, velocity, fs, allow_nan=True)
    step_s = window_s if step_s is None else step_s
    block_n = int(round(block_s * fs))
    if block_n < 1:
        raise ValueError(f"block_s = {block_s} s is shorter than one sample at {fs} Hz")
    per_window = _count(window_s, block_s, "window_s", "blocks")
    min_blocks = max(3, int(np.ceil(min_valid_fraction * per_window - 1e-9)))
    if min_blocks > per_window:
        raise ValueError(f"window_s = {window_s} s holds {per_window} blocks, fewer than 3")
    window_n = per_window * block_n
    step_n = int(round(step_s * fs))
    if step_n < 1:
        raise ValueError(f"step_s = {step_s} s is shorter than one sample at {fs} Hz")
    if p.size < window_n:
        raise SignalQualityError(
            f"record too short for Mx: {p.size} samples ({p.size / fs:.1f} s) < one "
            f"{window_s} s window of {per_window} whole {block_s} s blocks ({window_n} samples)"
        )
    starts = np.arange(0, p.size - window_n + 1, step_n)  # window starts (samples)
    # (window, block, sample) views; blocks are anchored at each window's start, so with
    # a step of whole blocks every window sees the same blocks as the record-wide grid
    shape = (starts.size, per_window, block_n)
    pw = sliding_window_view(p, window_n)[starts].reshape(shape).mean(axis=2)
    vw = sliding_window_view(v, window_n)[starts].reshape(shape).mean(axis=2)
    ok = np.isfinite(pw) & np.isfinite(vw)  # a NaN sample makes its block mean NaN
    n_ok = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dp = np.where(ok, pw - np.where(ok, pw, 0.0).sum(axis=1, keepdims=True) / n_ok[:, None], 0)
        dv = np.where(ok, vw - np.where(ok, vw, 0.0).sum(axis=1, keepdims=True) / n_ok[:, None], 0)
        sxx, syy = (dp * dp).sum(axis=1), (dv * dv).sum(axis=1)
        r = (dp * dv).sum(axis=1) / np.sqrt(sxx * syy)
    valid = (n_ok >= min_blocks) & (sxx > 0) & (syy > 0)
    r = np.where(valid, np.clip(r, -1.0, 1.0), np.nan)
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise SignalQualityError(
            f"no Mx window usable: each of the {starts.size} windows of {window_s} s has "
            f"fewer than {min_blocks} of {per_window} {block_s} s blocks free of NaN samples "
            f"in pressure and velocity (or a constant signal over them)"
        )
    params = {
        "fs": fs,
        "block_s": block_s,
        "window_s": window_s,
        "step_s": step_s,
        "min_valid_fraction": min_valid_fraction,
        "blocks_per_window": per_window,
        "min_blocks": min_blocks,
        "block_samples": block_n,
    }
    ds = xr.Dataset(
        {
            "mx": (
                (),
                float(r[valid].mean()),
                {"units": "1", "long_name": "mean flow index Mx (mean over windows)"},
            ),
            "mx_window": (
                "window",
                r,
                {"units": "1", "long_name": "Mx of each window (MAP-CBFV correlation)"},
            ),
            "n_blocks": (
                "window",
                n_ok,
                {"units": "1", "long_name": "valid blocks in the window"},
            ),
            "n_windows": ((), n_valid, {"units": "1", "long_name": "windows averaged into Mx"}),
            "n_windows_rejected": (
                (),
                int(starts.size - n_valid),
                {"units": "1", "long_name": "windows rejected (too few valid blocks or flat)"},
            ),
        },
        coords={
            "window": (
                "window",
                starts / fs,
                {"units": "s", "long_name": "window start from the first sample"},
            )
        },
    )
    ds.attrs.update(
        parameters=json.dumps(params),
        source="Czosnyka et al. 1996 Stroke 27:1829 (mean flow index Mx)",
    )
    return ds
