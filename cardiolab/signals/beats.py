"""The beat table: one labelled row per heartbeat of a session, all channels aligned.

Beat ``i`` is the cardiac cycle that starts at R-peak ``i``. Its RR interval is the
one ending at that R-peak (``rr[0]`` is NaN), its pressure, Doppler and LDF values are
those of the pulse that follows the R-peak. Artefacts are flagged, never silently
repaired: ``rr_flag`` (see :data:`~cardiolab.signals.ecg.RR_FLAGS`), ``ecg_valid``,
``abp_valid``, ``doppler_valid`` and ``ldf_valid`` say which values to trust, and
``valid`` is a normal beat (RR flag 0) with a trustworthy ECG (``ecg_valid``).

``r_amplitude`` is the R wave's height above the PR-segment baseline
(:func:`~cardiolab.signals.ecg.r_wave_amplitude`, mV), the input of ECG-derived
respiration. ``ecg_quality`` is the per-beat template correlation of
:func:`~cardiolab.signals.quality.ecg_beat_quality` (Orphanidou et al. 2015), and
``ecg_valid`` requires it to reach 0.66 in a 10-s window that passes the same paper's
RR and correlation rules (:func:`~cardiolab.signals.quality.ecg_window_acceptable`):
on a noisy ECG, the detector's false beats are not ``valid``.

Beat-level sessions (R-R files, beat-to-beat exports: a ``beats`` group of the data
model, :data:`cardiolab.schema.BEAT_FIELDS`, and no ``ecg``) give the same table from
the beats the file lists: ``rr`` is the file's RR where it gives one, else the
difference of successive beat times; ``rr_corrected``/``rr_flag`` come from
:func:`~cardiolab.signals.ecg.classify_rr` as for an ECG; ``sbp``/``dbp``/``map`` are
the file's, ``pp`` = ``sbp - dbp``, and ``abp_valid`` requires ``sbp`` and ``dbp`` (and
``map`` where the file has it) finite and within
:data:`~cardiolab.signals.pressure.PRESSURE_LIMITS`. There is no waveform to judge, so
``ecg_quality`` is NaN and ``ecg_valid`` True (the device, not cardiolab, chose the
beats): ``valid`` is ``rr_flag == 0`` and ``r_amplitude`` is NaN. ``sv``, ``co`` and
``tpr`` are added where the
file gives them; ``r_sample`` is absent and ``abp_onset``, ``flux``, ``cvc`` are NaN.

Sessions with a pressure waveform get a beat-to-beat stroke volume ``sv`` by the
systolic-area pulse-contour method with the age- and sex-based aortic impedance of
:mod:`cardiolab.features.pulse_contour`: uncalibrated (attribute ``calibrated`` 0),
so in relative units. Age and sex are the subject's: arguments of :func:`beat_table`,
else the session node's (or its parent subject node's) ``age`` / ``age_band`` and
``sex`` attributes, else :data:`~cardiolab.features.pulse_contour.DEFAULT_SUBJECT`,
named in the attribute ``subject_defaults``.
"""

from __future__ import annotations

import logging

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import SignalQualityError
from ..features.pulse_contour import DEFAULT_SUBJECT, age_from_band, pulse_contour_stroke_volume
from ..schema import BEAT_FIELDS, BEAT_GROUP, RAW_GROUPS
from .ecg import QRS_PARAMETERS, classify_rr, detect_r_peaks, r_wave_amplitude
from .quality import ECG_QUALITY, ecg_beat_quality, ecg_window_acceptable

__all__ = ["beat_table", "detect_r_peaks_chunked", "BEAT_VARIABLES"]

log = logging.getLogger("cardiolab")

