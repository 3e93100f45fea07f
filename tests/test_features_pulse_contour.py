"""Pulse-contour stroke volume, cardiac output and TPR against the simulator's truth.

The simulator's finger pressure carries a true stroke volume per beat by the model of
the method (systolic area above the foot pressure, foot to dicrotic notch, over the
Langewouters impedance of the subject's age and sex at the beat's mean pressure), on
the clean waveform with exact feet and notches. These tests therefore check the
estimator on a noisy, artefacted recording (onset and notch detection, integration,
flags), not the physiological validity of the model itself.
"""

import numpy as np
import pytest
import xarray as xr

from cardiolab.errors import CatalogError, SessionFormatError, UnitError
from cardiolab.features.pulse_contour import (
    DYN_S_CM5_PER_MMHG_MIN_L,
    age_from_band,
    aortic_characteristic_impedance,
    cardiac_output,
    ejection_time_weissler,
    langewouters_parameters,
    pulse_contour_reliable,
    pulse_contour_stroke_volume,
    stroke_volume_calibration,
    stroke_volume_features,
    total_peripheral_resistance,
    tpr_to_dyn,
)
from cardiolab.signals.pressure import arterial_pressure_beats

AGE, SEX = 45.0, "M"
#: Tolerances stated in the report: beat-to-beat correlation with truth, and the
#: stand-vs-supine relative change (percentage points).
MIN_R = 0.95
MAX_CHANGE_PP = 2.0


@pytest.fixture(scope="module")
def stand_test():
    """A 3 + 3 min supine-stand session (default artefacts) and our beats on it."""
    from cardiolab.simulate.effects import default_effects
    from cardiolab.simulate.session import draw_subject_traits, simulate_session

    eff = default_effects()["pre"].unstack("quantity")
    rng = np.random.default_rng(11)
    traits = draw_subject_traits(rng)
    epochs = [("supine", 0.0, 180.0), ("stand", 180.0, 360.0)]
    groups, beats, _ = simulate_session(
        eff.loc[["supine", "stand"]], 360.0, epochs, traits, rng, age=AGE, sex=SEX
    )
    abp = groups["abp"]["abp"].values.astype(float)
    fs = float(groups["abp"].attrs["sampling_rate"])
    p = arterial_pressure_beats(abp, fs, beats["t"].values)
    return abp, fs, beats, p


def _estimate(stand_test, age=AGE, sex=SEX, notch=True):
    abp, fs, _, p = stand_test
    t_notch = p["t_notch"].to_numpy() if notch else np.full(len(p), np.nan)
    return pulse_contour_stroke_volume(
        abp, fs, p["onset"].to_numpy(), t_notch, age, sex, dbp=p["dbp"].to_numpy()
    )


def _usable(stand_test, sv):
    _, _, beats, p = stand_test
    return (
        p["valid"].to_numpy()
        & beats["abp_valid"].values
        & np.isfinite(beats["sv"].values)
        & np.isfinite(sv)
    )


def _epoch_change(sv, epoch, ok):
    su = ok & (epoch == "supine")
    st = ok & (epoch == "stand")
    return np.mean(sv[st]) / np.mean(sv[su]) - 1.0


# --------------------------------------------------------------------------------------
# the aortic model
# --------------------------------------------------------------------------------------


def test_impedance_matches_the_wave_speed_route():
    """Z0 = sqrt(rho / (A C')) equals rho c / A with c from Bramwell-Hill on A(p)."""
    par = langewouters_parameters(AGE, SEX)
    p = np.array([70.0, 90.0, 110.0])

    def area(x):
        return par["a_max"] * (0.5 + np.arctan((x - par["p0"]) / par["p1"]) / np.pi)

    dp = 1e-4
    dadp = (area(p + dp) - area(p - dp)) / (2 * dp) / 1333.22  # cm2 per dyn/cm2
    c = np.sqrt(area(p) / (1.05 * dadp))  # cm/s, Bramwell-Hill
    z_ref = 1.05 * c / area(p) / 1333.22  # dyn.s/cm5 -> mmHg.s/mL
    np.testing.assert_allclose(aortic_characteristic_impedance(p, AGE, SEX), z_ref, rtol=1e-6)
    # wave speed of a 45-year-old aorta at 90 mmHg: 4-8 m/s (Langewouters 1984 range)
    assert 400.0 < c[1] < 800.0


