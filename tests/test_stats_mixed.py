"""cardiolab.stats.mixed: fit_mixed against lme4, phase_contrasts against known truth.

References: /work/shared/data/mixed (``shared_data`` fixture). The lme4 numbers are
read from ``lme4_reference_values.json``, except the two random-intercept SDs of the
sleepstudy (stated below with their source).
"""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import statsmodels.formula.api as smf
from statsmodels.stats.multitest import multipletests

from cardiolab.errors import CardiolabError, ModelError
from cardiolab.stats.mixed import (
    MixedResult,
    PhaseContrasts,
    fit_mixed,
    holm_adjust,
    phase_contrasts,
)

TIDY = [
    "feature", "epoch", "model", "term", "estimate", "ci_low", "ci_high", "df", "ci_method",
    "p", "converged",
]  # fmt: skip


# --------------------------------------------------------------------------------------
# reference data


@pytest.fixture(scope="module")
def lme4(shared_data):
    return json.loads((shared_data / "mixed" / "lme4_reference_values.json").read_text())


@pytest.fixture(scope="module")
def sleepstudy(shared_data):
    return pd.read_csv(shared_data / "mixed" / "sleepstudy.csv")


@pytest.fixture(scope="module")
def dietox(shared_data):
    return pd.read_csv(shared_data / "mixed" / "dietox.csv")


# --------------------------------------------------------------------------------------
# fit_mixed vs lme4


