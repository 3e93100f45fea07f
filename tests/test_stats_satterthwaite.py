"""cardiolab.stats.satterthwaite: lmerTest's Satterthwaite df for statsmodels MixedLM fits.

Checked against (1) lmerTest's summary of the lme4 sleepstudy model, (2) the exact
degrees of freedom of a balanced random-intercept design, (3) our own
log-likelihood (equal to statsmodels' ``llf``) and a numerical Hessian of it, and
(4) a boundary fit whose exact answer is ordinary least squares.
"""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.regression.mixed_linear_model import MixedLMParams

from cardiolab.errors import ModelError
from cardiolab.stats.design import simulate_feature_table
from cardiolab.stats.satterthwaite import (
    COLUMNS,
    SatterthwaiteParts,
    satterthwaite,
    satterthwaite_fixed,
    satterthwaite_parts,
)


def _fit(data, formula, groups, reml=True, **kwargs):
    """statsmodels MixedLM fit; optimiser options (method, gtol, start, maxiter) passed on."""
    fit_kw = {
        k: kwargs.pop(k) for k in ("method", "gtol", "start_params", "maxiter") if k in kwargs
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' boundary / convergence chatter
        model = smf.mixedlm(formula, data, groups=data[groups], **kwargs)
        return model.fit(reml=reml, **fit_kw)


@pytest.fixture(scope="module")
def sleepstudy(shared_data):
    return pd.read_csv(shared_data / "mixed" / "sleepstudy.csv")


@pytest.fixture(scope="module")
def sleep_fit(sleepstudy):
    return _fit(sleepstudy, "Reaction ~ Days", "Subject", re_formula="~Days")


@pytest.fixture(scope="module")
def phase_table():
    """8 subjects x the default 10-session schedule (80 rows), subject:phase variance."""
    return simulate_feature_table(
        pre=60.0, A=5.0, tau_a=5.0, D=8.0, tau_r=3.0, between_sd=6.0, residual_sd=2.0,
        random_A_sd=3.0, random_D_sd=3.0, seed=1,
    )  # fmt: skip


def _phase_fit(table, reml=True, method="lbfgs"):
    return _fit(
        table, "y ~ 0 + C(session)", "subject", reml=reml, method=method,
        re_formula="1", vc_formula={"phase": "0 + C(phase)"},
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# 1. lmerTest's summary of lmer(Reaction ~ Days + (Days | Subject), sleepstudy)


def test_sleepstudy_matches_lmertest(sleep_fit):
    # Source: lmerTest summary() of that REML model, as quoted in issue 12:
    # Days 10.467 (SE 1.546, df 17.0, t 6.771, p 3.26e-06),
    # (Intercept) 251.405 (SE 6.825, df 17.0, t 36.838).
    table = satterthwaite_fixed(sleep_fit)
    assert list(table.columns) == COLUMNS and table.index.name == "term"
    assert list(table.index) == ["Intercept", "Days"]
    days, icpt = table.loc["Days"], table.loc["Intercept"]
    assert days["estimate"] == pytest.approx(10.467, abs=5e-4)
    assert days["se"] == pytest.approx(1.546, abs=5e-4)
    assert days["df"] == pytest.approx(17.0, abs=0.1)
    assert days["t"] == pytest.approx(6.771, abs=5e-4)
    assert float(f"{days['p']:.3g}") == 3.26e-06
    assert icpt["estimate"] == pytest.approx(251.405, abs=5e-4)
    assert icpt["se"] == pytest.approx(6.825, abs=5e-4)
    assert icpt["df"] == pytest.approx(17.0, abs=0.1)
    assert icpt["t"] == pytest.approx(36.838, abs=5e-4)
    # the interval is estimate +- t_{0.975, df} SE
    from scipy.stats import t as student_t

    half = student_t.ppf(0.975, days["df"]) * days["se"]
    assert days["ci_high"] - days["estimate"] == pytest.approx(half, rel=1e-10)
    assert table.attrs["method"] == "Satterthwaite"
    assert table.attrs["information"] == "observed" and table.attrs["notes"] == []
    # the fixed effects and their covariance are statsmodels' (and lme4's vcov)
    np.testing.assert_allclose(table["se"], sleep_fit.bse_fe, rtol=1e-8)


def test_contrast_rows_and_derived_quantities(sleep_fit):
    parts = satterthwaite_parts(sleep_fit)
    assert isinstance(parts, SatterthwaiteParts)
    L = pd.DataFrame(
        [[1.0, 0.0], [0.0, 1.0], [1.0, 5.0]],
        index=["day 0", "slope", "day 5"],
        columns=["Intercept", "Days"],
    )
    table = satterthwaite(sleep_fit, L, alpha=0.1)
    assert list(table.index) == ["day 0", "slope", "day 5"]
    assert table.attrs["alpha"] == 0.1
    fixed = satterthwaite_fixed(sleep_fit)
    np.testing.assert_allclose(table["df"].iloc[:2], fixed["df"], rtol=1e-12)
    # a 1-D contrast and parts.df agree with the table; the day-5 mean has its own df
    np.testing.assert_allclose(parts.df([1.0, 5.0]), table["df"].iloc[[2]], rtol=1e-12)
    assert satterthwaite(sleep_fit, np.array([1.0, 5.0]))["estimate"].iloc[0] == pytest.approx(
        251.405105 + 5 * 10.467286, abs=1e-5
    )
    # a gradient row (delta method) is a contrast like any other: df invariant to scale
    np.testing.assert_allclose(parts.df([[0.0, 3.0]]), parts.df([[0.0, 1.0]]), rtol=1e-12)


@pytest.mark.parametrize(
    ("L", "shape"),
    [(np.ones(3), "(3,)"), (np.ones((2, 3)), "(2, 3)"), (np.ones((2, 2, 2)), "(2, 2, 2)")],
)
def test_bad_contrast_shape_is_a_model_error(sleep_fit, L, shape):
    with pytest.raises(
        ModelError, match=r"shape \(k, 2\) or \(2,\).*got shape " + re.escape(shape)
    ):
        satterthwaite(sleep_fit, L)


def test_bad_inputs_are_model_errors(sleep_fit):
    with pytest.raises(ModelError, match="do not match the fixed effects"):
        satterthwaite(sleep_fit, pd.DataFrame([[1.0, 0.0]], columns=["Days", "Intercept"]))
    with pytest.raises(ModelError, match="NaN or infinite"):
        satterthwaite(sleep_fit, [np.nan, 1.0])
    with pytest.raises(ModelError, match="alpha"):
        satterthwaite(sleep_fit, [0.0, 1.0], alpha=1.5)
    with pytest.raises(ModelError, match="MixedLMResults"):
        satterthwaite_parts(object())


# --------------------------------------------------------------------------------------
# 2. exact degrees of freedom of a balanced random-intercept design


def _balanced(n, m, seed, between_sd=2.0):
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(n), m)
    session = np.tile(np.arange(m), n)
    y = rng.normal(0, between_sd, n)[subject] + 0.3 * session + rng.normal(0, 1.0, n * m)
    return pd.DataFrame({"y": y, "subject": subject, "session": session})


@pytest.mark.parametrize(
    ("n", "m", "seed"), [(4, 3, 4), (6, 5, 1), (12, 10, 1), (5, 2, 3), (3, 4, 0)]
)
def test_balanced_random_intercept_exact_df(n, m, seed):
    """Satterthwaite is exact here: within-subject (n-1)(m-1) df, between-subject n-1.

    Model ``y_ij = mu_j + b_i + e_ij`` (n subjects, m sessions, ``b ~ N(0, s_b^2)``,
    ``e ~ N(0, s^2)``), fitted as ``y ~ 0 + C(session)`` with a random intercept.
    With balanced data the REML estimates, when interior, are the ANOVA ones:
    ``s^2_hat = MS_E`` (subject x session mean square, ``nu_E = (n-1)(m-1)`` df) and
    ``m s_b^2_hat + s^2_hat = MS_S`` (subjects, ``nu_S = n - 1`` df), independent and
    ``nu MS / E[MS] ~ chi^2_nu``. In the parameters ``(s^2, theta = m s_b^2 + s^2)`` the
    REML log-likelihood is ``-1/2 sum nu (log x + MS / x)`` (+ const), whose observed
    information at ``x = MS`` is ``nu / (2 MS^2)``: ``A`` is exactly the chi-square
    variance ``2 MS^2 / nu`` (and df is invariant to the linear map back to ``phi``).

    * difference of two session means: ``Var = 2 s^2 / n``, a multiple of ``MS_E``
      alone: ``df = 2 Var^2 / Var(Var_hat) = nu_E = (n-1)(m-1)``;
    * mean of the session means: ``Var = (s_b^2 + s^2 / m) / n = theta / (m n)``, a
      multiple of ``MS_S`` alone: ``df = nu_S = n - 1``.
    """
    data = _balanced(n, m, seed)
    fit = _fit(data, "y ~ 0 + C(session)", "subject", method="bfgs", gtol=1e-12)
    y = data["y"].to_numpy().reshape(n, m)
    resid = y - y.mean(1, keepdims=True) - y.mean(0) + y.mean()
    ms_e = (resid**2).sum() / ((n - 1) * (m - 1))
    ms_s = m * ((y.mean(1) - y.mean()) ** 2).sum() / (n - 1)
    assert ms_s > 2 * ms_e  # interior: the subject variance is not at 0
    # precondition: the fit is at the (ANOVA = REML) optimum
    assert fit.scale == pytest.approx(ms_e, rel=1e-8)
    assert m * fit.cov_re.iloc[0, 0] + fit.scale == pytest.approx(ms_s, rel=1e-8)

    L = np.zeros((2, m))
    L[0, :2] = [-1.0, 1.0]
    L[1, :] = 1.0 / m
    table = satterthwaite(fit, L)
    np.testing.assert_allclose(table["df"], [(n - 1) * (m - 1), n - 1], rtol=1e-6)
    assert table.attrs["notes"] == []


# --------------------------------------------------------------------------------------
# 3. the parameter mapping and the analytic derivatives


def _step(parts):
    """Finite-difference steps: 1e-3 of each variance, of sqrt(var_a var_b) for covariances."""
    phi = parts.varpar
    h = 1e-3 * np.abs(phi.to_numpy())
    for j, name in enumerate(phi.index):
        if name.startswith("cov("):
            a, b = name[4:-1].split(",")
            h[j] = 1e-3 * np.sqrt(phi[f"var({a})"] * phi[f"var({b})"])
    return h


def _numerical_hessian(f, x, h):
    m = len(x)
    out = np.empty((m, m))
    for j in range(m):
        for k in range(j, m):
            ej, ek = np.eye(m)[j] * h[j], np.eye(m)[k] * h[k]
            out[j, k] = out[k, j] = (
                f(x + ej + ek) - f(x + ej - ek) - f(x - ej + ek) + f(x - ej - ek)
            ) / (4 * h[j] * h[k])
    return out


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("case", ["sleepstudy", "phase"])
def test_loglik_and_information_match_statsmodels_and_numerical_hessian(
    case, reml, sleepstudy, phase_table
):
    if case == "sleepstudy":
        fit = _fit(sleepstudy, "Reaction ~ Days", "Subject", reml=reml, re_formula="~Days")
        names = ["var(Intercept)", "cov(Intercept,Days)", "var(Days)", "var(Residual)"]
    else:
        fit = _phase_fit(phase_table, reml=reml)
        names = ["var(Intercept)", "var(phase)", "var(Residual)"]
    parts = satterthwaite_parts(fit)
    assert parts.reml is reml
    assert list(parts.varpar.index) == names and parts.free.all()
    # the mapping phi -> V is statsmodels': same log-likelihood at the estimate
    assert parts.loglik == pytest.approx(fit.llf, abs=1e-8)
    assert parts.loglik_at(parts.varpar) == pytest.approx(fit.llf, abs=1e-8)
    np.testing.assert_allclose(parts.beta, fit.fe_params, rtol=1e-9)
    np.testing.assert_allclose(np.sqrt(np.diag(parts.cov_beta)), fit.bse_fe, rtol=1e-8)

    phi, h = parts.varpar.to_numpy(), _step(parts)
    scale = np.sqrt(np.outer(np.diag(parts.information), np.diag(parts.information)))
    # analytic observed information = minus the numerical Hessian (central differences)
    hessian = _numerical_hessian(parts.loglik_at, phi, h)
    np.testing.assert_allclose(parts.information / scale, -hessian / scale, atol=2e-5)
    # the score is ~0 at the optimum (relative to the information's scale)
    assert np.all(np.abs(parts.score) * np.sqrt(np.diag(1 / parts.information)) < 1e-2)
    # dC/dphi_j against central differences of C(phi)
    for j in range(len(phi)):
        e = np.eye(len(phi))[j] * h[j]
        numeric = (parts.cov_beta_at(phi + e) - parts.cov_beta_at(phi - e)) / (2 * h[j])
        np.testing.assert_allclose(
            parts.jacobian[j], numeric, atol=1e-6 * np.abs(parts.jacobian[j]).max()
        )


def test_phase_contrasts_have_t_intervals(phase_table):
    """The phase_contrasts model: contrasts against the pre-flight mean get df < inf."""
    fit = _phase_fit(phase_table)
    names = list(fit.fe_params.index)
    pre = [names.index("C(session)[L-60]"), names.index("C(session)[L-30]")]
    L = np.zeros((1, len(names)))
    L[0, names.index("C(session)[FD15]")] = 1.0
    L[0, pre] = -0.5
    table = satterthwaite(fit, L)
    df = table["df"].iloc[0]
    # between the within-subject error df of the pure random-intercept model and the
    # number of subjects: the subject:phase variance enters an in-flight vs pre contrast
    assert 1.0 < df < (8 - 1) * (10 - 1)
    assert table["ci_high"].iloc[0] - table["ci_low"].iloc[0] > 2 * 1.959964 * table["se"].iloc[0]


# --------------------------------------------------------------------------------------
# 4. boundary fits


def test_boundary_random_intercept_gives_ols_df():
    """Subject variance at 0: the model is OLS, whose exact df is n - p.

    ``Y ~ X`` on 100 rows of N(0, 1) data grouped by ``i % 3`` (issue 12, seed 0),
    with ``Y`` centred within groups so that the between-group variance is 0 by
    construction. With ``var(Intercept)`` held fixed at ~0, ``V = sigma^2 I``,
    ``l' C l`` is proportional to ``sigma^2`` alone and REML gives
    ``Var(sigma^2_hat) = 2 sigma^4 / (n - p)``: ``df = n - p = 98``.
    """
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"X": rng.normal(size=100), "Y": rng.normal(size=100)})
    data["g"] = np.arange(100) % 3
    data["Y"] -= data.groupby("g")["Y"].transform("mean")
    fit = _fit(data, "Y ~ X", "g")
    assert np.sqrt(fit.cov_re.iloc[0, 0] / fit.scale) < 1e-4  # the boundary is reached
    table = satterthwaite_fixed(fit)
    assert np.all(np.isfinite(table.to_numpy()))
    np.testing.assert_allclose(table["df"], 98.0, rtol=1e-6)
    notes = table.attrs["notes"]
    assert any("var(Intercept) estimated at ~0" in n and "held fixed" in n for n in notes)
    parts = satterthwaite_parts(fit)
    assert list(parts.free) == [False, True] and parts.information.shape == (1, 1)


