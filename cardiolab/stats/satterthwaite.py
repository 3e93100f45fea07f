"""Satterthwaite degrees of freedom for the fixed effects of a statsmodels ``MixedLM`` fit.

statsmodels reports Wald z tests for mixed models; with the 4-12 subjects of flight
studies their intervals are too narrow. This module gives each linear combination
``l' beta`` of the fixed effects a t distribution with Satterthwaite's (1946)
degrees of freedom, computed as lmerTest does (Kuznetsova, Brockhoff & Christensen
2017, *J. Stat. Softw.* 82(13), section 3; Giesbrecht & Burns 1985, *Biometrics*
41:477-486)::

    df = 2 (l' C l)^2 / (g' A g),      g_j = l' (dC / dphi_j) l

where ``C(phi) = (X' V^-1 X)^-1`` is the covariance of the fixed effects as a
function of the variance parameters ``phi`` and ``A`` the asymptotic covariance of
``phi``: the inverse of the observed information of the log-likelihood the model
was fitted with (REML or ML), the fixed effects profiled out.

``phi`` is taken on the variance scale: the elements of the random-effect covariance
matrix ``G`` (variances and covariances), the variance components and the residual
variance ``sigma^2``. ``V = sum_j phi_j V_j`` is then linear in ``phi`` and every
derivative is analytic (Searle, Casella & McCulloch 1992, *Variance Components*,
ch. 6), with ``P = V^-1 - V^-1 X C X' V^-1``::

    dC/dphi_j = C X' V^-1 V_j V^-1 X C
    I_jk      = -1/2 tr(P V_j P V_k) + y' P V_j P V_k P y      (REML)
    I_jk      = -1/2 tr(V^-1 V_j V^-1 V_k) + y' P V_j P V_k P y (ML)

lmerTest differentiates numerically in its own parameters (the relative Cholesky
factor of ``G`` and ``sigma``); at an interior optimum ``df`` does not depend on the
parameterisation (``g' A g`` is the delta-method variance of ``l' C l``), so both
give the same number: the test suite checks lmerTest's summary of the sleepstudy.
Everything is computed per subject (``V`` is block diagonal), batched over subjects
padded to one size, with ``V^-1`` by the Woodbury identity (small ``r x r`` solves,
``r`` the random effects per subject): about 1 ms for 80 rows in 8 subjects (2 ms
with the table), 5 ms for 1000 rows in 40-100 subjects, 16 ms in 10 subjects of 100
rows (the cost grows with the cube of a subject's rows).

Why hand-written: no maintained Python library computes Satterthwaite degrees of
freedom for statsmodels' ``MixedLM``: statsmodels reports z tests only (its issue
#2620); pymer4 calls R's lmerTest through rpy2 (an R installation). The ``mixedlm``
package (PyPI, lme4-style fits with a Rust core, version 1.3.0 examined) computes
Satterthwaite df for its own model objects only, not for statsmodels results; on the
sleepstudy and on an unbalanced subject:phase model its df equal ours to 3 decimals.

Kenward-Roger is not provided, for want of a library to trust: statsmodels has none,
pymer4 needs R (pbkrtest), and ``mixedlm``'s ``kenward_roger_df`` (1.3.0) rescales
its Satterthwaite df by a finite-difference factor instead of computing Kenward &
Roger's (1997, *Biometrics* 53:983-997) bias-adjusted covariance of ``beta`` and its
moment-matched denominator df; on the designs we tried it returned the Satterthwaite
numbers unchanged. Written by hand it would be a second, larger body of numerics
(second derivatives of ``V``, the ``Q_ij``/``R_ij`` terms) with no reference to test
against here. For the one-degree-of-freedom contrasts cardiolab reports the two
methods give similar Type I error rates (Luke 2017, *Behav. Res. Methods*
49:1494-1502), and Satterthwaite is lmerTest's default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.special
from statsmodels.regression.mixed_linear_model import MixedLM

from ..errors import ModelError

__all__ = [
    "SatterthwaiteParts",
    "satterthwaite",
    "satterthwaite_fixed",
    "satterthwaite_parts",
]

#: columns of the tables returned by :func:`satterthwaite`
COLUMNS = ["estimate", "se", "df", "t", "p", "ci_low", "ci_high"]

#: default tolerance for a variance "estimated at zero": a random-effect or
#: variance-component SD below this fraction of the residual SD (lme4's ``isSingular``
#: rule; ``cardiolab.stats.mixed.SINGULAR_TOL`` is this value)
BOUNDARY_TOL = 1e-4


# --------------------------------------------------------------------------------------
# the model's design, per group (the only place that reads statsmodels' model layout)


@dataclass(frozen=True)
class _Design:
    """Padded per-group arrays of a MixedLM model.

    ``x`` (g, n, p), ``y`` (g, n), ``mask`` (g, n) True on real rows (padded rows are
    all zero); ``u`` (g, n, r) the random-effect designs side by side (``exog_re``,
    then each variance component's columns); ``gamma_basis`` (m - 1, r, r) such that
    the random effects' covariance is ``Gamma = sum_j phi_j gamma_basis_j``; ``basis``
    (m, g, n, n) ``dV/dphi_j`` (``u gamma_basis_j u'``, then ``diag(mask)`` for the
    residual variance), so that ``V = sigma^2 I + u Gamma u'`` (``sigma^2`` on padded
    rows too).
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    u: np.ndarray
    gamma_basis: np.ndarray
    basis: np.ndarray
    names: tuple
    n_obs: int