def test_sleepstudy_random_slope_reml_matches_lme4(sleepstudy, lme4):
    ref = lme4["sleepstudy"]
    before = sleepstudy.copy()
    fit = fit_mixed(sleepstudy, "Reaction ~ Days", groups="Subject", re_formula="~Days")
    pd.testing.assert_frame_equal(sleepstudy, before)  # input untouched
    assert isinstance(fit, MixedResult)
    assert fit.converged and not fit.singular and fit.flags == []
    assert (fit.n_obs, fit.n_groups) == (180, 18)
    # fixed effects to 0.01 (ms, ms/day)
    assert fit.fixed.loc["Intercept", "estimate"] == pytest.approx(
        ref["fixef"]["(Intercept)"], abs=0.01
    )
    assert fit.fixed.loc["Days", "estimate"] == pytest.approx(ref["fixef"]["Days"], abs=0.01)
    # random-effect SDs and residual SD to 1 %, correlation to 0.02
    cov = np.array(ref["locally_reproduced_cov_re"])
    sd = np.sqrt(np.diag(cov))
    assert fit.random_sd["Subject (Intercept)"] == pytest.approx(sd[0], rel=0.01)  # 24.741
    assert fit.random_sd["Subject Days"] == pytest.approx(sd[1], rel=0.01)  # 5.922
    assert fit.residual_sd == pytest.approx(
        np.sqrt(ref["locally_reproduced_residual_var"]), rel=0.01
    )
    assert fit.random_sd["Subject cor((Intercept),Days)"] == pytest.approx(
        cov[0, 1] / (sd[0] * sd[1]), abs=0.02
    )
    # REML log-likelihood = -REMLcrit / 2 (lme4 1743.6282722424)
    assert fit.loglik == pytest.approx(-ref["REMLcrit"] / 2, abs=1e-3)
    # correlation of the fixed effects (lme4 summary: -0.138)
    cov_fe = fit.model.cov_params().iloc[:2, :2].to_numpy()
    corr_fe = cov_fe[0, 1] / np.sqrt(cov_fe[0, 0] * cov_fe[1, 1])
    assert corr_fe == pytest.approx(ref["corr_fixef_Intercept_Days"], abs=0.005)
    # lme4 as.data.frame(VarCorr(fit)) layout
    assert list(fit.random.columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert list(fit.random["grp"]) == ["Subject", "Subject", "Subject", "Residual"]
    assert fit.random["vcov"].iloc[3] == pytest.approx(fit.residual_sd**2, rel=1e-12)
    # REML: no AIC/BIC (documented choice), no ICC with random slopes
    assert np.isnan(fit.aic) and np.isnan(fit.bic) and np.isnan(fit.icc)
    # lmerTest's summary (Satterthwaite): Days 10.467 (SE 1.546, df 17.0, t 6.771,
    # p 3.26e-06), (Intercept) 251.405 (SE 6.825, df 17.0, t 36.838); issue 12
    assert fit.inference == "Satterthwaite t"
    days, icpt = fit.fixed.loc["Days"], fit.fixed.loc["Intercept"]
    assert days["estimate"] == pytest.approx(10.467, abs=5e-4)
    assert days["se"] == pytest.approx(1.546, abs=5e-4)
    assert days["df"] == pytest.approx(17.0, abs=0.1)
    assert days["t"] == pytest.approx(6.771, abs=5e-4)
    assert f"{days['p']:.3g}" == "3.26e-06"
    assert icpt["estimate"] == pytest.approx(251.405, abs=5e-4)
    assert icpt["se"] == pytest.approx(6.825, abs=5e-4)
    assert icpt["df"] == pytest.approx(17.0, abs=0.1)
    assert icpt["t"] == pytest.approx(36.838, abs=5e-4)
    # the 95 % CI is estimate +- t(0.975, df) SE
    q = scipy.stats.t.ppf(0.975, days["df"])
    assert days["ci_high"] - days["estimate"] == pytest.approx(q * days["se"], rel=1e-9)
    # Wald z on request: estimate +- 1.96 SE, df inf, same estimates
    wald = fit_mixed(sleepstudy, "Reaction ~ Days", "Subject", re_formula="~Days", inference="wald")
    row = wald.fixed.loc["Days"]
    assert wald.inference == "Wald z" and np.isinf(row["df"])
    assert row["ci_high"] - row["estimate"] == pytest.approx(1.959964 * row["se"], rel=1e-5)
    assert row["p"] < days["p"]  # z is more confident than t(17)
    text = repr(fit)
    assert "Reaction ~ Days + (1 + Days | Subject)" in text and "converged" in text
    assert "Subject (Intercept)" in text and "NOT" not in text


def test_sleepstudy_random_intercept_matches_lme4(sleepstudy):
    # lme4's printed summary of lmer(Reaction ~ Days + (1 | Subject), sleepstudy) (REML
    # criterion 1786.5): Subject (Intercept) SD 37.12, Residual SD 30.99 -- from lme4's
    # documentation output, not in the JSON
    fit = fit_mixed(sleepstudy, "Reaction ~ Days", groups="Subject")
    assert fit.converged and not fit.singular
    assert fit.random_sd["Subject (Intercept)"] == pytest.approx(37.12, rel=0.01)
    assert fit.residual_sd == pytest.approx(30.99, rel=0.01)
    assert fit.icc == pytest.approx(37.12**2 / (37.12**2 + 30.99**2), abs=0.01)
    assert fit.loglik == pytest.approx(-1786.465 / 2, abs=0.01)


def test_sleepstudy_ml_aic_bic_match_lme4(sleepstudy, lme4):
    ref = lme4["sleepstudy"]["AIC_BIC_ML_fm1_fm2"]
    fm1 = fit_mixed(sleepstudy, "Reaction ~ Days", "Subject", re_formula="~Days", reml=False)
    # lme4 prints AIC/BIC to 2 (BIC of fm1: 1) decimals
    assert fm1.aic == pytest.approx(ref["AIC_m1"], abs=0.01)
    assert fm1.bic == pytest.approx(ref["BIC_m1"], abs=0.05)
    # fm2: uncorrelated random slope, (1 | Subject) + (0 + Days | Subject)
    fm2 = fit_mixed(
        sleepstudy, "Reaction ~ Days", "Subject", reml=False, vc_formula={"Days": "0 + Days"}
    )
    assert fm2.converged
    assert fm2.aic == pytest.approx(ref["AIC_m2"], abs=0.01)
    assert fm2.bic == pytest.approx(ref["BIC_m2"], abs=0.01)
    assert fm2.lme4_formula() == "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)"
    assert list(fm2.random_sd.index) == ["Subject (Intercept)", "Subject.1 Days", "Residual"]


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("slope", [False, True])
def test_dietox_matches_lme4(dietox, lme4, method, slope):
    """Tolerances: fixed effects 1e-5 relative, SEs 1e-3, variances 2e-3 (the REML
    surface is flat along the covariance: lme4's own optimiser tolerance), logLik 0.01
    (the JSON gives 3 decimals)."""
    ref = lme4["dietox_random_slope" if slope else "dietox_random_intercept"][method]
    fit = fit_mixed(
        dietox,
        "Weight ~ Time",
        groups="Pig",
        re_formula="~Time" if slope else None,
        reml=method == "REML",
    )
    assert fit.converged and not fit.singular
    np.testing.assert_allclose(fit.fixed["estimate"], ref["fixef"], rtol=1e-5)
    np.testing.assert_allclose(fit.fixed["se"], ref["se"], rtol=1e-3)
    assert fit.residual_sd**2 == pytest.approx(ref["sigma2"], rel=2e-3)
    cov_re = fit.model.cov_re.to_numpy().ravel()
    np.testing.assert_allclose(cov_re, ref["cov_re"] if slope else [ref["var_Pig"]], rtol=2e-3)
    assert fit.loglik == pytest.approx(ref["logLik"], abs=0.01)
    name = "Pig (Intercept)"
    assert fit.random_sd[name] == pytest.approx(np.sqrt(cov_re[0]), rel=1e-12)
    if method == "ML":
        k = 2 + (3 if slope else 1) + 1
        assert fit.aic == pytest.approx(-2 * ref["logLik"] + 2 * k, abs=0.02)
    # dietox has 72 missing Feed values: not a model column, no row dropped
    assert fit.n_obs == len(dietox) and fit.flags == []


def test_to_frame_is_tidy(sleepstudy):
    fit = fit_mixed(sleepstudy, "Reaction ~ Days", "Subject", re_formula="~Days")
    tidy = fit.to_frame()
    assert list(tidy.columns) == TIDY
    assert list(tidy["term"][:2]) == ["Intercept", "Days"]
    assert tidy["estimate"].iloc[1] == pytest.approx(fit.fixed.loc["Days", "estimate"])
    assert tidy["p"].iloc[2:].isna().all() and (tidy["feature"] == "Reaction").all()


# --------------------------------------------------------------------------------------
# fit_mixed: state of doubtful fits


def test_boundary_fit_is_flagged_and_fixed_effects_equal_ols(sleepstudy):
    # subtract each subject's mean: no between-subject variance is left
    data = sleepstudy.assign(
        Reaction=sleepstudy["Reaction"]
        - sleepstudy.groupby("Subject")["Reaction"].transform("mean")
        + 300.0
    )
    fit = fit_mixed(data, "Reaction ~ Days", groups="Subject")
    assert fit.converged and fit.singular
    assert any("boundary (singular) fit" in f and "Subject (Intercept)" in f for f in fit.flags)
    assert "boundary" in repr(fit)
    assert fit.random_sd["Subject (Intercept)"] < 1e-4 * fit.residual_sd
    # with a zero subject variance the model is ordinary least squares
    ols = smf.ols("Reaction ~ Days", data).fit()
    np.testing.assert_allclose(fit.fixed["estimate"], ols.params, rtol=1e-6)
    np.testing.assert_allclose(fit.fixed["se"], ols.bse, rtol=1e-3)


def test_non_converged_fit_is_returned_flagged(sleepstudy):
    # Nelder-Mead alone does not converge on the random-slope sleepstudy model
    fit = fit_mixed(sleepstudy, "Reaction ~ Days", "Subject", re_formula="~Days", methods=["nm"])
    assert fit.converged is False
    assert any("did not converge" in f for f in fit.flags)
    assert "NOT converged" in repr(fit)
    assert fit.attempts[0]["method"] == "nm" and not fit.attempts[0]["converged"]
    assert not fit.to_frame()["converged"].any()


def test_missing_values_are_dropped_with_a_flag(sleepstudy):
    data = sleepstudy.copy()
    data.loc[[3, 50, 120], "Reaction"] = np.nan
    data.loc[7, "Days"] = np.nan
    data["unused"] = np.nan  # not a model column: must not drop anything
    fit = fit_mixed(data, "Reaction ~ Days", "Subject")
    assert fit.n_obs == 176
    assert any("dropped 4 of 180 rows" in f for f in fit.flags)
    full = fit_mixed(sleepstudy.drop(index=[3, 7, 50, 120]), "Reaction ~ Days", "Subject")
    np.testing.assert_allclose(fit.fixed["estimate"], full.fixed["estimate"], rtol=1e-10)


# --------------------------------------------------------------------------------------
# fit_mixed: bad input


def _frame():
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "y": rng.normal(size=30),
            "x": np.tile(np.arange(5.0), 6),
            "g": np.repeat(list("abcdef"), 5),
            "f": pd.Categorical(np.tile(list("pq"), 15), categories=["p", "q", "r"]),
        }
    )