def test_boundary_variance_component_is_held_fixed(phase_table):
    """subject:phase variance at 0 by construction: the random-intercept df come back.

    Each subject's values are shifted so that its phase means equal its overall mean
    (no subject x phase interaction left beyond the session means every subject
    shares), hence ``var(phase)`` is estimated at 0 and the remaining model is the
    balanced random-intercept one of the test above: a difference of two sessions has
    ``(n - 1)(m - 1) = 63`` df, the mean over sessions ``n - 1 = 7``.
    """
    table = phase_table.copy()
    cell = table.groupby(["subject", "phase"])["y"].transform("mean")
    table["y"] = table["y"] - cell + table.groupby("subject")["y"].transform("mean")
    # statsmodels' gradient optimisers stop short of this boundary (issue 12, section
    # 1); of its optimisers, keep the highest log-likelihood (Powell and Nelder-Mead)
    fits = [_phase_fit(table, method=m) for m in ("lbfgs", "bfgs", "powell", "nm")]
    fit = max(fits, key=lambda f: f.llf)
    parts = satterthwaite_parts(fit)
    assert np.sqrt(parts.varpar["var(phase)"] / parts.varpar["var(Residual)"]) < 1e-4
    assert list(parts.free) == [True, False, True]
    names = list(fit.fe_params.index)
    L = np.zeros((2, len(names)))
    L[0, [names.index("C(session)[FD5]"), names.index("C(session)[R+1]")]] = [1.0, -1.0]
    L[1, :] = 1.0 / len(names)
    out = parts.test(L)
    np.testing.assert_allclose(out["df"], [63.0, 7.0], rtol=1e-4)
    assert any("var(phase) estimated at ~0" in n for n in out.attrs["notes"])