def _group_blocks(model) -> tuple[list, list, list, list]:
    """Per-group rows of a statsmodels ``MixedLM``: ``X_i``, ``y_i``, ``Z_i``, ``[M_ik]``.

    Reads ``model.exog``, ``endog``, ``exog_re``, ``row_indices``, ``group_labels`` and
    ``exog_vc.mats`` (statsmodels' ``VCSpec``: ``mats[k][i]`` is the design of variance
    component ``k`` in group ``i``, rows in ``row_indices`` order). This is the one
    function that depends on statsmodels' model layout; the log-likelihood check of
    the tests (ours equals ``result.llf``) guards it.
    """
    exog = np.asarray(model.exog, dtype=float)
    endog = np.asarray(model.endog, dtype=float)
    exog_re = np.asarray(model.exog_re, dtype=float) if model.k_re else None
    xs, ys, zs, ms = [], [], [], []
    for i, label in enumerate(model.group_labels):
        rows = np.asarray(model.row_indices[label])
        xs.append(exog[rows])
        ys.append(endog[rows])
        zs.append(exog_re[rows] if exog_re is not None else np.zeros((len(rows), 0)))
        ms.append([np.asarray(model.exog_vc.mats[k][i], dtype=float) for k in range(model.k_vc)])
    return xs, ys, zs, ms


def _design(model, re_names: list) -> _Design:
    xs, ys, zs, ms = _group_blocks(model)
    g, p = len(xs), xs[0].shape[1]
    sizes = np.array([len(y) for y in ys])
    n = int(sizes.max())
    k_re, k_vc = int(model.k_re), int(model.k_vc)
    widths = [max(m[k].shape[1] for m in ms) for k in range(k_vc)]
    starts = np.cumsum([k_re, *widths])
    r = int(starts[-1])
    x = np.zeros((g, n, p))
    y = np.zeros((g, n))
    u = np.zeros((g, n, r))
    mask = np.arange(n)[None, :] < sizes[:, None]
    for i in range(g):
        x[i, : sizes[i]] = xs[i]
        y[i, : sizes[i]] = ys[i]
        u[i, : sizes[i], :k_re] = zs[i]
        for k in range(k_vc):
            u[i, : sizes[i], starts[k] : starts[k] + ms[i][k].shape[1]] = ms[i][k]

    gamma_basis, names = [], []
    for a in range(k_re):
        for b in range(a + 1):
            e = np.zeros((r, r))
            e[a, b] = e[b, a] = 1.0
            gamma_basis.append(e)
            names.append(f"var({re_names[a]})" if a == b else f"cov({re_names[b]},{re_names[a]})")
    for k in range(k_vc):
        e = np.zeros((r, r))
        cols = np.arange(starts[k], starts[k] + widths[k])
        e[cols, cols] = 1.0
        gamma_basis.append(e)
        names.append(f"var({model.exog_vc.names[k]})")
    gamma_basis = np.stack(gamma_basis) if gamma_basis else np.zeros((0, r, r))
    basis = np.concatenate(
        [
            np.einsum("gar,jrs,gbs->jgab", u, gamma_basis, u, optimize=True),
            np.einsum("ga,ab->gab", mask.astype(float), np.eye(n))[None],
        ]
    )
    return _Design(x, y, mask, u, gamma_basis, basis, (*names, "var(Residual)"), int(sizes.sum()))


