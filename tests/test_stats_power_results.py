"""power_curve against the analytic power of the contrast, and fit_all end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cardiolab.errors import ModelError
from cardiolab.stats.design import simulate_feature_table
from cardiolab.stats.power import StudyDesign, power_curve
from cardiolab.stats.results import (
    RESULT_COLUMNS,
    SUMMARY_FLAGS_CHARS,
    fit_all,
    fit_feature,
    read_results,
    results_summary,
)

# Two pre-flight sessions and one at landing; tau_r long so that R+0 carries all of D.
SCHEDULE = ["L-30", "L-10", "R+0"]
RESIDUAL_SD = 2.5


def analytic_power(
    n: int, d: float, sigma: float = RESIDUAL_SD, k_pre: int = 2, alpha: float = 0.05
) -> float:
    """Power of the Wald test of (post - mean of k pre sessions) in a balanced random
    intercept design: the subject intercept cancels, SE = sigma sqrt((1 + 1/k) / n)."""
    se = sigma * np.sqrt((1 + 1 / k_pre) / n)
    z = stats.norm.ppf(1 - alpha / 2)
    return stats.norm.cdf(d / se - z) + stats.norm.cdf(-d / se - z)


def test_power_matches_the_analytic_power_of_the_contrast():
    design = StudyDesign(schedule=SCHEDULE, pre=62.0, between_sd=0.12, residual_sd=RESIDUAL_SD)
    # on a 2-worker dask cluster (the default path), 80 campaigns per size
    pc = power_curve(
        design,
        {"D": 3.0, "tau_r": 1e4},
        n_subjects=[6, 12],
        n_sim=80,
        seed=1,
        adjust="none",
        workers=2,
        progress=False,
    )
    table = pc.table.set_index("n_subjects")
    for n in (6, 12):
        expected = analytic_power(n, 3.0)
        # binomial SE at 80 draws is <= 0.056; Wald z with estimated variances runs a
        # little above the known-variance power at small n
        assert table.loc[n, "power"] == pytest.approx(expected, abs=0.13), (n, expected)
        assert table.loc[n, "ci_low"] <= table.loc[n, "power"] <= table.loc[n, "ci_high"]
        assert table.loc[n, "n_ok"] == 80
    assert table.loc[12, "power"] > table.loc[6, "power"]
    ds = pc.dataset
    assert list(ds["n_subjects"].values) == [6, 12]
    assert ds["power"].attrs["units"] == "1"


def test_null_effect_gives_the_nominal_false_positive_rate():
    design = StudyDesign(schedule=SCHEDULE, pre=62.0, between_sd=0.12, residual_sd=RESIDUAL_SD)
    pc = power_curve(
        design, 0.0, n_subjects=[8], n_sim=100, seed=3, adjust="none", client="sync", progress=False
    )
    assert pc.table["power"].iloc[0] <= 0.12  # alpha 0.05, 100 draws (SE 0.022)


def test_power_curve_is_reproducible_and_checks_its_input():
    kw = dict(n_subjects=[4], n_sim=10, seed=5, client="sync", progress=False)
    a = power_curve(None, 4.0, **kw).table
    b = power_curve(None, 4.0, **kw).table
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ModelError, match=">= 2"):
        power_curve(None, 4.0, n_subjects=[1, 4], n_sim=5, client="sync", progress=False)
    with pytest.raises(ModelError, match="unknown design key"):
        power_curve({"shedule": SCHEDULE}, 4.0, n_subjects=[4], n_sim=5, client="sync")
    with pytest.raises(ModelError, match="test must be"):
        power_curve(None, 4.0, n_subjects=[4], n_sim=5, test="anova", client="sync")
    with pytest.raises(ModelError, match="inference must be one of"):
        power_curve(None, 4.0, n_subjects=[4], n_sim=5, inference="kr", client="sync")


def test_power_curve_uses_satterthwaite_by_default_and_wald_on_request():
    # 3 subjects: the Satterthwaite t test is more conservative than z, never less
    kw = dict(n_subjects=[3], n_sim=40, seed=2, adjust="none", client="sync", progress=False)
    t = power_curve(None, 2.5, **kw)
    z = power_curve(None, 2.5, inference="wald", **kw)
    assert t.inference == "Satterthwaite t" and z.inference == "Wald z"
    assert t.dataset.attrs["inference"] == "Satterthwaite t" and "Satterthwaite" in repr(t)
    assert t.table["power"].iloc[0] < z.table["power"].iloc[0]  # 0.225 vs 0.35 here


@pytest.fixture(scope="module")
def two_features():
    """hr with a true post-flight change and brs without any, 10 subjects."""
    kw = dict(n_subjects=10, tau_a=4.0, tau_r=4.0, seed=11)
    hr = simulate_feature_table(
        pre=62.0, A=3.0, D=8.0, between_sd=7.0, residual_sd=2.0, feature="hr", units="bpm", **kw
    )
    brs = simulate_feature_table(
        pre=12.0,
        A=0.0,
        D=0.0,
        between_sd=1.8,
        residual_sd=1.0,
        feature="brs",
        units="ms/mmHg",
        **kw,
    )
    table = hr.copy()
    table["brs"] = brs["brs"].values
    # count columns (beats used per channel): not modelled by default
    rng = np.random.default_rng(5)
    table["n_beats"] = 300
    table["n_beats_abp"] = rng.integers(250, 300, len(table))
    table["n_nn"] = rng.integers(250, 300, len(table))
    table.attrs["units"] = {"hr": "bpm", "brs": "ms/mmHg", "n_beats": "1", "n_nn": "1"}
    return table


def test_fit_all_tidy_table_stored_and_read_back(two_features, tmp_path):
    results = fit_all(two_features, client="sync", store=tmp_path / "derived", progress=False)
    assert set(results["feature"]) == {"hr", "brs"}  # counts are skipped
    assert set(results["model"]) == {"contrast", "time_course"}
    tc = results[(results["model"] == "time_course")].set_index(["feature", "term"])
    # the truth D = 8 bpm lies in the CI; brs has no change: 0 in its CI
    assert tc.loc[("hr", "D"), "ci_low"] <= 8.0 <= tc.loc[("hr", "D"), "ci_high"]
    assert tc.loc[("brs", "D"), "ci_low"] <= 0.0 <= tc.loc[("brs", "D"), "ci_high"]
    contrast = results[(results["model"] == "contrast") & (results["feature"] == "hr")]
    r0 = contrast.set_index("term").loc["R+0"]
    assert r0["p_holm"] >= r0["p"] and r0["p_holm"] < 0.01
    assert (results["units"][results["feature"] == "hr"] == "bpm").all()
    back = read_results(tmp_path / "derived")
    assert len(back) == len(results)
    np.testing.assert_allclose(back["estimate"].values, results["estimate"].values, equal_nan=True)
    assert list(back["term"]) == list(results["term"])
    text = results_summary(results)
    assert "2 features, 4 models" in text and "hr" in text


def test_fit_all_records_unfittable_models_and_goes_on(two_features):
    table = two_features.copy()
    table["flat"] = 1.0  # no variance: a ModelError, recorded
    table.attrs["units"] = dict(two_features.attrs["units"], flat="1")
    out = fit_feature(table, "flat", "supine")
    assert set(out["model"]) == {"contrast", "time_course"}
    assert (out["error"] != "").all() and (~out["converged"]).all()
    results = fit_all(table, features=["flat", "hr"], client="sync", progress=False)
    assert (results.loc[results["feature"] == "hr", "error"] == "").all()
    with pytest.raises(ModelError, match="no feature"):
        fit_all(table, features=["hrr"], client="sync")
    with pytest.raises(ModelError, match="no epoch"):
        fit_all(table, epochs=["tilt"], client="sync")


def test_a_failing_fit_is_an_error_on_the_page_and_in_the_table(two_features, monkeypatch):
    """A numerical failure of one model (here a singular matrix in the contrasts) costs
    that model only, with the same message for the Cohort page and report
    (feature_models) as for fit_all's table (fit_feature)."""
    from cardiolab.stats import mixed
    from cardiolab.stats.results import feature_models

    def singular(*args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(mixed, "phase_contrasts", singular)
    contrasts, time_course, errors = feature_models(two_features, "hr", "supine")
    assert contrasts is None and time_course is not None
    assert errors == [("phase contrasts", "LinAlgError: Singular matrix")]
    rows = fit_feature(two_features, "hr", "supine")
    failed = rows[rows["model"] == "contrast"]
    assert failed["error"].tolist() == ["LinAlgError: Singular matrix"]
    assert (rows.loc[rows["model"] == "time_course", "error"] == "").all()


def test_fit_all_on_a_two_worker_cluster(two_features):
    results = fit_all(two_features, features=["hr"], workers=2, progress=False)
    sync = fit_all(two_features, features=["hr"], client="sync", progress=False)
    np.testing.assert_allclose(
        results["estimate"].values, sync["estimate"].values, rtol=1e-6, equal_nan=True
    )


TC_TERMS = ("b0", "D", "tau_r")


def _model_rows(feature, epoch, model, *, error="", flags="", converged=True, terms=("a", "b")):
    """Rows of one model in a fit_all table, as fit_feature writes them."""
    return [
        {
            "feature": feature,
            "epoch": epoch,
            "model": model,
            "term": "" if error else term,
            "estimate": np.nan if error else 1.0,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "p": np.nan,
            "p_holm": np.nan,
            "converged": False if error else converged,
            "flags": flags,
            "error": error,
            "units": "1",
        }
        for term in (terms[:1] if error else terms)
    ]


def test_summary_names_every_failed_and_flagged_model():
    one = "'{f}' in epoch '{e}': 1 subject with data; phase contrasts need at least 2"
    long_flags = "; ".join(f"flag number {i} of a time course that says a lot" for i in range(9))
    rows = []
    for f, e in (("hr", "supine"), ("hr", "stand"), ("sbp", "stand-supine")):
        rows += _model_rows(f, e, "contrast", error=one.format(f=f, e=e))
    rows += _model_rows("hr", "stand-supine", "time_course", error="hr (stand-supine): no variance")
    rows += _model_rows(
        "hr", "supine", "time_course", flags="tau_r estimate 0.1 d is on a bound", terms=TC_TERMS
    )
    rows += _model_rows("sbp", "supine", "time_course", terms=TC_TERMS)  # fitted, no flag
    rows += _model_rows("brs", "supine", "time_course", flags=long_flags)
    rows += _model_rows("brs", "supine", "contrast", converged=False)  # flagged without text
    rows += _model_rows("brs", "stand", "contrast")  # fitted, no flag
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    results.attrs["seconds"] = 1.5
    text = results_summary(results)
    lines = text.splitlines()
    assert lines[0] == "3 features, 9 models in 1.5 s; 4 could not be fitted, 3 flagged"
    failed = text.split("could not be fitted:\n")[1].split("flagged:\n")[0].splitlines()
    # the three contrasts differ only by their feature and epoch: one reason, all named
    assert failed == [
        "  3 models: '<feature>' in epoch '<epoch>': 1 subject with data; phase contrasts need "
        "at least 2",
        "    contrast: hr/supine, hr/stand, sbp/stand-supine",
        "  hr/stand-supine time_course: hr (stand-supine): no variance",
    ]
    flagged = text.split("flagged:\n")[1].splitlines()
    assert flagged[0] == "  hr/supine time_course: tau_r estimate 0.1 d is on a bound"
    assert flagged[1].startswith("  brs/supine time_course: flag number 0 of a time course")
    # cut after a whole flag, at most SUMMARY_FLAGS_CHARS of flag text, the rest counted
    shown = flagged[1].split("time_course: ", 1)[1]
    assert len(shown) <= SUMMARY_FLAGS_CHARS
    kept = shown.count("flag number")
    assert shown.endswith(f"that says a lot; … (+{9 - kept} more)") and kept >= 3
    assert flagged[2] == "  brs/supine contrast: did not converge"
    assert "brs/stand " not in text and "sbp/supine" not in text.split("time course")[0]
    # the time-course estimates of the epoch, marked where the model has flags
    estimates = text.split("time course, supine: ")[1].splitlines()[1:]
    assert [line.split()[0] for line in estimates] == ["hr", "sbp"]
    assert estimates[0].endswith("(flagged)") and not estimates[1].endswith("(flagged)")


def test_summary_of_a_fit_all_lists_its_failures_and_flags(two_features):
    table = two_features.copy()
    table["flat"] = 1.0  # no variance: cannot be fitted
    lone = table["subject"] == table["subject"].iloc[0]
    table["lone"] = np.where(lone, table["hr"], np.nan)  # one subject: cannot be fitted
    results = fit_all(table, features=["hr", "brs", "flat", "lone"], client="sync", progress=False)
    text = results_summary(results)
    models = results.groupby(["feature", "epoch", "model"], sort=False).first().reset_index()
    failed = models[models["error"] != ""]
    flagged = models[(models["error"] == "") & ((models["flags"] != "") | ~models["converged"])]
    assert set(failed["feature"]) == {"flat", "lone"} and len(failed) == 4
    assert f"{len(failed)} could not be fitted, {len(flagged)} flagged" in text.splitlines()[0]
    failed_text = text.split("could not be fitted:\n")[1].split("flagged:\n")[0]
    for row in failed.itertuples():
        assert f"{row.feature}/{row.epoch}" in failed_text and row.model in failed_text
    assert "1 subject" in failed_text and "variance" in failed_text
    if len(flagged):
        flagged_text = text.split("flagged:\n")[1]
        for row in flagged.itertuples():
            assert f"{row.feature}/{row.epoch}" in flagged_text
