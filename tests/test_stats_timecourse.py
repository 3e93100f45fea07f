"""Adaptation/recovery time courses: known truth, statsmodels agreement, open intervals.

The truth is the simulator's effects model drawn by simulate_feature_table; the
reference for the likelihood is the dense textbook formula, and statsmodels' MixedLM at
the optimum. Supine heart rate of SCIENCE.md: pre 62 bpm, A +3 bpm (tau_a 4 d), D +8 bpm
(tau_r 3 d), between-subject SD 12 % of pre, residual SD 2 bpm.
"""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM

from cardiolab.errors import ModelError
from cardiolab.simulate.effects import time_course
from cardiolab.stats.design import DEFAULT_SCHEDULE, simulate_feature_table
from cardiolab.stats.timecourse import TimeCourse, _Problem, fit_time_course

HR = dict(pre=62.0, A=3.0, tau_a=4.0, D=8.0, tau_r=3.0, between_sd=0.12 * 62.0, residual_sd=2.0)
TRUTH = {"b0": 62.0, "A": 3.0, "tau_a": 4.0, "D": 8.0, "tau_r": 3.0}


def hr_table(seed, n_subjects=12, schedule=DEFAULT_SCHEDULE, **over):
    return simulate_feature_table(
        schedule, n_subjects, feature="hr", units="bpm", seed=seed, **dict(HR, **over)
    )


@pytest.fixture(scope="module")
def fits():
    """Five 12-subject campaigns of the demo schedule and their fits."""
    return [fit_time_course(hr_table(seed), "hr") for seed in range(5)]


# --- the known-truth generator -----------------------------------------------------


def test_simulated_table_follows_the_effects_model():
    schedule = ["L-30", "FD10", "R+6h", "R+3"]
    exact = simulate_feature_table(
        schedule, 3, feature="hr", seed=1, **dict(HR, between_sd=0.0, residual_sd=0.0)
    )
    assert list(exact.columns) == ["subject", "session", "phase", "day", "epoch", "hr"]
    assert exact["day"].tolist()[:4] == [-30.0, 10.0, 0.25, 3.0]
    expected = time_course(62.0, 3.0, 4.0, 8.0, 3.0, exact["phase"], exact["day"])
    np.testing.assert_allclose(exact["hr"], expected, rtol=0, atol=1e-12)
    assert exact.loc[2, "hr"] == pytest.approx(62 + 8 * math.exp(-0.25 / 3), abs=1e-12)

    noisy = hr_table(4, n_subjects=400, schedule=["L-30", "L-10"])
    # between-subject SD 7.44 and residual SD 2: subject means of two sessions
    subj = noisy.groupby("subject")["hr"]
    within = subj.diff().dropna().std() / math.sqrt(2)
    assert within == pytest.approx(2.0, rel=0.1)
    assert math.sqrt(subj.mean().var() - within**2 / 2) == pytest.approx(7.44, rel=0.1)
    assert noisy.attrs["units"] == {"hr": "bpm"} and noisy.attrs["truth"]["tau_r"] == 3.0
    pd.testing.assert_frame_equal(noisy, hr_table(4, n_subjects=400, schedule=["L-30", "L-10"]))


# --- the likelihood against the textbook formula --------------------------------------


def dense_deviance(y, X, groups, Z, theta, reml):
    """-2 log-likelihood of ``y = X b + Z u + e`` with the scale profiled out, from
    dense matrices: V = s2 (Z L L' Z' + I) within each group, L = diag(theta)
    (Pinheiro & Bates 2000, eqs. 2.13 and 2.19; what statsmodels' MixedLM.loglike
    and lme4 compute, written out independently of both)."""
    n, p = X.shape
    V0 = np.eye(n)
    for g in np.unique(groups):
        i = np.flatnonzero(groups == g)
        Zg = Z[i] * theta
        V0[np.ix_(i, i)] += Zg @ Zg.T
    Vi = np.linalg.inv(V0)
    XtVX = X.T @ Vi @ X
    r = y - X @ np.linalg.solve(XtVX, X.T @ Vi @ y)
    dof = n - p if reml else n
    s2 = r @ Vi @ r / dof
    dev = dof * math.log(2 * math.pi * s2) + np.linalg.slogdet(V0)[1] + dof
    return dev + (np.linalg.slogdet(XtVX)[1] if reml else 0.0)