def _varpar(cov_re: np.ndarray, vcomp: np.ndarray, scale: float) -> np.ndarray:
    """The fitted variance parameters, in the order of :func:`_design`'s basis."""
    values = [cov_re[a, b] for a in range(cov_re.shape[0]) for b in range(a + 1)]
    return np.array([*values, *vcomp, scale], dtype=float)


# --------------------------------------------------------------------------------------
# the numerical core


def _gls(design: _Design, phi: np.ndarray) -> dict:
    """V^-1, C, beta, the residual and log-likelihood pieces at ``phi``.

    Raises ``numpy.linalg.LinAlgError`` where ``V`` is not positive definite.
    """
    sigma2 = float(phi[-1])
    if not sigma2 > 0:
        raise np.linalg.LinAlgError("residual variance not positive")
    g, n = design.mask.shape
    gamma = np.einsum("j,jab->ab", phi[:-1], design.gamma_basis)
    v = np.einsum("gar,rs,gbs->gab", design.u, gamma, design.u) + sigma2 * np.eye(n)
    chol = np.linalg.cholesky(v)  # the positive-definiteness check, and log|V|
    n_pad = g * n - design.n_obs
    logdet_v = 2.0 * float(np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2))))
    logdet_v -= n_pad * math.log(sigma2)
    # Woodbury: V^-1 = (I - U Gamma (sigma^2 I + U'U Gamma)^-1 U') / sigma^2, valid for a
    # singular Gamma (boundary fits); small r x r solves instead of n x n inverses
    r = design.u.shape[2]
    utu = design.u.transpose(0, 2, 1) @ design.u
    k = gamma @ np.linalg.solve(sigma2 * np.eye(r) + utu @ gamma, design.u.transpose(0, 2, 1))
    w = (np.eye(n) - design.u @ k) / sigma2
    w = 0.5 * (w + w.transpose(0, 2, 1))
    wx = w @ design.x
    xtwx = np.einsum("gap,gaq->pq", design.x, wx)
    chol_x = np.linalg.cholesky(xtwx)
    c = np.linalg.inv(xtwx)
    c = 0.5 * (c + c.T)
    wy = np.einsum("gab,gb->ga", w, design.y)
    beta = c @ np.einsum("gap,ga->p", design.x, wy)
    resid = design.y - np.einsum("gap,p->ga", design.x, beta)
    e = np.einsum("gab,gb->ga", w, resid)  # P y, per group
    return {
        "w": w,
        "wx": wx,
        "c": c,
        "beta": beta,
        "e": e,
        "rpr": float(np.sum(resid * e)),
        "logdet_v": logdet_v,
        "logdet_xtwx": 2.0 * float(np.sum(np.log(np.diag(chol_x)))),
    }


def _loglik(design: _Design, gls: dict, reml: bool) -> float:
    n, p = design.n_obs, design.x.shape[2]
    if reml:
        return -0.5 * (
            (n - p) * math.log(2 * math.pi) + gls["logdet_v"] + gls["logdet_xtwx"] + gls["rpr"]
        )
    return -0.5 * (n * math.log(2 * math.pi) + gls["logdet_v"] + gls["rpr"])


