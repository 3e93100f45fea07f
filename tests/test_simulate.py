"""The simulator's truth checked against its own output."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import signal

from cardiolab.errors import CardiolabError
from cardiolab.schema import validate_campaign
from cardiolab.simulate import (
    EFFECT_COLUMNS,
    Artefacts,
    Truth,
    default_effects,
    simulate_campaign,
    time_course,
)


def open_store(path):
    return xr.open_datatree(path / "campaign.zarr", engine="zarr", chunks={})


def test_effects_table_layout():
    eff = default_effects()
    assert list(eff.columns) == EFFECT_COLUMNS
    assert eff.index.names == ["quantity", "epoch"]
    for q in ("hr", "sbp", "map", "brs", "flux", "femoral_ri"):
        assert (q, "supine") in eff.index and (q, "stand") in eff.index
    # SCIENCE.md: the stand-test HR rise is 11 bpm larger than before flight at R+0
    extra = eff.loc[("hr", "stand"), "D"] - eff.loc[("hr", "supine"), "D"]
    assert extra == pytest.approx(11.0)
    # in-flight SBP fall within -8 to -14 mmHg
    assert -14 <= eff.loc[("sbp", "supine"), "A"] <= -8


def test_effect_overrides_and_errors():
    eff = default_effects()
    from cardiolab.simulate.effects import apply_effect_overrides

    out = apply_effect_overrides(eff, {"hr": {"D": 8.0}, ("sbp", "stand"): {"tau_r": 5}})
    assert out.loc[("hr", "supine"), "D"] == 8.0 and out.loc[("hr", "stand"), "D"] == 8.0
    assert out.loc[("sbp", "stand"), "tau_r"] == 5
    assert out.loc[("map", "stand"), "tau_r"] == 5  # MAP follows SBP
    assert eff.loc[("hr", "supine"), "D"] == 5.0  # input untouched
    with pytest.raises(CardiolabError, match="unknown quantity 'hrv'"):
        apply_effect_overrides(eff, {"hrv": {"D": 1}})
    with pytest.raises(CardiolabError, match="unknown column 'delta'"):
        apply_effect_overrides(eff, {"hr": {"delta": 1}})
    with pytest.raises(CardiolabError, match="must be > 0"):
        apply_effect_overrides(eff, {"hr": {"tau_r": 0}})


def test_time_course_formula():
    assert time_course(60, 5, 2, 10, 3, "pre", -30) == 60
    assert time_course(60, 5, 2, 10, 3, "in", 2) == pytest.approx(60 + 5 * (1 - np.exp(-1)))
    assert time_course(60, 5, 2, 10, 3, "post", 3) == pytest.approx(60 + 10 * np.exp(-1))


def test_store_layout_and_model(small_campaign):
    path, truth = small_campaign
    tree = open_store(path)
    assert sorted(tree.children) == ["S01", "S02", "S03"]
    assert sorted(tree["S01"].children) == sorted(["L-30", "FD10", "R+6h", "R+3"])
    validate_campaign(tree)
    node = tree["S02/R+6h"]
    assert node.attrs["phase"] == "post"
    assert node.attrs["day"] == pytest.approx(0.25)
    assert node["ecg"].ds.attrs["sampling_rate"] == 500.0
    assert node["ecg"].ds.sizes["time"] == 2 * 60 * 500
    assert list(node["doppler"].ds["vessel"].values) == ["femoral", "mca"]
    assert (path / "data_catalog.yaml").exists()


def _detect_hr(ecg, fs):
    """Independent heart rate from the recorded ECG (band-pass + peak picking)."""
    sos = signal.butter(3, [8, 30], btype="band", fs=fs, output="sos")
    x = signal.sosfiltfilt(sos, ecg)
    peaks, _ = signal.find_peaks(x, height=0.35 * np.percentile(x, 99.5), distance=int(0.33 * fs))
    return peaks


def test_mean_hr_per_phase_and_subject_matches_truth(small_campaign):
    """HR measured from the recorded ECG, per subject and phase, equals the truth
    within 1 bpm (supine epochs, averaged over the phase's sessions)."""
    path, truth = small_campaign
    tree = open_store(path)
    rows = []
    for subject in tree.children:
        for session, node in tree[subject].children.items():
            ecg = node["ecg"].ds["ecg"]
            fs = ecg.attrs.get("sampling_rate", node["ecg"].ds.attrs["sampling_rate"])
            sup = ecg.sel(time=slice(0, 60)).values
            peaks = _detect_hr(sup, fs)
            rr = np.diff(peaks) / fs
            rr = rr[(rr > 0.3) & (rr < 2.0)]
            rows.append(
                {
                    "subject": subject,
                    "phase": node.attrs["phase"],
                    "measured": float(np.median(60.0 / rr)) * 0 + float(np.mean(60.0 / rr)),
                    "truth": truth.sessions.loc[(subject, session, "supine"), "hr"],
                }
            )
    df = pd.DataFrame(rows).groupby(["subject", "phase"]).mean()
    assert len(df) == 9
    np.testing.assert_allclose(df["measured"], df["truth"], atol=1.0)


def test_r_peak_truth_lands_on_qrs_maxima(small_campaign):
    path, truth = small_campaign
    tree = open_store(path)
    offsets = []
    for subject in tree.children:
        for session, node in tree[subject].children.items():
            ecg = node["ecg"].ds["ecg"].values
            beats = truth.beats(subject, session)
            ok = beats["ecg_valid"].values
            idx = beats["r_sample"].values[ok]
            w = 20  # +-40 ms at 500 Hz
            win = np.clip(idx[:, None] + np.arange(-w, w + 1)[None, :], 0, ecg.size - 1)
            offsets.append(np.argmax(ecg[win], axis=1) - w)
    offsets = np.concatenate(offsets)
    # the recorded (noisy) QRS maximum is within 2 samples (4 ms) of the truth
    assert np.mean(np.abs(offsets) <= 2) >= 0.99
    assert np.median(np.abs(offsets)) == 0


def test_beat_truth_matches_session_truth(small_campaign):
    path, truth = small_campaign
    real = truth.realised
    target = truth.sessions
    # realised epoch means are close to the targets they were generated from
    np.testing.assert_allclose(real["hr"], target["hr"], atol=0.6)
    np.testing.assert_allclose(real["sbp"], target["sbp"], atol=2.0)
    np.testing.assert_allclose(real["dbp"], target["dbp"], atol=1.5)
    np.testing.assert_allclose(real["femoral_ri"], target["femoral_ri"], atol=0.02)
    np.testing.assert_allclose(real["mca_psv"], target["mca_psv"], rtol=0.05)


def test_baroreflex_gain_is_recoverable(small_campaign):
    """rr[i+1] regressed on SBP[i] over supine beats gives the stated gain within 15 %."""
    path, truth = small_campaign
    for subject, session in [("S01", "L-30"), ("S02", "R+3"), ("S03", "FD10")]:
        b = truth.beats(subject, session)
        sup = (b["epoch"].values == "supine") & ~b["ectopic"].values
        sup[:5] = False  # let the recording settle
        sbp = b["sbp"].values
        rr_next = np.r_[b["rr"].values[1:], np.nan]
        ok = sup & np.isfinite(sbp) & np.isfinite(rr_next) & b["abp_valid"].values
        ok &= ~np.r_[b["ectopic"].values[1:], False]
        slope = np.polyfit(sbp[ok], rr_next[ok], 1)[0]
        gain = truth.sessions.loc[(subject, session, "supine"), "brs"]
        assert slope == pytest.approx(gain, rel=0.15)


def test_truth_round_trip(small_campaign):
    path, truth = small_campaign
    again = Truth.load(path)
    pd.testing.assert_frame_equal(again.effects, truth.effects)
    pd.testing.assert_frame_equal(again.sessions, truth.sessions, check_dtype=False)
    assert again.params["seed"] == 7
    b = again.beats("S01", "L-30")
    assert {"r_sample", "sbp", "dbp", "rr", "ectopic"} <= set(b.data_vars)
    assert b["sbp"].attrs["units"] == "mmHg"


def test_same_seed_same_campaign(tmp_path):
    kw = dict(n_subjects=1, schedule=["L-30"], duration_min=1, seed=3, workers=1, progress=False)
    simulate_campaign(tmp_path / "a", **kw)
    simulate_campaign(tmp_path / "b", **kw)
    a = xr.open_dataset(tmp_path / "a" / "campaign.zarr", group="S01/L-30/abp", engine="zarr")
    b = xr.open_dataset(tmp_path / "b" / "campaign.zarr", group="S01/L-30/abp", engine="zarr")
    xr.testing.assert_equal(a, b)


def test_refuses_to_overwrite(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(CardiolabError, match="not empty"):
        simulate_campaign(tmp_path, n_subjects=1, schedule=["L-30"], duration_min=1, progress=False)
    with pytest.raises(CardiolabError, match="does not hold a simulated campaign"):
        simulate_campaign(
            tmp_path,
            n_subjects=1,
            schedule=["L-30"],
            duration_min=1,
            progress=False,
            overwrite=True,
        )
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_artefact_rates_are_configurable(tmp_path):
    truth = simulate_campaign(
        tmp_path / "c",
        n_subjects=1,
        schedule=["L-30"],
        duration_min=4,
        seed=1,
        workers=1,
        progress=False,
        artefacts=Artefacts(ectopic_rate=0.03, motion_per_hour=60, dropout_per_hour=30),
    )
    b = truth.beats("S01", "L-30")
    assert b["ectopic"].sum() >= 3
    assert len(b.attrs["motion_artefacts"]) >= 2
    assert not b["ecg_valid"].values.all()
    clean = simulate_campaign(
        tmp_path / "d",
        n_subjects=1,
        schedule=["L-30"],
        duration_min=2,
        seed=1,
        workers=1,
        progress=False,
        artefacts=Artefacts.none(),
    ).beats("S01", "L-30")
    assert not clean["ectopic"].any() and clean["abp_valid"].values[:-1].all()


def test_bad_arguments(tmp_path):
    with pytest.raises(CardiolabError, match="unknown campaign kind"):
        simulate_campaign(tmp_path / "x", kind="moon")
    with pytest.raises(CardiolabError, match="does not belong to a spaceflight"):
        simulate_campaign(tmp_path / "y", schedule=["HDT5"], progress=False)


def test_stroke_volume_truth_is_realistic(small_campaign):
    """Per-beat ``sv`` truth: a resting adult's level supine, and a fall on standing
    (15-35 %) in the 1-g sessions; none in flight, where "stand" is not an orthostatic
    load. Adding it drew no random number: the seeded quantities above are unchanged."""
    _, truth = small_campaign
    checked = 0
    for subject in ("S01", "S02", "S03"):
        for session in ("L-30", "R+3", "FD10"):
            b = truth.beats(subject, session)
            assert b["sv"].attrs["units"] == "mL"
            ok = b["abp_valid"].values & np.isfinite(b["sv"].values)
            sv, ep = b["sv"].values, b["epoch"].values
            supine, stand = sv[ok & (ep == "supine")].mean(), sv[ok & (ep == "stand")].mean()
            change = stand / supine - 1.0
            if session == "FD10":
                assert abs(change) < 0.10
            else:
                assert 40.0 < supine < 110.0
                assert -0.35 < change < -0.15
            checked += 1
    assert checked == 9
