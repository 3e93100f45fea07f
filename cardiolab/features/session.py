"""A session's per-epoch features and challenge responses, from its beat table.

:func:`session_results` is the one step from a (reviewed) beat table and the session's
raw groups to what the derived store keeps per session: the pipeline
(:func:`cardiolab.pipeline.process_session`) and the review
(:func:`cardiolab.annotations.recompute_features`) both call it.
"""

from __future__ import annotations

import json
import time

import numpy as np
import xarray as xr

__all__ = ["session_features", "session_results"]


def session_results(
    beats: xr.Dataset, session: xr.DataTree, *, timings: dict | None = None
) -> tuple[xr.Dataset, xr.Dataset | None]:
    """Per-epoch features of a session and its challenge responses.

    Every declared feature (:func:`cardiolab.features.epoch_features`) is computed for
    the protocol's epochs and for its challenges' sub-windows; each challenge of the
    catalog protocol (attr ``challenges`` of the ``protocol`` group, see
    :class:`cardiolab.catalog.Challenge`) then gives its responses
    (:func:`cardiolab.features.challenge_responses`), with the session's marked events
    (attr ``events``) for the tolerance outcome.

    Parameters
    ----------
    beats : xarray.Dataset
        The session's (reviewed) beat table.
    session : xarray.DataTree
        The session node (raw groups, protocol).
    timings : dict, optional
        Accumulates each feature's computing time (s), and ``"challenge responses"``.

    Returns
    -------
    features : xarray.Dataset
        Dim ``epoch``: the protocol epochs, then one row per challenge response (the
        whole challenge epoch; named by :func:`cardiolab.features.challenges.response_names`)
        holding the absolute response of every feature and the challenge's outcomes
        (initial orthostatic response, tolerance, PORH, local heating), NaN elsewhere.
    responses : xarray.Dataset or None
        Dim ``response``: absolute and percent responses of every feature for every
        challenge step and window, and the outcomes; ``None`` without challenges.
    """
    from ..schema import RAW_GROUPS, protocol_group, recording_end
    from . import challenge_responses, challenge_windows, epoch_features

    protocol = session["protocol"].to_dataset(inherit=False)
    labels = [str(v) for v in protocol["label"].values]
    starts, stops = protocol["start"].values.astype(float), protocol["stop"].values.astype(float)
    epochs = list(zip(labels, starts, stops, strict=True))
    challenges = json.loads(protocol.attrs.get("challenges") or "[]")
    events = json.loads(protocol.attrs.get("events") or "[]")
    signals = {g: session[g].to_dataset(inherit=False) for g in RAW_GROUPS if g in session.children}
    windows = challenge_windows(epochs, challenges)
    end = recording_end(session)
    feats = epoch_features(
        beats,
        None,
        protocol_group(epochs + windows),
        signals=signals,
        session=dict(session.attrs),
        timings=timings,
        recording_end=end,
    )
    if not challenges:
        return feats, None
    t0 = time.perf_counter()
    responses = challenge_responses(
        feats, epochs, challenges, beats=beats, events=events, signals=signals, recording_end=end
    )
    if timings is not None:
        key = "challenge responses"
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
    # the features rows: protocol epochs, then each whole-challenge response (plain
    # arrays: a few hundred variables through sel/concat cost more than the features)
    whole = np.flatnonzero(responses["window"].values == "")
    position = {str(e): i for i, e in enumerate(feats["epoch"].values)}
    keep = np.asarray([position[lab] for lab in labels], dtype=int)
    data = {}
    # Variables, not DataArrays: building a DataArray per name costs about a millisecond
    for name, var in ((n, feats.variables[n]) for n in feats.data_vars):
        values = np.asarray(var.values, dtype=float)
        rows = np.asarray(responses.variables[name].values, dtype=float)[whole]
        data[name] = ("epoch", np.concatenate([values[keep], rows]), var.attrs)
    for name, var in ((n, responses.variables[n]) for n in responses.data_vars):
        if name in data or (name.endswith("_pct") and name[:-4] in feats):
            continue
        rows = np.asarray(var.values, dtype=float)[whole]
        data[name] = ("epoch", np.concatenate([np.full(keep.size, np.nan), rows]), var.attrs)
    epoch_labels = labels + [str(r) for r in responses["response"].values[whole]]
    out = xr.Dataset(data, coords={"epoch": epoch_labels}, attrs=dict(feats.attrs))
    out.attrs["challenges"] = json.dumps(challenges)
    return out, responses


def session_features(beats: xr.Dataset, session: xr.DataTree) -> xr.Dataset:
    """Per-epoch features and challenge response rows of a session (see
    :func:`session_results`, whose first result this is)."""
    return session_results(beats, session)[0]