def _derivatives(design: _Design, gls: dict, reml: bool):
    """Score, observed and expected information, and dC/dphi, all parameters.

    Returns ``score`` (m,), ``observed`` (m, m), ``expected`` (m, m), ``jac`` (m, p, p).
    """
    basis, w, wx, c, e = design.basis, gls["w"], gls["wx"], gls["c"], gls["e"]
    q = w[None] @ basis  # V^-1 V_j per group, (m, g, n, n)
    dwx = basis @ wx[None]  # V_j V^-1 X, (m, g, n, p)
    b = np.einsum("gap,jgaq->jpq", wx, dwx)  # X' V^-1 V_j V^-1 X, (m, p, p)
    jac = c[None] @ b @ c[None]  # dC/dphi_j
    tr_w = np.einsum("jgab,kgba->jk", q, q)  # sum_i tr(W V_j W V_k)
    if reml:
        wdwx = w[None] @ dwx
        d = np.einsum("jgap,kgaq->jkpq", dwx, wdwx)
        cb = c[None] @ b  # (m, p, p)
        trace = tr_w - 2.0 * np.einsum("pq,jkqp->jk", c, d) + np.einsum("jpq,kqp->jk", cb, cb)
        tr_pv = np.einsum("jgaa->j", q) - np.einsum("jpp->j", cb)
    else:
        trace = tr_w
        tr_pv = np.einsum("jgaa->j", q)
    # y' P V_j P V_k P y = f_j' P f_k with f_j = V_j P y
    f = np.einsum("jgab,gb->jga", basis, e)
    pf = np.einsum("gab,jgb->jga", w, f) - np.einsum(
        "gap,pq,jq->jga", wx, c, np.einsum("gap,jga->jp", wx, f)
    )
    quad = np.einsum("jga,kga->jk", f, pf)
    score = -0.5 * tr_pv + 0.5 * np.einsum("jga,ga->j", f, e)
    observed = -0.5 * trace + quad
    expected = 0.5 * trace
    sym = lambda m: 0.5 * (m + m.T)  # noqa: E731
    return score, sym(observed), sym(expected), jac


def _positive_definite(m: np.ndarray) -> bool:
    if m.size == 0:
        return True
    eig = np.linalg.eigvalsh(m)
    return bool(np.all(np.isfinite(eig)) and eig.min() > 1e-10 * max(eig.max(), 0.0))


def _boundary(names, cov_re, vcomp, scale, tol) -> tuple[np.ndarray, list]:
    """Which variance parameters are free, and notes on those held fixed.

    A random effect whose SD is below ``tol`` times the residual SD is held fixed with
    its covariances; likewise a variance component. Perfectly correlated random
    effects (relative covariance not of full rank) are noted, not fixed.
    """
    k_re = cov_re.shape[0]

    def pos(a, b):  # index of G[a, b] in phi (lower triangle, row by row)
        a, b = max(a, b), min(a, b)
        return a * (a + 1) // 2 + b

    free = np.ones(len(names), dtype=bool)
    notes = []
    rel_sd = lambda v: math.sqrt(max(float(v), 0.0) / scale)  # noqa: E731
    zero_re = [a for a in range(k_re) if rel_sd(cov_re[a, a]) < tol]
    for a in zero_re:
        for b in range(k_re):
            free[pos(a, b)] = False
        notes.append(
            f"{names[pos(a, a)]} estimated at ~0 (SD {math.sqrt(max(cov_re[a, a], 0)):.3g} "
            f"vs residual SD {math.sqrt(scale):.3g}): held fixed, with its covariances"
        )
    for k, v in enumerate(vcomp):
        if rel_sd(v) < tol:
            j = k_re * (k_re + 1) // 2 + k
            free[j] = False
            notes.append(
                f"{names[j]} estimated at ~0 (SD {math.sqrt(max(v, 0)):.3g} vs residual SD "
                f"{math.sqrt(scale):.3g}): held fixed"
            )
    keep = [a for a in range(k_re) if a not in zero_re]
    if len(keep) > 1:
        try:
            chol = np.linalg.cholesky(cov_re[np.ix_(keep, keep)] / scale)
            perfect = bool(np.any(np.abs(np.diag(chol)) < tol))
        except np.linalg.LinAlgError:
            perfect = True
        if perfect:
            notes.append(
                "random effects perfectly correlated (correlation +-1): their covariance "
                "matrix is on its boundary; the df treat its elements as unconstrained"
            )
    return free, notes


# --------------------------------------------------------------------------------------
# public API