#: name: (units, long_name)
BEAT_VARIABLES = {
    "t": ("s", "R-peak time from session start"),
    "r_sample": ("1", "R-peak ECG sample index"),
    "rr": ("ms", "RR interval ending at this beat (raw)"),
    "rr_corrected": ("ms", "RR interval, artefacts replaced by interpolation"),
    "rr_flag": ("1", "RR artefact class: 0 normal, 1 ectopic, 2 long, 3 short, 4 missed, 5 extra"),
    "hr": ("bpm", "instantaneous heart rate (raw RR)"),
    "ecg_quality": ("1", "ECG signal quality: beat-to-template correlation (0-1)"),
    "r_amplitude": ("mV", "R-wave amplitude above the PR-segment baseline"),
    "sbp": ("mmHg", "systolic blood pressure"),
    "dbp": ("mmHg", "diastolic blood pressure (end-diastolic, at the pulse onset)"),
    "map": ("mmHg", "mean arterial pressure (area mean over the beat)"),
    "pp": ("mmHg", "pulse pressure"),
    "abp_onset": ("s", "arterial pressure pulse onset"),
    "psv": ("cm/s", "peak systolic velocity"),
    "edv": ("cm/s", "end-diastolic velocity"),
    "tamv": ("cm/s", "time-averaged maximum velocity over the beat"),
    "ri": ("1", "resistive index (Pourcelot)"),
    "pi": ("1", "pulsatility index (Gosling)"),
    "flux": ("PU", "mean laser Doppler flux over the beat"),
    "cvc": ("PU/mmHg", "cutaneous vascular conductance (flux / MAP)"),
    # pulse contour from the pressure waveform (uncalibrated); beat-to-beat exports
    # (Finapres Modelflow and the like) give their own sv, co and tpr
    **{k: BEAT_FIELDS[k] for k in ("sv", "co", "tpr")},
}

#: Attributes of ``sv`` computed from a pressure waveform (not a device's export).
SV_PULSE_CONTOUR_ATTRS = {
    "units": "mL",
    "long_name": (
        "stroke volume, relative (uncalibrated pulse contour: systolic area / "
        "Langewouters aortic impedance from age and sex)"
    ),
    "calibrated": 0,
    "method": "Wesseling et al. 1983 systolic area; Langewouters et al. 1984 Z0",
}

#: Sessions longer than this are processed in overlapping chunks (s).
CHUNK_S = 1800.0
OVERLAP_S = 10.0


def _peak_mask(block, fs, parameters):
    mask = np.zeros(block.shape, dtype=bool)
    if block.size >= 2 * fs:
        try:
            mask[detect_r_peaks(block, fs, **parameters)] = True
        except SignalQualityError:
            pass
    return mask


def detect_r_peaks_chunked(ecg, fs, *, chunk_s=CHUNK_S, overlap_s=OVERLAP_S, **parameters):
    """R-peaks of a long (dask) ECG in bounded memory, chunk by chunk with overlap.

    Each chunk is processed with ``overlap_s`` of neighbouring signal on both sides
    (``dask.array.map_overlap``), so the detector's thresholds have settled at the
    chunk edges; peaks found twice at a seam are merged.

    Returns
    -------
    numpy.ndarray of int64
    """
    arr = da.asarray(ecg).astype(np.float32)
    chunk = max(int(chunk_s * fs), int(4 * overlap_s * fs))
    depth = int(overlap_s * fs)
    arr = arr.rechunk(chunk)
    if arr.numblocks[0] > 1 and arr.chunks[0][-1] < depth:
        arr = arr.rechunk(arr.chunks[0][:-2] + (arr.chunks[0][-2] + arr.chunks[0][-1],))
    mask = da.map_overlap(
        _peak_mask,
        arr,
        depth=depth,
        boundary="none",
        trim=True,
        dtype=bool,
        fs=fs,
        parameters=parameters,
    )
    peaks = da.flatnonzero(mask).compute()
    if peaks.size > 1:
        refr = int(QRS_PARAMETERS["refractory_s"] * fs)
        keep = np.r_[True, np.diff(peaks) > refr]
        peaks = peaks[keep]
    return peaks.astype(np.int64)