@pytest.mark.parametrize(
    "change, kwargs, match",
    [
        (None, {"formula": "y ~ xx"}, "'xx'"),
        (None, {"groups": "subject"}, "'subject'"),
        (None, {"formula": "y ~ x", "re_formula": "~z"}, "'z'"),
        (lambda d: d.assign(g="a"), {}, "at least 2 groups of 'g'"),
        (lambda d: d.assign(y=np.nan), {}, "'y' is all NaN"),
        (lambda d: d.assign(y=4.2), {}, "zero variance"),
        (lambda d: d.assign(y="high"), {}, "'y' is not numeric"),
        (lambda d: d.assign(y=[1.0] + [np.nan] * 28 + [2.0]), {}, "too few"),
        (None, {"formula": "y ~ f"}, r"f\[T.r\]"),  # a category without data
        (None, {"formula": "y ~ x + I(2 * x)"}, r"collinear.*\['I\(2 \* x\)'\]"),
        # a fixed term that does not vary is named, not the intercept it duplicates
        (lambda d: d.assign(age=41.0), {"formula": "y ~ x + age"}, r"\['age'\] do not vary"),
        # a random slope on a covariate constant within every group: not identifiable
        (
            lambda d: d.assign(
                age=d["g"].map(dict(zip("abcdef", [30, 41, 35, 52, 28, 44], strict=True)))
            ),
            {"formula": "y ~ x + age", "re_formula": "~age"},
            r"random term\(s\) \['age'\] are not identifiable.*constant\s+within every g",
        ),
    ],
)
def test_fit_mixed_bad_input_raises_model_error(change, kwargs, match):
    data = _frame() if change is None else change(_frame())
    args = {"formula": "y ~ x", "groups": "g", **kwargs}
    with pytest.raises(ModelError, match=match) as info:
        fit_mixed(data, **args)
    assert isinstance(info.value, CardiolabError)


