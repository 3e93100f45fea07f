"""Linear mixed-effects models and phase contrasts against the pre-flight baseline.

Two layers:

* :func:`fit_mixed` fits any linear mixed model given as a formula (statsmodels
  ``MixedLM`` underneath), checks the data first, tries several optimisers, and
  returns a :class:`MixedResult` whose tables read like lme4's (``.fixed``,
  ``.random`` as ``as.data.frame(VarCorr(fit))``) and whose state is explicit:
  a fit that did not converge, or that sits on the boundary of the parameter space
  (a variance estimated at zero), says so in ``.converged``, ``.singular`` and
  ``.flags``, never silently.
* :func:`phase_contrasts` answers the question every flight study asks first: how
  far is each in-flight and post-flight session from the pre-flight level? It fits
  ``feature ~ 0 + timepoint (+ covariates)`` with a random intercept per subject on
  one epoch of the features table and contrasts each timepoint with the mean of the
  pre-flight timepoints, in the feature's units and in percent, with Holm-adjusted
  p values (the NASA practice of SCIENCE.md: ``y ~ phase + (1 | subject)`` with
  contrasts against baseline).

Inference is Student t with Satterthwaite degrees of freedom by default, as lmerTest
reports it (:mod:`cardiolab.stats.satterthwaite`; lme4's sleepstudy matched to 0.1 df
and 3 significant digits of p); Wald z (statsmodels' own) on request with
``inference="wald"``. The method is named in every result (``.inference``).
Kenward-Roger is not offered: no maintained Python library computes it (the
satterthwaite module says why). ``benchmarks/coverage_contrasts.py`` measures the
coverage of the contrasts' 95 % intervals with 4, 6 and 12 subjects, z against t.
"""

from __future__ import annotations

import ast
import html
import io
import keyword
import logging
import math
import tokenize
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.stats
import statsmodels.formula.api as smf

from ..errors import ModelError
from ..formatting import format_p
from ..labels import schedule_order
from .satterthwaite import BOUNDARY_TOL, satterthwaite_parts
from .table import check_features_table

__all__ = [
    "INFERENCE",
    "OPTIMIZERS",
    "SINGULAR_TOL",
    "MixedResult",
    "PhaseContrasts",
    "fit_mixed",
    "holm_adjust",
    "phase_contrasts",
]

log = logging.getLogger("cardiolab")

#: optimisers tried in turn by :func:`fit_mixed` (scipy.optimize names)
OPTIMIZERS = ("lbfgs", "bfgs", "powell", "nm", "cg")

#: inference methods for fixed effects and contrasts: their names in the output
INFERENCE = {"satterthwaite": "Satterthwaite t", "wald": "Wald z"}

#: lme4's ``isSingular`` tolerance: a random-effect standard deviation below this
#: fraction of the residual SD (a diagonal element of the relative Cholesky factor)
#: counts as estimated at zero; one value with the Satterthwaite boundary rule
SINGULAR_TOL = BOUNDARY_TOL

#: statsmodels' own boundary warning uses an absolute threshold (variance < 0.01 in
#: the data's units), meaningless for features such as a resistive index; we replace
#: it by the scale-free lme4 rule above
_SM_BOUNDARY = "The MLE may be on the boundary of the parameter space"
#: statsmodels warning raised from the score at intermediate iterates of the search,
#: whatever the final estimate: not about the fit returned
_SM_TRANSIENT = "Random effects covariance is singular"
#: statsmodels warnings that follow from a boundary fit (not flagged separately)
_SM_AT_BOUNDARY = (
    "The Hessian matrix at the estimated parameter values is not positive definite",
    "The random effects covariance matrix is singular",
)

#: names a formula may use that are not data columns (patsy and numpy helpers)
_FORMULA_NAMES = {
    "C", "I", "Q", "np", "numpy", "center", "standardize", "scale", "bs", "cr", "cc",
    "te", "Treatment", "Sum", "Diff", "Helmert", "Poly", "log", "exp", "sqrt",
}  # fmt: skip

_CONTRAST_COLUMNS = [
    "phase", "day", "n", "estimate", "se", "df", "ci_low", "ci_high",
    "percent", "percent_low", "percent_high", "p", "p_holm",
]  # fmt: skip
_TIDY_COLUMNS = [
    "feature", "epoch", "model", "term", "estimate", "ci_low", "ci_high", "df", "ci_method",
    "p", "converged",
]  # fmt: skip


# --------------------------------------------------------------------------------------
# result objects