def test_impedance_follows_age_sex_and_pressure():
    z = aortic_characteristic_impedance
    assert z(90.0, 60, "M") > z(90.0, 30, "M")  # stiffer with age
    assert z(90.0, 40, "F") > z(90.0, 40, "M")  # smaller aorta
    assert z(110.0, 40, "M") > z(80.0, 40, "M")  # stiffer at higher pressure
    np.testing.assert_allclose(
        z(90.0, 40, "X"), z(90.0, 40, "M"), rtol=0.35
    )  # X is between: mean parameters
    assert z(90.0, 40, "M") < z(90.0, 40, "X") < z(90.0, 40, "F")


def test_weissler_and_age_band():
    np.testing.assert_allclose(ejection_time_weissler([60.0, 90.0], "M"), [0.311, 0.260])
    np.testing.assert_allclose(ejection_time_weissler(60.0, "F"), 0.322)
    assert age_from_band("30-39") == 35.0
    assert age_from_band("60+") == 65.0
    with pytest.raises(CatalogError, match="age_band"):
        age_from_band("thirty")


# --------------------------------------------------------------------------------------
# stroke volume against the simulator's truth
# --------------------------------------------------------------------------------------


def test_stroke_volume_tracks_truth_beat_to_beat(stand_test):
    _, _, beats, _ = stand_test
    est = _estimate(stand_test)
    ok = _usable(stand_test, est["sv"])
    assert ok.sum() > 0.8 * beats.sizes["beat"]
    truth = beats["sv"].values
    assert np.corrcoef(truth[ok], est["sv"][ok])[0, 1] > MIN_R
    # same age and sex as the truth: the absolute level matches too (within 5 %)
    assert abs(np.median(est["sv"][ok] / truth[ok]) - 1.0) < 0.05
    # the notch ends ejection in nearly every beat
    assert np.mean(est["ejection_source"][ok] == 1) > 0.95


def test_stand_minus_supine_change_matches_truth(stand_test):
    _, _, beats, _ = stand_test
    epoch = beats["epoch"].values
    truth = beats["sv"].values
    est = _estimate(stand_test)
    ok = _usable(stand_test, est["sv"])
    d_true = _epoch_change(truth, epoch, ok)
    assert -0.35 < d_true < -0.15  # the truth is realistic: SV falls 15-35 % standing
    assert abs(_epoch_change(est["sv"], epoch, ok) - d_true) * 100 < MAX_CHANGE_PP
    # the wrong subject (population default for a 30-year-old woman) scales the level
    # but keeps the relative change
    other = _estimate(stand_test, age=30.0, sex="F")["sv"]
    assert abs(np.median(other[ok] / truth[ok]) - 1.0) > 0.2
    assert abs(_epoch_change(other, epoch, ok) - d_true) * 100 < 2 * MAX_CHANGE_PP


def test_truth_posture_change_matches_the_laseri_tilt(stand_test, shared_data):
    """The simulator's pre-flight SV and CO fall on standing agree with the Young Finns
    (LASERI) tilt study, 223 subjects, impedance cardiography at 5 min of 60 deg tilt:
    medians SV -28 %, CO -13 % (computed here from the shared table). Tolerance 5 pp
    (a stand is not a tilt, and the truth is one simulated subject)."""
    import pandas as pd

    d = pd.read_csv(shared_data / "mixed" / "LASERI_long.csv")
    w = d.pivot(index="Subject", columns="Phase", values=["HR", "CO"])
    sup, tilt = "supine_rest_10min", "tilt_5min"
    co_ref = float((w["CO"][tilt] / w["CO"][sup] - 1.0).median())
    sv_ref = float(((w["CO"][tilt] / w["HR"][tilt]) / (w["CO"][sup] / w["HR"][sup]) - 1.0).median())
    _, _, beats, _ = stand_test
    sv = beats["sv"].values
    rr = np.r_[np.diff(beats["pressure_onset"].values) * 1000.0, np.nan]
    feats = {}
    for ep in ("supine", "stand"):
        sel = beats["abp_valid"].values & (beats["epoch"].values == ep)
        feats[ep] = stroke_volume_features(np.where(sel, sv, np.nan), rr, beats["map"].values)
    d_sv = feats["stand"]["sv"] / feats["supine"]["sv"] - 1.0
    d_co = feats["stand"]["co"] / feats["supine"]["co"] - 1.0
    assert abs(d_sv - sv_ref) * 100 < 5.0
    assert abs(d_co - co_ref) * 100 < 5.0