def _per_beat_blocks(func, values, fs, r_times, *, block_s=CHUNK_S, margin_s=4.0, **kwargs):
    """Run a per-beat extractor over a long signal block by block, in bounded memory.

    ``values`` may be a dask or NumPy array; each block of beats reads only its slice
    of the signal (plus ``margin_s`` on both sides), and carries the next block's first
    R-peak so that its last beat has an end.
    """
    import pandas as pd

    n = values.shape[-1]
    duration = n / fs
    if duration <= block_s * 1.5:
        return func(np.asarray(values), fs, r_times, **kwargs)
    edges = np.arange(0.0, duration + block_s, block_s)
    parts = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        sel = np.flatnonzero((r_times >= a) & (r_times < b))
        if sel.size == 0:
            continue
        extra = sel[-1] + 1 if sel[-1] + 1 < r_times.size else None
        rt = r_times[sel] if extra is None else r_times[np.r_[sel, extra]]
        i0 = max(int((rt[0] - margin_s) * fs), 0)
        i1 = min(int((rt[-1] + margin_s) * fs) + 1, n)
        chunk = np.asarray(values[..., i0:i1])
        out = func(chunk, fs, rt - i0 / fs, **kwargs)
        if extra is not None:
            out = out.iloc[:-1]
        for col in out.columns:
            if col in ("onset", "t_systolic", "t_notch"):
                out[col] = out[col] + i0 / fs
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def _pressure_beats(abp, fs, r_times, *, age, sex):
    """Pressure beats of :func:`arterial_pressure_beats` plus the pulse-contour ``sv``."""
    from .pressure import arterial_pressure_beats

    p = arterial_pressure_beats(abp, fs, r_times)
    sv = pulse_contour_stroke_volume(
        abp,
        fs,
        p["onset"].to_numpy(dtype=float),
        p["t_notch"].to_numpy(dtype=float),
        age,
        sex,
        dbp=p["dbp"].to_numpy(dtype=float),
    )
    return p.assign(sv=sv["sv"])


def _subject_of(session, age, sex):
    """Age (years) and sex for the aortic model: given, from attrs, else the default.

    Returns ``(age, sex, defaults)`` where ``defaults`` names what was defaulted.
    """
    nodes = [session] + ([session.parent] if session.parent is not None else [])
    defaults = []
    if age is None:
        for node in nodes:
            if "age" in node.attrs:
                age = float(node.attrs["age"])
            elif node.attrs.get("age_band"):
                age = age_from_band(node.attrs["age_band"])
            if age is not None:
                break
    if sex is None:
        sex = next((node.attrs["sex"] for node in nodes if node.attrs.get("sex")), None)
    if age is None:
        age = DEFAULT_SUBJECT["age"]
        defaults.append("age")
    if sex is None:
        sex = DEFAULT_SUBJECT["sex"]
        defaults.append("sex")
    return age, sex, defaults


def _group(session, name):
    return session[name].to_dataset(inherit=False) if name in session.children else None


def _start(ds):
    return float(ds["time"][0]) if ds.sizes.get("time", 0) else 0.0