@dataclass(frozen=True, eq=False)
class SatterthwaiteParts:
    """Everything Satterthwaite's degrees of freedom need, computed once per fit.

    Built by :func:`satterthwaite_parts`; its :meth:`df` and :meth:`test` then serve
    any number of contrasts, including the gradient of a derived quantity (a percent
    change by the delta method: pass the gradient as a row of ``L``).

    Attributes
    ----------
    names : tuple of str
        Fixed-effect names (patsy), length ``p``.
    beta : numpy.ndarray, shape (p,)
        Fixed effects, generalised least squares at the fitted variance parameters
        (equal to ``result.fe_params``), in the response's units.
    cov_beta : numpy.ndarray, shape (p, p)
        ``C = (X' V^-1 X)^-1``, their covariance (lme4's ``vcov``).
    varpar : pandas.Series
        Every variance parameter ``phi`` at the estimate, on the variance scale:
        ``var(Intercept)``, ``cov(Intercept,Days)``, ``var(Days)`` (the random-effect
        covariance ``G``, lower triangle), ``var(<component>)`` per variance
        component, ``var(Residual)``; units: response units squared (times the
        covariates' units for slopes).
    free : numpy.ndarray of bool, shape (m,)
        Which of ``varpar`` enter the degrees of freedom; those estimated on the
        boundary (see ``notes``) are held fixed.
    jacobian : numpy.ndarray, shape (m_free, p, p)
        ``dC / dphi_j`` for the free parameters.
    information : numpy.ndarray, shape (m_free, m_free)
        The information matrix used (``information_kind``) of the free parameters.
    cov_varpar : numpy.ndarray, shape (m_free, m_free)
        ``A``, its inverse: the asymptotic covariance of the free ``phi``.
    score : numpy.ndarray, shape (m,)
        Gradient of the log-likelihood in ``phi`` at the estimate (about 0 for
        interior parameters of a converged fit).
    information_kind : str
        ``"observed"`` (lmerTest's choice) or ``"expected"`` (fallback when the
        observed information is not positive definite).
    reml : bool
        REML (True) or ML fit; the log-likelihood differentiated matches it.
    loglik : float
        Our log-likelihood at the estimate (equals ``result.llf``).
    n_obs : int
        Observations in the fit.
    notes : tuple of str
        Parameters held fixed, fallbacks taken: every departure from lmerTest's
        computation, in words.
    """

    names: tuple
    beta: np.ndarray
    cov_beta: np.ndarray
    varpar: pd.Series
    free: np.ndarray
    jacobian: np.ndarray
    information: np.ndarray
    cov_varpar: np.ndarray
    score: np.ndarray
    information_kind: str
    reml: bool
    loglik: float
    n_obs: int
    notes: tuple
    _design: _Design

    def _contrasts(self, L) -> tuple[np.ndarray, list]:
        p = len(self.names)
        labels = None
        if isinstance(L, pd.DataFrame):
            if [str(c) for c in L.columns] != [str(n) for n in self.names]:
                raise ModelError(
                    f"contrast columns {list(map(str, L.columns))} do not match the fixed "
                    f"effects {list(self.names)}"
                )
            labels = [str(i) for i in L.index]
        elif isinstance(L, pd.Series):
            if [str(c) for c in L.index] != [str(n) for n in self.names]:
                raise ModelError(
                    f"contrast index {list(map(str, L.index))} does not match the fixed "
                    f"effects {list(self.names)}"
                )
            labels = [str(L.name) if L.name is not None else "0"]
        try:
            arr = np.asarray(L, dtype=float)
        except (TypeError, ValueError) as err:
            raise ModelError(f"contrast matrix L is not numeric: {err}") from None
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != p or arr.shape[0] == 0:
            raise ModelError(
                f"contrast matrix L must have shape (k, {p}) or ({p},) over the fixed "
                f"effects {list(self.names)}; got shape {np.shape(L)}"
            )
        if not np.all(np.isfinite(arr)):
            raise ModelError("contrast matrix L has NaN or infinite entries")
        return arr, labels or [str(i) for i in range(arr.shape[0])]

    def df(self, L) -> np.ndarray:
        """Satterthwaite degrees of freedom of each contrast ``L[i] @ beta``.

        Parameters
        ----------
        L : array_like, shape (k, p) or (p,)
            Contrast rows over the fixed effects (order :attr:`names`).

        Returns
        -------
        numpy.ndarray, shape (k,)
            ``2 (l' C l)^2 / (g' A g)``; ``inf`` where ``g' A g`` is 0 (the variance
            of ``l' beta`` does not depend on any free variance parameter). Not
            clipped (as lmerTest).

        Raises
        ------
        ModelError
            ``L`` of the wrong shape (the message gives the expected and the given
            shapes), not numeric, or not finite.
        """
        arr, _ = self._contrasts(L)
        return self._df(arr)

    def _df(self, arr: np.ndarray) -> np.ndarray:
        var = np.einsum("kp,pq,kq->k", arr, self.cov_beta, arr)
        grad = np.einsum("kp,jpq,kq->kj", arr, self.jacobian, arr)
        var_var = np.einsum("kj,jl,kl->k", grad, self.cov_varpar, grad)
        with np.errstate(divide="ignore", invalid="ignore"):
            df = np.where(var_var > 0, 2.0 * var**2 / var_var, np.inf)
        return df

    def test(self, L, alpha: float = 0.05) -> pd.DataFrame:
        """t tests and confidence intervals of contrasts of the fixed effects.

        Parameters
        ----------
        L : array_like, shape (k, p) or (p,)
            Contrast rows; a DataFrame's index labels the rows (its columns must be
            :attr:`names`), otherwise rows are labelled 0..k-1.
        alpha : float, default 0.05
            ``1 - alpha`` is the confidence level of the intervals.

        Returns
        -------
        pandas.DataFrame
            One row per contrast: ``estimate`` (response units), ``se``, ``df``
            (Satterthwaite), ``t``, ``p`` (two-sided, Student t with ``df``),
            ``ci_low``, ``ci_high``. ``attrs``: ``method`` ("Satterthwaite"),
            ``information`` (:attr:`information_kind`), ``alpha`` and ``notes``
            (:attr:`notes`, plus degrees of freedom outside ``[1, n_obs - p]``).

        Raises
        ------
        ModelError
            ``L`` of the wrong shape, not numeric or not finite; ``alpha`` not in (0, 1).
        """
        if not 0 < alpha < 1:
            raise ModelError(f"alpha must lie in (0, 1), got {alpha!r}")
        arr, labels = self._contrasts(L)
        estimate = arr @ self.beta
        se = np.sqrt(np.clip(np.einsum("kp,pq,kq->k", arr, self.cov_beta, arr), 0, None))
        df = self._df(arr)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = estimate / se
        # scipy.special's Student t (stdtr, stdtrit) accept df = inf (the normal)
        p = 2.0 * scipy.special.stdtr(df, -np.abs(t))
        half = scipy.special.stdtrit(df, 1 - alpha / 2) * se
        out = pd.DataFrame(
            {
                "estimate": estimate,
                "se": se,
                "df": df,
                "t": t,
                "p": p,
                "ci_low": estimate - half,
                "ci_high": estimate + half,
            },
            index=pd.Index(labels, name="contrast"),
        )
        notes = list(self.notes)
        k_fe = len(self.names)
        top = (self.n_obs - k_fe) * (1 + 1e-6)
        odd = [lab for lab, d in zip(labels, df, strict=True) if not 1 <= d <= top]
        if odd:
            notes.append(
                f"Satterthwaite df outside [1, n_obs - p] = [1, {self.n_obs - k_fe}] for "
                f"{odd}: reported unclipped, as lmerTest does"
            )
        out.attrs = {
            "method": "Satterthwaite",
            "information": self.information_kind,
            "alpha": float(alpha),
            "notes": notes,
        }
        return out

    def _gls_at(self, varpar) -> dict:
        phi = np.asarray(varpar, dtype=float)
        if phi.shape != (len(self.varpar),):
            raise ModelError(
                f"varpar must have shape ({len(self.varpar)},) ({list(self.varpar.index)}); "
                f"got shape {phi.shape}"
            )
        return _gls(self._design, phi)

    def loglik_at(self, varpar) -> float:
        """The fit's log-likelihood (REML or ML, ``beta`` profiled out) at other ``phi``.

        Parameters
        ----------
        varpar : array_like, shape (m,)
            All variance parameters, in the order of :attr:`varpar`.

        Returns
        -------
        float
            The log-likelihood; ``-inf`` where ``V`` is not positive definite.

        Raises
        ------
        ModelError
            ``varpar`` of the wrong shape.
        """
        try:
            return _loglik(self._design, self._gls_at(varpar), self.reml)
        except np.linalg.LinAlgError:
            return -math.inf

    def cov_beta_at(self, varpar) -> np.ndarray:
        """``C(phi) = (X' V(phi)^-1 X)^-1`` at other variance parameters.

        Parameters
        ----------
        varpar : array_like, shape (m,)
            All variance parameters, in the order of :attr:`varpar`.

        Returns
        -------
        numpy.ndarray, shape (p, p)

        Raises
        ------
        ModelError
            ``varpar`` of the wrong shape.
        numpy.linalg.LinAlgError
            ``V(phi)`` not positive definite.
        """
        return self._gls_at(varpar)["c"]


