"""Epoch-level features: HRV, baroreflex, haemodynamics, microcirculation, cerebral.

The numerical core lives in :mod:`.hrv` (time, frequency and nonlinear HRV),
:mod:`.brs`, :mod:`.hemodynamics`, :mod:`.microcirculation` and :mod:`.cerebral`
(CARNet transfer function analysis and the Mx index; not yet computed per epoch)
(NumPy arrays in, dicts of floats or small Datasets out). This module is the
thin xarray layer: :func:`epoch_features` turns a beat table, the raw LDF group and
the protocol into one labelled Dataset (dim ``epoch``) with units and long names, and
:func:`orthostatic_response` takes the stand - supine difference.

Feature names match the simulator's truth (:data:`cardiolab.simulate.QUANTITIES`)
where they overlap: ``hr``, ``sbp``, ``dbp``, ``map``, ``brs`` (sequence method),
``flux``, ``ldf_endothelial_power``, ``<vessel>_psv``, ``<vessel>_ri``.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from ..errors import UnitError
from .brs import baroreflex_sequence, baroreflex_transfer
from .cerebral import cerebral_autoregulation, mean_flow_index
from .hemodynamics import blood_pressure_features, doppler_features
from .hrv import HRV_BANDS, hrv_frequency, hrv_nonlinear, hrv_time
from .microcirculation import BAND_NAMES, LDF_BANDS, ldf_band_power, ldf_features

__all__ = [
    "FEATURES",
    "HRV_BANDS",
    "LDF_BANDS",
    "baroreflex_sequence",
    "baroreflex_transfer",
    "blood_pressure_features",
    "cerebral_autoregulation",
    "doppler_features",
    "epoch_features",
    "hrv_frequency",
    "hrv_nonlinear",
    "hrv_time",
    "ldf_band_power",
    "ldf_features",
    "mean_flow_index",
    "orthostatic_response",
]

#: feature -> (units, long_name); Doppler and LDF band entries are added below.
FEATURES = {
    "n_beats": ("1", "number of valid beats (normal RR, trustworthy ECG)"),
    "n_nn": ("1", "number of NN intervals used (both bounding beats valid)"),
    "n_beats_abp": ("1", "number of beats used for pressure and BRS (valid and abp_valid)"),
    "n_beats_ldf": ("1", "number of beats used for beat flux (valid and ldf_valid)"),
    "hr": ("bpm", "heart rate (mean of 60000 / RR)"),
    "mean_nn": ("ms", "mean NN interval"),
    "sdnn": ("ms", "standard deviation of NN intervals"),
    "rmssd": ("ms", "root mean square of successive NN differences"),
    "pnn50": ("%", "NN differences > 50 ms, percent of NN intervals"),
    "vlf": ("ms2", "HRV very-low-frequency power"),
    "lf": ("ms2", "HRV low-frequency power"),
    "hf": ("ms2", "HRV high-frequency power"),
    "total_power": ("ms2", "HRV total power (VLF + LF + HF)"),
    "lf_hf": ("1", "HRV LF/HF ratio"),
    "lf_nu": ("n.u.", "HRV LF power in normalised units, 100 LF / (LF + HF)"),
    "hf_nu": ("n.u.", "HRV HF power in normalised units, 100 HF / (LF + HF)"),
    "brs": ("ms/mmHg", "baroreflex sensitivity (sequence method)"),
    "brs_n_sequences": ("1", "number of baroreflex sequences"),
    "brs_n_up": ("1", "number of up (SBP and RR rising) baroreflex sequences"),
    "brs_n_down": ("1", "number of down (SBP and RR falling) baroreflex sequences"),
    "bei": ("1", "baroreflex effectiveness index"),
    "brs_tf": ("ms/mmHg", "baroreflex sensitivity (transfer function gain, LF band)"),
    "brs_tf_coherence": ("1", "mean squared SBP-RR coherence in the LF band"),
    "brs_tf_n_bins": ("1", "number of LF bins with squared coherence above threshold"),
    "sbp": ("mmHg", "systolic blood pressure"),
    "dbp": ("mmHg", "diastolic blood pressure"),
    "map": ("mmHg", "mean arterial pressure"),
    "pp": ("mmHg", "pulse pressure"),
    "sbp_sd": ("mmHg", "standard deviation of beat-to-beat systolic pressure"),
    "dbp_sd": ("mmHg", "standard deviation of beat-to-beat diastolic pressure"),
    "flux": ("PU", "mean laser Doppler skin flux"),
    "cvc": ("PU/mmHg", "cutaneous vascular conductance (flux / MAP)"),
}
_DOPPLER = {
    "psv": ("cm/s", "peak systolic velocity"),
    "edv": ("cm/s", "end-diastolic velocity"),
    "tamv": ("cm/s", "time-averaged maximum velocity"),
    "ri": ("1", "resistive index"),
    "pi": ("1", "pulsatility index"),
}
_EXPECTED_UNITS = {"t": "s", "rr": "ms", "sbp": "mmHg", "dbp": "mmHg", "map": "mmHg"}


def _meta(name):
    if name in FEATURES:
        return FEATURES[name]
    if name.startswith("n_beats_"):
        return ("1", f"number of beats used for {name[8:]} Doppler (valid and doppler_valid)")
    if name.startswith("ldf_") and name.endswith("_power"):
        band = name[4:-6]
        if band == "endothelial":
            band = "endothelial_no"
        return ("PU2", f"LDF wavelet power in the {BAND_NAMES.get(band, band)} band")
    vessel, _, q = name.rpartition("_")
    if q in _DOPPLER and vessel:
        units, long_name = _DOPPLER[q]
        return (units, f"{vessel} {long_name}")
    return ("1", name)


def _check_units(ds, expected):
    for name, unit in expected.items():
        if name in ds and "units" in ds[name].attrs and ds[name].attrs["units"] != unit:
            raise UnitError(f"{name}: expected units {unit!r}, got {ds[name].attrs['units']!r}")


def _epoch_labels(protocol):
    if "epoch" in protocol.coords:
        return [str(v) for v in protocol["epoch"].values]
    return [str(v) for v in protocol["label"].values]


def epoch_features(
    beats: xr.Dataset,
    ldf: xr.Dataset | None,
    protocol: xr.Dataset,
    *,
    hrv_bands=None,
    hrv_resample_hz=4.0,
    brs_lag=1,
    brs_min_beats=3,
    brs_min_dsbp=1.0,
    brs_min_drr=5.0,
    brs_min_r=0.85,
    tf_band=(0.04, 0.15),
    tf_min_coherence=0.5,
    ldf_bands=None,
) -> xr.Dataset:
    """Features of every protocol epoch of a session.

    Parameters
    ----------
    beats : xarray.Dataset
        Beat table (dim ``beat``): ``t`` (s), ``rr`` (ms, interval ending at the beat),
        ``sbp``, ``dbp``, ``map`` (mmHg), ``valid`` (bool), ``epoch`` (str); optional
        Doppler ``psv``, ``edv``, ``tamv`` (cm/s), ``ri``, ``pi`` (1) with dims
        (beat, vessel), and ``flux`` (PU). Only valid beats are used; an RR interval
        is dropped unless both beats that bound it are valid. Where the table has a
        channel's flag (``abp_valid``, ``ldf_valid``, ``doppler_valid``), that
        channel's values also need it: pressure and baroreflex features use beats
        that are ``valid`` and ``abp_valid`` (the BRS pairs such a beat's SBP with
        an NN interval), beat flux and CVC beats that are ``valid`` and
        ``ldf_valid`` (CVC: and ``abp_valid``), Doppler indices beats that are
        ``valid`` and ``doppler_valid`` for that vessel.
    ldf : xarray.Dataset or None
        Raw LDF group: ``flux`` (PU) on coord ``time`` (s), attr ``sampling_rate``
        (Hz). Vasomotion band powers come from it; without it they are absent.
    protocol : xarray.Dataset
        Dim ``epoch`` (labels as coordinate or variable ``label``), ``start``,
        ``stop`` (s).
    hrv_bands : dict, optional
        ``{"vlf": (lo, hi), "lf": ..., "hf": ...}`` (Hz); default Task Force.
    hrv_resample_hz : float
        Tachogram resampling rate (Hz).
    brs_lag, brs_min_beats, brs_min_dsbp, brs_min_drr, brs_min_r
        Sequence-method parameters (:func:`baroreflex_sequence`).
    tf_band, tf_min_coherence
        Transfer-function parameters (:func:`baroreflex_transfer`).
    ldf_bands : dict, optional
        Vasomotion band edges (Hz); default :data:`LDF_BANDS`.

    Returns
    -------
    xarray.Dataset
        Dim ``epoch``; one variable per feature with ``units`` and ``long_name``;
        attr ``parameters`` (JSON of every parameter and band edge used). The beat
        counts say what each feature rests on: ``n_beats`` (valid beats), ``n_nn``
        (NN intervals: HRV, heart rate), ``n_beats_abp`` (pressure, BRS),
        ``n_beats_ldf`` (beat flux, CVC) and ``n_beats_<vessel>`` (Doppler).

    Raises
    ------
    UnitError
        If a beat variable declares units other than the expected ones.
    """
    _check_units(beats, _EXPECTED_UNITS)
    hrv_bands = {**HRV_BANDS, **(hrv_bands or {})}
    ldf_bands = dict(LDF_BANDS if ldf_bands is None else ldf_bands)
    labels = _epoch_labels(protocol)
    start = np.asarray(protocol["start"].values, dtype=float)
    stop = np.asarray(protocol["stop"].values, dtype=float)

    t_all = np.asarray(beats["t"].values, dtype=float)
    valid = np.asarray(beats["valid"].values, dtype=bool) if "valid" in beats else None
    if valid is None:
        valid = np.ones(t_all.size, dtype=bool)
    rr_all = np.asarray(beats["rr"].values, dtype=float)
    rr_all = np.where(valid & np.r_[False, valid[:-1]], rr_all, np.nan)
    ep_all = np.asarray(beats["epoch"].values).astype(str) if "epoch" in beats else None

    def flag(name):
        if name not in beats:
            return valid
        return valid & np.asarray(beats[name].values, dtype=bool)

    abp_ok, ldf_ok = flag("abp_valid"), flag("ldf_valid")

    def col(name, ok):
        if name not in beats:
            return np.full(t_all.size, np.nan)
        return np.where(ok, np.asarray(beats[name].values, dtype=float), np.nan)

    sbp_all, dbp_all, map_all = col("sbp", abp_ok), col("dbp", abp_ok), col("map", abp_ok)
    flux_all = col("flux", ldf_ok)
    cvc_ok = ldf_ok & abp_ok
    vessels = [str(v) for v in beats["vessel"].values] if "vessel" in beats.coords else []
    if vessels and "doppler_valid" in beats:
        dop_ok = valid[:, None] & np.asarray(
            beats["doppler_valid"].transpose("beat", "vessel").values, dtype=bool
        )
    else:
        dop_ok = np.repeat(valid[:, None], len(vessels), axis=1)

    if ldf is not None:
        _check_units(ldf, {"flux": "PU"})
        fs_ldf = float(ldf.attrs["sampling_rate"])
        t_ldf = np.asarray(ldf["time"].values, dtype=float)
        x_ldf = np.asarray(ldf["flux"].values, dtype=float)

    rows = []
    for lab, a, b in zip(labels, start, stop, strict=True):
        sel = ep_all == lab if ep_all is not None else (t_all >= a) & (t_all < b)
        idx = np.flatnonzero(sel)
        t, rr, sbp = t_all[idx], rr_all[idx], sbp_all[idx]
        if idx.size:
            rr = rr.copy()
            rr[0] = rr[0] if idx[0] > 0 and sel[idx[0] - 1] else np.nan
        row = {"n_beats": int(np.count_nonzero(valid[idx]))}
        ht = hrv_time(rr)
        row["n_nn"] = ht.pop("n_nn")
        row["n_beats_abp"] = int(np.count_nonzero(abp_ok[idx]))
        row["n_beats_ldf"] = int(np.count_nonzero(ldf_ok[idx]))
        row.update(ht)
        fq = hrv_frequency(t, rr, resample_hz=hrv_resample_hz, **hrv_bands)
        row.update(
            {k: fq[k] for k in ("vlf", "lf", "hf", "total_power", "lf_hf", "lf_nu", "hf_nu")}
        )
        seq = baroreflex_sequence(
            sbp,
            rr,
            min_beats=brs_min_beats,
            min_dsbp=brs_min_dsbp,
            min_drr=brs_min_drr,
            min_r=brs_min_r,
            lag=brs_lag,
        )
        row.update(
            brs=seq["brs"],
            brs_n_sequences=seq["n_sequences"],
            brs_n_up=seq["n_up"],
            brs_n_down=seq["n_down"],
            bei=seq["bei"],
        )
        tf = baroreflex_transfer(
            t, sbp, rr, band=tf_band, min_coherence=tf_min_coherence, lag=brs_lag
        )
        row.update(brs_tf=tf["gain"], brs_tf_coherence=tf["coherence"], brs_tf_n_bins=tf["n_bins"])
        row.update(blood_pressure_features(sbp, dbp_all[idx], map_all[idx]))
        for j, vessel in enumerate(vessels):
            ok = dop_ok[idx, j]
            arrays = {}
            for q in _DOPPLER:
                if q in beats:
                    v = np.asarray(beats[q].isel(vessel=j).values, dtype=float)[idx]
                    arrays[q] = np.where(ok, v, np.nan)
                else:
                    arrays[q] = np.full(idx.size, np.nan)
            row[f"n_beats_{vessel}"] = int(np.count_nonzero(ok))
            row.update(doppler_features(vessel=vessel, **arrays))
        if ldf is not None:
            in_ep = (t_ldf >= a) & (t_ldf < b)
            lf_ = ldf_features(x_ldf[in_ep], fs_ldf, row["map"], bands=ldf_bands)
            row.update(lf_)
        if "flux" in beats:  # beat-averaged flux of valid beats supersedes the raw mean
            row["flux"] = (
                float(np.nanmean(flux_all[idx])) if np.isfinite(flux_all[idx]).any() else np.nan
            )
            with np.errstate(invalid="ignore"):
                cvc_map = (
                    float(np.nanmean(map_all[idx][cvc_ok[idx]])) if cvc_ok[idx].any() else np.nan
                )
                cvc_flux = (
                    float(np.nanmean(flux_all[idx][cvc_ok[idx]])) if cvc_ok[idx].any() else np.nan
                )
            row["cvc"] = cvc_flux / cvc_map
        rows.append(row)

    names = list(dict.fromkeys(k for r in rows for k in r))
    data = {}
    for name in names:
        units, long_name = _meta(name)
        values = np.array([r.get(name, np.nan) for r in rows], dtype=float)
        data[name] = ("epoch", values, {"units": units, "long_name": long_name})
    params = {
        "hrv_bands": hrv_bands,
        "hrv_resample_hz": hrv_resample_hz,
        "hrv_interpolation": "quadratic",
        "hrv_psd": "welch, hann, segment = half the epoch, 50 % overlap",
        "brs_lag": brs_lag,
        "brs_min_beats": brs_min_beats,
        "brs_min_dsbp": brs_min_dsbp,
        "brs_min_drr": brs_min_drr,
        "brs_min_r": brs_min_r,
        "tf_band": list(tf_band),
        "tf_min_coherence": tf_min_coherence,
        "ldf_bands": ldf_bands,
        "ldf_wavelet": "morlet, omega0 = 2 pi, cone of influence excluded",
    }
    out = xr.Dataset(data, coords={"epoch": labels})
    out.attrs["parameters"] = json.dumps(params)
    return out


def orthostatic_response(
    features: xr.Dataset, baseline: str = "supine", challenge: str = "stand"
) -> xr.Dataset:
    """Orthostatic response of every feature: challenge minus baseline.

    Parameters
    ----------
    features : xarray.Dataset
        Output of :func:`epoch_features` (dim ``epoch``).
    baseline, challenge : str
        Epoch labels.

    Returns
    -------
    xarray.Dataset
        No ``epoch`` dim; one variable per feature (same name and units), long_name
        ``"orthostatic response (<challenge> − <baseline>) of <long_name>"``.
    """
    labels = [str(e) for e in features["epoch"].values]
    for lab in (baseline, challenge):
        if lab not in labels:
            raise KeyError(f"epoch {lab!r} not in features (epochs: {labels})")
    diff = features.sel(epoch=challenge, drop=True) - features.sel(epoch=baseline, drop=True)
    for name, var in features.data_vars.items():
        if name not in diff:
            continue
        long_name = var.attrs.get("long_name", name)
        diff[name].attrs = {
            "units": var.attrs.get("units", "1"),
            "long_name": f"orthostatic response ({challenge} − {baseline}) of {long_name}",
        }
    diff.attrs = {**features.attrs, "baseline": baseline, "challenge": challenge}
    return diff