@pytest.mark.parametrize("random", [("intercept",), ("intercept", "D")])
def test_profiled_deviance_equals_the_dense_formula(random):
    table = hr_table(0)
    codes = pd.factorize(table["subject"])[0]
    prob = _Problem(
        table["hr"].to_numpy(),
        table["phase"].to_numpy(),
        table["day"].to_numpy(),
        codes,
        fit_a=True,
        fit_d=True,
        random=random,
        log_bounds=(math.log(0.1), math.log(200)),
    )
    log_tau = np.log([4.0, 3.0])
    X = prob.design(log_tau)
    for reml in (False, True):
        for theta in ([0.5, 0.3], [3.7, 1.2]):
            th = np.array(theta[: prob.q])
            ours = prob.deviance(log_tau, th, reml=reml)
            ref = dense_deviance(prob.y, X, prob.groups, X[:, prob.zidx], th, reml)
            assert ours == pytest.approx(ref, rel=1e-10)


def test_fit_matches_statsmodels_at_the_optimum(fits):
    for tc in fits:
        assert tc.converged
        assert tc.model.llf == pytest.approx(tc.loglik, abs=1e-3)
        # b0, A, D estimates are statsmodels' ML estimates at the fitted taus
        np.testing.assert_allclose(
            tc.model.fe_params, tc.params.loc[["b0", "A", "D"], "estimate"], rtol=1e-5
        )


def test_sds_are_statsmodels_reml_on_the_design_linearised_in_the_taus(fits):
    tc = fits[1]
    d = tc.data
    ta, tr = tc.params.loc[["tau_a", "tau_r"], "estimate"]
    t_in = np.where(d["phase"] == "in", d["day"], 0.0)
    t_post = np.where(d["phase"] == "post", d["day"], 0.0)
    is_post = (d["phase"] == "post").to_numpy()
    exog = np.column_stack(
        [
            np.ones(len(d)),
            1 - np.exp(-t_in / ta),
            np.exp(-t_post / tr) * is_post,
            t_in / ta * np.exp(-t_in / ta),  # d mu / d log tau_a (up to the factor -A)
            t_post / tr * np.exp(-t_post / tr) * is_post,  # d mu / d log tau_r (/ D)
        ]
    )
    res = MixedLM(d["value"].to_numpy(), exog, d["subject"].to_numpy()).fit(reml=True)
    assert tc.params.loc["residual_sd", "estimate"] == pytest.approx(math.sqrt(res.scale), rel=1e-4)
    assert tc.params.loc["subject_sd", "estimate"] == pytest.approx(
        math.sqrt(np.asarray(res.cov_re)[0, 0]), rel=1e-3
    )
    for name in ("residual_sd", "subject_sd"):
        lo, est, hi = tc.params.loc[name, ["ci_low", "estimate", "ci_high"]]
        assert lo < est < hi


# --- known truth ---------------------------------------------------------------------


def test_intervals_cover_the_truth_across_seeds(fits):
    for name, truth in TRUTH.items():
        covered = [
            tc.params.loc[name, "ci_low"] <= truth <= tc.params.loc[name, "ci_high"] for tc in fits
        ]
        assert sum(covered) >= 4, (name, [tc.params.loc[name].to_dict() for tc in fits])
    # the SDs too (12 subjects inform the between-subject SD little: >= 3 of 5)
    for name, truth, least in (("subject_sd", 7.44, 3), ("residual_sd", 2.0, 4)):
        assert (
            sum(
                tc.params.loc[name, "ci_low"] <= truth <= tc.params.loc[name, "ci_high"]
                for tc in fits
            )
            >= least
        )


def test_low_noise_estimates_are_close_to_the_truth():
    tc = fit_time_course(hr_table(1, residual_sd=0.2), "hr")
    p = tc.params["estimate"]
    # residual SD 0.2 bpm: D and A to 3 %, the time constants to 10 %
    assert p["D"] == pytest.approx(8.0, rel=0.03)
    assert p["A"] == pytest.approx(3.0, rel=0.03)
    assert p["tau_r"] == pytest.approx(3.0, rel=0.1)
    assert p["tau_a"] == pytest.approx(4.0, rel=0.1)
    assert p["residual_sd"] == pytest.approx(0.2, rel=0.2)
    assert tc.half_life["estimate"] == pytest.approx(p["tau_r"] * math.log(2), rel=1e-12)
    assert not tc.flags