def _noise(seed):
    """Issue 12's case: Y ~ X on 100 rows of independent N(0, 1) data in 3 groups."""
    values = np.random.default_rng(seed).standard_normal((100, 2))
    return pd.DataFrame({"Y": values[:, 0], "X": values[:, 1], "g": np.arange(100) % 3})


def _best_of_all_optimisers(data):
    """The highest usable REML log-likelihood statsmodels reaches with any optimiser."""
    best = -np.inf
    for method in ("lbfgs", "bfgs", "powell", "nm", "cg"):
        model = smf.mixedlm("Y ~ X", data, groups=data["g"])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = model.fit(reml=True, method=[method])
        except (np.linalg.LinAlgError, ValueError):
            continue
        if res.converged and np.isfinite(res.llf):
            best = max(best, float(res.llf))
    return best


def test_fit_is_the_highest_likelihood_of_all_optimisers():
    # statsmodels' L-BFGS alone stops on the variance boundary with a "converged" fit
    # 0.01-0.93 below the optimum for 8 of these 100 seeds (issue 12)
    below = {}
    for seed in range(100):
        fit = fit_mixed(_noise(seed), "Y ~ X", groups="g")
        gap = _best_of_all_optimisers(_noise(seed)) - fit.loglik
        if gap > 1e-6:
            below[seed] = gap
    assert below == {}