def test_weissler_fallback_without_notches(stand_test):
    """Without notches the Weissler ejection time is used; it tracks beat to beat but
    the simulator's ejection (a fixed 28 % of the beat) shortens more on standing than
    Weissler's regression, so the posture change is underestimated (stated bound)."""
    _, _, beats, _ = stand_test
    est = _estimate(stand_test, notch=False)
    ok = _usable(stand_test, est["sv"])
    assert np.all(est["ejection_source"][ok] == 2)
    truth = beats["sv"].values
    assert np.corrcoef(truth[ok], est["sv"][ok])[0, 1] > 0.9
    d_true = _epoch_change(truth, beats["epoch"].values, ok)
    d_est = _epoch_change(est["sv"], beats["epoch"].values, ok)
    assert d_true < d_est < d_true + 0.10


def test_calibration_against_a_reference(stand_test):
    """Calibrate a wrong-subject estimate on the supine truth; the stand follows."""
    _, _, beats, _ = stand_test
    epoch = beats["epoch"].values
    truth = beats["sv"].values
    est = _estimate(stand_test, age=30.0, sex="F")["sv"]
    ok = _usable(stand_test, est)
    su, st = ok & (epoch == "supine"), ok & (epoch == "stand")
    cal = stroke_volume_calibration(truth[su].mean(), est[su])
    assert cal["reason"] == "" and cal["n_beats"] == su.sum()
    np.testing.assert_allclose(cal["factor"] * est[su].mean(), truth[su].mean(), rtol=1e-12)
    np.testing.assert_allclose(cal["factor"] * est[st].mean(), truth[st].mean(), rtol=0.03)
    short = stroke_volume_calibration(70.0, est[su][:3])
    assert np.isnan(short["factor"]) and "fewer than" in short["reason"]
    with pytest.raises(CatalogError, match="sv_reference"):
        stroke_volume_calibration(-5.0, est[su])


def test_epoch_features(stand_test):
    _, _, beats, p = stand_test
    est = _estimate(stand_test)
    sv = est["sv"]
    rr = np.r_[np.diff(p["onset"].to_numpy()) * 1000.0, np.nan]  # beat durations
    sel = _usable(stand_test, sv) & (beats["epoch"].values == "supine")
    out = stroke_volume_features(np.where(sel, sv, np.nan), rr, est["map"])
    assert out["reason"] == "" and out["n_beats_sv"] == sel.sum()
    np.testing.assert_allclose(out["sv"], sv[sel].mean())
    # CO: total volume over total time, close to the mean of beat COs
    np.testing.assert_allclose(out["co"], np.mean(cardiac_output(sv[sel], rr[sel])), rtol=0.02)
    assert 3.0 < out["co"] < 6.0  # L/min, a resting adult
    np.testing.assert_allclose(out["tpr"], est["map"][sel].mean() / out["co"])
    few = stroke_volume_features(sv[:5], rr[:5], est["map"][:5])
    assert np.isnan(few["co"]) and "fewer than 10" in few["reason"]


