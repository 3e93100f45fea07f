"""Epoch-level features: HRV, baroreflex, haemodynamics, microcirculation, cerebral.

The numerical core lives in :mod:`.hrv` (time, frequency and nonlinear HRV),
:mod:`.brs`, :mod:`.hemodynamics`, :mod:`.microcirculation`, :mod:`.cerebral`
(CARNet transfer function analysis and the Mx index) and :mod:`.ldf_challenges`
(NumPy arrays in, dicts of floats or small Datasets out); :mod:`.registry` declares
each feature and :mod:`.declared` the built-in ones. This module is the thin xarray
layer: :func:`epoch_features` turns a beat table, the raw groups and the protocol into
one labelled Dataset (dim ``epoch``) with units and long names, and
:func:`challenge_responses` (:mod:`.challenges`) the responses to the protocol's
challenges as the catalog declares them.

Feature names match the simulator's truth (:data:`cardiolab.simulate.QUANTITIES`)
where they overlap: ``hr``, ``sbp``, ``dbp``, ``map``, ``brs`` (sequence method),
``flux``, ``ldf_endothelial_power``, ``<vessel>_psv``, ``<vessel>_ri``.
"""

from __future__ import annotations

import json
import time

import numpy as np
import xarray as xr

from ..errors import CardiolabError, UnitError
from .brs import baroreflex_sequence, baroreflex_transfer
from .cerebral import cerebral_autoregulation, mean_flow_index, transfer_function_spectra
from .challenges import (
    CHALLENGE_KINDS,
    challenge_responses,
    challenge_windows,
    initial_orthostatic_response,
    orthostatic_tolerance,
    valsalva_ratio,
)
from .hemodynamics import blood_pressure_features, doppler_features
from .hrv import HRV_BANDS, hrv_frequency, hrv_nonlinear, hrv_time, nn_intervals
from .ldf_challenges import local_heating_response, porh_response
from .microcirculation import LDF_BANDS, ldf_band_power, ldf_features
from .registry import (
    BEAT_INPUTS,
    EpochData,
    check_input_units,
    features,
    get_feature,
    json_default,
    resolved_parameters,
)

__all__ = [
    "CHALLENGE_KINDS",
    "challenge_responses",
    "challenge_windows",
    "initial_orthostatic_response",
    "local_heating_response",
    "orthostatic_tolerance",
    "porh_response",
    "transfer_function_spectra",
    "valsalva_ratio",
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
    "nn_intervals",
    "ldf_band_power",
    "ldf_features",
    "mean_flow_index",
]

_EXPECTED_UNITS = {"t": "s", "rr": "ms", "sbp": "mmHg", "dbp": "mmHg", "map": "mmHg"}


def _check_units(ds, expected):
    for name, unit in expected.items():
        if name in ds and "units" in ds[name].attrs and ds[name].attrs["units"] != unit:
            raise UnitError(f"{name}: expected units {unit!r}, got {ds[name].attrs['units']!r}")


def _epoch_labels(protocol):
    if "epoch" in protocol.coords:
        return [str(v) for v in protocol["epoch"].values]
    return [str(v) for v in protocol["label"].values]


def _beat_flags(beats, valid, vessels):
    """``valid`` and every channel flag of :data:`BEAT_INPUTS`, each and-ed with ``valid``."""
    flags = {"valid": valid}
    for spec in BEAT_INPUTS.values():
        name = spec.flag
        if name is None or name in flags:
            continue
        if name not in beats:
            flags[name] = (
                valid if not spec.per_vessel else np.repeat(valid[:, None], len(vessels), axis=1)
            )
        elif spec.per_vessel:
            flags[name] = valid[:, None] & np.asarray(
                beats[name].transpose("beat", "vessel").values, dtype=bool
            )
        else:
            flags[name] = valid & np.asarray(beats[name].values, dtype=bool)
    return flags


def _beat_columns(beats, valid):
    """The beat inputs the table has, as float arrays (``rr`` as NN intervals)."""
    cols = {}
    for name, spec in BEAT_INPUTS.items():
        if name not in beats:
            continue
        var = beats[name]
        if spec.per_vessel:
            var = var.transpose("beat", "vessel")
        cols[name] = np.asarray(var.values, dtype=float)
    if "rr" in cols:
        cols["rr"] = nn_intervals(cols["rr"], valid)
    return cols