@dataclass(frozen=True, eq=False, repr=False)
class MixedResult:
    """A fitted linear mixed model, in tables a scientist can read.

    Attributes
    ----------
    formula, re_formula, groups : str
        The model as given (``re_formula`` None means a random intercept).
    vc_formula : dict or None
        Extra variance components (``{name: formula}``); see :func:`fit_mixed`.
    random_terms : tuple of str
        The random part in lme4 syntax, e.g. ``("(1 + Days | Subject)",)``.
    reml : bool
        REML (True) or maximum-likelihood fit.
    fixed : pandas.DataFrame
        Index ``term`` (patsy names, as in the formula: ``Intercept``, ``Days``,
        ``C(sex)[T.M]``); columns ``estimate``, ``se`` (response units), ``df``
        (Satterthwaite degrees of freedom; ``inf`` for Wald z), ``t`` (the test
        statistic), ``ci_low``, ``ci_high`` (95 %) and ``p`` (two-sided), as
        lmerTest's ``summary`` (method in ``inference``).
    inference : str
        ``"Satterthwaite t"`` or ``"Wald z"`` (:data:`INFERENCE`): how ``fixed``'s
        intervals and p values, and :meth:`test`'s, are computed.
    random : pandas.DataFrame
        lme4's ``as.data.frame(VarCorr(fit))``: columns ``grp``, ``var1``, ``var2``,
        ``vcov`` (variance or covariance), ``sdcor`` (SD or correlation); one row per
        random-effect variance, per correlation, per variance component and one for
        the residual (``grp == "Residual"``).
    random_sd : pandas.Series
        The ``sdcor`` column named like lme4 prints it: ``"Subject (Intercept)"``,
        ``"Subject Days"``, ``"Subject cor((Intercept),Days)"``, ``"Residual"``.
    residual_sd : float
        Residual standard deviation (response units).
    icc : float
        Intraclass correlation of a random-intercept model: intercept variance /
        (intercept variance + residual variance). NaN when the model has random
        slopes or variance components, where the share of variance between groups
        depends on the covariates and one number would mislead.
    n_obs, n_groups : int
        Observations used (after dropping rows with missing values) and groups.
    loglik : float
        Log-likelihood at the estimate: the REML criterion for REML fits (lme4's
        ``logLik(fit)`` of a REML fit, ``-REMLcrit / 2``), the likelihood for ML fits.
    aic, bic : float
        For ML fits, ``-2 loglik + 2 k`` and ``-2 loglik + k log(n_obs)`` with ``k``
        the fixed effects, the random-effect (co)variances and the residual variance,
        as lme4's ``AIC``/``BIC`` (and ``anova``, which refits with ML). NaN for REML
        fits: REML likelihoods of models with different fixed effects are not
        comparable, so refit with ``reml=False`` to compare models.
    converged : bool
        The optimiser reached a maximum (scipy's convergence test) with a finite
        log-likelihood. False results are returned, flagged, and should not be used.
    singular : bool
        Boundary fit: a random-effect SD below ``SINGULAR_TOL`` times the residual
        SD, or a correlation of +-1 (lme4's ``isSingular``). The fixed effects are
        usable, the random-effect structure is richer than the data support.
    flags : list of str
        Everything a reader must know: rows dropped for missing values, boundary
        fits, non-convergence, statsmodels warnings on the chosen fit.
    optimizer : str
        The scipy optimiser whose fit was kept (``"zero-variance start"`` for the fit
        started with every random-effect variance at zero).
    optimizer_gain : float
        How much higher the kept fit's log-likelihood is than the first optimiser's (0
        when the first was kept; NaN when the first gave no finite log-likelihood).
    attempts : list of dict
        Every optimiser tried, in order: ``method``, ``converged`` (usable: converged,
        finite, fixed effects at their optimum), ``loglik``, ``gradient`` (largest
        fixed-effect score x OLS standard error) and ``warnings``.
    model : statsmodels.regression.mixed_linear_model.MixedLMResults
        The statsmodels results, for anything not exposed here.
    """

    formula: str
    re_formula: str | None
    vc_formula: dict | None
    groups: str
    reml: bool
    fixed: pd.DataFrame
    random: pd.DataFrame
    random_sd: pd.Series
    residual_sd: float
    icc: float
    n_obs: int
    n_groups: int
    loglik: float
    aic: float
    bic: float
    converged: bool
    singular: bool
    flags: list = field(default_factory=list)
    optimizer: str = ""
    optimizer_gain: float = 0.0
    attempts: list = field(default_factory=list)
    random_terms: tuple = ()
    model: object = None
    inference: str = INFERENCE["satterthwaite"]
    _satterthwaite: object = field(default=None, repr=False)

    @property
    def response(self) -> str:
        """The left-hand side of the formula."""
        return self.formula.split("~", 1)[0].strip()

    def lme4_formula(self) -> str:
        """The model written as lme4 would, e.g. ``Reaction ~ Days + (1 + Days | Subject)``."""
        return " + ".join([self.formula, *self.random_terms])

    @property
    def status(self) -> str:
        """``converged``, ``converged, boundary (singular) fit`` or ``NOT converged``."""
        if not self.converged:
            return "NOT converged"
        return "converged, boundary (singular) fit" if self.singular else "converged"

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per fixed effect, then one per random-effect SD/correlation.

        Columns ``feature`` (the response), ``epoch`` (None), ``model`` (``"mixed"``),
        ``term``, ``estimate``, ``ci_low``, ``ci_high``, ``df``, ``ci_method``
        (:attr:`inference`; NaN and "" for random effects), ``p`` (NaN for random
        effects), ``converged``.
        """
        fixed = self.fixed.reset_index()
        fixed = fixed.assign(term=fixed["term"].astype(str))[
            ["term", "estimate", "ci_low", "ci_high", "df", "p"]
        ].assign(ci_method=self.inference)
        random = pd.DataFrame(
            {
                "term": [f"sd {k}" if " cor(" not in k else k for k in self.random_sd.index],
                "estimate": self.random_sd.to_numpy(dtype=float),
                "ci_low": np.nan,
                "ci_high": np.nan,
                "df": np.nan,
                "ci_method": "",
                "p": np.nan,
            }
        )
        out = pd.concat([fixed, random], ignore_index=True)
        out.insert(0, "model", "mixed")
        out.insert(0, "epoch", None)
        out.insert(0, "feature", self.response)
        out["converged"] = self.converged
        return out[_TIDY_COLUMNS]

    def test(self, L, alpha: float = 0.05) -> pd.DataFrame:
        """Tests of linear combinations ``L beta`` of the fixed effects.

        Parameters
        ----------
        L : array_like, shape (k, p) or (p,)
            Contrast rows over the ``p`` fixed effects (``fixed.index`` order).
        alpha : float
            ``1 - alpha`` is the confidence level of the intervals.

        Returns
        -------
        pandas.DataFrame
            One row per contrast: ``estimate``, ``se`` (response units), ``df``
            (Satterthwaite degrees of freedom; ``inf`` for Wald z), ``t``, ``p``
            (two-sided), ``ci_low``, ``ci_high``.

        Raises
        ------
        ModelError
            ``L`` of the wrong shape (both shapes named).
        """
        return _contrast_test(self.model, self._satterthwaite, L, alpha)

    def _gain_note(self) -> str:
        if not self.attempts or self.attempts[0]["method"] == self.optimizer:
            return ""
        first = self.attempts[0]["method"]
        if math.isnan(self.optimizer_gain):
            return f" ({first} gave no finite log-likelihood)"
        return f" (log-likelihood {self.optimizer_gain:+.3g} over {first})"

    def __repr__(self) -> str:
        lines = [
            f"MixedResult: {self.lme4_formula()}  [{'REML' if self.reml else 'ML'}]",
            f"  {self.n_obs} observations, {self.n_groups} groups ({self.groups}); "
            f"optimizer {self.optimizer}{self._gain_note()}; {self.status}",
            f"  fixed effects (95% CI, {self.inference}):",
        ]
        table = self.fixed.to_string(float_format=lambda v: f"{v:.4g}")
        lines += ["    " + line for line in table.splitlines()]
        lines.append("  random effects (SD / correlation):")
        width = max(len(k) for k in self.random_sd.index)
        lines += [f"    {k:<{width}}  {v:.4g}" for k, v in self.random_sd.items()]
        if not math.isnan(self.aic):
            lines.append(f"  logLik {self.loglik:.2f}, AIC {self.aic:.2f}, BIC {self.bic:.2f}")
        else:
            lines.append(f"  REML logLik {self.loglik:.2f}")
        lines += [f"  flag: {f}" for f in self.flags]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = self.__repr__().split("\n", 2)[:2]
        # formula, column names and flags come from the data: escaped, never markup
        flags = "".join(f"<li>{html.escape(f)}</li>" for f in self.flags)
        return (
            f"<p><b>{html.escape(head[0])}</b><br>{html.escape(head[1].strip())}</p>"
            f"{self.fixed.to_html(float_format=lambda v: f'{v:.4g}')}"
            f"{self.random.to_html(float_format=lambda v: f'{v:.4g}', index=False)}"
            + (f"<ul>{flags}</ul>" if flags else "")
        )


@dataclass(frozen=True, eq=False, repr=False)
class PhaseContrasts:
    """In-flight and post-flight timepoints contrasted with the pre-flight mean.

    Attributes
    ----------
    table : pandas.DataFrame
        Index ``timepoint`` (session labels in schedule order, pre-flight sessions
        excluded); columns ``phase``, ``day`` (days from the phase anchor), ``n``
        (observations at the timepoint), ``estimate`` (change from the pre-flight
        mean, feature units), ``se``, ``df`` (Satterthwaite; ``inf`` for Wald z),
        ``ci_low``, ``ci_high`` (95 %),
        ``percent``, ``percent_low``, ``percent_high`` (change in % of the
        pre-flight mean, delta-method CI with its own df), ``p`` and ``p_holm`` (Holm
        adjustment across the timepoints of the table).
    baseline : float
        Estimated pre-flight mean (feature units): the mean of the pre-flight
        timepoint means, averaged over the covariates as observed.
    baseline_se : float
        Its standard error (includes the between-subject variance).
    pre_sessions : list of str
        The pre-flight timepoints averaged into the baseline.
    feature, epoch, units : str
        What was modelled; ``units`` from ``table.attrs["units"]`` ("" if absent).
    model : MixedResult
        The underlying fit.
    converged : bool
        ``model.converged``.
    flags : list of str
        The rows dropped, the model's flags and the contrast's own (timepoints with
        one subject, a baseline near zero).
    inference : str
        ``"Satterthwaite t"`` or ``"Wald z"``: how the intervals and p are computed.
    """

    table: pd.DataFrame
    baseline: float
    baseline_se: float
    pre_sessions: list
    feature: str
    epoch: str
    units: str
    model: MixedResult
    converged: bool
    flags: list = field(default_factory=list)
    inference: str = INFERENCE["satterthwaite"]

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per timepoint (``term``), change from the pre-flight mean.

        Columns ``feature``, ``epoch``, ``model`` (``"contrast"``), ``term``,
        ``estimate``, ``ci_low``, ``ci_high`` (feature units), ``df``, ``ci_method``
        (:attr:`inference`), ``p`` (raw), ``converged``.
        """
        t = self.table
        out = pd.DataFrame(
            {
                "feature": self.feature,
                "epoch": self.epoch,
                "model": "contrast",
                "term": t.index.astype(str),
                "estimate": t["estimate"].to_numpy(),
                "ci_low": t["ci_low"].to_numpy(),
                "ci_high": t["ci_high"].to_numpy(),
                "df": t["df"].to_numpy(),
                "ci_method": self.inference,
                "p": t["p"].to_numpy(),
                "converged": self.converged,
            }
        )
        return out[_TIDY_COLUMNS]

    def __repr__(self) -> str:
        u = f" {self.units}" if self.units else ""
        m = self.model
        lines = [
            f"PhaseContrasts: {self.feature}{u}, epoch {self.epoch!r}; "
            f"pre-flight mean {self.baseline:.4g}{u} ({', '.join(self.pre_sessions)})",
            f"  {m.n_groups} subjects, {m.n_obs} observations; {m.lme4_formula()}; {m.status}; "
            f"95% CI {self.inference}",
        ]
        t = self.table
        shown = pd.DataFrame(
            {
                "n": t["n"],
                "change": [
                    f"{e:+.3g} [{lo:+.3g}, {hi:+.3g}]"
                    for e, lo, hi in zip(t["estimate"], t["ci_low"], t["ci_high"], strict=True)
                ],
                "percent": [
                    f"{e:+.1f}% [{lo:+.1f}, {hi:+.1f}]"
                    for e, lo, hi in zip(
                        t["percent"], t["percent_low"], t["percent_high"], strict=True
                    )
                ],
                "p_holm": [format_p(p) for p in t["p_holm"]],
            },
            index=t.index,
        )
        lines += ["  " + line for line in shown.to_string().splitlines()]
        lines += [f"  flag: {f}" for f in self.flags]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# formula inspection


