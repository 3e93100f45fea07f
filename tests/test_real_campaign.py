"""The main job on a campaign of real recordings: validate, process, fit.

The campaign is the README's "your own recordings" catalog (see real_campaign.py):
PhysioNet recordings in a CSV export, a bare value-per-line file with a lead-off
stretch, WFDB records with .dat and MATLAB .mat signals, ECG with invasive arterial
pressure. Every session must process, with the beats of the expert annotations found
where the recording has them; no command may end in a traceback. The served
dashboard on the same campaign is tested in tests/browser/test_real_campaign_pages.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import wfdb
from real_campaign import (
    E0103_RATE,
    LABCHART_BLOCKS,
    LEAD_OFF_S,
    ULTRASOUND_SESSIONS,
    cardiolab,
)

from cardiolab.annotations import reviewed_beats
from cardiolab.io import BEAT_SYMBOLS
from cardiolab.pipeline import campaign_status, features_table
from cardiolab.signals.quality import score_detections

pytestmark = pytest.mark.slow

#: (subject, session) -> (annotated record under ../shared/data, the stretches of it
#: that the session holds (s) and where they start in the session (s)), for the sessions
#: that have expert beat annotations
ANNOTATED = {
    ("S01", "L-30"): ("mitdb/100", [(0.0, 120.0)], [0.0]),
    ("S03", "L-30"): ("mitdb/103", [(0.0, 1806.0)], [0.0]),
    ("S03", "R+1"): ("nstdb/118e24", [(0.0, 1806.0)], [0.0]),
    ("S05", "R+1"): ("mitdb/105", list(LABCHART_BLOCKS), [a for a, _ in LABCHART_BLOCKS]),
}
N_SESSIONS = 9


def no_traceback(done):
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_validate_reads_every_session(real_campaign):
    catalog, env, _ = real_campaign
    done = cardiolab("validate", catalog, env=env)
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    assert f"{N_SESSIONS} of {N_SESSIONS} sessions follow the data model" in done.stdout


def test_every_session_processes(real_campaign):
    catalog, _, done = real_campaign
    no_traceback(done)
    assert done.returncode == 0, done.stdout + done.stderr
    status = campaign_status(catalog)
    assert len(status) == N_SESSIONS
    assert status["status"].eq("processed").all(), status.to_string()


@pytest.mark.parametrize(("subject", "session"), list(ANNOTATED))
def test_beats_match_the_expert_annotations(real_campaign, shared_data, subject, session):
    """Beat times against the annotated beats of the stretches the session holds."""
    catalog, _, _ = real_campaign
    record, stretches, starts = ANNOTATED[(subject, session)]
    ann = wfdb.rdann(str(shared_data / record), "atr")
    fs = float(ann.fs)
    beat = np.isin(ann.symbol, list(BEAT_SYMBOLS))
    t_ann = np.asarray(ann.sample)[beat] / fs
    ref = np.concatenate(
        [
            t_ann[(t_ann >= a) & (t_ann < b)] - a + s
            for (a, b), s in zip(stretches, starts, strict=True)
        ]
    )
    beats = reviewed_beats(catalog, subject, session)
    score = score_detections(
        np.round(ref * 1000).astype(int), np.round(beats["t"].values * 1000).astype(int), 150
    )
    assert score.sensitivity >= 0.995, score
    assert score.positive_predictivity >= 0.995, score


def test_lead_off_start_keeps_every_beat(real_campaign):
    """e0103 (120 beats) after 10 s of NaN: all beats, none in the lead-off stretch."""
    catalog, _, _ = real_campaign
    beats = reviewed_beats(catalog, "S01", "R+1")
    t = beats["t"].values
    assert t.min() > LEAD_OFF_S
    assert beats.sizes["beat"] == 120
    assert beats.attrs["sampling_rate_ecg"] == E0103_RATE


def test_arterial_pressure_of_a_real_icu_record(real_campaign, shared_data):
    """MIMIC 03700181: invasive ABP beats, mostly valid, and their systolic and diastolic
    pressures those of the trace (its ABP channel reads 25-55 mmHg): each valid beat's
    SBP and DBP equal the largest and smallest sample between the beat's R-peak and the
    next one's (shifted by 0.1 s for the pulse transit), read here with wfdb."""
    catalog, _, _ = real_campaign
    beats = reviewed_beats(catalog, "S02", "R+1")
    valid = beats["abp_valid"].values
    assert valid.mean() > 0.9
    record = wfdb.rdrecord(str(shared_data / "bp" / "03700181"), channel_names=["ABP"])
    abp, fs = record.p_signal[:, 0], record.fs
    r = np.round(beats["t"].values * fs).astype(int)  # R-peaks in ABP samples (125 Hz)
    shift = int(0.1 * fs)
    idx = np.flatnonzero(valid[:-1] & (r[1:] + shift <= abp.size))
    top = [abp[r[i] + shift : r[i + 1] + shift].max() for i in idx]
    bottom = [abp[r[i] + shift : r[i + 1] + shift].min() for i in idx]
    sbp, dbp = beats["sbp"].values[idx], beats["dbp"].values[idx]
    assert idx.size > 1200
    assert np.median(np.abs(sbp - top)) < 0.5  # mmHg; measured 0.01
    assert np.percentile(np.abs(sbp - top), 90) < 1.0  # measured 0.03
    assert np.median(np.abs(dbp - bottom)) < 1.0  # measured 0.31
    assert np.all(sbp > dbp)


