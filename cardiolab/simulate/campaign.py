"""Simulate a whole campaign: subjects, schedule, effects, raw store, catalog, truth."""

from __future__ import annotations

import logging
import os
import shutil
import time
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from tqdm.auto import tqdm

from .. import __version__
from ..encoding import variable_length_strings, zarr_encoding
from ..errors import CardiolabError
from ..features.pulse_contour import age_from_band
from ..io.native import consolidate_campaign_store
from ..labels import parse_session_label
from ..measurements import SESSION_EPOCH
from .effects import (
    EPOCHS,
    MAP_FORM_FACTOR,
    MEASURED_QUANTITIES,
    apply_effect_overrides,
    default_effects,
    time_course,
)
from .session import RATES, Artefacts, draw_subject_traits, simulate_session
from .truth import TRUTH_DIR, Truth

__all__ = ["DEFAULT_SCHEDULES", "STORE_NAME", "simulate_campaign"]

log = logging.getLogger("cardiolab")

#: Default session schedules per campaign kind.
DEFAULT_SCHEDULES = {
    "spaceflight": ["L-60", "L-30", "FD5", "FD15", "FD25", "R+0", "R+1", "R+3", "R+10", "R+30"],
    "bedrest": ["BDC-9", "BDC-3", "HDT5", "HDT21", "HDT56", "R+0", "R+1", "R+4", "R+10", "R+30"],
    "confinement": ["L-60", "L-30", "FD5", "FD15", "FD25", "R+0", "R+1", "R+3", "R+10", "R+30"],
}
STORE_NAME = "campaign.zarr"
CATALOG_NAME = "data_catalog.yaml"
DERIVED_NAME = "derived.zarr"
#: The per-session measurement table of a simulated campaign (beside its catalog).
MEASUREMENTS_NAME = "measurements.csv"
#: Decimals written to the measurement table (0.001 mm, 0.001 cm2: an ultrasound
#: system's display resolution).
MEASUREMENT_DECIMALS = 3
_MEASUREMENT_STREAM = zlib.crc32(b"measurements")  # their random draws' own stream
#: Anchor dates of simulated campaigns (fictional).
LAUNCH = date(2026, 3, 2)


def _schedule_for(schedule, kind, subjects):
    if schedule is None:
        labels = DEFAULT_SCHEDULES[kind]
        return {s: list(labels) for s in subjects}
    if isinstance(schedule, Mapping):
        missing = [s for s in subjects if s not in schedule]
        if missing:
            raise CardiolabError(f"schedule names no sessions for subjects {missing}")
        return {s: list(schedule[s]) for s in subjects}
    if isinstance(schedule, str) or not isinstance(schedule, Sequence):
        raise CardiolabError("schedule must be a list of session labels or {subject: [labels]}")
    return {s: list(schedule) for s in subjects}


def _check_labels(labels, kind):
    for lab in labels:
        parsed = parse_session_label(lab)
        if parsed.kind is not None and kind != "confinement":
            if (parsed.kind == "bedrest") != (kind == "bedrest"):
                raise CardiolabError(f"session label {lab!r} does not belong to a {kind} schedule")


def _session_seed(seed, subject_index, label):
    return np.random.SeedSequence([seed, subject_index, zlib.crc32(label.encode())])


def _expected(table, pre_i, quantity, epoch, parsed) -> float:
    """A subject's expected value of ``quantity`` in ``epoch`` at a session: its own
    pre-flight level on the effects model's time course (no within-subject noise)."""
    row = table.loc[(quantity, epoch)]
    return time_course(
        pre_i[(quantity, epoch)],
        row["A"],
        row["tau_a"],
        row["D"],
        row["tau_r"],
        parsed.phase,
        parsed.day,
    )