# --------------------------------------------------------------------------------------
# 5. fits that are not at a maximum: stated fallbacks, never a crash


def _unfitted(sleepstudy, cov_re, re_formula=None):
    """statsmodels results at given (not fitted) variance parameters: zero iterations."""
    start = MixedLMParams.from_components(
        fe_params=np.array([250.0, 10.0]), cov_re=np.asarray(cov_re, dtype=float)
    )
    return _fit(
        sleepstudy, "Reaction ~ Days", "Subject", re_formula=re_formula,
        start_params=start, method="bfgs", maxiter=0,
    )  # fmt: skip


def test_not_at_a_maximum_falls_back_to_expected_information(sleepstudy):
    """Subject variance ~14 times its REML value: the observed information is not PD.

    The expected information is used and said so. For ``Days`` (a within-subject
    slope, balanced: 18 subjects x 10 days) the expected-information df do not depend
    on where they are evaluated: ``Var(slope) = sigma^2 / S_xx`` involves ``sigma^2``
    only, whose expected-information variance is ``2 sigma^4 / nu`` with the
    within-subject error df ``nu = 18 * 9 - 1 = 161`` (ANOVA), hence ``df = 161``.
    """
    fit = _unfitted(sleepstudy, [[10.0]])
    assert not fit.converged
    parts = satterthwaite_parts(fit)
    assert parts.information_kind == "expected"
    table = parts.test(np.eye(2))
    assert table.attrs["information"] == "expected"
    assert any("expected information used" in n for n in table.attrs["notes"])
    assert np.all(np.isfinite(table.to_numpy()))
    assert table["df"].iloc[1] == pytest.approx(161.0, rel=1e-9)


def test_perfectly_correlated_random_effects_are_noted(sleepstudy):
    fit = _unfitted(sleepstudy, [[1.0, np.sqrt(0.05)], [np.sqrt(0.05), 0.05]], "~Days")
    table = satterthwaite_fixed(fit)
    assert np.all(np.isfinite(table.to_numpy()))
    assert any("perfectly correlated" in n for n in table.attrs["notes"])