def test_boundary_stop_is_replaced_by_the_optimum_and_says_so():
    fit = fit_mixed(_noise(0), "Y ~ X", groups="g")
    # the optimum: intercept -0.086, slope 0.154, group variance 0.0137 (powell and
    # Nelder-Mead agree); L-BFGS alone stops at (-0.0, 0.179) on the boundary
    np.testing.assert_allclose(fit.fixed["estimate"], [-0.0864, 0.1536], atol=5e-4)
    assert fit.random.loc[0, "vcov"] == pytest.approx(0.0137, abs=5e-4)
    first = fit.attempts[0]
    assert first["method"] == "lbfgs" and not first["converged"] and first["gradient"] > 0.5
    assert fit.optimizer != "lbfgs"
    # the start at (nearly) zero variance is usable and reaches the same optimum
    zero = next(a for a in fit.attempts if a["method"] == "zero-variance start")
    assert zero["converged"] and zero["loglik"] == pytest.approx(fit.loglik, abs=1e-6)
    assert fit.optimizer_gain == pytest.approx(fit.loglik - first["loglik"], abs=1e-9)
    assert fit.optimizer_gain > 0.5
    assert fit.optimizer in repr(fit) and "log-likelihood" in repr(fit)
    assert not fit.singular and fit.converged


def test_absurd_standard_error_is_flagged():
    rng = np.random.default_rng(5)
    data = pd.DataFrame({"x": rng.normal(size=60), "g": np.repeat(np.arange(6), 10)})
    data["x2"] = data["x"] + 1e-7 * rng.normal(size=60)  # nearly the same column
    data["y"] = 2 * data["x"] + rng.normal(size=60) + np.repeat(rng.normal(size=6), 10)
    fit = fit_mixed(data, "y ~ x + x2", groups="g")
    flag = [f for f in fit.flags if "standard error(s) more than 1000 times" in f]
    assert len(flag) == 1 and "x2" in flag[0] and "not determined by the data" in flag[0]
    clean = fit_mixed(data, "y ~ x", groups="g")
    assert not any("standard error" in f for f in clean.flags)


def test_hessian_not_negative_definite_is_flagged_in_words(sleepstudy, monkeypatch):
    from statsmodels.regression.mixed_linear_model import MixedLM

    original = MixedLM.hessian

    def bent(self, params):  # the log-likelihood curving upwards along one parameter
        hess, singular = original(self, params)
        hess = np.array(hess)
        hess[-1, -1] = abs(hess[-1, -1])
        return hess, singular

    fit = fit_mixed(sleepstudy, "Reaction ~ Days", "Subject")
    assert not any("Hessian" in f for f in fit.flags)
    monkeypatch.setattr(MixedLM, "hessian", bent)
    fit = fit_mixed(sleepstudy, "Reaction ~ Days", "Subject")
    hessian = [f for f in fit.flags if "Hessian" in f]
    assert len(hessian) == 1  # one sentence, not statsmodels' warning as well
    assert "not a proper maximum" in hessian[0] and "standard errors are unreliable" in hessian[0]


def test_html_repr_escapes_text_from_the_data(sleepstudy):
    name = "<img src=x onerror=alert(1)>"
    data = sleepstudy.rename(columns={"Reaction": name})
    data.loc[3, name] = np.nan  # a flag naming the column
    page = fit_mixed(data, f"Q({name!r}) ~ Days", "Subject")._repr_html_()
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_formula_helpers_and_quoted_columns_are_not_taken_for_columns(sleepstudy):
    data = sleepstudy.rename(columns={"Days": "days of restriction"})
    fit = fit_mixed(data, 'np.log(Reaction) ~ Q("days of restriction")', "Subject")
    ref = fit_mixed(
        sleepstudy.assign(logr=np.log(sleepstudy["Reaction"])), "logr ~ Days", "Subject"
    )
    np.testing.assert_allclose(fit.fixed["estimate"], ref.fixed["estimate"], rtol=1e-8)
    with pytest.raises(ModelError, match="'days'"):
        fit_mixed(data, "Reaction ~ C(days, levels=[0, 1])", "Subject")


def test_fit_mixed_without_data_frame():
    with pytest.raises(ModelError, match="DataFrame"):
        fit_mixed({"y": [1, 2]}, "y ~ 1", "g")