def satterthwaite_parts(result, *, boundary_tol: float = BOUNDARY_TOL) -> SatterthwaiteParts:
    """Covariance of the fixed effects, its gradient and the variance parameters' covariance.

    Parameters
    ----------
    result : statsmodels.regression.mixed_linear_model.MixedLMResults
        A REML or ML fit: random intercept, correlated random effects
        (``re_formula``) and/or variance components (``vc_formula``).
    boundary_tol : float, default :data:`BOUNDARY_TOL`
        A random-effect or variance-component SD below ``boundary_tol`` times the
        residual SD counts as estimated at zero (lme4's ``isSingular`` rule).

    Returns
    -------
    SatterthwaiteParts

    Raises
    ------
    ModelError
        ``result`` is not a MixedLM fit, or its variance parameters do not give a
        positive-definite ``V`` (the fit itself failed).

    Notes
    -----
    *Boundary.* A variance estimated at ~0 makes the information singular along it.
    It is held fixed (dropped from ``phi``, with its covariances in ``G``) and the
    fact is written in :attr:`~SatterthwaiteParts.notes`. In lmerTest's
    parameterisation (a Cholesky factor ``theta``, ``G = sigma^2 theta theta'``) a
    zero diagonal ``theta`` leaves ``C`` unchanged to first order and is
    uncorrelated with the other parameters, so it drops out of ``g' A g`` the same way.

    *Fallback.* When the observed information of the free parameters is not
    positive definite (a fit that is not at a maximum), the expected information
    ``1/2 tr(P V_j P V_k)`` (ML: ``V^-1`` for ``P``) is used and a note says so; if
    that fails too, the Moore-Penrose pseudo-inverse is used, noted likewise.

    References
    ----------
    Kuznetsova A, Brockhoff PB, Christensen RHB (2017). lmerTest package: tests in
    linear mixed effects models. J Stat Softw 82(13):1-26. Satterthwaite FE (1946).
    Biometrics Bull 2:110-114. Giesbrecht FG, Burns JC (1985). Biometrics 41:477-486.
    """
    model = getattr(result, "model", None)
    if not isinstance(model, MixedLM):
        raise ModelError(
            f"satterthwaite needs a statsmodels MixedLMResults, got {type(result).__name__}"
        )
    # everything read from the results once (statsmodels' wrapper rebuilds pandas
    # objects on every attribute access)
    reml = str(getattr(result, "method", "REML")).upper() == "REML"
    k_re, k_vc = int(model.k_re), int(model.k_vc)
    cov_frame = result.cov_re
    cov_re = np.asarray(cov_frame, dtype=float).reshape(k_re, k_re)
    re_names = [str(c) for c in getattr(cov_frame, "columns", range(k_re))]
    re_names = ["Intercept" if c == "Group" else c for c in re_names]
    vcomp = np.atleast_1d(np.asarray(result.vcomp, dtype=float))[:k_vc]
    scale = float(result.scale)
    fe_names = tuple(str(n) for n in model.exog_names)

    design = _design(model, re_names)
    phi = _varpar(cov_re, vcomp, scale)
    try:
        gls = _gls(design, phi)
    except np.linalg.LinAlgError:
        raise ModelError(
            "the fitted variance parameters do not give a positive-definite covariance "
            f"of the observations ({dict(zip(design.names, phi, strict=True))})"
        ) from None
    score, observed, expected, jac = _derivatives(design, gls, reml)
    free, notes = _boundary(design.names, cov_re, vcomp, scale, boundary_tol)

    info = observed[np.ix_(free, free)]
    kind = "observed"
    if not _positive_definite(info):
        info = expected[np.ix_(free, free)]
        kind = "expected"
        notes.append(
            "observed information of the variance parameters not positive definite "
            "(fit not at a maximum?): expected information used instead"
        )
    if _positive_definite(info):
        cov_varpar = np.linalg.inv(info)
    else:
        cov_varpar = np.linalg.pinv(info)
        notes.append(
            "expected information of the variance parameters singular too: "
            "pseudo-inverse used (df approximate)"
        )
    cov_varpar = 0.5 * (cov_varpar + cov_varpar.T)
    return SatterthwaiteParts(
        names=fe_names,
        beta=gls["beta"],
        cov_beta=gls["c"],
        varpar=pd.Series(phi, index=list(design.names), name="varpar"),
        free=free,
        jacobian=jac[free],
        information=info,
        cov_varpar=cov_varpar,
        score=score,
        information_kind=kind,
        reml=reml,
        loglik=_loglik(design, gls, reml),
        n_obs=design.n_obs,
        notes=tuple(notes),
        _design=design,
    )