def _formula_names(formula: str) -> set[str]:
    """Data names a patsy formula refers to.

    Every bare identifier that is not a function being called, an attribute, a
    keyword argument or a known helper, plus the column names quoted with ``Q("...")``.
    """
    try:
        toks = [
            t
            for t in tokenize.generate_tokens(io.StringIO(formula).readline)
            if t.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER)
        ]
    except (tokenize.TokenError, SyntaxError) as err:
        raise ModelError(f"formula {formula!r} cannot be parsed: {err}") from None
    names = set()
    for i, tok in enumerate(toks):
        prev = toks[i - 1].string if i > 0 else ""
        nxt = toks[i + 1].string if i + 1 < len(toks) else ""
        if tok.type == tokenize.STRING and prev == "(" and i >= 2 and toks[i - 2].string == "Q":
            names.add(str(ast.literal_eval(tok.string)))
            continue
        if tok.type != tokenize.NAME or keyword.iskeyword(tok.string):
            continue
        if prev == "." or nxt in ("(", "=") or tok.string in _FORMULA_NAMES:
            continue
        names.add(tok.string)
    return names


def _used_columns(data: pd.DataFrame, formulas: Sequence[str], groups: str) -> list[str]:
    """Columns of ``data`` used by the formulas and the grouping; errors for absent ones."""
    used, missing = [], []
    for text in formulas:
        names = _formula_names(text)
        for name in sorted(names):
            if name in data.columns:
                if name not in used:
                    used.append(name)
            elif name not in missing:
                missing.append(name)
    if groups not in data.columns:
        missing.append(groups)
    elif groups not in used:
        used.append(groups)
    if missing:
        raise ModelError(
            f"column(s) {missing} used by the model ({'; '.join(formulas)}; groups "
            f"{groups!r}) are not in the data; available: {list(map(str, data.columns))}"
        )
    return used


def _lme4_name(name: str) -> str:
    return "(Intercept)" if name in ("Intercept", "Group") else str(name)


# --------------------------------------------------------------------------------------
# fit_mixed


def _check_design(model, formula: str) -> None:
    """Errors for empty factor levels and collinear fixed effects."""
    exog = np.asarray(model.exog, dtype=float)
    names = list(model.exog_names)
    if exog.shape[0] <= exog.shape[1]:
        raise ModelError(
            f"{formula!r}: {exog.shape[0]} observations for {exog.shape[1]} fixed effects; "
            "too few to fit the model"
        )
    empty = [names[j] for j in np.flatnonzero(~np.any(exog != 0, axis=0))]
    if empty:
        raise ModelError(
            f"{formula!r}: factor level(s) with no data: {empty}; drop the level or the "
            "unused category (e.g. Series.cat.remove_unused_categories())"
        )
    # one constant column is the intercept (or stands for it); any other is a term that
    # does not vary in the rows used
    constant = [names[j] for j in range(exog.shape[1]) if np.all(exog[:, j] == exog[0, j])][1:]
    if constant:
        raise ModelError(
            f"{formula!r}: the term(s) {constant} do not vary (one value in every row used): "
            "they are confounded with the intercept; drop them"
        )
    # a column that adds nothing to the columns before it, in the formula's order, so the
    # message names the term the user added (the covariate), never the intercept
    dependent, tol = [], max(exog.shape) * np.finfo(float).eps
    for j in range(1, exog.shape[1]):
        before = exog[:, :j]
        coef = np.linalg.lstsq(before, exog[:, j], rcond=None)[0]
        resid = exog[:, j] - before @ coef
        if np.linalg.norm(resid) <= 1e3 * tol * max(np.linalg.norm(exog[:, j]), 1e-300):
            dependent.append(names[j])
    if dependent:
        rank = np.linalg.matrix_rank(exog)
        raise ModelError(
            f"{formula!r}: the fixed effects are collinear (design rank {rank} < "
            f"{exog.shape[1]}); not estimable: {dependent} (each is a combination of the "
            "terms before it in the formula)"
        )


def _check_random_terms(model, formula: str, groups: str) -> None:
    """Error for a random term that is constant within every group (not identifiable).

    A random slope on a covariate that does not change within any subject (age, sex,
    a group label) gives each subject one value of the covariate: its per-subject
    slope cannot be told apart from the subject's random intercept. lme4 fits such a
    model and reports a singular or non-converged fit; here it is an error before
    fitting, naming the term.
    """
    bad = []
    labels = np.asarray(model.group_labels)
    if model.k_re:
        exog_re = np.asarray(model.exog_re, dtype=float)
        has_intercept = any(np.all(exog_re[:, j] == 1.0) for j in range(exog_re.shape[1]))
        for j, name in enumerate(model.data.exog_re_names):
            col = exog_re[:, j]
            if np.all(col == 1.0) or not has_intercept:
                continue
            if all(np.ptp(col[idx]) == 0 for idx in model.row_indices.values()):
                bad.append(str(name))
    for i, name in enumerate(model.exog_vc.names if model.k_vc else []):
        mats = [np.asarray(m, dtype=float) for m in model.exog_vc.mats[i]]
        if all(m.shape[0] < 2 or np.all(np.ptp(m, axis=0) == 0) for m in mats):
            bad.append(str(name))
    if bad:
        raise ModelError(
            f"{formula!r}: random term(s) {bad} are not identifiable: each is constant "
            f"within every {groups} ({len(labels)} groups), so a per-{groups} slope on it "
            "cannot be separated from the random intercept; keep it as a fixed effect only"
        )