def test_profile_minimum_is_at_the_estimate_and_crosses_the_cut(fits):
    tc = fits[0]
    for name in ("tau_a", "tau_r"):
        prof = tc.profile[name]
        assert list(prof.columns[:3]) == ["tau", "loglik", "lr"]
        at_min = prof.loc[prof["lr"].idxmin()]
        assert at_min["lr"] == 0.0
        assert at_min["tau"] == pytest.approx(tc.params.loc[name, "estimate"], rel=1e-12)
        assert (prof["lr"] >= 0).all() and prof["tau"].is_monotonic_increasing
        assert prof["loglik"].max() == pytest.approx(tc.loglik, abs=1e-9)
    # tau_r is bounded on both sides: the profile brackets the 3.84 cut at each end
    prof, (lo, hi) = tc.profile["tau_r"], tc.params.loc["tau_r", ["ci_low", "ci_high"]]
    assert prof.loc[prof["tau"] < lo, "lr"].max() > 3.84 > prof.loc[prof["tau"] > lo, "lr"].min()
    assert prof.loc[prof["tau"] > hi, "lr"].max() > 3.84 > prof.loc[prof["tau"] < hi, "lr"].min()


def test_profile_intervals_of_a_and_d_are_wider_than_wald_at_fixed_tau(fits):
    # the profile carries the time constants' uncertainty into D and A
    for tc in fits:
        for name in ("A", "D"):
            est, lo, hi, se = tc.params.loc[name, ["estimate", "ci_low", "ci_high", "se"]]
            assert lo < est - 1.9 * se and hi > est + 1.9 * se


def test_unidentified_time_constant_gives_an_open_interval():
    # post-flight days 0 and 30 only, tau_r 100 d: recovery barely starts by R+30
    table = hr_table(0, schedule=["L-60", "L-30", "R+0", "R+30"], tau_r=100.0)
    tc = fit_time_course(table, "hr")
    row = tc.params.loc["tau_r"]
    assert row["ci_open"] and math.isinf(row["ci_high"])
    assert row["ci_low"] < 100.0
    assert any(
        f.startswith("the 95 % interval of tau_r") and "reaches the upper end" in f
        for f in tc.flags
    )
    assert math.isinf(tc.half_life["ci_high"])
    assert math.isinf(tc.recovery_day(ci=True)["ci_high"])


def test_time_constant_on_a_bound_is_flagged():
    # tau_r 2000 d: no recovery within the 200-d search range; precise data
    schedule = ["L-30", "L-10", "R+0", "R+3", "R+10", "R+30"]
    tc = fit_time_course(hr_table(1, schedule=schedule, tau_r=2000.0, residual_sd=0.3), "hr")
    assert tc.params.loc["tau_r", "estimate"] == pytest.approx(200.0, rel=1e-3)
    assert any(
        f.startswith("tau_r = 200 d is at the upper end of its search range") for f in tc.flags
    )
    assert tc.params.loc["tau_r", "ci_open"] and math.isinf(tc.params.loc["tau_r", "ci_high"])