def test_three_element_windkessel_independent_model():
    """A model the method was not built from: a three-element Windkessel (Westerhof)
    driven by half-sine ejections of known volume. Pressure = Pc + Z0 Q with
    C dPc/dt = Q - Pc / R. The systolic area then also holds the rise of Pc during
    ejection, so the uncalibrated level is too high (here x1.8, absorbed by a
    calibration) and a fall of SV is underestimated by a few points; beat-to-beat
    tracking stays good. Stated bounds: r > 0.9, level 1.5-2.3 x, change within 8 pp."""
    from scipy.signal import lfilter

    fs, res, comp = 500.0, 1.0, 1.5  # Hz, mmHg.s/mL, mL/mmHg
    rng = np.random.default_rng(0)
    m = 150
    sv_true = np.r_[rng.normal(70, 4, m), rng.normal(52, 4, m)]  # supine, stand
    rr = np.r_[rng.normal(0.95, 0.04, m), rng.normal(0.80, 0.04, m)]  # s
    z0 = float(aortic_characteristic_impedance(80.0, AGE, SEX))
    starts = np.r_[0.0, np.cumsum(rr)]
    t = np.arange(int(starts[-1] * fs)) / fs
    k = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, rr.size - 1)
    lvet = ejection_time_weissler(60.0 / rr, SEX)
    into = t - starts[k]
    q = np.where(into < lvet[k], sv_true[k] * np.pi / (2 * lvet[k]), 0.0)
    q *= np.sin(np.pi * np.clip(into / lvet[k], 0.0, 1.0))
    decay = 1.0 - 1.0 / (res * comp * fs)
    pc = lfilter([0.0, 1.0 / (comp * fs)], [1.0, -decay], q, zi=[75.0 * decay])[0]
    est = pulse_contour_stroke_volume(pc + z0 * q, fs, starts[:-1], starts[:-1] + lvet, AGE, SEX)
    sv = est["sv"]
    ok = np.isfinite(sv)
    ok[:5] = False  # the Windkessel settles
    assert ok.sum() > 2 * m - 10
    assert np.corrcoef(sv_true[ok], sv[ok])[0, 1] > 0.9
    assert 1.5 < np.median(sv[ok] / sv_true[ok]) < 2.3
    epoch = np.r_[np.full(m, "supine"), np.full(m, "stand")]
    d_true = _epoch_change(sv_true, epoch, ok)
    assert abs(_epoch_change(sv, epoch, ok) - d_true) * 100 < 8.0


# --------------------------------------------------------------------------------------
# CO, TPR, units
# --------------------------------------------------------------------------------------


def test_cardiac_output_and_resistance_units():
    np.testing.assert_allclose(cardiac_output(70.0, 1000.0), 4.2)  # 70 mL x 60 /min
    np.testing.assert_allclose(cardiac_output([70.0, 70.0], [750.0, 0.0]), [5.6, np.nan])
    np.testing.assert_allclose(total_peripheral_resistance(84.0, 4.2), 20.0)
    # 1 mmHg.min/L in SI: 133.322 Pa / (1e-3 m3 / 60 s); 1 Pa.s/m3 = 1e-5 dyn.s/cm5
    si = 133.322 / (1e-3 / 60.0) * 1e-5
    np.testing.assert_allclose(DYN_S_CM5_PER_MMHG_MIN_L, si, rtol=1e-4)
    np.testing.assert_allclose(tpr_to_dyn(20.0), 20.0 * si, rtol=1e-4)


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------


def test_bad_input(stand_test):
    abp, fs, _, p = stand_test
    on, tn = p["onset"].to_numpy(), p["t_notch"].to_numpy()
    before = abp.copy()
    one = pulse_contour_stroke_volume(abp, fs, on[:1], tn[:1], AGE, SEX)
    assert np.isnan(one["sv"]).all() and "no complete beat" in one["reason"]
    np.testing.assert_array_equal(abp, before)  # never mutated
    with pytest.raises(SessionFormatError, match="t_notch"):
        pulse_contour_stroke_volume(abp, fs, on, tn[:-1], AGE, SEX)
    with pytest.raises(SessionFormatError, match="abp"):
        pulse_contour_stroke_volume(abp[None, :], fs, on, tn, AGE, SEX)
    with pytest.raises(UnitError, match="mmHg"):
        pulse_contour_stroke_volume(abp * 0.133322, fs, on, tn, AGE, SEX)  # kPa
    with pytest.raises(CatalogError, match="age"):
        pulse_contour_stroke_volume(abp, fs, on, tn, 120.0, SEX)
    with pytest.raises(CatalogError, match="sex"):
        pulse_contour_stroke_volume(abp, fs, on, tn, AGE, "female?")