#: a converged fit is trusted without trying the other optimisers when its scaled
#: fixed-effect gradient (score x standard error: log-likelihood change per SE) is
#: below this and no random-effect SD is within ``_NEAR_BOUNDARY`` of zero
_GRADIENT_TOL = 1e-3
#: relative SD (random-effect SD / residual SD) below which a fit is "near the
#: boundary": every optimiser and the zero-variance start are tried
_NEAR_BOUNDARY = 1e-2
#: label of the fit started at zero random-effect variance
_ZERO_START = "zero-variance start"


@dataclass
class _Attempt:
    """One optimiser run: its result (None if it raised) and what it says about itself."""

    method: str
    res: object
    messages: list
    gradient: float = np.inf

    @property
    def usable(self) -> bool:
        """Converged (scipy's test), finite log-likelihood, fixed effects at their optimum."""
        res = self.res
        return (
            res is not None
            and bool(res.converged)
            and bool(np.isfinite(res.llf))
            and self.gradient < _GRADIENT_TOL
        )

    @property
    def loglik(self) -> float:
        return float(self.res.llf) if self.res is not None else np.nan

    def record(self) -> dict:
        return {
            "method": self.method,
            "converged": self.usable,
            "loglik": self.loglik,
            "gradient": self.gradient,
            "warnings": self.messages,
        }


def _fe_gradient(res) -> float:
    """Largest |d loglik / d beta_j| x sigma / ||x_j||: how far the fixed effects are from
    their optimum given the variance parameters, in log-likelihood units per (ordinary
    least-squares) standard error of each coefficient.

    At any optimum it is ~0 (the fixed effects are the GLS solution). statsmodels'
    L-BFGS can stop on the variance boundary with fixed effects that are not (e.g. an
    intercept of exactly 0 with a gradient of -9 per unit): this is how that is seen.
    The OLS standard error is used as the unit, not the fit's own, because the fit's
    own can be absurd (nearly collinear terms) and would inflate the gradient.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = np.asarray(res.model.score(res.params_object, profile_fe=False), float)
    except (np.linalg.LinAlgError, ValueError, AttributeError):
        return np.inf
    exog = np.asarray(res.model.exog, dtype=float)
    norm = np.linalg.norm(exog, axis=0)
    unit = math.sqrt(max(float(res.scale), 0.0)) / np.where(norm > 0, norm, np.inf)
    scaled = np.abs(score[: res.model.k_fe]) * unit
    return float(np.max(scaled)) if scaled.size and np.all(np.isfinite(scaled)) else np.inf


def _fit_once(model, reml: bool, method: str, start=None, label: str | None = None) -> _Attempt:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = model.fit(reml=reml, method=[method], start_params=start)
        except (np.linalg.LinAlgError, ValueError, OverflowError) as err:
            return _Attempt(label or method, None, [f"{type(err).__name__}: {err}"])
    # statsmodels' model warnings (ConvergenceWarning, HessianInversionWarning, ...) are
    # UserWarnings; numerical RuntimeWarnings of intermediate iterates and library
    # deprecation notices say nothing about the fit returned
    messages = []
    for w in caught:
        text = str(w.message).strip()
        if not issubclass(w.category, UserWarning):
            continue
        if text.startswith((_SM_BOUNDARY, _SM_TRANSIENT)) or text in messages:
            continue
        messages.append(text)
    return _Attempt(label or method, res, messages, _fe_gradient(res))


def _relative_sds(res) -> np.ndarray:
    """Random-effect and variance-component SDs divided by the residual SD."""
    scale = float(res.scale)
    parts = []
    if res.model.k_re:
        parts.append(np.diag(np.asarray(res.cov_re, dtype=float)))
    if res.model.k_vc:
        parts.append(np.atleast_1d(np.asarray(res.vcomp, dtype=float)))
    if not parts or not scale > 0:
        return np.array([])
    return np.sqrt(np.clip(np.concatenate(parts), 0, None) / scale)


def _trusted(attempt: _Attempt) -> bool:
    """A fit needing no second opinion: usable, no warning, away from the boundary."""
    if not attempt.usable or attempt.messages:
        return False
    sds = _relative_sds(attempt.res)
    return not (sds.size and np.min(sds) < _NEAR_BOUNDARY)


#: relative variance (random-effect variance / residual variance) of the boundary start
_ZERO_START_VARIANCE = 1e-8


def _zero_variance_start(model):
    """Start values with every random-effect variance at ~zero and OLS fixed effects.

    The start is a profiled one at the boundary: relative variances of
    ``_ZERO_START_VARIANCE`` (statsmodels' likelihood is infinite at exactly zero,
    a known statsmodels problem, and the gradient in its Cholesky parameters vanishes
    there). From it the optimiser either stays on the boundary, giving the best
    boundary fit, or climbs to an interior optimum the other starts missed.
    """
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    exog = np.asarray(model.exog, dtype=float)
    fe = np.linalg.lstsq(exog, np.asarray(model.endog, dtype=float), rcond=None)[0]
    return MixedLMParams.from_components(
        fe_params=fe,
        cov_re=_ZERO_START_VARIANCE * np.eye(model.k_re),
        vcomp=np.full(model.k_vc, _ZERO_START_VARIANCE),
    )


def _best_fit(model, reml: bool, methods: Sequence[str]) -> tuple[_Attempt, list[_Attempt]]:
    """The highest-likelihood fit over the optimisers (see :func:`fit_mixed`, Notes).

    Returns the chosen attempt and every attempt in the order tried.
    """
    attempts = [_fit_once(model, reml, methods[0])]
    if not _trusted(attempts[0]):
        attempts += [_fit_once(model, reml, m) for m in methods[1:]]
        if model.k_re or model.k_vc:
            attempts.append(
                _fit_once(model, reml, methods[0], _zero_variance_start(model), _ZERO_START)
            )
    usable = [a for a in attempts if a.usable]
    if usable:  # highest likelihood; ties (1e-6) go to the earlier optimiser
        top = max(a.loglik for a in usable)
        return next(a for a in usable if a.loglik >= top - 1e-6), attempts
    ran = [a for a in attempts if a.res is not None]
    if not ran:
        return None, attempts
    finite = [a for a in ran if np.isfinite(a.loglik)]
    return (max(finite, key=lambda a: a.loglik) if finite else ran[0]), attempts


def _vc_labels(model, groups: str, vc: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``(grp, var1, lme4 term)`` of each variance component, in statsmodels' order.

    A component whose design is a set of indicators (one 1 per row: a factor nested
    in the groups, e.g. ``0 + C(phase)``) is lme4's ``(1 | groups:name)``; any other
    (e.g. ``0 + Days``, a slope uncorrelated with the intercept) is lme4's
    ``(0 + Days | groups)``, listed under ``groups.1``, ``groups.2``... as lme4 does.
    """
    labels, k = [], 0
    for i, name in enumerate(model.exog_vc.names):
        mats = [np.asarray(m, dtype=float) for m in model.exog_vc.mats[i]]
        nested = all(np.isin(m, (0.0, 1.0)).all() and np.allclose(m.sum(axis=1), 1.0) for m in mats)
        if nested:
            labels.append((f"{groups}:{name}", "(Intercept)", f"(1 | {groups}:{name})"))
        else:
            k += 1
            cols = model.exog_vc.colnames[i][0] if model.exog_vc.colnames[i] else [name]
            var1 = cols[0] if len(cols) == 1 else name
            labels.append((f"{groups}.{k}", str(var1), f"({vc[name]} | {groups})"))
    return labels