def beat_table(
    session: xr.DataTree,
    *,
    chunk_s: float = CHUNK_S,
    age: float | None = None,
    sex: str | None = None,
    r_peaks=None,
) -> xr.Dataset:
    """One row per heartbeat of a session, with every channel's per-beat values.

    Parameters
    ----------
    session : xarray.DataTree
        A session node of the data model (``ecg`` or, for a beat-level session, a
        ``beats`` group; ``abp``, ``doppler``, ``ldf`` and ``protocol`` used when
        present, with an ECG). Lazy (dask) groups are read here; ECGs longer than
        ``chunk_s`` are processed chunk by chunk. A session with an ECG is beaten
        from its ECG even where it also holds a ``beats`` group.
    chunk_s : float
        Longest ECG (s) processed in one piece.
    age : float, optional
        Subject's age (years) for the pulse-contour stroke volume; default from the
        session's or its subject node's ``age`` or ``age_band`` attribute.
    sex : {"M", "F", "X"}, optional
        Subject's sex, idem (attribute ``sex``).
    r_peaks : array-like of int, shape ``(n_beats,)``, optional
        R-peak ECG sample indices to build the table on instead of the detector's
        (a reviewer's edited beats, :mod:`cardiolab.annotations`): every per-beat
        value (RR, quality, pressure, Doppler, LDF) is computed for these beats as for
        detected ones. Sorted and made unique here.

    Returns
    -------
    xarray.Dataset
        Dim ``beat`` (and ``vessel`` for Doppler): variables of
        :data:`BEAT_VARIABLES` (including ``ecg_quality``), ``epoch`` (protocol
        label, "" outside any epoch), ``valid`` (normal beat with ``ecg_valid``),
        ``ecg_valid``, ``abp_valid``, ``doppler_valid``, ``ldf_valid`` (bool); each
        with ``long_name``, and ``units`` for the numeric ones. With a pressure
        waveform, ``sv`` (uncalibrated pulse contour, attrs ``calibrated`` 0,
        ``age``, ``sex``) and the dataset attribute ``subject_defaults`` (the
        subject fields that were missing and defaulted, "" when none).

    Raises
    ------
    SignalQualityError
        If the session has no ECG and no ``beats`` group but pressure or Doppler
        (their beats need R-peaks), no signal at all, or too few beats. A session
        recorded without ECG, pressure or Doppler (e.g. LDF only, as in PORH and local
        heating studies) gets a beat table with no beats (attr ``beats`` says why): its
        features come from its signals.
    """
    from .doppler import doppler_beats
    from .ldf import ldf_beats

    ecg_ds = _group(session, "ecg")
    if ecg_ds is None or "ecg" not in ecg_ds:
        beats = _group(session, BEAT_GROUP)
        if beats is not None and "t" in beats:
            return _beat_level_table(session, beats)
        needing = sorted(g for g in ("abp", "doppler") if g in session.children)
        if needing or not any(g in session.children for g in RAW_GROUPS):
            what = f"{' and '.join(needing)} but " if needing else ""
            raise SignalQualityError(
                f"the session has {what}no ECG and no {BEAT_GROUP!r} group: beats need R-peaks"
            )
        return _no_beats(session)
    fs = float(ecg_ds.attrs["sampling_rate"])
    ecg = ecg_ds["ecg"]
    t0 = _start(ecg_ds)
    if r_peaks is not None:
        peaks = np.unique(np.asarray(r_peaks, dtype=np.int64))
        outside = peaks[(peaks < 0) | (peaks >= ecg.sizes["time"])]
        if outside.size:
            raise SignalQualityError(
                f"R-peak sample(s) {outside[:5].tolist()} outside the ECG "
                f"(0 to {ecg.sizes['time'] - 1})"
            )
    elif ecg.sizes["time"] > chunk_s * fs:
        peaks = detect_r_peaks_chunked(ecg.data, fs, chunk_s=chunk_s)
    else:
        peaks = detect_r_peaks(np.asarray(ecg.values), fs)
    if peaks.size < 3:
        raise SignalQualityError(f"only {peaks.size} R-peaks found in the ECG")
    t = t0 + peaks / fs
    rr = np.r_[np.nan, np.diff(t) * 1000.0]
    rr_info = classify_rr(rr)
    n = t.size
    rr_flag = rr_info["flag"].to_numpy().astype(np.int8)
    ecg_quality = _per_beat_blocks(ecg_beat_quality, ecg.data, fs, peaks / fs, block_s=chunk_s)[
        "quality"
    ].to_numpy(dtype=float)
    ecg_valid = ecg_window_acceptable(t, ecg_quality, exempt=rr_flag == 1)
    with np.errstate(invalid="ignore"):
        ecg_valid &= ecg_quality >= ECG_QUALITY["min_correlation"]
    r_amplitude = _per_beat_blocks(r_wave_amplitude, ecg.data, fs, peaks / fs, block_s=chunk_s)[
        "r_amplitude"
    ].to_numpy(dtype=float)
    data = {
        "t": t,
        "r_sample": peaks,
        "rr": rr,
        "rr_corrected": rr_info["rr_corrected"].to_numpy(),
        "rr_flag": rr_flag,
        "hr": 60000.0 / rr,
        "ecg_quality": ecg_quality,
        "r_amplitude": r_amplitude,
    }
    nan = np.full(n, np.nan)
    abp_valid = np.zeros(n, dtype=bool)
    abp_ds = _group(session, "abp")
    subject = None
    if abp_ds is not None:
        fs_p = float(abp_ds.attrs["sampling_rate"])
        subject = _subject_of(session, age, sex)
        p = _per_beat_blocks(
            _pressure_beats,
            abp_ds["abp"].data,
            fs_p,
            t - _start(abp_ds),
            block_s=chunk_s,
            age=subject[0],
            sex=subject[1],
        )
        for k in ("sbp", "dbp", "map", "pp", "sv"):
            data[k] = p[k].to_numpy(dtype=float)
        data["abp_onset"] = p["onset"].to_numpy(dtype=float) + _start(abp_ds)
        abp_valid = p["valid"].to_numpy(dtype=bool)
    else:
        for k in ("sbp", "dbp", "map", "pp", "abp_onset"):
            data[k] = nan.copy()

    coords = {}
    dop_ds = _group(session, "doppler")
    dop_vars = {}
    if dop_ds is not None:
        fs_d = float(dop_ds.attrs["sampling_rate"])
        vessels = [str(v) for v in dop_ds["vessel"].values]
        rows = {k: [] for k in ("psv", "edv", "tamv", "ri", "pi", "valid")}
        for v in vessels:
            d = _per_beat_blocks(
                doppler_beats,
                dop_ds["velocity"].sel(vessel=v).data,
                fs_d,
                t - _start(dop_ds),
                block_s=chunk_s,
            )
            for k in rows:
                rows[k].append(d[k].to_numpy())
        coords["vessel"] = ("vessel", np.asarray(vessels, dtype=object))
        for k, v in rows.items():
            dop_vars[k] = np.stack(v, axis=1)

    ldf_ds = _group(session, "ldf")
    ldf_valid = np.zeros(n, dtype=bool)
    if ldf_ds is not None:
        fs_l = float(ldf_ds.attrs["sampling_rate"])
        lb = _per_beat_blocks(
            ldf_beats, ldf_ds["flux"].data, fs_l, t - _start(ldf_ds), block_s=chunk_s
        )
        data["flux"] = lb["flux"].to_numpy(dtype=float)
        ldf_valid = lb["valid"].to_numpy(dtype=bool)
    else:
        data["flux"] = nan.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        data["cvc"] = np.where(abp_valid & ldf_valid, data["flux"] / data["map"], np.nan)

    ds = _assemble(
        data,
        coords,
        dop_vars,
        _epochs(session, t),
        ecg_valid=ecg_valid,
        abp_valid=abp_valid,
        ldf_valid=ldf_valid,
    )
    ds.attrs["sampling_rate_ecg"] = fs
    if subject is not None:
        ds["sv"].attrs = {**SV_PULSE_CONTOUR_ATTRS, "age": subject[0], "sex": subject[1]}
        ds.attrs["subject_defaults"] = ",".join(subject[2])
    return ds