# --------------------------------------------------------------------------------------
# phase_contrasts on simulated campaigns with known truth

#: session -> (phase, day, true change from the pre-flight level, bpm)
SCHEDULE = {
    "L-60": ("pre", -60.0, 0.0),
    "L-30": ("pre", -30.0, 0.0),
    "FD15": ("in", 15.0, -6.0),
    "R+0": ("post", 0.0, 12.0),
    "R+3": ("post", 3.0, 4.0),
    "R+30": ("post", 30.0, 0.0),  # the null timepoint
}
PRE, SUBJECT_SD, RESIDUAL_SD, N_SUBJECTS = 60.0, 8.0, 3.0, 10


def simulated_table(seed, n=N_SUBJECTS, sex_effect=0.0, phase_sd=0.0, centre_cells=False):
    """A features table: hr (bpm) for supine and stand epochs, rows shuffled.

    hr = 60 (+12 standing) + subject ~ N(0, 8) + true shift + residual ~ N(0, 3), plus
    optionally a subject x phase effect ~ N(0, phase_sd) and +sex_effect for "M".
    ``centre_cells`` centres the residuals within each subject x phase x epoch cell:
    the cell means then carry no residual noise at all.
    """
    rng = np.random.default_rng(seed)
    subject_effect = rng.normal(0.0, SUBJECT_SD, n)
    sex = np.where(np.arange(n) % 2 == 0, "F", "M")
    phases = np.array([phase for phase, _, _ in SCHEDULE.values()])
    rows = []
    for i in range(n):
        phase_effect = {p: rng.normal(0.0, phase_sd) for p in ("pre", "in", "post")}
        noise = rng.normal(0.0, RESIDUAL_SD, (len(SCHEDULE), 2))
        if centre_cells:
            for phase in set(phases):
                noise[phases == phase] -= noise[phases == phase].mean(axis=0)
        for j, (label, (phase, day, shift)) in enumerate(SCHEDULE.items()):
            for k, (epoch, offset) in enumerate((("supine", 0.0), ("stand", 12.0))):
                hr = (
                    PRE + offset + subject_effect[i] + shift + phase_effect[phase]
                    + sex_effect * (sex[i] == "M") + noise[j, k]
                )  # fmt: skip
                rows.append(
                    {
                        "subject": f"S{i + 1:02d}",
                        "session": label,
                        "phase": phase,
                        "day": day,
                        "epoch": epoch,
                        "hr": hr,
                        "sbp": 118 + rng.normal(0, 6),
                        "sex": sex[i],
                    }  # fmt: skip
                )
    table = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    table.attrs["units"] = {"hr": "bpm", "sbp": "mmHg"}
    return table


def _truth(labels):
    return np.array([SCHEDULE[v][2] for v in labels])