def test_recovery_faster_than_the_schedule_is_flagged():
    # tau_r 0.05 d: back at b0 by R+1 (exp(-1 / 0.05) = 2e-9), so the post-flight
    # sessions (R+0, R+1, R+3...) bound tau_r above only; D is read at landing (R+0)
    for seed in range(3):
        tc = fit_time_course(hr_table(seed, n_subjects=8, tau_r=0.05), "hr")
        lo, hi = tc.params.loc["tau_r", ["ci_low", "ci_high"]]
        assert lo == pytest.approx(0.1, rel=1e-12) and hi < 1.0
        flags = [f for f in tc.flags if "tau_r" in f]
        assert len(flags) == 1, tc.flags
        assert "lower end of its search range [0.1, 200] d" in flags[0]
        assert (
            "the recovery may be faster than the schedule can resolve (post-flight sessions "
            "at days 0, 1, 3, ... after landing)" in flags[0]
        )
        assert f"tau_r is only known to be below {hi:.3g} d" in flags[0]
        d_lo, d_hi = tc.params.loc["D", ["ci_low", "ci_high"]]
        assert d_lo <= 8.0 <= d_hi and d_hi - d_lo < 4.0
        assert (
            f"D = {tc.params.loc['D', 'estimate']:.3g} [{d_lo:.3g}, {d_hi:.3g}] bpm is bounded"
            in (flags[0])
        )
    # seed 0: the estimate itself sits on the lower bound (within _BOUND_TOL in log tau)
    tc = fit_time_course(hr_table(0, n_subjects=8, tau_r=0.05), "hr")
    assert math.log(tc.params.loc["tau_r", "estimate"] / 0.1) < 1e-3
    assert any(f.startswith("tau_r = 0.1 d is at the lower end") for f in tc.flags)


def test_well_resolved_time_constants_are_not_flagged(fits):
    # tau_r 3 d on R+0, R+1, R+3, R+10, R+30: bounded on both sides, no flag
    for tc in fits:
        lo, hi = tc.params.loc["tau_r", ["ci_low", "ci_high"]]
        assert 0.5 < lo < 3.0 < hi < 10.0
        assert not [f for f in tc.flags if "tau_r" in f], tc.flags


def test_no_post_flight_change_leaves_tau_r_unidentified():
    # D = 0: nothing recovers, tau_r spans the whole search range (the demo's
    # "tau_r 0.1 [0.1, inf]" for features that flight does not change)
    tc = fit_time_course(hr_table(0, n_subjects=8, D=0.0), "hr")
    lo, hi = tc.params.loc["tau_r", ["ci_low", "ci_high"]]
    assert lo == pytest.approx(0.1, rel=1e-12) and math.isinf(hi)
    (flag,) = [f for f in tc.flags if "tau_r" in f]
    assert "is not identified: its 95 % interval spans the whole search range [0.1, 200] d" in flag
    assert (
        "includes 0: no clear post-flight change" in flag and "treat tau_r as unidentified" in flag
    )


def test_subject_sd_is_not_left_on_its_bound_when_a_positive_one_fits_better():
    # large changes (12 bpm) against small SDs (0.45 bpm between subjects, 0.42 bpm
    # residual), as the demo's stand-supine heart rate: at the starting time constants
    # the misfit swamps the subject SD, whose search on the log scale stopped on its
    # bound (1e-5 of the residual SD) in 5 of these 6 seeds, 6-25 log-likelihood units
    # below statsmodels' ML fit at the same time constants
    truth = dict(pre=11.8, A=-12.0, tau_a=2.0, D=11.0, tau_r=4.4, between_sd=0.45, residual_sd=0.42)
    covered = []
    for seed in range(6):
        table = simulate_feature_table(n_subjects=8, feature="hr", seed=seed, **truth)
        tc = fit_time_course(table, "hr")
        assert tc.loglik == pytest.approx(tc.model.llf, abs=1e-6)
        assert not any("differs" in f for f in tc.flags), tc.flags
        assert 0.1 < tc.params.loc["subject_sd", "estimate"] < 1.0
        for name in ("tau_a", "tau_r", "A", "D"):
            lo, hi = tc.params.loc[name, ["ci_low", "ci_high"]]
            covered.append(lo <= truth[name] <= hi)
    # 24 intervals of 95 %: 1.2 misses expected
    assert sum(covered) >= 22


def test_no_between_subject_variance_puts_subject_sd_on_its_boundary():
    tc = fit_time_course(hr_table(1, between_sd=0.0), "hr")
    lo, est, hi = tc.params.loc["subject_sd", ["ci_low", "estimate", "ci_high"]]
    assert est < 1e-3 and lo == 0.0 and 0.1 < hi < 1.0
    assert any("subject_sd estimated at 0" in f for f in tc.flags)