def _epochs(session, t) -> np.ndarray:
    """Protocol epoch label of each beat ("" outside every epoch)."""
    epoch = np.full(t.size, "", dtype=object)
    proto = _group(session, "protocol")
    if proto is not None:
        for lab, a, b in zip(
            proto["epoch"].values, proto["start"].values, proto["stop"].values, strict=True
        ):
            epoch[(t >= float(a)) & (t < float(b))] = str(lab)
    return epoch


def _assemble(data, coords, dop_vars, epoch, *, ecg_valid, abp_valid, ldf_valid) -> xr.Dataset:
    """The beat table Dataset from its per-beat arrays and flags (built in one go: adding
    the some 30 variables one by one re-aligns the dataset each time)."""
    variables = {}
    for name, values in data.items():
        units, long_name = BEAT_VARIABLES[name]
        variables[name] = xr.Variable("beat", values, {"units": units, "long_name": long_name})
    for name, values in dop_vars.items():
        if name == "valid":
            continue
        units, long_name = BEAT_VARIABLES[name]
        variables[name] = xr.Variable(
            ("beat", "vessel"), values, {"units": units, "long_name": long_name}
        )
    variables["epoch"] = xr.Variable("beat", epoch, {"long_name": "protocol epoch"})
    variables["ecg_valid"] = xr.Variable(
        "beat",
        ecg_valid,
        {
            "long_name": "ECG trustworthy: beat quality >= 0.66 in an acceptable 10-s window",
            "units": "1",
        },
    )
    variables["valid"] = xr.Variable(
        "beat",
        (data["rr_flag"] == 0) & ecg_valid,
        {"long_name": "normal beat (RR not flagged) with a trustworthy ECG", "units": "1"},
    )
    variables["abp_valid"] = xr.Variable(
        "beat", abp_valid, {"long_name": "pressure values trustworthy", "units": "1"}
    )
    variables["ldf_valid"] = xr.Variable(
        "beat", ldf_valid, {"long_name": "LDF values trustworthy", "units": "1"}
    )
    if "valid" in dop_vars:
        variables["doppler_valid"] = xr.Variable(
            ("beat", "vessel"),
            dop_vars["valid"].astype(bool),
            {"long_name": "Doppler values trustworthy", "units": "1"},
        )
    return xr.Dataset(variables, coords=coords)