def _one_session(job):
    """Simulate one session and write its groups and beat truth (runs in a worker)."""
    (
        subject,
        label,
        targets,
        duration_s,
        epochs,
        traits,
        seq,
        rates,
        artefacts,
        store,
        beats_store,
        age,
        sex,
    ) = job
    rng = np.random.default_rng(seq)
    groups, beats, realised = simulate_session(
        targets,
        duration_s,
        epochs,
        traits,
        rng,
        rates=rates,
        artefacts=artefacts,
        age=age,
        sex=sex,
    )
    for gname, ds in groups.items():
        ds = variable_length_strings(ds)
        ds.to_zarr(
            store,
            group=f"{subject}/{label}/{gname}",
            mode="w",
            consolidated=False,
            encoding=zarr_encoding(ds, gname),
            # every chunk written: an absent chunk of a raw store is a loss
            # (cardiolab.io.native.check_zarr_chunks)
            write_empty_chunks=True,
        )
    variable_length_strings(beats).assign_attrs(subject=subject, session=label).to_zarr(
        beats_store,
        group=f"{subject}/{label}",
        mode="w",
        consolidated=False,
        encoding=zarr_encoding(beats),
    )
    return subject, label, realised


def simulate_campaign(
    path,
    kind: str = "spaceflight",
    n_subjects: int = 8,
    schedule=None,
    duration_min: float = 10,
    seed: int = 0,
    effects: Mapping | None = None,
    *,
    within_sd: float = 0.03,
    rates: Mapping | None = None,
    artefacts: Artefacts | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Truth:
    """Simulate a campaign with known truth and write it as a catalogued store.

    Writes ``<path>/data_catalog.yaml``, the raw store ``<path>/campaign.zarr``
    (``/<subject>/<session>/<group>``), the per-session measurement table
    ``<path>/measurements.csv`` (carotid IMT in mm and jugular vein area in cm2 of
    every session, :data:`~cardiolab.simulate.effects.MEASURED_QUANTITIES`; listed
    under ``measurements`` in the catalog) and the truth ``<path>/truth/``.

    Parameters
    ----------
    path : str or pathlib.Path
        Folder to create (it must not exist or be empty, unless ``overwrite``).
    kind : {"spaceflight", "bedrest", "confinement"}
        Campaign kind; sets the default schedule and effects.
    n_subjects : int
        Number of subjects (``S01`` ...).
    schedule : list of str or dict, optional
        Session labels for every subject, or ``{subject: [labels]}``. Default
        :data:`DEFAULT_SCHEDULES` of the kind (the demo: L-60, L-30, FD5, FD15, FD25,
        R+0, R+1, R+3, R+10, R+30). Sub-day landing times such as ``R+4h`` are
        accepted.
    duration_min : float
        Session length (min); half supine rest, half stand test.
    seed : int
        Seed of all randomness; the same seed gives the same campaign.
    effects : mapping, optional
        Overrides of the default effects: ``{quantity: {column: value}}`` or
        ``{(quantity, epoch): {column: value}}`` (see
        :func:`cardiolab.simulate.default_effects`).
    within_sd : float
        Day-to-day (session-to-session) variation within a subject, as a fraction of
        the pre-flight level.
    rates : mapping, optional
        Sampling rates (Hz) per group; default ECG 500, ABP 200, LDF 32, Doppler 100.
    artefacts : Artefacts, optional
        Rates of ectopic beats, motion artefacts, dropouts; Physiocal gaps on/off.
    workers : int, optional
        Processes used for generation (default: the machine's cores).
    overwrite : bool
        Replace an existing simulated campaign at ``path``.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Truth
        The truth, also saved under ``<path>/truth``.

    Examples
    --------
    >>> truth = simulate_campaign("/tmp/demo", n_subjects=2, schedule=["L-30", "R+1"],
    ...                           duration_min=2)  # doctest: +SKIP
    >>> truth.effects.loc[("hr", "stand"), "D"]  # doctest: +SKIP
    16.0
    """
    t_start = time.perf_counter()
    path = Path(path).expanduser()
    if kind not in DEFAULT_SCHEDULES:
        raise CardiolabError(
            f"unknown campaign kind {kind!r}; expected one of {list(DEFAULT_SCHEDULES)}"
        )
    if int(n_subjects) < 1:
        raise CardiolabError("n_subjects must be at least 1")
    if duration_min <= 0:
        raise CardiolabError("duration_min must be positive")
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise CardiolabError(
                f"{path} exists and is not empty; choose another folder or pass overwrite=True"
            )
        if not (path / CATALOG_NAME).exists() or not (path / STORE_NAME).exists():
            raise CardiolabError(
                f"{path} does not hold a simulated campaign; refusing to overwrite it"
            )
        for name in (STORE_NAME, TRUTH_DIR, CATALOG_NAME, DERIVED_NAME, MEASUREMENTS_NAME):
            target = path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    path.mkdir(parents=True, exist_ok=True)

    rates = {**RATES, **dict(rates or {})}
    artefacts = artefacts if artefacts is not None else Artefacts()
    table = apply_effect_overrides(default_effects(kind), effects)
    subjects = [f"S{i + 1:02d}" for i in range(int(n_subjects))]
    plan = _schedule_for(schedule, kind, subjects)
    for labels in plan.values():
        _check_labels(labels, kind)
        if len(set(labels)) != len(labels):
            raise CardiolabError(f"schedule has duplicate session labels: {labels}")

    duration_s = float(duration_min) * 60.0
    epochs = [("supine", 0.0, duration_s / 2), ("stand", duration_s / 2, duration_s)]
    quantities = [
        q for q in table.index.get_level_values("quantity").unique() if q not in MEASURED_QUANTITIES
    ]
    drawn = [q for q in quantities if q != "map"]
    measured = [q for q in MEASURED_QUANTITIES if q in table.index.get_level_values("quantity")]

    store = path / STORE_NAME
    beats_store = path / TRUTH_DIR / "beats.zarr"
    campaign_name = f"cardiolab-{kind}-sim"
    root = zarr.open_group(store, mode="w-")
    root.attrs.update(
        {
            "campaign": campaign_name,
            "kind": kind,
            "simulated_by": f"cardiolab {__version__}",
            "seed": int(seed),
        }
    )
    beats_root = zarr.open_group(beats_store, mode="w-")

    # --- subject level ---------------------------------------------------------------
    subj_rows, session_rows, jobs, traits_of, meta = [], [], [], {}, {}
    measured_rows, realised_measured = [], {}
    for si, subject in enumerate(subjects):
        rng = np.random.default_rng(np.random.SeedSequence([seed, si, 0]))
        z = {q: rng.standard_normal() for q in drawn}
        z["dbp"] = z["sbp"]  # one blood-pressure level per subject
        traits_of[subject] = draw_subject_traits(rng)
        meta[subject] = subject_metadata(seed, si)
        pre_i = {}
        for q in drawn:
            for ep in EPOCHS:
                row = table.loc[(q, ep)]
                pre_i[(q, ep)] = row["pre"] * (1.0 + row["between_sd"] * z[q])
                subj_rows.append((subject, q, ep, pre_i[(q, ep)], z[q]))
        for ep in EPOCHS:
            k = MAP_FORM_FACTOR
            pre_i[("map", ep)] = pre_i[("dbp", ep)] + k * (pre_i[("sbp", ep)] - pre_i[("dbp", ep)])
            subj_rows.append((subject, "map", ep, pre_i[("map", ep)], z["sbp"]))
        # measurements: the same random intercept, from a stream of their own (the
        # recorded quantities of a seed stay as they were)
        m_rng = np.random.default_rng(np.random.SeedSequence([seed, si, _MEASUREMENT_STREAM]))
        for q in measured:
            z[q] = m_rng.standard_normal()
            row = table.loc[(q, SESSION_EPOCH)]
            pre_i[(q, SESSION_EPOCH)] = row["pre"] * (1.0 + row["between_sd"] * z[q])
            subj_rows.append((subject, q, SESSION_EPOCH, pre_i[(q, SESSION_EPOCH)], z[q]))

        # --- session level ---------------------------------------------------------
        for label in plan[subject]:
            parsed = parse_session_label(label)
            root.create_group(f"{subject}/{label}").attrs.update(
                {
                    "subject": subject,
                    "session": label,
                    "phase": parsed.phase,
                    "day": float(parsed.day),
                    "campaign": campaign_name,
                    "protocol": "supine-stand",
                    "posture": "supine",
                }
            )
            beats_root.create_group(f"{subject}/{label}")
            seq = _session_seed(seed, si, label)
            day_rng = np.random.default_rng(seq.spawn(1)[0])
            dev = {q: day_rng.standard_normal() for q in drawn}
            dev["dbp"] = dev["sbp"]
            targets = {}
            for ep in EPOCHS:
                vals = {}
                for q in drawn:
                    base = _expected(table, pre_i, q, ep, parsed)
                    vals[q] = base + within_sd * table.loc[(q, ep), "pre"] * dev[q]
                vals["map"] = vals["dbp"] + MAP_FORM_FACTOR * (vals["sbp"] - vals["dbp"])
                targets[ep] = vals
                session_rows.append(
                    {
                        "subject": subject,
                        "session": label,
                        "epoch": ep,
                        "phase": parsed.phase,
                        "day": parsed.day,
                        **vals,
                    }
                )
            if measured:
                m_rng = np.random.default_rng(
                    np.random.SeedSequence(
                        [seed, si, zlib.crc32(label.encode()), _MEASUREMENT_STREAM]
                    )
                )
                vals = {}
                for q in measured:
                    base = _expected(table, pre_i, q, SESSION_EPOCH, parsed)
                    noise = m_rng.standard_normal()
                    vals[q] = base + within_sd * table.loc[(q, SESSION_EPOCH), "pre"] * noise
                ids = {"subject": subject, "session": label, "epoch": SESSION_EPOCH}
                ids.update(phase=parsed.phase, day=parsed.day)
                session_rows.append({**ids, **vals})
                written = {q: round(float(v), MEASUREMENT_DECIMALS) for q, v in vals.items()}
                realised_measured[(subject, label)] = {**ids, **written}
                measured_rows.append({"subject": subject, "session": label, **written})
            tdf = pd.DataFrame.from_dict(targets, orient="index")[quantities]
            jobs.append(
                (
                    subject,
                    label,
                    tdf,
                    duration_s,
                    epochs,
                    traits_of[subject],
                    seq,
                    rates,
                    artefacts,
                    str(store),
                    str(beats_store),
                    age_from_band(meta[subject]["age_band"]),
                    meta[subject]["sex"],
                )
            )

    # --- generation (parallel over sessions) -------------------------------------------
    n_workers = workers or os.cpu_count() or 1
    n_workers = max(1, min(n_workers, len(jobs)))
    bar = tqdm(total=len(jobs), desc="simulating sessions", unit="session", disable=not progress)
    results = []
    if n_workers == 1:
        for job in jobs:
            results.append(_one_session(job))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            for res in pool.map(_one_session, jobs, chunksize=2):
                results.append(res)
                bar.update()
    bar.close()

    realised_rows = []
    for subject, label, realised in results:
        parsed = parse_session_label(label)
        for ep, row in realised.iterrows():
            realised_rows.append(
                {
                    "subject": subject,
                    "session": label,
                    "epoch": ep,
                    "phase": parsed.phase,
                    "day": parsed.day,
                    **row.to_dict(),
                }
            )
        if (subject, label) in realised_measured:
            realised_rows.append(realised_measured[(subject, label)])
    consolidate_campaign_store(store)
    consolidate_campaign_store(beats_store)

    # --- truth and catalog -------------------------------------------------------------
    idx = ["subject", "session", "epoch"]
    truth = Truth(
        effects=table,
        subjects=pd.DataFrame(
            subj_rows, columns=["subject", "quantity", "epoch", "pre", "z"]
        ).set_index(["subject", "quantity", "epoch"]),
        sessions=pd.DataFrame(session_rows).set_index(idx),
        realised=pd.DataFrame(realised_rows).set_index(idx),
        params={
            "kind": kind,
            "n_subjects": int(n_subjects),
            "schedule": plan,
            "duration_min": float(duration_min),
            "seed": int(seed),
            "within_sd": float(within_sd),
            "rates": rates,
            "artefacts": asdict(artefacts),
            "epochs": [list(e) for e in epochs],
            "subject_traits": {s: asdict(t) for s, t in traits_of.items()},
            "cardiolab_version": __version__,
        },
    )
    truth.save(path / TRUTH_DIR)
    if measured:
        _write_measurements(path / MEASUREMENTS_NAME, measured_rows)
    _write_catalog(
        path,
        kind,
        subjects,
        meta,
        plan,
        epochs,
        max_in_day(plan),
        measurements=MEASUREMENTS_NAME if measured else None,
    )
    log.info(
        "simulated %d sessions in %.1f s at %s", len(jobs), time.perf_counter() - t_start, path
    )
    return truth


def subject_metadata(seed: int, index: int) -> dict:
    """Pseudonymous code, sex and age band of simulated subject ``index`` (0-based)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 1]))
    return {
        "code": f"S{index + 1:02d}",
        "sex": "F" if rng.random() < 0.3 else "M",
        "age_band": ["30-39", "40-49", "50-59"][int(rng.integers(0, 3))],
    }


def max_in_day(plan) -> float:
    days = [
        parse_session_label(lab).day
        for labels in plan.values()
        for lab in labels
        if parse_session_label(lab).phase == "in"
    ]
    return max(days) if days else 0.0


def campaign_catalog(
    kind, subjects, meta, plan, epochs, last_in_day, *, store=STORE_NAME, measurements=None
):
    """The catalog dict of a simulated campaign (see :mod:`cardiolab.catalog`);
    ``measurements`` names its measurement table, if any."""
    mission_days = int(np.ceil(last_in_day)) + 5
    start, end = ("start", "end") if kind == "bedrest" else ("launch", "landing")
    return {
        "version": 1,
        "campaign": {
            "name": f"cardiolab-{kind}-sim",
            "kind": kind,
            start: LAUNCH.isoformat(),
            end: (LAUNCH + timedelta(days=mission_days)).isoformat(),
            "description": "Simulated campaign with known truth (cardiolab.simulate); "
            "the truth is in the truth/ folder beside this catalog.",
        },
        "derived": DERIVED_NAME,
        "store": store,
        "protocols": {
            "supine-stand": {
                "posture": "supine",
                "epochs": [
                    {"label": lab, "start": float(a), "stop": float(b)} for lab, a, b in epochs
                ],
                "challenges": [
                    {
                        "kind": "orthostatic",
                        "baseline": "supine",
                        "challenge": "stand",
                        "windows": {"initial": [0.0, 30.0], "late": [-60.0, 0.0]},
                    }
                ],
            }
        },
        "default_protocol": "supine-stand",
        "subjects": [meta[s] for s in subjects],
        "sessions": [{"subject": s, "label": lab} for s in subjects for lab in plan[s]],
        **({"measurements": [{"path": measurements}]} if measurements else {}),
    }


def _write_measurements(path, rows) -> None:
    """The per-session measurement table: one row per session, units in the header."""
    frame = pd.DataFrame(rows)
    quantities = [c for c in frame.columns if c not in ("subject", "session")]
    frame = frame.rename(columns={q: f"{q} [{MEASURED_QUANTITIES[q][0]}]" for q in quantities})
    frame.to_csv(path, index=False, float_format=f"%.{MEASUREMENT_DECIMALS}f")


def _write_catalog(path, kind, subjects, meta, plan, epochs, last_in_day, measurements=None):
    import yaml

    data = campaign_catalog(
        kind, subjects, meta, plan, epochs, last_in_day, measurements=measurements
    )
    header = (
        "# cardiolab campaign catalog of a simulated campaign (cardiolab.simulate).\n"
        "# Paths are relative to this file; the truth is in truth/ beside it.\n"
    )
    parts = []
    for key, value in data.items():
        if key in ("subjects", "sessions"):
            items = "".join(
                f"  - {yaml.safe_dump(v, sort_keys=False, default_flow_style=True, width=200)}"
                for v in value
            )
            parts.append(f"{key}:\n{items}")
        else:
            parts.append(yaml.safe_dump({key: value}, sort_keys=False, width=100))
    (path / CATALOG_NAME).write_text(header + "".join(parts))