def _random_tables(res, groups: str, vc: Mapping[str, str] | None):
    """lme4 VarCorr table, lme4 random terms, whether the fit is singular and why."""
    model = res.model
    vc_labels = _vc_labels(model, groups, vc) if model.k_vc else []
    exog_re = np.asarray(model.exog_re) if model.k_re else np.zeros((0, 0))
    names = []
    for j, name in enumerate(res.cov_re.columns if model.k_re else []):
        is_intercept = exog_re.size and np.allclose(exog_re[:, j], 1.0)
        names.append("(Intercept)" if is_intercept else _lme4_name(name))
    cov = np.asarray(res.cov_re, dtype=float)
    scale = float(res.scale)
    rows, why = [], []
    sds = np.sqrt(np.clip(np.diag(cov), 0, None)) if cov.size else np.array([])
    for j, name in enumerate(names):
        rows.append((str(groups), name, None, cov[j, j], sds[j]))
    for j in range(len(names)):
        for k in range(j + 1, len(names)):
            denom = sds[j] * sds[k]
            corr = cov[j, k] / denom if denom > 0 else np.nan
            rows.append((str(groups), names[j], names[k], cov[j, k], corr))
    vcomp = np.atleast_1d(np.asarray(res.vcomp, dtype=float)) if model.k_vc else []
    for (grp, var1, _), v in zip(vc_labels, vcomp, strict=True):
        rows.append((grp, var1, None, v, math.sqrt(max(v, 0.0))))
    rows.append(("Residual", None, None, scale, math.sqrt(scale)))
    random = pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    # lme4's isSingular: relative Cholesky factor with a ~0 diagonal element
    if len(names):
        rel = cov / scale
        try:
            chol = np.linalg.cholesky(rel)
            small = np.flatnonzero(np.abs(np.diag(chol)) < SINGULAR_TOL)
        except np.linalg.LinAlgError:
            small = np.arange(len(names))
        for j in small:
            if sds[j] / math.sqrt(scale) < SINGULAR_TOL:
                why.append(
                    f"the {groups} {names[j]} variance is estimated at ~0 (SD {sds[j]:.3g} "
                    f"vs residual SD {math.sqrt(scale):.3g})"
                )
            else:
                why.append(
                    f"the {groups} random effects are perfectly correlated (correlation "
                    f"+-1 involving {names[j]})"
                )
    for (grp, var1, _), v in zip(vc_labels, vcomp, strict=True):
        if math.sqrt(max(v, 0.0) / scale) < SINGULAR_TOL:
            why.append(
                f"the {grp} {var1} variance is estimated at ~0 (SD "
                f"{math.sqrt(max(v, 0.0)):.3g} vs residual SD {math.sqrt(scale):.3g})"
            )
    re = "1" if not len(names) else " + ".join("1" if n == "(Intercept)" else n for n in names)
    if len(names) and "(Intercept)" not in names:
        re = "0 + " + re
    terms = ([f"({re} | {groups})"] if len(names) else []) + [t for _, _, t in vc_labels]
    return random, terms, bool(why), why


def fit_mixed(
    data: pd.DataFrame,
    formula: str,
    groups: str,
    re_formula: str | None = None,
    reml: bool = True,
    *,
    vc_formula: Mapping[str, str] | None = None,
    methods: Sequence[str] = OPTIMIZERS,
    inference: str = "satterthwaite",
) -> MixedResult:
    """Fit a linear mixed-effects model and report its state honestly.

    The model is statsmodels ``MixedLM`` (``smf.mixedlm``). The data are checked
    first (columns, missing values, groups, variance, estimable fixed effects,
    identifiable random terms), then fitted in four named steps (check the data ->
    build the model -> fit -> build the result) so that the fit kept is the
    highest-likelihood one (Notes).

    Parameters
    ----------
    data : pandas.DataFrame
        Long-format data, one row per observation. Not modified.
    formula : str
        Fixed effects, patsy syntax: ``"Reaction ~ Days"``, ``"hr ~ 0 + C(session)"``.
    groups : str
        Column of the grouping factor (the subject).
    re_formula : str, optional
        Random effects per group, e.g. ``"~Days"`` (correlated random intercept and
        slope, lme4 ``(Days | Subject)``). Default: a random intercept, ``(1 | groups)``.
    reml : bool, default True
        REML (unbiased variance components; lme4's default) or maximum likelihood
        (needed to compare models with different fixed effects by AIC/BIC/LRT).
    vc_formula : dict, optional
        Extra independent variance components within groups, ``{name: formula}``;
        ``{"phase": "0 + C(phase)"}`` adds lme4's ``(1 | subject:phase)``.
    methods : sequence of str, default :data:`OPTIMIZERS`
        scipy optimisers to try, in order.

    Returns
    -------
    MixedResult
        Fixed effects with 95 % CIs, df and p values (``inference``), random effects in lme4's
        ``VarCorr`` layout, fit statistics and flags.

    Raises
    ------
    ModelError
        Before any fit: a column missing (named), fewer than 2 groups, a response
        that is all NaN, constant or not numeric, too few rows left after dropping
        missing values, a factor level without data, collinear fixed effects.

    Notes
    -----
    statsmodels' optimisers can stop on the variance boundary with a fit they call
    converged whose fixed effects are not at their optimum (e.g. an intercept of
    exactly 0 and a log-likelihood up to ~1 below the optimum). The first optimiser's
    fit is kept only when it converged without a warning, its fixed-effect gradient
    (score x OLS standard error, in log-likelihood units) is below 1e-3 and no random-effect SD is
    within 1 % of the residual SD of zero. Otherwise every optimiser of ``methods``
    is run, plus a start with every random-effect variance at zero (the best boundary
    fit), and the usable fit with the highest log-likelihood is kept (ties within
    1e-6 go to the earlier one); ``.optimizer`` names it and ``.optimizer_gain`` says
    by how much it beat the first. Over 100 data sets of pure noise in 3 groups (the
    case that exposes the problem) every fit is at the best log-likelihood of all
    optimisers (tests).

    Rows with a missing value in any column the model uses are dropped, with a
    warning logged and a flag stating how many. Boundary ("singular") fits follow
    lme4's ``isSingular`` rule (:data:`SINGULAR_TOL`); they are returned with
    ``singular=True`` and a flag.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> subject = np.repeat([f"S{i:02d}" for i in range(8)], 5)
    >>> day = np.tile(np.arange(5.0), 8)
    >>> hr = 60 + np.repeat(rng.normal(0, 6, 8), 5) + 0.8 * day + rng.normal(0, 1, 40)
    >>> fit = fit_mixed(pd.DataFrame({"hr": hr, "day": day, "subject": subject}),
    ...                 "hr ~ day", groups="subject")
    >>> fit.converged, fit.n_groups
    (True, 8)
    >>> bool(abs(fit.fixed.loc["day", "estimate"] - 0.8) < 0.3)
    True
    """
    if inference not in INFERENCE:
        raise ModelError(f"inference must be one of {list(INFERENCE)}, not {inference!r}")
    vc = dict(vc_formula) if vc_formula else None
    frame, flags = _model_frame(data, formula, groups, re_formula, vc)
    model = _build_model(frame, formula, groups, re_formula, vc)
    chosen, attempts = _best_fit(model, reml, list(methods))
    if chosen is None:
        raise ModelError(
            f"{formula!r}: every optimiser failed: "
            + "; ".join(f"{a.method}: {a.messages}" for a in attempts)
        )
    return _build_result(
        model, chosen, attempts, flags, formula=formula, groups=groups,
        re_formula=re_formula, vc=vc, reml=reml, inference=inference,
    )  # fmt: skip