def test_nan_samples_void_only_their_beats(stand_test):
    abp, fs, _, p = stand_test
    on, tn = p["onset"].to_numpy(), p["t_notch"].to_numpy()
    clean = pulse_contour_stroke_volume(abp, fs, on, tn, AGE, SEX)["sv"]
    k = 40
    holed = abp.copy()
    holed[int((on[k] + 0.1) * fs)] = np.nan
    sv = pulse_contour_stroke_volume(holed, fs, on, tn, AGE, SEX)["sv"]
    assert np.isnan(sv[k])
    keep = np.arange(sv.size) != k
    np.testing.assert_allclose(sv[keep], clean[keep], rtol=1e-9)


def test_in_flight_sessions_are_flagged():
    assert pulse_contour_reliable("pre") and pulse_contour_reliable("post")
    assert not pulse_contour_reliable("in")
    with pytest.raises(CatalogError, match="phase"):
        pulse_contour_reliable("flight")


# --------------------------------------------------------------------------------------
# the beat table
# --------------------------------------------------------------------------------------


def test_beat_table_stroke_volume(stand_test):
    """``sv`` in the beat table: subject from the tree, attrs, and agreement with truth."""
    from cardiolab.signals.beats import beat_table
    from cardiolab.simulate.effects import default_effects
    from cardiolab.simulate.session import draw_subject_traits, simulate_session

    eff = default_effects()["pre"].unstack("quantity")
    rng = np.random.default_rng(5)
    epochs = [("supine", 0.0, 60.0), ("stand", 60.0, 120.0)]
    groups, beats, _ = simulate_session(
        eff.loc[["supine", "stand"]], 120.0, epochs, draw_subject_traits(rng), rng,
        age=55.0, sex="F",
    )  # fmt: skip
    tree = xr.DataTree()
    tree["S01"] = xr.DataTree(dataset=xr.Dataset(attrs={"sex": "F", "age_band": "50-59"}))
    tree["S01/L-30"] = xr.DataTree(dataset=xr.Dataset(attrs={"phase": "pre"}))
    for name, ds in groups.items():
        tree[f"S01/L-30/{name}"] = xr.DataTree(dataset=ds)
    bt = beat_table(tree["S01/L-30"])
    attrs = bt["sv"].attrs
    assert attrs["units"] == "mL" and attrs["calibrated"] == 0 and "relative" in attrs["long_name"]
    assert (attrs["age"], attrs["sex"]) == (55.0, "F")
    assert bt.attrs["subject_defaults"] == ""
    t_true, t_ours = beats["t"].values, bt["t"].values
    idx = np.clip(np.searchsorted(t_true, t_ours), 1, t_true.size - 1)
    idx -= np.abs(t_true[idx - 1] - t_ours) < np.abs(t_true[idx] - t_ours)  # nearest
    same = np.abs(t_true[idx] - t_ours) < 0.02
    truth = beats["sv"].values[idx]
    ok = same & bt["abp_valid"].values & np.isfinite(truth) & np.isfinite(bt["sv"].values)
    assert ok.sum() > 100
    assert np.corrcoef(truth[ok], bt["sv"].values[ok])[0, 1] > MIN_R
    assert abs(np.median(bt["sv"].values[ok] / truth[ok]) - 1.0) < 0.05

    # the registered feature reads the beat table's sv (valid and abp_valid beats)
    from cardiolab.features import epoch_features

    feats = epoch_features(bt, None, groups["protocol"], select=["stroke_volume"])
    for ep in ("supine", "stand"):
        sel = ok & bt["valid"].values & (bt["epoch"].values == ep)
        np.testing.assert_allclose(float(feats["sv"].sel(epoch=ep)), truth[sel].mean(), rtol=0.03)
        rr_true = np.diff(t_true)[np.clip(idx[sel], 0, t_true.size - 2)] * 1000.0
        co_true = 60.0 * truth[sel].sum() / rr_true.sum()  # L/min, own beat durations
        np.testing.assert_allclose(float(feats["co"].sel(epoch=ep)), co_true, rtol=0.03)
    assert feats["sv"].attrs["units"] == "mL" and feats["tpr"].attrs["units"] == "mmHg.min/L"

    # no subject attributes anywhere (a session opened alone): the default, flagged
    alone = xr.DataTree(dataset=xr.Dataset(attrs={"phase": "pre"}))
    for name in ("ecg", "abp", "protocol"):
        alone[name] = xr.DataTree(dataset=groups[name])
    bt0 = beat_table(alone)
    assert bt0.attrs["subject_defaults"] == "age,sex"
    assert (bt0["sv"].attrs["age"], bt0["sv"].attrs["sex"]) == (40.0, "M")