def test_recovery_only_campaign():
    schedule = ["BDC-9", "BDC-3", "R+0", "R+1", "R+3", "R+7", "R+14"]
    tc = fit_time_course(hr_table(2, schedule=schedule), "hr")
    assert np.isnan(tc.params.loc[["A", "tau_a"], "estimate"]).all()
    assert any("no in-flight sessions" in f for f in tc.flags)
    assert tc.profile["tau_a"].empty
    for name in ("D", "tau_r", "b0"):
        lo, hi = tc.params.loc[name, ["ci_low", "ci_high"]]
        assert lo <= TRUTH[name] <= hi
    assert set(tc.curve(n=20)["phase"]) == {"pre", "post"}


def test_adaptation_only_campaign():
    schedule = ["L-60", "L-30", "FD2", "FD5", "FD15", "FD25"]
    tc = fit_time_course(hr_table(3, schedule=schedule), "hr")
    assert np.isnan(tc.params.loc[["D", "tau_r"], "estimate"]).all()
    assert any("no post-flight sessions" in f for f in tc.flags)
    assert np.isnan(tc.recovery_day())
    lo, hi = tc.params.loc["A", ["ci_low", "ci_high"]]
    assert lo <= 3.0 <= hi


def test_sub_day_post_flight_session_informs_a_fast_recovery():
    schedule = ["L-30", "L-10", "FD5", "FD15", "R+6h", "R+1", "R+3", "R+7", "R+14"]
    tc = fit_time_course(hr_table(0, schedule=schedule, tau_r=0.5, residual_sd=0.5), "hr")
    assert (tc.data["day"] == 0.25).sum() == 12
    lo, est, hi = tc.params.loc["tau_r", ["ci_low", "estimate", "ci_high"]]
    assert lo <= 0.5 <= hi and est == pytest.approx(0.5, rel=0.2)
    # back within 1 bpm of b0 at 0.5 ln(8) = 1.04 d after landing (truth)
    rec = tc.recovery_day(margin=1.0, ci=True)
    assert rec["ci_low"] <= 0.5 * math.log(8.0) <= rec["ci_high"]
    assert rec["ci_high"] - rec["ci_low"] < 1.0


def test_recovery_day_margins(fits):
    tc = fits[0]
    b0, D, tau_r = tc.params.loc[["b0", "D", "tau_r"], "estimate"]
    assert tc.recovery_day() == pytest.approx(tau_r * math.log(D / (0.05 * b0)), rel=1e-12)
    assert tc.recovery_day("10%") == pytest.approx(tau_r * math.log(D / (0.1 * b0)), rel=1e-12)
    assert tc.recovery_day(1.0) == pytest.approx(tau_r * math.log(D / 1.0), rel=1e-12)
    assert tc.recovery_day(2 * D) == 0.0  # already within the margin at landing
    rec = tc.recovery_day(1.0, ci=True)
    assert rec["ci_low"] < rec["estimate"] < rec["ci_high"]
    with pytest.raises(ModelError, match="hr"):
        tc.recovery_day("five")


def test_random_slope_on_d():
    table = hr_table(5, n_subjects=16, random_D_sd=3.0)
    tc = fit_time_course(table, "hr", random=("intercept", "D"))
    assert "D_sd" in tc.params.index
    assert tc.model.llf == pytest.approx(tc.loglik, abs=1e-3)
    for name, truth in (("D_sd", 3.0), ("tau_r", 3.0)):
        lo, hi = tc.params.loc[name, ["ci_low", "ci_high"]]
        assert lo <= truth <= hi, name
    # D varies between subjects: its interval is wider than the intercept-only model's
    plain = fit_time_course(table, "hr")
    width = tc.params.loc["D", "ci_high"] - tc.params.loc["D", "ci_low"]
    assert width > 1.2 * (plain.params.loc["D", "ci_high"] - plain.params.loc["D", "ci_low"])
    assert "F(1, 15) cut" in tc.params.loc["D", "ci_method"]


# --- result object -------------------------------------------------------------------


