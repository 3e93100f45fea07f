"""Challenge responses: what a protocol's challenges do to every feature.

A catalog protocol declares its challenges (:class:`cardiolab.catalog.Challenge`): a
baseline epoch, a challenge epoch (or the steps of a stepped challenge such as LBNP),
optional sub-windows of the challenge epoch (``{"initial": [0, 30], "late": [-60, 0]}``:
seconds from its start, or from its end when negative) and a kind. This module turns
the features of those epochs into responses, and computes the outcomes of each kind:

- every kind: the response of every feature, challenge minus baseline, absolute (the
  feature's units) and percent of the baseline value;
- ``orthostatic`` and ``tilt`` (a posture change): the **initial orthostatic response**,
  the nadir of beat-to-beat MAP and the peak heart rate in the first ``initial_s`` (30 s)
  after the change, with their times and their change from the baseline epoch's mean
  (Wieling et al. 2007), and the **orthostatic tolerance**;
- ``lbnp``: one response per step, and the tolerance over all steps;
- ``porh``: post-occlusive reactive hyperaemia of the LDF flux
  (:func:`.ldf_challenges.porh_response`), ``local_heating``: the thermal hyperaemia
  landmarks (:func:`.ldf_challenges.local_heating_response`);
- ``valsalva``: the **Valsalva ratio**, longest RR in the ``recovery_s`` (30 s) after
  the strain over the shortest RR during it (Levin 1966);
- ``paced_breathing``, ``generic``: the feature responses (the HRV HF band follows the
  measured breathing rate, so paced breathing at 6/min is HF power).

Orthostatic tolerance: the time from the challenge start to the first marked event
named by the challenge's ``event`` (default ``presyncope``; events come from the
catalog's session entry) within the challenge, or to its end; ``completed`` 1 when no
such event came. Names of epochs and challenges come from the catalog only.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .hrv import nn_intervals
from .ldf_challenges import HEATING_OUTPUTS, PORH_OUTPUTS

__all__ = [
    "CHALLENGE_KINDS",
    "OUTCOMES",
    "challenge_responses",
    "challenge_windows",
    "initial_orthostatic_response",
    "orthostatic_tolerance",
    "response_names",
    "valsalva_ratio",
]

#: Kinds of challenge a protocol may declare.
CHALLENGE_KINDS = (
    "generic",
    "orthostatic",
    "tilt",
    "lbnp",
    "paced_breathing",
    "valsalva",
    "porh",
    "local_heating",
)
_POSTURE_CHANGE = ("orthostatic", "tilt")
_TOLERANCE = ("orthostatic", "tilt", "lbnp")

WIELING = (
    "Wieling W, Krediet CTP, van Dijk N, Linzer M, Tschakovsky ME (2007). Initial "
    "orthostatic hypotension: review of a forgotten condition. Clin Sci 112:157-165"
)

#: Outcome variables of the challenge kinds: name -> (units, long_name).
OUTCOMES = {
    "initial_map_nadir": ("mmHg", "initial orthostatic response: nadir of beat MAP"),
    "initial_map_drop": ("mmHg", "initial orthostatic response: MAP nadir minus baseline MAP"),
    "initial_map_nadir_time": ("s", "initial orthostatic response: time of the MAP nadir"),
    "initial_hr_peak": ("bpm", "initial orthostatic response: peak beat heart rate"),
    "initial_hr_rise": ("bpm", "initial orthostatic response: peak HR minus baseline HR"),
    "initial_hr_peak_time": ("s", "initial orthostatic response: time of the HR peak"),
    "tolerance_time": ("s", "orthostatic tolerance: time to presyncope or challenge end"),
    "tolerance_completed": ("1", "orthostatic tolerance: 1 if the challenge was completed"),
    "valsalva_ratio": ("1", "Valsalva ratio: longest RR after the strain / shortest RR in it"),
    **{f"porh_{k}": v for k, v in PORH_OUTPUTS.items()},
    **{f"heating_{k}": v for k, v in HEATING_OUTPUTS.items()},
}


def response_names(challenge: dict) -> list[str]:
    """The response labels of a challenge (one per step, then per step and window).

    ``name`` when given (single-step challenges; a stepped challenge's steps are
    ``<name>:<step>``), else ``<challenge epoch>-<baseline>``; a window adds
    ``:<window>``.
    """
    steps = challenge["challenge"]
    steps = list(steps) if isinstance(steps, list) else [steps]
    name = challenge.get("name")
    if name and len(steps) == 1:
        main = [name]
    elif name:
        main = [f"{name}:{s}" for s in steps]
    else:
        main = [f"{s}-{challenge['baseline']}" for s in steps]
    windows = list(challenge.get("windows") or {})
    return main + [f"{m}:{w}" for m in main for w in windows]


def _window_bounds(start, stop, window):
    a, b = window
    if a < 0 or (a == 0 and b == 0):
        return stop + a, stop + b
    return start + a, start + b


def challenge_windows(epochs, challenges) -> list[tuple[str, float, float]]:
    """The sub-window epochs of the challenges: ``(<step>:<window>, start, stop)`` (s).

    Parameters
    ----------
    epochs : list of (str, float, float)
        Protocol epochs (label, start s, stop s).
    challenges : list of dict
        Challenges as the catalog declares them.

    Returns
    -------
    list of (str, float, float)
        One epoch per challenge step and window, clipped to the step's epoch.
    """
    where = {lab: (a, b) for lab, a, b in epochs}
    out = {}
    for c in challenges:
        steps = c["challenge"] if isinstance(c["challenge"], list) else [c["challenge"]]
        for step in steps:
            a0, b0 = where[step]
            for wname, window in (c.get("windows") or {}).items():
                a, b = _window_bounds(a0, b0, window)
                out[f"{step}:{wname}"] = (max(a, a0), min(b, b0))
    return [(lab, a, b) for lab, (a, b) in out.items()]


def initial_orthostatic_response(t, map_mmhg, rr_ms, *, change_s, baseline_map, baseline_hr,
                                 window_s=30.0) -> dict:  # fmt: skip
    """Initial orthostatic response: MAP nadir and HR peak just after a posture change.

    Parameters
    ----------
    t : array-like of float, shape (n_beats,)
        Beat times (s).
    map_mmhg : array-like of float, shape (n_beats,)
        Beat-to-beat mean arterial pressure (mmHg), NaN for invalid beats.
    rr_ms : array-like of float, shape (n_beats,)
        NN intervals ending at each beat (ms), NaN where not normal.
    change_s : float
        Time of the posture change (s), the challenge epoch's start.
    baseline_map, baseline_hr : float
        Mean MAP (mmHg) and heart rate (bpm) of the baseline epoch.
    window_s : float
        Length of the initial response window (s), default 30 s.

    Returns
    -------
    dict
        ``initial_map_nadir`` (mmHg), ``initial_map_drop`` (nadir - baseline, mmHg),
        ``initial_map_nadir_time`` (s after the change), ``initial_hr_peak`` (bpm,
        ``60000 / NN``), ``initial_hr_rise`` (bpm), ``initial_hr_peak_time`` (s); NaN
        (and ``reason``) where the window has no valid beat.

    Notes
    -----
    Beat-to-beat extrema, as Wieling et al. (2007) define the initial response (the
    nadir of pressure and the peak of heart rate within the first 30 s of standing);
    hand-written because no maintained library computes it from a beat table.
    """
    t = np.asarray(t, dtype=float)
    inside = (t >= change_s) & (t < change_s + window_s)
    m = np.asarray(map_mmhg, dtype=float)[inside]
    hr = 60000.0 / np.asarray(rr_ms, dtype=float)[inside]
    tt = t[inside] - change_s
    out = dict.fromkeys(
        [k for k in OUTCOMES if k.startswith("initial_")],
        np.nan,
    )
    reasons = []
    if np.isfinite(m).any():
        i = int(np.nanargmin(m))
        out.update(
            initial_map_nadir=float(m[i]),
            initial_map_drop=float(m[i] - baseline_map),
            initial_map_nadir_time=float(tt[i]),
        )
    else:
        reasons.append(f"no valid pressure beat in the first {window_s:g} s")
    if np.isfinite(hr).any():
        j = int(np.nanargmax(hr))
        out.update(
            initial_hr_peak=float(hr[j]),
            initial_hr_rise=float(hr[j] - baseline_hr),
            initial_hr_peak_time=float(tt[j]),
        )
    else:
        reasons.append(f"no NN interval in the first {window_s:g} s")
    if reasons:
        out["reason"] = "initial response: " + "; ".join(reasons)
    return out


def valsalva_ratio(t, rr_ms, *, strain, recovery_s=30.0) -> dict:
    """Valsalva ratio: longest RR after the strain over the shortest RR during it.

    Parameters
    ----------
    t : array-like of float, shape (n_beats,)
        Beat times (s).
    rr_ms : array-like of float, shape (n_beats,)
        NN intervals ending at each beat (ms), NaN where not normal.
    strain : (float, float)
        Start and end of the strain (s).
    recovery_s : float
        Length of the window after the strain searched for the longest RR (s).

    Returns
    -------
    dict
        ``valsalva_ratio`` (1); NaN and ``reason`` when a window has no NN interval.

    Notes
    -----
    Levin AB (1966) A simple test of cardiac function based upon the heart rate
    changes induced by the Valsalva manoeuvre. Am J Cardiol 18:90-99; the ratio of the
    consensus on autonomic testing (Assessment: clinical autonomic testing report,
    American Academy of Neurology 1996, Neurology 46:873-880). Hand-written: a ratio
    of two extrema of the beat table.
    """
    t = np.asarray(t, dtype=float)
    rr = np.asarray(rr_ms, dtype=float)
    a, b = strain
    during = rr[(t >= a) & (t < b)]
    after = rr[(t >= b) & (t < b + recovery_s)]
    if not np.isfinite(during).any() or not np.isfinite(after).any():
        reason = f"Valsalva: no NN interval in the strain or in the {recovery_s:g} s after it"
        return {"valsalva_ratio": np.nan, "reason": reason}
    return {"valsalva_ratio": float(np.nanmax(after) / np.nanmin(during))}


def orthostatic_tolerance(
    start_s, stop_s, events, event="presyncope", *, recording_end: float | None = None
) -> dict:
    """Orthostatic tolerance: time to a marked event, or to the end of the challenge.

    Parameters
    ----------
    start_s, stop_s : float
        Challenge start and end (s from the session start; for stepped challenges the
        first step's start and the last step's end).
    events : list of dict
        Marked events ``{"label": str, "time": float}`` (s from the session start).
    event : str
        The label that ends the challenge early (default ``presyncope``).
    recording_end : float, optional
        When the recording ends (s). A recording that stops before the challenge ends,
        with no such event before it, leaves the tolerance unknown (censored): NaN and
        a ``reason``, never "completed".

    Returns
    -------
    dict
        ``tolerance_time`` (s), ``tolerance_completed`` (1 if no such event came within
        the challenge, else 0); with ``reason`` where they are NaN.
    """
    times = sorted(
        float(e["time"]) for e in events if e["label"] == event and start_s <= e["time"] < stop_s
    )
    if times:
        return {"tolerance_time": times[0] - start_s, "tolerance_completed": 0.0}
    if recording_end is not None and recording_end < stop_s:
        return {
            "tolerance_time": np.nan,
            "tolerance_completed": np.nan,
            "reason": f"tolerance unknown: the recording ends at {recording_end:g} s, before "
            f"the challenge ends ({stop_s:g} s), with no {event!r} event",
        }
    return {"tolerance_time": float(stop_s - start_s), "tolerance_completed": 1.0}


def _ldf_outcomes(kind, challenge, where, signals, beats):
    from .ldf_challenges import local_heating_response, porh_response

    if "ldf" not in signals:
        return {"reason": f"{kind}: no ldf group in this session"}
    ldf = signals["ldf"]
    t = np.asarray(ldf["time"].values, dtype=float)
    flux = np.asarray(ldf["flux"].values, dtype=float)
    map_mmhg = None
    if beats is not None and "map" in beats and "t" in beats:
        ok = np.asarray(beats["abp_valid"].values, bool) if "abp_valid" in beats else True
        bm = np.where(ok, np.asarray(beats["map"].values, dtype=float), np.nan)
        bt = np.asarray(beats["t"].values, dtype=float)
        fin = np.isfinite(bm)
        if fin.sum() >= 2:
            map_mmhg = np.interp(t, bt[fin], bm[fin])
    step = challenge["challenge"]
    if kind == "porh":
        res = porh_response(
            t,
            flux,
            occlusion=where[challenge["occlusion"]],
            release=where[step],
            baseline=where[challenge["baseline"]],
            map_mmhg=map_mmhg,
        )
        prefix = "porh_"
    else:
        maximal = challenge.get("maximal")
        res = local_heating_response(
            t,
            flux,
            heating_start=where[step][0],
            heating_stop=where[step][1],
            maximal=where[maximal] if maximal else None,
            baseline=where[challenge["baseline"]],
            map_mmhg=map_mmhg,
        )
        prefix = "heating_"
    reason = res.pop("reason", None)
    out = {prefix + k: v for k, v in res.items()}
    if reason:
        out["reason"] = f"{kind}: {reason}"
    return out


def challenge_responses(
    features, epochs, challenges, *, beats=None, events=(), signals=None, recording_end=None
):
    """Responses of every feature to every challenge, with each kind's outcomes.

    Parameters
    ----------
    features : xarray.Dataset
        Epoch features (dim ``epoch``) of the protocol epochs and of the challenge
        windows (:func:`challenge_windows`), as :func:`cardiolab.features.epoch_features`
        gives them.
    epochs : list of (str, float, float)
        The protocol epochs (label, start s, stop s).
    challenges : list of dict
        Challenges as the catalog declares them (:class:`cardiolab.catalog.Challenge`).
    beats : xarray.Dataset, optional
        The beat table (for the initial orthostatic response and MAP of LDF challenges).
    events : list of dict
        Marked events ``{"label", "time"}`` of the session.
    signals : dict of str to xarray.Dataset, optional
        Raw groups (``ldf`` for PORH and local heating).
    recording_end : float, optional
        When the recording ends (s; :func:`cardiolab.schema.recording_end`), for the
        tolerance outcome of a challenge the recording does not cover to its end.

    Returns
    -------
    xarray.Dataset
        Dim ``response`` (labels of :func:`response_names`), coords ``challenge_name``,
        ``kind``, ``baseline``, ``challenge`` (the challenge epoch or step), ``window``
        (``""`` for the whole epoch). For every feature ``<f>``: ``<f>`` the absolute
        response (challenge - baseline, the feature's units) and ``<f>_pct`` the
        percent response (100 (challenge - baseline) / |baseline|; NaN when the
        baseline is 0 or NaN). Outcome variables of :data:`OUTCOMES` on the rows of the
        whole challenge (NaN elsewhere). Attr ``flags``: JSON list of ``{"challenge",
        "response", "reason"}`` for outcomes an epoch could not support.
    """
    import json

    signals = dict(signals or {})
    where = {lab: (float(a), float(b)) for lab, a, b in epochs}
    names = list(features.data_vars)
    position = {str(e): i for i, e in enumerate(features["epoch"].values)}
    values = {n: np.asarray(features.variables[n].values, dtype=float) for n in names}

    def at(epoch):
        i = position[epoch]
        return {n: values[n][i] for n in names}

    rows, coords, flags = [], [], []
    for c in challenges:
        kind = c.get("kind", "generic")
        steps = c["challenge"] if isinstance(c["challenge"], list) else [c["challenge"]]
        labels = response_names(c)
        main = labels[: len(steps)]
        base = at(c["baseline"])
        for step, label in zip(steps, main, strict=True):
            targets = [(label, step, "")] + [
                (f"{label}:{w}", f"{step}:{w}", w) for w in (c.get("windows") or {})
            ]
            for resp_label, epoch, window in targets:
                value = at(epoch)
                row = {}
                with np.errstate(divide="ignore", invalid="ignore"):
                    for n in names:
                        b, v = base[n], value[n]
                        row[n] = v - b
                        row[f"{n}_pct"] = 100.0 * (v - b) / abs(b) if b != 0 else np.nan
                if window == "":
                    outcome = {}
                    if kind in _POSTURE_CHANGE and beats is not None:
                        outcome.update(_initial(beats, where[step][0], base, c))
                    if kind in _TOLERANCE and step == steps[-1]:
                        outcome.update(
                            orthostatic_tolerance(
                                where[steps[0]][0],
                                where[step][1],
                                events,
                                c.get("event", "presyncope"),
                                recording_end=recording_end,
                            )
                        )
                    if kind in ("porh", "local_heating"):
                        outcome.update(_ldf_outcomes(kind, c, where, signals, beats))
                    if kind == "valsalva" and beats is not None:
                        outcome.update(
                            valsalva_ratio(
                                beats["t"].values, _nn(beats), strain=where[step],
                                recovery_s=float(c.get("recovery_s", 30.0)),
                            )
                        )  # fmt: skip
                    reason = outcome.pop("reason", None)
                    if reason:
                        flags.append(
                            {
                                "challenge": c.get("name") or label,
                                "response": resp_label,
                                "reason": reason,
                            }
                        )
                    row.update(outcome)
                rows.append(row)
                coords.append(
                    (resp_label, c.get("name") or main[0], kind, c["baseline"], step, window)
                )
    data = {}
    for n in names:
        attrs = features.variables[n].attrs
        long_name = attrs.get("long_name", n)
        data[n] = {
            "units": attrs.get("units", "1"),
            "long_name": f"response (challenge - baseline) of {long_name}",
        }
        data[f"{n}_pct"] = {"units": "%", "long_name": f"percent response of {long_name}"}
    for n, (units, long_name) in OUTCOMES.items():
        if any(n in r for r in rows):
            data[n] = {"units": units, "long_name": long_name}
    out = xr.Dataset(
        {
            n: ("response", np.array([r.get(n, np.nan) for r in rows], dtype=float), attrs)
            for n, attrs in data.items()
        },
        coords={
            "response": [c[0] for c in coords],
            "challenge_name": ("response", [c[1] for c in coords]),
            "kind": ("response", [c[2] for c in coords]),
            "baseline": ("response", [c[3] for c in coords]),
            "challenge": ("response", [c[4] for c in coords]),
            "window": ("response", [c[5] for c in coords]),
        },
    )
    out.attrs["flags"] = json.dumps(flags)
    return out


def _nn(beats):
    """The beat table's NN intervals (ms) (:func:`.hrv.nn_intervals`)."""
    if "valid" not in beats:
        return np.asarray(beats["rr"].values, dtype=float)
    return nn_intervals(beats["rr"].values, beats["valid"].values)


def _initial(beats, change_s, base, challenge):
    t = np.asarray(beats["t"].values, dtype=float)
    valid = np.asarray(beats["valid"].values, bool) if "valid" in beats else np.ones(t.size, bool)
    abp = valid & (np.asarray(beats["abp_valid"].values, bool) if "abp_valid" in beats else True)
    map_b = (
        np.where(abp, np.asarray(beats["map"].values, dtype=float), np.nan)
        if "map" in beats
        else np.full(t.size, np.nan)
    )
    return initial_orthostatic_response(
        t,
        map_b,
        _nn(beats),
        change_s=change_s,
        baseline_map=base.get("map", np.nan),
        baseline_hr=base.get("hr", np.nan),
        window_s=float(challenge.get("initial_s", 30.0)),
    )