def test_pipeline_uses_the_catalog_subject_and_flags_in_flight_sv(small_campaign):
    """Through the catalog: the beat table's impedance uses the subject's declared sex and
    age band (no default), and in-flight sessions have no pulse-contour SV/CO/TPR, with
    a flag naming the feature, the epoch and why."""
    import json

    from cardiolab.catalog import open_catalog
    from cardiolab.pipeline import features_table, process_campaign

    path, _ = small_campaign
    cat = open_catalog(path / "data_catalog.yaml")
    node = cat.open_session("S01", "FD10", indexes=False)
    subject = next(s for s in cat.model.subjects if s.code == "S01")
    assert node.attrs["sex"] == subject.sex and node.attrs["age_band"] == subject.age_band
    assert process_campaign(cat.path, client="sync", progress=False).failures.empty
    table = features_table(cat)
    protocol = table[table["epoch"].isin(["supine", "stand"])]
    flight = protocol[protocol["phase"] == "in"]
    ground = protocol[protocol["phase"] != "in"]
    assert len(flight) and flight[["sv", "co", "tpr"]].isna().all().all()
    assert ground[["sv", "co", "tpr"]].notna().all().all()
    from cardiolab.pipeline import read_session_results

    feats = read_session_results(cat.derived_path, "S01", "FD10")
    flags = [f for f in json.loads(feats.attrs["flags"]) if f["feature"] == "stroke_volume"]
    assert {f["epoch"] for f in flags} >= {"supine", "stand"}
    assert all("in flight" in f["reason"] for f in flags)


def test_per_subject_calibration_from_a_measurement_column(small_campaign):
    """An echo SV of each subject at L-30 supine (the simulator's true mean SV there)
    calibrates every session: calibrated SV within 3 % of the true epoch mean SV in the
    other pre/post sessions, CO scaled alike and TPR inversely."""
    from cardiolab.catalog import open_catalog
    from cardiolab.features.pulse_contour import calibrate_stroke_volume
    from cardiolab.pipeline import features_table, process_campaign

    path, truth = small_campaign
    cat = open_catalog(path / "data_catalog.yaml")
    assert process_campaign(cat.path, client="sync", progress=False).failures.empty
    table = features_table(cat)

    def true_sv(subject, session, epoch):
        b = truth.beats(subject, session)
        return float(np.nanmean(b["sv"].values[b["epoch"].values == epoch]))

    echo = [
        true_sv(s, ses, ep) if (ses, ep) == ("L-30", "supine") else np.nan
        for s, ses, ep in zip(table["subject"], table["session"], table["epoch"], strict=True)
    ]
    cal = calibrate_stroke_volume(table.assign(sv_echo=echo))
    info = cal.attrs["sv_calibration"]
    assert set(info) == set(table["subject"]) and all(v["session"] == "L-30" for v in info.values())
    rows = cal[cal["epoch"].isin(["supine", "stand"]) & (cal["phase"] != "in")]
    for r in rows.itertuples():
        assert r.sv_cal == pytest.approx(true_sv(r.subject, r.session, r.epoch), rel=0.03)
        factor = info[r.subject]["factor"]
        assert r.co_cal == pytest.approx(r.co * factor) and r.tpr_cal == pytest.approx(
            r.tpr / factor
        )
    assert cal.attrs["units"]["sv_cal"] == "mL"
    none = calibrate_stroke_volume(table.assign(sv_echo=np.nan))
    assert none["sv_cal"].isna().all()
    assert "no session with both sv_echo and sv" in none.attrs["sv_calibration"]["S01"]["reason"]