def satterthwaite(result, L, *, alpha: float = 0.05) -> pd.DataFrame:
    """t tests of contrasts of the fixed effects with Satterthwaite degrees of freedom.

    Parameters
    ----------
    result : statsmodels.regression.mixed_linear_model.MixedLMResults
        A REML or ML fit (see :func:`satterthwaite_parts`).
    L : array_like, shape (k, p) or (p,)
        Contrast matrix over the ``p`` fixed effects (``result.fe_params`` order).
        A DataFrame's index labels the rows and its columns must be the fixed-effect
        names.
    alpha : float, default 0.05
        ``1 - alpha`` is the confidence level of ``ci_low``/``ci_high``.

    Returns
    -------
    pandas.DataFrame
        One row per contrast: ``estimate``, ``se`` (response units), ``df``, ``t``,
        ``p`` (two-sided), ``ci_low``, ``ci_high``; ``attrs["method"]``,
        ``attrs["information"]``, ``attrs["alpha"]``, ``attrs["notes"]``
        (boundary parameters held fixed, fallbacks; see :meth:`SatterthwaiteParts.test`).

    Raises
    ------
    ModelError
        ``L`` not of shape ``(k, p)`` or ``(p,)`` (the message names both shapes),
        not numeric or not finite; ``result`` not a MixedLM fit.

    Examples
    --------
    lmerTest's summary of ``lmer(Reaction ~ Days + (Days | Subject), sleepstudy)``
    gives Days 10.467 (SE 1.546, df 17.0, p 3.26e-06); with statsmodels::

        res = smf.mixedlm("Reaction ~ Days", sleep, groups=sleep["Subject"],
                          re_formula="~Days").fit()
        satterthwaite(res, [0, 1])   # estimate 10.467, se 1.546, df 17.0, p 3.26e-06
    """
    return satterthwaite_parts(result).test(L, alpha=alpha)


def satterthwaite_fixed(result, *, alpha: float = 0.05) -> pd.DataFrame:
    """The fixed-effects table with Satterthwaite t tests (lmerTest's ``summary``).

    Parameters
    ----------
    result : statsmodels.regression.mixed_linear_model.MixedLMResults
        A REML or ML fit.
    alpha : float, default 0.05
        ``1 - alpha`` is the confidence level of the intervals.

    Returns
    -------
    pandas.DataFrame
        Index ``term`` (the fixed-effect names); columns as :func:`satterthwaite`.
    """
    parts = satterthwaite_parts(result)
    eye = pd.DataFrame(np.eye(len(parts.names)), index=parts.names, columns=parts.names)
    out = parts.test(eye, alpha=alpha)
    out.index.name = "term"
    return out