def test_curve_and_tidy_frame(fits):
    tc = fits[0]
    curve = tc.curve(n=50)
    assert list(curve.columns) == ["phase", "day", "estimate", "ci_low", "ci_high"]
    assert curve.groupby("phase", sort=False).size().to_dict() == {"pre": 50, "in": 50, "post": 50}
    b0, A, tau_a, D, tau_r = tc.params.loc[["b0", "A", "tau_a", "D", "tau_r"], "estimate"]
    pre = curve[curve["phase"] == "pre"]
    assert (pre["estimate"] == b0).all()
    post = curve[curve["phase"] == "post"]
    assert post["day"].iloc[-1] == 30.0
    np.testing.assert_allclose(post["estimate"], b0 + D * np.exp(-post["day"] / tau_r))
    inflight = curve[curve["phase"] == "in"]
    np.testing.assert_allclose(inflight["estimate"], b0 + A * -np.expm1(-inflight["day"] / tau_a))
    assert (curve["ci_low"] < curve["estimate"]).all() and (
        curve["estimate"] < curve["ci_high"]
    ).all()
    # at landing the band is about the b0 + D interval: a few bpm wide, not tens
    width = post["ci_high"].iloc[0] - post["ci_low"].iloc[0]
    assert 1.0 < width < 10.0

    frame = tc.to_frame()
    assert list(frame.columns) == [
        "feature",
        "epoch",
        "model",
        "term",
        "estimate",
        "ci_low",
        "ci_high",
        "df",
        "ci_method",
        "p",
        "converged",
    ]
    methods = frame.set_index("term")["ci_method"]
    assert methods["tau_r"] == methods["half_life"] == tc.params.loc["tau_r", "ci_method"]
    assert frame["df"].isna().all()
    assert (frame["model"] == "time_course").all() and frame["p"].isna().all()
    assert {"b0", "A", "tau_a", "D", "tau_r", "half_life", "recovery_day"} <= set(frame["term"])
    assert "tau_r" in repr(tc) and "bpm" in repr(tc)
    assert isinstance(tc, TimeCourse) and tc.n_obs == 120 and tc.n_groups == 12
    assert tc.units == "bpm" and tc.feature == "hr" and tc.epoch == "supine"


def test_time_course_is_a_frozen_dataclass(fits):
    tc = fits[1]
    assert dataclasses.is_dataclass(tc)
    public = [f.name for f in dataclasses.fields(tc) if not f.name.startswith("_")]
    assert public[:4] == ["params", "half_life", "profile", "data"] and "flags" in public
    with pytest.raises(dataclasses.FrozenInstanceError):
        tc.converged = False
    # the band's draws are made once: two curves are the same numbers
    pd.testing.assert_frame_equal(tc.curve(n=20), tc.curve(n=20), check_exact=True)
    assert repr(tc).startswith("TimeCourse(hr, supine: b0 ")


def test_missing_values_are_dropped_with_a_flag_and_input_untouched():
    table = hr_table(0)
    table.loc[[3, 17], "hr"] = np.nan
    before = table.copy()
    tc = fit_time_course(table, "hr")
    pd.testing.assert_frame_equal(table, before)
    assert tc.n_obs == 118
    assert any("dropped 2 row(s)" in f and "S01 FD15" in f for f in tc.flags)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t[t["subject"] == "S01"], "1 subject"),
        (lambda t: t[t["phase"] != "pre"], "no pre-flight session"),
        (lambda t: t.assign(hr=70.0), "zero variance"),
        (lambda t: t[~t["session"].isin(["R+1", "R+3", "R+10", "R+30"])], "tau_r needs >= 2"),
        (lambda t: t[t["phase"] == "pre"], "no in-flight or post-flight session"),
        (lambda t: t.drop(columns="day"), r"lacks column\(s\) \['day'\]"),
        (lambda t: t.assign(epoch="stand"), "epoch 'supine' absent"),
    ],
)
def test_bad_input_raises_model_error_naming_feature_and_epoch(mutate, message):
    with pytest.raises(ModelError, match=message) as info:
        fit_time_course(mutate(hr_table(0, n_subjects=3)), "hr")
    assert str(info.value).startswith("'hr' in epoch 'supine': ")


def test_bad_options_raise_model_error():
    table = hr_table(0, n_subjects=3)
    with pytest.raises(ModelError, match="random"):
        fit_time_course(table, "hr", random=("D",))
    with pytest.raises(ModelError, match="tau_bounds"):
        fit_time_course(table, "hr", tau_bounds=(5.0, 1.0))