def test_features_use_the_valid_beats_of_every_session(real_campaign):
    catalog, _, _ = real_campaign
    table = features_table(catalog)
    table = table[table["epoch"] != "session"]  # the ultrasound sheet's rows
    assert len(table) == N_SESSIONS and set(table["epoch"]) == {"supine"}
    assert (table["n_beats"] > 50).all(), table[["subject", "session", "n_beats"]]
    assert table["hr"].between(40, 140).all(), table[["subject", "session", "hr"]]


def test_an_rr_file_is_a_beat_level_session(real_campaign, shared_data):
    """The chest strap's R-R intervals: every interval a beat, HRV from them."""
    catalog, _, _ = real_campaign
    expected = json.loads((shared_data / "beat_exports" / "expected.json").read_text())
    rest = expected["files"]["rest_rri.txt"]
    beats = reviewed_beats(catalog, "S04", "R+1")
    assert beats.sizes["beat"] == rest["n_rr"]
    assert np.nanmean(beats["rr"].values) == pytest.approx(rest["mean_rr_ms"], rel=1e-9)
    row = features_table(catalog).set_index(["subject", "session"]).loc[("S04", "R+1")]
    assert 40 < row["hr"] < 80 and row["n_nn"] > 80  # supine, 10-120 s


def test_measurement_table_joins_the_cohort_table(real_campaign):
    """The ultrasound sheet's values are features of their sessions, with units."""
    catalog, _, _ = real_campaign
    table = features_table(catalog)
    sheet = table[table["epoch"] == "session"].set_index(["subject", "session"])
    assert sorted(sheet.index) == sorted(ULTRASOUND_SESSIONS)
    assert sheet.loc[("S01", "L-30"), "carotid_imt"] == pytest.approx(0.55)
    assert sheet.loc[("S03", "R+1"), "jugular_vein_area"] == pytest.approx(0.55)
    assert table.attrs["units"]["carotid_imt"] == "mm"
    assert table.attrs["units"]["jugular_vein_area"] == "cm2"  # the sheet's unit


def test_fit_runs_on_the_real_campaign(real_campaign):
    catalog, env, _ = real_campaign
    done = cardiolab("fit", catalog, "--quiet", env=env)
    no_traceback(done)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "results:" in done.stdout