def _model_frame(data, formula, groups, re_formula, vc) -> tuple[pd.DataFrame, list]:
    """Step 1 of :func:`fit_mixed`: check the data, keep the model's complete rows."""
    if not isinstance(data, pd.DataFrame):
        raise ModelError(f"fit_mixed needs a pandas DataFrame, got {type(data).__name__}")
    if not isinstance(formula, str) or "~" not in formula:
        raise ModelError(f"formula must be a string 'response ~ terms', got {formula!r}")
    if not isinstance(groups, str):
        raise ModelError(f"groups must be the name of a column, got {groups!r}")
    formulas = [formula] + ([re_formula] if re_formula else []) + list((vc or {}).values())
    used = _used_columns(data, formulas, groups)
    for name in sorted(_formula_names(formula.split("~", 1)[0])):
        column = data[name]
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            raise ModelError(f"response {name!r} is not numeric (dtype {column.dtype})")
        if column.isna().all():
            raise ModelError(f"response {name!r} is all NaN ({len(column)} rows)")
    flags = []
    frame = data[used]
    missing = frame.isna().any(axis=1)
    if missing.any():
        per_column = {c: int(n) for c, n in frame.isna().sum().items() if n}
        msg = (
            f"dropped {int(missing.sum())} of {len(frame)} rows with missing values "
            f"(per column: {per_column})"
        )
        log.warning("fit_mixed %s: %s", formula, msg)
        flags.append(msg)
        frame = frame.loc[~missing]
    n_groups = frame[groups].nunique()
    if n_groups < 2:
        raise ModelError(
            f"{formula!r}: a mixed model needs at least 2 groups of {groups!r}; "
            f"{n_groups} left ({len(frame)} rows with complete data)"
        )
    return frame.reset_index(drop=True), flags