def test_phase_contrasts_recover_known_shifts():
    table = simulated_table(seed=11).drop(columns="sex")
    before = table.copy()
    res = phase_contrasts(table, "hr", epoch="supine")
    pd.testing.assert_frame_equal(table, before)
    assert isinstance(res, PhaseContrasts)
    t = res.table
    # schedule order, pre-flight sessions excluded, although the rows were shuffled
    assert list(t.index) == ["FD15", "R+0", "R+3", "R+30"] and t.index.name == "timepoint"
    assert list(t["phase"]) == ["in", "post", "post", "post"]
    assert list(t["day"]) == [15.0, 0.0, 3.0, 30.0] and list(t["n"]) == [10] * 4
    assert (res.feature, res.epoch, res.units) == ("hr", "supine", "bpm")
    assert res.pre_sessions == ["L-60", "L-30"] and res.converged and res.flags == []
    truth = _truth(t.index)
    # balanced design: a timepoint mean minus the mean of 2 pre-flight means has
    # variance residual_var * (1/n + 1/(2n)), the subject intercept cancelling out
    factor = np.sqrt(1 / N_SUBJECTS + 1 / (2 * N_SUBJECTS))
    np.testing.assert_allclose(t["se"], res.model.residual_sd * factor, rtol=1e-4)
    # with the true residual SD that is 1.16 bpm: the estimates are within 3.5 of it
    assert np.all(np.abs(t["estimate"] - truth) < 3.5 * RESIDUAL_SD * factor)
    assert np.all((t["ci_low"] <= truth) & (truth <= t["ci_high"]))
    # baseline: SE sqrt(subject_sd^2/n + residual_sd^2/(2n)) = 2.6 bpm; within 3 SE
    assert res.baseline == pytest.approx(PRE, abs=3 * np.sqrt(8.0**2 / 10 + 3.0**2 / 20))
    # percent = 100 * change / baseline, CI by the delta method on the ratio; check its
    # half-width against the spread of 100 * d / b over 20000 draws of the fixed
    # effects from N(estimate, cov) (Monte Carlo error ~0.5 %, tolerance 3 %)
    np.testing.assert_allclose(t["percent"], 100 * t["estimate"] / res.baseline, rtol=1e-12)
    assert np.all((t["percent_low"] < t["percent"]) & (t["percent"] < t["percent_high"]))
    fixed = res.model.fixed
    draws = np.random.default_rng(0).multivariate_normal(
        fixed["estimate"], res.model.model.cov_params().iloc[:6, :6], size=20000
    )
    col = {v: fixed.index.get_loc(f"timepoint[{v}]") for v in SCHEDULE}
    base = (draws[:, col["L-60"]] + draws[:, col["L-30"]]) / 2
    for v in t.index:
        ratio_sd = np.std(100 * (draws[:, col[v]] - base) / base)
        half = (t.loc[v, "percent_high"] - t.loc[v, "percent_low"]) / 2
        assert half == pytest.approx(1.959964 * ratio_sd, rel=0.03), v
    # Holm: never below the raw p; statsmodels' multipletests gives the same numbers
    assert np.all(t["p_holm"] >= t["p"])
    np.testing.assert_allclose(
        t["p_holm"], multipletests(t["p"], method="holm")[1], rtol=1e-12, atol=1e-300
    )
    # the null timepoint is not significant, the large shift is
    assert t.loc["R+30", "p"] > 0.05 and t.loc["R+0", "p_holm"] < 1e-6
    # tidy table
    tidy = res.to_frame()
    assert list(tidy.columns) == TIDY and list(tidy["term"]) == list(t.index)
    assert (tidy["model"] == "contrast").all()
    np.testing.assert_allclose(tidy["estimate"], t["estimate"])
    assert "hr bpm" in repr(res) and "R+0" in repr(res)


def test_phase_contrasts_coverage_over_seeds():
    """Over 50 fixed seeds (0..49, not chosen), the 95 % CIs cover the true change in
    90-99 % of the 200 (seed, timepoint) cases -- too narrow or too wide intervals both
    fail -- and the null timepoint R+30 is rejected (p < 0.05) in at most 10 %."""
    covered, rejected_null = [], []
    for seed in range(50):
        t = phase_contrasts(simulated_table(seed), "hr").table
        truth = _truth(t.index)
        covered += list((t["ci_low"] <= truth) & (truth <= t["ci_high"]))
        rejected_null.append(t.loc["R+30", "p"] < 0.05)
    coverage = np.mean(covered)
    assert 0.90 <= coverage <= 0.99, coverage
    assert np.mean(rejected_null) <= 0.10


def test_phase_contrasts_covariate_and_random_slope():
    table = simulated_table(seed=5, sex_effect=6.0, phase_sd=4.0)
    plain = phase_contrasts(table, "hr")
    res = phase_contrasts(table, "hr", covariates=["sex"])
    fixed = res.model.fixed
    sex = fixed.loc["sex[T.M]"]
    assert sex["ci_low"] < 6.0 < sex["ci_high"]
    # balanced design: the within-subject contrasts do not depend on the covariate
    np.testing.assert_allclose(res.table["estimate"], plain.table["estimate"], atol=1e-6)
    # baseline averaged over the subjects as observed (half F, half M)
    assert res.baseline == pytest.approx(plain.baseline, rel=1e-6)

    # subjects respond differently by phase (SD 4 bpm): (1 | subject:phase)
    slope = phase_contrasts(table, "hr", random_slope=True)
    assert slope.converged and "(1 | subject:phase)" in slope.model.lme4_formula()
    sd = slope.model.random_sd["subject:phase (Intercept)"]
    assert 2.0 < sd < 6.5  # truth 4; 30 subject x phase effects
    # balanced design: a contrast's variance is residual_var * (1/n + 1/(2n)) plus
    # 2 phase_var / n (the pre-flight sessions share one phase effect): exact in the
    # fitted variance components
    fit = slope.model
    var = fit.residual_sd**2 * 0.15 + 2 * sd**2 / 10
    np.testing.assert_allclose(slope.table["se"], np.sqrt(var), rtol=1e-4)
    assert np.all(slope.table["se"] > plain.table["se"])
    truth = _truth(slope.table.index)
    assert np.all((slope.table["ci_low"] <= truth) & (truth <= slope.table["ci_high"]))