def _applicable(feature, beats, signals, vessels):
    """Why a feature cannot be computed on this session (``""``: it can)."""

    def present(name):
        if name in BEAT_INPUTS:
            return name in beats and beats.sizes.get("beat", 0) > 0
        return name in signals

    missing = [n for n in feature.inputs if not present(n)]
    if beats.sizes.get("beat", 0) == 0 and any(n in BEAT_INPUTS for n in missing):
        return "no beats in this session (no ECG and no beat export)"
    if missing:
        return f"no {', '.join(missing)} in this session"
    present_unless = [n for n in feature.unless if present(n)]
    if present_unless:
        return f"not needed: the session has {', '.join(present_unless)}"
    if feature.any_of and not any(present(n) for n in feature.any_of):
        return f"none of {', '.join(feature.any_of)} in this session"
    if not feature.applies_to(vessels):
        return "no vessel it applies to in this session"
    return ""


def epoch_features(
    beats: xr.Dataset,
    ldf: xr.Dataset | None,
    protocol: xr.Dataset,
    *,
    signals: dict | None = None,
    parameters: dict | None = None,
    select: list[str] | None = None,
    session: dict | None = None,
    timings: dict | None = None,
    recording_end: float | None = None,
) -> xr.Dataset:
    """Features of every protocol epoch of a session: every registered feature.

    The features and what they read are declared in :mod:`.registry` (built-in ones in
    :mod:`.declared`; ``cardiolab features`` lists them). Each feature sees the epoch's
    beats through the channel flags: an RR interval is used (NN) only when both beats
    that bound it are ``valid``; pressure and baroreflex features use beats that are
    ``valid`` and ``abp_valid``, beat flux beats that are ``valid`` and ``ldf_valid``
    (CVC: and ``abp_valid``), Doppler indices beats that are ``valid`` and
    ``doppler_valid`` for that vessel (a flag the table lacks counts as set).

    Parameters
    ----------
    beats : xarray.Dataset
        Beat table (dim ``beat``): ``t`` (s), ``rr`` (ms, interval ending at the beat),
        ``valid`` (bool), ``epoch`` (str); optional ``sbp``, ``dbp``, ``map`` (mmHg),
        Doppler ``psv``, ``edv``, ``tamv`` (cm/s), ``ri``, ``pi`` (1) with dims (beat,
        vessel), ``flux`` (PU) and the channel flags.
    ldf : xarray.Dataset or None
        Raw LDF group: ``flux`` (PU) on coord ``time`` (s), attr ``sampling_rate``
        (Hz). Vasomotion band powers come from it; without it they are absent.
    protocol : xarray.Dataset
        Dim ``epoch`` (labels as coordinate or variable ``label``), ``start``,
        ``stop`` (s).
    signals : dict of str to xarray.Dataset, optional
        Other raw groups of the session by name (e.g. ``{"resp": ...}``), for the
        features that read them.
    parameters : dict, optional
        ``{feature name: {parameter: value}}`` overriding the declared defaults.
    select : list of str, optional
        Compute only these features (default all registered).
    session : dict, optional
        The session's attributes (``phase``, ...), for features that depend on them
        (pulse-contour stroke volume is not trusted in flight).
    timings : dict, optional
        If given, each feature's computing time (s, summed over epochs and vessels) is
        added to ``timings[feature name]`` (``benchmarks/bench_features.py``).
    recording_end : float, optional
        When the recording ends (s; :func:`cardiolab.schema.recording_end`). An epoch
        that starts at or after it gets NaN for every feature and the flag "starts
        after the recording ends"; one that ends after it is clipped to it and flagged
        with the seconds (and share) of the epoch that are missing. Flags of the whole
        epoch have ``feature`` ``"*"``.

    Returns
    -------
    xarray.Dataset
        Dim ``epoch``; one variable per output with ``units``, ``long_name`` and
        ``feature`` (the declaring feature). Attrs ``parameters`` (JSON:
        ``{feature: {parameter: value}}``), ``flags`` (JSON list of ``{"feature",
        "epoch", "vessel", "reason"}``: values an epoch could not support, NaN) and
        ``skipped`` (JSON ``{feature: reason}``: features the session lacks inputs for).

    Raises
    ------
    UnitError
        If a beat variable or raw group declares units other than the feature's.
    KeyError
        If ``parameters`` or ``select`` names an unknown feature or parameter.
    """
    _check_units(beats, _EXPECTED_UNITS)
    signals = dict(signals or {})
    if ldf is not None:
        signals["ldf"] = ldf
    params = resolved_parameters(parameters)
    chosen = features()
    if select is not None:
        chosen = [get_feature(name) for name in select]
    labels = _epoch_labels(protocol)
    start = np.asarray(protocol["start"].values, dtype=float)
    stop = np.asarray(protocol["stop"].values, dtype=float)

    t_all = np.asarray(beats["t"].values, dtype=float)
    valid = np.asarray(beats["valid"].values, dtype=bool) if "valid" in beats else None
    if valid is None:
        valid = np.ones(t_all.size, dtype=bool)
    ep_all = np.asarray(beats["epoch"].values).astype(str) if "epoch" in beats else None
    beat_epochs = set(np.unique(ep_all)) if ep_all is not None else set()
    vessels = [str(v) for v in beats["vessel"].values] if "vessel" in beats.coords else []
    flags = _beat_flags(beats, valid, vessels)
    columns = _beat_columns(beats, valid)

    skipped, active = {}, []
    for feature in chosen:
        why = _applicable(feature, beats, signals, vessels)
        if why:
            skipped[feature.name] = why
            continue
        check_input_units(feature, beats, signals)
        active.append(feature)
    # raw groups the active features read: loaded once (not once per epoch and feature)
    needed = {n for f in active for n in (*f.inputs, *f.any_of) if n in signals}
    signals = {g: (ds.compute() if g in needed else ds) for g, ds in signals.items()}

    rows, flagged = [], []
    for lab, a, b in zip(labels, start, stop, strict=True):
        if recording_end is not None and a >= recording_end:
            flagged.append(
                {
                    "feature": "*",
                    "epoch": lab,
                    "vessel": None,
                    "reason": f"epoch {lab!r} starts at {a:g} s, after the recording ends "
                    f"({recording_end:g} s): no data",
                }
            )
            rows.append({})
            continue
        if recording_end is not None and b > recording_end:
            flagged.append(
                {
                    "feature": "*",
                    "epoch": lab,
                    "vessel": None,
                    "reason": f"epoch {lab!r} ({a:g}-{b:g} s) is cut short: the recording "
                    f"ends at {recording_end:g} s, {b - recording_end:g} s "
                    f"({100 * (b - recording_end) / (b - a):.0f} %) of the epoch are missing",
                }
            )
            b = recording_end
        # beats carry their protocol epoch; other windows (challenge sub-windows) by time
        by_label = ep_all is not None and lab in beat_epochs
        sel = ep_all == lab if by_label else (t_all >= a) & (t_all < b)
        idx = np.flatnonzero(sel)
        inside = bool(idx.size and idx[0] > 0 and sel[idx[0] - 1])
        row = {}
        for feature in active:
            for vessel in feature.applies_to(vessels):
                data = EpochData(
                    label=lab,
                    start=float(a),
                    stop=float(b),
                    index=idx,
                    columns=columns,
                    flags=flags,
                    vessels=vessels,
                    signals=signals,
                    first_interval_inside=inside,
                    results=row,
                    vessel=vessel,
                    session=dict(session or {}),
                )
                t0 = time.perf_counter()
                try:
                    out = dict(feature.func(data, **params[feature.name]))
                except CardiolabError as err:
                    out = {"reason": str(err)}
                if timings is not None:
                    timings[feature.name] = (
                        timings.get(feature.name, 0.0) + time.perf_counter() - t0
                    )
                reason = out.pop("reason", None)
                if reason:
                    flagged.append(
                        {"feature": feature.name, "epoch": lab, "vessel": vessel, "reason": reason}
                    )
                allowed = feature.resolved_outputs([vessel] if vessel else [])
                extra = sorted(set(out) - set(allowed))
                if extra:
                    raise RuntimeError(
                        f"feature {feature.name!r} returned undeclared outputs {extra}"
                    )
                row.update(out)
        rows.append(row)

    data = {}
    for feature in active:
        for name, meta in feature.resolved_outputs(vessels).items():
            values = np.array([r.get(name, np.nan) for r in rows], dtype=float)
            attrs = {"units": meta.units, "long_name": meta.long_name, "feature": feature.name}
            data[name] = ("epoch", values, attrs)
    out = xr.Dataset(data, coords={"epoch": labels})
    out.attrs["parameters"] = json.dumps(
        {f.name: params[f.name] for f in active}, default=json_default
    )
    out.attrs["flags"] = json.dumps(flagged)
    out.attrs["skipped"] = json.dumps(skipped)
    return out