def _build_model(frame, formula, groups, re_formula, vc):
    """Step 2 of :func:`fit_mixed`: the statsmodels model, its design checked."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = smf.mixedlm(
                formula,
                frame,
                groups=frame[groups],
                # statsmodels drops the random intercept when variance components are
                # given without re_formula; None means a random intercept here
                re_formula="1" if re_formula is None and vc else re_formula,
                vc_formula=vc,
            )
    except Exception as err:  # patsy raises its own PatsyError, ValueError, KeyError...
        raise ModelError(f"cannot build the model {formula!r}: {err}") from None
    endog = np.asarray(model.endog, dtype=float)
    if np.ptp(endog) <= 1e-12 * max(abs(float(np.mean(endog))), 1e-300):
        raise ModelError(
            f"response of {formula!r} has zero variance (all {len(endog)} values equal "
            f"{endog[0]:.6g}): nothing to model"
        )
    _check_design(model, formula)
    _check_random_terms(model, formula, groups)
    return model


def _contrast_test(res, parts, L, alpha: float) -> pd.DataFrame:
    """``L beta`` tested: Satterthwaite t from ``parts`` when given, else Wald z."""
    if parts is not None:
        return parts.test(L, alpha=alpha)
    k = int(res.model.k_fe)
    arr = np.atleast_2d(np.asarray(L, dtype=float))
    if arr.ndim != 2 or arr.shape[1] != k:
        raise ModelError(f"contrast matrix of shape {arr.shape}; expected (k, {k})")
    cov = np.asarray(res.cov_params(), dtype=float)[:k, :k]
    estimate = arr @ np.asarray(res.fe_params, dtype=float)
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.einsum("ij,jk,ik->i", arr, cov, arr))
        t = estimate / se
    q = scipy.stats.norm.ppf(1 - alpha / 2)
    return pd.DataFrame(
        {
            "estimate": estimate,
            "se": se,
            "df": np.inf,
            "t": t,
            "p": 2 * scipy.stats.norm.sf(np.abs(t)),
            "ci_low": estimate - q * se,
            "ci_high": estimate + q * se,
        }
    )


#: a standard error this many times the scale the data give a coefficient is flagged
_SE_RATIO = 1e3


def _quality_flags(model, res, fixed: pd.DataFrame, singular: bool) -> list[str]:
    """Sentences for absurd standard errors and a Hessian that is not negative definite.

    The scale of a coefficient is what the data allow it to be: the response's SD over
    the SD of the term's column (the response's SD and mean for a constant column). A
    standard error ``_SE_RATIO`` times above it means the data do not determine the
    coefficient. The Hessian test uses statsmodels' analytic ``MixedLM.hessian`` of the
    log-likelihood at the estimate; on the boundary it is skipped (the boundary flag
    says why the curvature vanishes there).
    """
    flags = []
    exog = np.asarray(model.exog, dtype=float)
    y = np.asarray(model.endog, dtype=float)
    sd_y = float(np.std(y)) or abs(float(np.mean(y))) or 1.0
    wild = []
    for j, term in enumerate(fixed.index):
        sd_x = float(np.std(exog[:, j]))
        scale = sd_y / sd_x if sd_x > 0 else sd_y + abs(float(np.mean(y)))
        se = float(fixed["se"].iloc[j])
        if np.isfinite(se) and se > _SE_RATIO * scale:
            wild.append(f"{term} (SE {se:.3g} vs a scale of {scale:.3g})")
    if wild:
        flags.append(
            f"standard error(s) more than {_SE_RATIO:.0f} times the scale of the data for "
            f"{', '.join(wild)}: these coefficients are not determined by the data "
            "(nearly collinear terms or too few groups); do not interpret them"
        )
    if not singular:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hess, _ = model.hessian(res.params_object)
            eig = np.linalg.eigvalsh(-(np.asarray(hess) + np.asarray(hess).T) / 2)
            bad = not np.all(np.isfinite(eig)) or eig.min() <= 1e-10 * max(abs(eig.max()), 1e-300)
        except (np.linalg.LinAlgError, ValueError):
            bad = True
        if bad:
            flags.append(
                "the log-likelihood is not curved downwards in every direction at the "
                "estimate (Hessian not positive definite): it is not a proper maximum, the "
                "standard errors are unreliable, and the model is probably richer than "
                "the data support"
            )
    return flags


def _build_result(
    model, chosen, attempts, flags, *, formula, groups, re_formula, vc, reml, inference
):
    """Step 4 of :func:`fit_mixed`: the tables, the flags and the fit statistics."""
    best, first = chosen.res, attempts[0]
    converged = chosen.usable
    flags = list(flags)
    if not converged:
        flags.append(
            f"the fit did not converge (optimisers tried: {[a.method for a in attempts]}); "
            "estimates are unreliable"
        )
        log.warning("fit_mixed %s: the fit did not converge", formula)
    gain = chosen.loglik - first.loglik if np.isfinite(first.loglik) else np.nan
    if chosen is not first:
        log.info(
            "fit_mixed %s: %s kept (log-likelihood %+.3g over %s)",
            formula, chosen.method, gain, first.method,
        )  # fmt: skip
    random, random_terms, singular, why = _random_tables(best, groups, vc)
    messages = chosen.messages
    if singular:  # consequences of the boundary, explained by its own flag below
        messages = [m for m in messages if not m.startswith(_SM_AT_BOUNDARY)]
    elif converged:  # the Hessian is tested below (_quality_flags), in words
        messages = [m for m in messages if not m.startswith(_SM_AT_BOUNDARY[0])]
    flags += [f"statsmodels ({chosen.method}): {m}" for m in messages]
    if singular and converged:
        flags.append(
            "boundary (singular) fit: " + "; ".join(why) + ". The random-effect structure "
            "is richer than the data support; consider a simpler one"
        )
        log.warning("fit_mixed %s: %s", formula, flags[-1])

    fe_names = list(model.exog_names)
    parts = None
    if inference == "satterthwaite" and converged:
        try:
            parts = satterthwaite_parts(best, boundary_tol=SINGULAR_TOL)
        except ModelError as err:
            flags.append(f"no Satterthwaite degrees of freedom ({err}); Wald z used")
        else:
            flags += [
                f"Satterthwaite df: {n}" for n in parts.notes if "held fixed" not in n
            ]  # boundary parameters held fixed are explained by the boundary flag
    elif inference == "satterthwaite":
        flags.append("the fit did not converge: Wald z inference, not Satterthwaite")
    method = INFERENCE["satterthwaite"] if parts is not None else INFERENCE["wald"]
    with warnings.catch_warnings():  # sqrt of a negative variance: NaN, flagged below
        warnings.simplefilter("ignore", RuntimeWarning)
        fixed = _contrast_test(best, parts, np.eye(len(fe_names)), 0.05)
    fixed.index = pd.Index(fe_names, name="term")
    fixed = fixed[["estimate", "se", "df", "t", "ci_low", "ci_high", "p"]]
    no_se = list(fixed.index[~np.isfinite(fixed["se"])])
    if no_se:
        flags.append(f"no standard error (NaN) for {no_se}: the information matrix is singular")
    if converged:
        flags += _quality_flags(model, best, fixed, singular)
    sd_names = [
        f"{g} {v1}" if pd.isna(v2) else f"{g} cor({v1},{v2})"
        for g, v1, v2 in random[["grp", "var1", "var2"]].itertuples(index=False)
    ]
    sd_names[-1] = "Residual"
    random_sd = pd.Series(random["sdcor"].to_numpy(dtype=float), index=sd_names, name="sdcor")
    residual_var = float(best.scale)
    if model.k_re == 1 and not model.k_vc and re_formula in (None, "1", "~1", "~ 1"):
        intercept_var = float(random["vcov"].iloc[0])
        icc = intercept_var / (intercept_var + residual_var)
    else:
        icc = float("nan")
    if reml:
        aic = bic = float("nan")
    else:
        k = model.k_fe + model.k_re2 + model.k_vc + 1
        aic = -2.0 * float(best.llf) + 2.0 * k
        bic = -2.0 * float(best.llf) + k * math.log(model.nobs)
    return MixedResult(
        formula=formula,
        re_formula=re_formula,
        vc_formula=vc,
        groups=groups,
        reml=bool(reml),
        fixed=fixed,
        random=random,
        random_sd=random_sd,
        residual_sd=math.sqrt(residual_var),
        icc=icc,
        n_obs=int(model.nobs),
        n_groups=int(model.n_groups),
        loglik=float(best.llf),
        aic=aic,
        bic=bic,
        converged=converged,
        singular=bool(singular),
        flags=flags,
        optimizer=chosen.method,
        optimizer_gain=float(gain) if chosen is not first else 0.0,
        attempts=[a.record() for a in attempts],
        random_terms=tuple(random_terms),
        model=best,
        inference=method,
        _satterthwaite=parts,
    )


# --------------------------------------------------------------------------------------
# phase_contrasts


def holm_adjust(p) -> np.ndarray:
    """Holm's step-down adjusted p values.

    Identical to ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]``
    (the tests check it), without the ``gc.collect()`` that statsmodels runs on every
    Holm call, which costs ~0.1 s in a process holding pandas/statsmodels/HoloViews --
    more than the mixed-model fit itself, and thousands of times over in a power
    simulation.

    Parameters
    ----------
    p : array_like
        Raw p values (NaN not allowed).

    Returns
    -------
    numpy.ndarray
        Adjusted p values, same order: sorted ``p_(i) * (m - i)`` (``i`` from 0),
        made non-decreasing by a running maximum, capped at 1.

    Examples
    --------
    >>> holm_adjust([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.maximum.accumulate(p[order] * np.arange(m, 0, -1))
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def _quantile(df, alpha: float = 0.05) -> np.ndarray:
    """Two-sided ``1 - alpha`` quantile of Student's t with ``df`` (normal for inf)."""
    df = np.asarray(df, dtype=float)
    return np.where(np.isinf(df), scipy.stats.norm.ppf(1 - alpha / 2),
                    scipy.stats.t.ppf(1 - alpha / 2, np.where(np.isinf(df), 1.0, df)))  # fmt: skip


def _quote(name: str) -> str:
    return name if name.isidentifier() and not keyword.iskeyword(name) else f"Q({name!r})"


def phase_contrasts(
    table: pd.DataFrame,
    feature: str,
    epoch: str = "supine",
    levels: Sequence[str] | None = None,
    covariates: Sequence[str] | None = None,
    random_slope: bool = False,
    *,
    inference: str = "satterthwaite",
) -> PhaseContrasts:
    """Change of a feature at each in-flight and post-flight session vs pre-flight.

    Fits ``feature ~ 0 + timepoint [+ covariates]`` with a random intercept per
    subject (lme4: ``feature ~ 0 + timepoint + (1 | subject)``) to the rows of one
    epoch, one fixed mean per timepoint (session label). Each in-flight and
    post-flight timepoint is then contrasted with the mean of the pre-flight
    timepoint means, the contrast vector applied to the fixed effects
    (:meth:`MixedResult.test`: Student t with Satterthwaite df by default, 95 % CI);
    p values are Holm-adjusted across the contrasted timepoints (:func:`holm_adjust`).

    Parameters
    ----------
    table : pandas.DataFrame
        The features table (:func:`cardiolab.pipeline.features_table`): columns
        ``subject``, ``session``, ``phase``, ``day``, ``epoch`` and the feature;
        units in ``table.attrs["units"]``. Not modified.
    feature : str
        The feature column, e.g. ``"hr"``.
    epoch : str, default "supine"
        Protocol epoch whose rows are modelled.
    levels : sequence of str, optional
        Timepoints to model, in order. Default: every session of the epoch, ordered
        by phase (pre < in < post) then day. Rows of other sessions are left out.
    covariates : sequence of str, optional
        Extra fixed effects, columns merged into ``table`` by the caller (e.g.
        ``["sex"]``; strings are treated as factors). The baseline is averaged over
        the covariates as observed; contrasts are within-covariate differences.
    random_slope : bool, default False
        Also let each subject deviate from the population by phase: lme4
        ``(1 | subject) + (1 | subject:phase)``, a random slope on the phase
        indicators with one shared variance (the "random subject x phase term" of
        NASA analyses). Use it when subjects respond differently to flight; with
        few subjects the extra variance is often estimated at zero (flagged).
    inference : {"satterthwaite", "wald"}, default "satterthwaite"
        Student t with Satterthwaite degrees of freedom (lmerTest's default), or
        Wald z (statsmodels'); named in ``.inference``.

    Returns
    -------
    PhaseContrasts
        ``.table`` indexed by timepoint with the change in feature units and in
        percent of the pre-flight mean, CIs, raw and Holm p values; ``.baseline``.

    Raises
    ------
    ModelError
        Before any fit, from :func:`cardiolab.stats.table.check_features_table`
        (messages start with the feature and epoch and name the column): feature not
        in the table (close names listed), epoch absent, a covariate column missing,
        all NaN, fewer than 2 subjects, a constant feature, no pre-flight or no
        in-flight/post-flight session; a requested level without data; an unknown
        ``inference``.

    Notes
    -----
    Percent change is ``100 * change / baseline`` with its CI by the delta method
    on the ratio, using the joint covariance of the change and the baseline (so the
    uncertainty of the pre-flight mean is included); with a baseline far from zero
    it is close to the absolute CI divided by the baseline. A timepoint measured in
    a single subject is estimated (its mean rests on the random-effects model) but
    flagged.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> sessions = {"L-60": ("pre", -60, 0.0), "L-30": ("pre", -30, 0.0),
    ...             "R+0": ("post", 0, 10.0), "R+3": ("post", 3, 3.0)}
    >>> rows = [dict(subject=f"S{i:02d}", session=s, phase=p, day=d, epoch="supine",
    ...              hr=60 + 6 * z + shift + rng.normal(0, 2))
    ...         for i, z in enumerate(rng.normal(size=8))
    ...         for s, (p, d, shift) in sessions.items()]
    >>> res = phase_contrasts(pd.DataFrame(rows), "hr")
    >>> list(res.table.index)
    ['R+0', 'R+3']
    >>> bool(res.table.loc["R+0", "ci_low"] < 10 < res.table.loc["R+0", "ci_high"])
    True
    """
    if inference not in INFERENCE:
        raise ModelError(
            f"phase_contrasts({feature!r}): inference must be one of {list(INFERENCE)}, "
            f"not {inference!r}"
        )
    checked = check_features_table(
        table, feature, epoch, covariates=covariates or (), require_pre=True, require_change=True
    )
    covariates = [str(c) for c in covariates or ()]
    rows = checked.rows
    levels, pre, contrasted = _contrast_levels(rows, levels, feature, epoch)
    rows = rows.loc[rows["session"].isin(levels)]
    fit = _contrast_model(rows, feature, levels, covariates, random_slope, inference)
    table_, baseline, baseline_se = _contrast_table(fit, rows, levels, pre, contrasted)
    flags = list(checked.flags) + list(fit.flags)
    own = []
    subjects_at = rows.groupby("session")["subject"].nunique()
    single = [v for v in levels if int(subjects_at.get(v, 0)) == 1]
    if single:
        own.append(
            f"timepoint(s) {single} measured in a single subject: their means rest on "
            "the random-intercept model, not on a cohort"
        )
    if abs(baseline) < 2 * baseline_se:
        own.append(
            f"pre-flight mean {baseline:.3g} is within 2 SE of zero: percent changes are "
            "not meaningful"
        )
    for f in own:
        log.warning("phase_contrasts %s/%s: %s", feature, epoch, f)
    return PhaseContrasts(
        table=table_,
        baseline=baseline,
        baseline_se=baseline_se,
        pre_sessions=pre,
        feature=str(feature),
        epoch=str(epoch),
        units=checked.units,
        model=fit,
        converged=fit.converged,
        flags=flags + own,
        inference=fit.inference,
    )


def _contrast_levels(rows, levels, feature, epoch) -> tuple[list, list, list]:
    """Step 2 of :func:`phase_contrasts`: the timepoints, the pre-flight ones, the others."""
    if levels is None:
        levels = schedule_order(rows)
    else:
        levels = [str(v) for v in levels]
        dup = sorted({v for v in levels if levels.count(v) > 1})
        if dup:
            raise ModelError(f"{feature!r} in epoch {epoch!r}: levels repeat {dup}")
        empty = [v for v in levels if v not in set(rows["session"])]
        if empty:
            raise ModelError(
                f"{feature!r} in epoch {epoch!r}: requested level(s) {empty} have no "
                f"{feature!r} data; sessions with data: {schedule_order(rows)}"
            )
        left_out = sorted(set(rows["session"]) - set(levels))
        if left_out:
            log.info(
                "phase_contrasts %s/%s: sessions not in levels left out: %s",
                feature, epoch, left_out,
            )  # fmt: skip
    phase_of = rows.groupby("session")["phase"].first()
    pre = [v for v in levels if phase_of[v] == "pre"]
    if not pre:
        raise ModelError(
            f"{feature!r} in epoch {epoch!r}: no pre-flight session among the timepoints "
            f"{levels}: the contrasts need a baseline"
        )
    contrasted = [v for v in levels if phase_of[v] != "pre"]
    if not contrasted:
        raise ModelError(
            f"{feature!r} in epoch {epoch!r}: no in-flight or post-flight session among "
            f"the timepoints {levels}: nothing to contrast with the baseline"
        )
    if rows.loc[rows["session"].isin(levels), "subject"].nunique() < 2:
        raise ModelError(
            f"{feature!r} in epoch {epoch!r}: 1 subject with data at the timepoints "
            f"{levels}; phase contrasts need at least 2"
        )
    return levels, pre, contrasted


def _contrast_model(rows, feature, levels, covariates, random_slope, inference) -> MixedResult:
    """Step 3 of :func:`phase_contrasts`: one fixed mean per timepoint, random intercept."""
    data = rows.assign(timepoint=pd.Categorical(rows["session"], categories=levels))
    terms = " + ".join(_quote(c) for c in covariates)
    formula = f"{_quote(feature)} ~ 0 + timepoint" + (f" + {terms}" if terms else "")
    vc = {"phase": "0 + C(phase)"} if random_slope else None
    return fit_mixed(data, formula, groups="subject", vc_formula=vc, inference=inference)


def _contrast_table(fit, rows, levels, pre, contrasted) -> tuple[pd.DataFrame, float, float]:
    """Step 4 of :func:`phase_contrasts`: the contrasts, in units and percent, and the
    pre-flight mean with its SE."""
    names = list(fit.fixed.index)
    index = {name: j for j, name in enumerate(names)}
    k = len(names)
    pre_vec = np.zeros(k)
    for v in pre:
        pre_vec[index[f"timepoint[{v}]"]] = 1.0 / len(pre)
    baseline_vec = pre_vec.copy()
    exog = np.asarray(fit.model.model.exog, dtype=float)
    for j, name in enumerate(names):
        if not name.startswith("timepoint["):
            baseline_vec[j] = exog[:, j].mean()
    contrast = np.zeros((len(contrasted), k))
    for i, v in enumerate(contrasted):
        contrast[i, index[f"timepoint[{v}]"]] = 1.0
        contrast[i] -= pre_vec
    test = fit.test(np.vstack([contrast, baseline_vec]))
    change, base = test.iloc[:-1], test.iloc[-1]
    estimate = change["estimate"].to_numpy(dtype=float)
    baseline, baseline_se = float(base["estimate"]), float(base["se"])
    # percent change 100 d / b: delta method on the ratio, from the joint covariance of
    # (d, b); its gradient in beta is (c / b - d beta_b / b^2), a contrast of its own
    # whose degrees of freedom the inference method gives
    ratio = estimate / baseline
    gradient = contrast / baseline - np.outer(ratio, baseline_vec) / baseline
    percent = fit.test(gradient)
    q = _quantile(percent["df"].to_numpy(dtype=float))
    se_ratio = percent["se"].to_numpy(dtype=float)
    phase_of = rows.groupby("session")["phase"].first()
    day_of = rows.groupby("session")["day"].first().astype(float)
    n = rows.groupby("session").size()
    out = pd.DataFrame(
        {
            "phase": [phase_of[v] for v in contrasted],
            "day": [float(day_of[v]) for v in contrasted],
            "n": [int(n.get(v, 0)) for v in contrasted],
            "estimate": estimate,
            "se": change["se"].to_numpy(dtype=float),
            "df": change["df"].to_numpy(dtype=float),
            "ci_low": change["ci_low"].to_numpy(dtype=float),
            "ci_high": change["ci_high"].to_numpy(dtype=float),
            "percent": 100 * ratio,
            "percent_low": 100 * (ratio - q * se_ratio),
            "percent_high": 100 * (ratio + q * se_ratio),
            "p": change["p"].to_numpy(dtype=float),
            "p_holm": holm_adjust(change["p"].to_numpy(dtype=float)),
        },
        index=pd.Index(contrasted, name="timepoint"),
    )[_CONTRAST_COLUMNS]
    return out, baseline, baseline_se