def _no_beats(session: xr.DataTree) -> xr.Dataset:
    """The (empty) beat table of a session recorded without ECG or beats (e.g. LDF only):
    its features come from the signals themselves (LDF vasomotion, PORH, heating)."""
    empty = np.zeros(0)
    data = {
        "t": empty,
        "rr": empty,
        "rr_corrected": empty,
        "rr_flag": np.zeros(0, dtype=np.int8),
        "hr": empty,
        "ecg_quality": empty,
    }
    ds = _assemble(
        data,
        {},
        {},
        np.zeros(0, dtype=object),
        ecg_valid=np.zeros(0, bool),
        abp_valid=np.zeros(0, bool),
        ldf_valid=np.zeros(0, bool),
    )
    ds.attrs["beats"] = "none: the session has no ECG and no beats group"
    return ds


def _beat_level_table(session: xr.DataTree, beats: xr.Dataset) -> xr.Dataset:
    """The beat table of a session that holds beats (a ``beats`` group), not an ECG."""
    from .pressure import PRESSURE_LIMITS

    t = np.asarray(beats["t"].values, dtype=float)
    n = t.size
    if n < 3:
        raise SignalQualityError(f"only {n} beats in the session's {BEAT_GROUP!r} group")
    nan = np.full(n, np.nan)

    def given(name):
        return np.asarray(beats[name].values, dtype=float) if name in beats else nan.copy()

    rr_file = given("rr")
    rr = np.where(np.isfinite(rr_file), rr_file, np.r_[np.nan, np.diff(t) * 1000.0])
    rr_info = classify_rr(rr)
    rr_flag = rr_info["flag"].to_numpy().astype(np.int8)
    sbp, dbp, map_ = given("sbp"), given("dbp"), given("map")
    pp = sbp - dbp
    with np.errstate(invalid="ignore"):
        abp_valid = (
            np.isfinite(sbp)
            & np.isfinite(dbp)
            & (sbp <= PRESSURE_LIMITS["sbp_max"])
            & (dbp >= PRESSURE_LIMITS["dbp_min"])
            & (pp >= PRESSURE_LIMITS["pp_min"])
        )
    if "map" in beats:
        abp_valid &= np.isfinite(map_)
    data = {
        "t": t,
        "rr": rr,
        "rr_corrected": rr_info["rr_corrected"].to_numpy(),
        "rr_flag": rr_flag,
        "hr": 60000.0 / rr,
        "ecg_quality": nan.copy(),
        "r_amplitude": nan.copy(),
        "sbp": sbp,
        "dbp": dbp,
        "map": map_,
        "pp": pp,
        "abp_onset": nan.copy(),
        "flux": nan.copy(),
        "cvc": nan.copy(),
    }
    for name in ("sv", "co", "tpr"):
        if name in beats:
            data[name] = given(name)
    ds = _assemble(
        data,
        {},
        {},
        _epochs(session, t),
        ecg_valid=np.ones(n, dtype=bool),
        abp_valid=abp_valid,
        ldf_valid=np.zeros(n, dtype=bool),
    )
    ds["ecg_valid"].attrs["long_name"] = "no ECG waveform to judge (beat-level session): True"
    ds["valid"].attrs["long_name"] = "normal beat (RR not flagged); beat-level session"
    ds.attrs["beat_source"] = str(beats.attrs.get("source_file", BEAT_GROUP))
    return ds