def test_phase_contrasts_random_slope_without_phase_variance_is_flagged():
    # residuals centred within each subject x phase cell: the cell means vary less
    # than residual noise alone would make them, the subject:phase variance is 0
    table = simulated_table(seed=2, centre_cells=True)
    res = phase_contrasts(table, "hr", random_slope=True)
    assert res.converged
    assert res.model.singular
    assert any("subject:phase" in f and "boundary" in f for f in res.flags)


def test_phase_contrasts_levels_and_single_subject_timepoint():
    table = simulated_table(seed=3)
    res = phase_contrasts(table, "hr", levels=["L-30", "R+3", "R+0"])
    assert list(res.table.index) == ["R+3", "R+0"] and res.pre_sessions == ["L-30"]
    assert res.model.n_obs == 30

    # FD15 measured in one subject only: estimated, flagged
    keep = (table["session"] != "FD15") | (table["subject"] == "S01")
    res = phase_contrasts(table[keep], "hr")
    assert res.table.loc["FD15", "n"] == 1
    assert np.isfinite(res.table.loc["FD15", "estimate"])
    assert any("FD15" in f and "single subject" in f for f in res.flags)


def test_phase_contrasts_missing_values_flagged():
    table = simulated_table(seed=4)
    table.loc[table.index[:3], "hr"] = np.nan
    res = phase_contrasts(table, "hr", epoch="stand")
    n_nan = int(table.loc[table.index[:3], "epoch"].eq("stand").sum())
    assert res.model.n_obs == 60 - n_nan
    if n_nan:
        assert any(f"dropped {n_nan} row(s) with a missing hr" in f for f in res.flags)


@pytest.mark.parametrize(
    "change, kwargs, match",
    [
        (None, {"feature": "hrr"}, r"'hrr'.*close names: \['hr'"),
        (None, {"epoch": "tilt"}, r"epoch 'tilt' absent.*'stand', 'supine'"),
        (None, {"covariates": ["age"]}, r"\['age'\] not in the features table"),
        (None, {"levels": ["L-30", "FD99"]}, r"\['FD99'\] have no 'hr' data"),
        (None, {"levels": ["FD15", "R+0"]}, "no pre-flight session"),
        (lambda t: t[t["phase"] != "pre"], {}, "no pre-flight session"),
        (lambda t: t[t["subject"] == "S01"], {}, "1 subject"),
        (lambda t: t.assign(hr=70.0), {}, "zero variance"),
        (lambda t: t.assign(hr=np.nan), {}, "all NaN"),
        (lambda t: t.assign(sex=np.nan), {"covariates": ["sex"]}, r"no row has all of.*'sex'"),
        (lambda t: t.drop(columns="phase"), {}, r"lacks column\(s\) \['phase'\]"),
    ],
)
def test_phase_contrasts_bad_input_raises_model_error(change, kwargs, match):
    table = simulated_table(seed=1, n=4)
    table = table if change is None else change(table)
    args = {"feature": "hr", **kwargs}
    with pytest.raises(ModelError, match=match):
        phase_contrasts(table, **args)


def test_holm_adjust_equals_statsmodels():
    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 12):
        p = rng.uniform(0, 0.2, m) ** 2
        p[rng.integers(m)] = p[0]  # ties
        np.testing.assert_allclose(holm_adjust(p), multipletests(p, method="holm")[1], rtol=1e-14)
