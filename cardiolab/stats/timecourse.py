"""In-flight adaptation and post-flight recovery as exponential time courses.

:func:`fit_time_course` fits, to one feature in one protocol epoch, the model of the
simulator (:mod:`cardiolab.simulate.effects`) and of the literature (SCIENCE.md)::

    y_ij = b0 + u_i + A (1 - exp(-t / tau_a)) [in flight]
                    + D exp(-t / tau_r)       [after landing] + e_ij

with ``u_i ~ N(0, subject_sd^2)`` a random intercept per subject (optionally random
slopes ``a_i``, ``d_i`` on the in-flight and post-flight regressors, independent of
each other and of ``u_i``), ``e_ij ~ N(0, residual_sd^2)``, ``t`` the day from the
phase anchor (launch in flight, landing after; sub-day times such as R+6h = 0.25 d
are used as they are).

How it is estimated
-------------------
For fixed time constants the model is a linear mixed model in ``b0, A, D``. The time
constants are estimated by maximum likelihood (ML): the criterion is the ML deviance
of that linear mixed model with the fixed effects and the residual variance profiled
out, minimised jointly over ``(log tau_a, log tau_r)`` and the relative random-effect
SDs on the log scale (a 9-point-per-axis grid of time constants, then L-BFGS-B from
the 3 best grid points; a profile that meets a clearly higher likelihood restarts
the fit from there). A relative SD that ends near 0 (below 0.01) is tried again from
a few positive values, at the optimum and at every profile point: on the log scale
the criterion is flat near 0 and a search that lands on the bound stays there.

The deviance is computed from per-subject cross-product matrices, in closed form
(Bates et al. 2015, *J. Stat. Softw.* 67(1), eqs. 34 and 41: the profiled deviance of
lme4, here with a diagonal random-effect covariance), because the profiles need ~2000
evaluations and statsmodels' ``MixedLM.loglike`` (a Python loop over subjects,
~0.4 ms, ~7 ms per ``MixedLM.fit``) would take seconds per feature; the two agree to
1e-10 (tests). statsmodels ``MixedLM`` is then fitted at the optimal time constants: by ML
(its log-likelihood must equal the profile's maximum, else the fit is flagged; its
convergence is the fit's ``converged``) and by REML for the SDs. BLAS is held to
one thread during a fit (threadpoolctl, where installed): thousands of tiny matrix
operations run ~10x slower with a multi-threaded BLAS on a loaded machine.

Intervals (95 % by default):

* ``tau_a``, ``tau_r``: profile likelihood, the other time constant and the
  variance parameters re-optimised at every point (warm starts, adaptive steps in
  log tau); the interval is where ``lr = 2 (max loglik - loglik) <= chi2_1(0.95) =
  3.84``, its ends interpolated linearly in the signed root ``sign * sqrt(lr)``
  between profile points. Where the profile does not reach the cut within
  ``tau_bounds`` the side is open: ``ci_high = inf`` or ``ci_low`` = the lower bound,
  with ``ci_open = True``.
* ``b0``, ``A``, ``D``: profile likelihood along the time-constant profiles. At fixed
  time constants and variance ratios the deviance with a coefficient held at ``c``
  is exact (``dev + n log(1 + (c - beta)^2 / (n var))``); its minimum over the time
  constants, taken along each time-constant profile (interpolated in log tau), gives
  the interval, so the time constants' uncertainty is carried into ``A`` and ``D``
  (the Wald SE at fixed time constants, which understates it, is the ``se``
  column). Coefficients that vary between subjects (``b0``; ``A``/``D`` with a random
  slope) use the cut ``F(1, n_subjects - 1)`` instead of ``chi2_1`` (4.84 for 12
  subjects), a small-sample correction for the subject-level information.
* ``subject_sd``, ``residual_sd`` (``A_sd``, ``D_sd``): REML at the optimal time
  constants (statsmodels ``MixedLM``) on the design linearised in them (the
  columns ``d mu / d log tau`` added as fixed effects, as nlme's REML for nonlinear
  mixed models does, so that the residual degrees of freedom count the time
  constants); intervals from that REML profile at those time constants.
* The recovery day (:meth:`TimeCourse.recovery_day`): along the ``tau_r`` profile
  with the conditional range of ``D``, as for ``D``.
* The curve's band (:meth:`TimeCourse.curve`): pointwise quantiles over 1000 draws:
  each time constant from a split normal on the log scale matching its profile
  interval (truncated to the bounds), then ``b0, A, D`` from their conditional
  normal given the drawn time constants.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import interpolate, optimize, stats

from ..errors import ModelError
from .table import check_features_table

__all__ = ["TimeCourse", "fit_time_course", "RECOVERY_MARGIN"]

log = logging.getLogger("cardiolab")

#: Default recovery margin: within 5 % of |b0| of the pre-flight level.
RECOVERY_MARGIN = 0.05

_RANDOM_TERMS = ("intercept", "A", "D")
_N_DRAWS = 1000
_BOUND_TOL = 1e-3  # log-tau distance from a bound that counts as "on the bound"
#: a relative random-effect SD (theta) below which the search tries :data:`_THETA_GRID`
_THETA_RESTART = 1e-2
_THETA_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)


# --------------------------------------------------------------------------------------
# numerical core: arrays in, numbers out
# --------------------------------------------------------------------------------------


class _Problem:
    """The profiled deviance of the time-course model on one data set.

    Rows are sorted by subject. Fixed-effect columns are ``b0`` (1), ``A`` (the
    in-flight regressor, if fitted) and ``D`` (the post-flight regressor, if fitted);
    the random-effect columns are a subset of them (``zidx``), with a diagonal
    relative covariance ``diag(theta)^2`` (SDs relative to the residual SD).
    """

    def __init__(self, y, phase, day, groups, *, fit_a, fit_d, random, log_bounds):
        order = np.argsort(groups, kind="stable")
        self.y = np.asarray(y, float)[order]
        self.phase = np.asarray(phase)[order]
        self.day = np.asarray(day, float)[order]
        self.groups = np.asarray(groups)[order]
        self.n = self.y.size
        self.starts = np.flatnonzero(np.r_[True, self.groups[1:] != self.groups[:-1]])
        self.n_groups = self.starts.size
        self.is_in = self.phase == "in"
        self.is_post = self.phase == "post"
        self.t_in = np.where(self.is_in, np.clip(self.day, 0, None), 0.0)
        self.t_post = np.where(self.is_post, np.clip(self.day, 0, None), 0.0)
        self.cols = ["b0"] + (["A"] if fit_a else []) + (["D"] if fit_d else [])
        self.taus = (["tau_a"] if fit_a else []) + (["tau_r"] if fit_d else [])
        self.p = len(self.cols)
        self.m = len(self.taus)
        self.zidx = [0] + [self.cols.index(t) for t in ("A", "D") if t in random]
        self.q = len(self.zidx)
        self.log_bounds = log_bounds

    # design -------------------------------------------------------------------------
    def design(self, log_tau) -> np.ndarray:
        """Fixed-effect design matrix for the time constants ``exp(log_tau)``."""
        X = np.empty((self.n, self.p))
        X[:, 0] = 1.0
        for i, (name, lt) in enumerate(zip(self.taus, log_tau, strict=True), start=1):
            tau = math.exp(lt)
            if name == "tau_a":  # t_in is 0 outside flight, where 1 - exp(0) = 0
                X[:, i] = -np.expm1(-self.t_in / tau)
            else:
                X[:, i] = np.exp(-self.t_post / tau) * self.is_post
        return X

    def reml_design(self, log_tau) -> np.ndarray:
        """The design linearised in the time constants, for REML of the variances.

        The columns ``d mu / d log tau`` (``-(t/tau) exp(-t/tau)`` in flight,
        ``(t/tau) exp(-t/tau)`` after landing) are appended, so that REML counts the
        time constants among the fixed effects (as nlme's REML of a nonlinear mixed
        model does through its linearisation); a column that vanishes (a time
        constant far below the sampled days) is left out.
        """
        X = self.design(log_tau)
        extra = []
        for name, lt in zip(self.taus, log_tau, strict=True):
            tau = math.exp(lt)
            t = (self.t_in if name == "tau_a" else self.t_post) / tau
            col = t * np.exp(-t) * (self.is_in if name == "tau_a" else self.is_post)
            if np.linalg.norm(col) > 1e-6 * math.sqrt(self.n):
                extra.append(col)
        return np.column_stack([X, *extra]) if extra else X

    # criterion ----------------------------------------------------------------------
    def solve(self, log_tau, theta, *, fixed=None, reml=False, sigma=None, full=True, X=None):
        """Deviance (-2 log-likelihood) and the conditional fixed effects.

        Parameters
        ----------
        log_tau : array-like
            Log time constants (days), in the order of ``self.taus``.
        theta : array-like
            Random-effect SDs relative to the residual SD, in the order of ``zidx``.
        fixed : (int, float), optional
            Hold fixed-effect column ``j`` at value ``c`` (moved to an offset).
        reml : bool
            REML instead of ML criterion.
        sigma : float, optional
            Residual SD; profiled out (set to its optimum) when None.
        full : bool
            Also compute ``beta``, ``cov`` and ``s2`` (None, None, nan otherwise).
        X : ndarray, optional
            A fixed-effect design to use instead of ``design(log_tau)`` (its first
            columns must be the design's, see :meth:`reml_design`).

        Returns
        -------
        dev : float
            The deviance (``inf`` where it is undefined).
        beta : ndarray
            Fixed effects at their conditional optimum (all ``p`` columns, the fixed
            one included).
        cov : ndarray
            Their conditional covariance ``sigma^2 (X' V^-1 X)^-1`` (``sigma^2`` as
            given, or at its ML/REML estimate), the fixed column's row and column zero.
        s2 : float
            The residual variance that maximises the criterion (``rss / df``).
        """
        X = self.design(log_tau) if X is None else X
        p = X.shape[1]
        W = np.empty((self.n, p + 1))
        W[:, :p] = X
        W[:, p] = self.y
        if fixed is not None:
            j, c = fixed
            W[:, p] -= c * X[:, j]
            ri = [i for i in range(p + 1) if i != j]
        else:
            ri = None
        k = p + 1
        C = np.add.reduceat((W[:, :, None] * W[:, None, :]).reshape(self.n, k * k), self.starts)
        C = C.reshape(self.n_groups, k, k)
        theta = np.asarray(theta, float)
        if self.q == 1:
            mdiag = 1.0 + theta[0] ** 2 * C[:, 0, 0]
            logdet = float(np.log(mdiag).sum())
            e = C[:, 0, :] * theta[0]  # (G, k)
            S = C.sum(0) - (e / mdiag[:, None]).T @ e
        else:
            zi = self.zidx
            M = np.eye(self.q) + theta[None, :, None] * C[:, zi][:, :, zi] * theta[None, None, :]
            sign, ld = np.linalg.slogdet(M)
            if np.any(sign <= 0):
                return math.inf, None, None, math.nan
            logdet = float(ld.sum())
            E = theta[None, :, None] * C[:, zi, :]
            S = C.sum(0) - np.einsum("gqa,gqb->ab", E, np.linalg.solve(M, E))
        if ri is not None:
            S = S[np.ix_(ri, ri)]
        Sxx, Sxy, Syy = S[:-1, :-1], S[:-1, -1], S[-1, -1]
        try:
            chol = np.linalg.cholesky(Sxx)
        except np.linalg.LinAlgError:
            return math.inf, None, None, math.nan
        b = np.linalg.solve(Sxx, Sxy)
        rss = float(Syy - Sxy @ b)
        if not rss > 0:
            return math.inf, None, None, math.nan
        px = Sxx.shape[0]
        df = self.n - px if reml else self.n
        ldx = 2.0 * float(np.log(np.diag(chol)).sum()) if reml else 0.0
        if sigma is None:
            s2 = rss / df
            dev = logdet + ldx + df * (1.0 + math.log(2 * math.pi * s2))
        else:
            s2 = float(sigma) ** 2
            dev = logdet + ldx + df * math.log(2 * math.pi * s2) + rss / s2
        if not full:
            return dev, None, None, math.nan
        keep = [i for i in range(p) if fixed is None or i != fixed[0]]
        beta = np.empty(p)
        beta[keep] = b
        cov = np.zeros((p, p))
        cov[np.ix_(keep, keep)] = s2 * np.linalg.inv(Sxx)
        if fixed is not None:
            beta[fixed[0]] = fixed[1]
        return dev, beta, cov, rss / df

    def deviance(self, log_tau, theta, **kw) -> float:
        return self.solve(log_tau, theta, full=False, **kw)[0]

    # optimisation -------------------------------------------------------------------
    def theta_bounds(self):
        """Bounds of log theta: 1e-5 (a random effect at 0 for any purpose) to 1e4."""
        return [(math.log(1e-5), math.log(1e4))] * self.q

    def deviance_v(self, v, **kw) -> float:
        """Deviance at the optimisation vector ``v = (log taus, log thetas)``."""
        return self.solve(v[: self.m], np.exp(v[self.m :]), full=False, **kw)[0]

    def minimise(self, fun, x0, bounds):
        """L-BFGS-B from ``x0``; returns (x, f, converged)."""
        x0 = np.clip(np.asarray(x0, float), [b[0] for b in bounds], [b[1] for b in bounds])
        if len(x0) == 0:
            return x0, float(fun(x0)), True
        res = optimize.minimize(
            fun,
            x0,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 300, "ftol": 1e-9, "gtol": 1e-5},
        )
        return res.x, float(res.fun), bool(res.success)

    def minimise_off_boundary(self, fun, x0, bounds, thetas):
        """:meth:`minimise`, started again off the boundary where a theta ends near 0.

        On the log scale the deviance is flat in a relative SD near zero (its
        derivative vanishes like ``theta^2``), so a search whose step lands on the
        lower bound of a theta stays there even where a clearly positive SD fits
        better (seen on the demo campaign: a subject SD stuck at 1e-5 of the residual
        SD, up to 20 log-likelihood units below statsmodels' fit at the same time
        constants). Where a theta (positions ``thetas`` of the vector) ends below
        :data:`_THETA_RESTART`, those thetas are set in turn to each value of
        :data:`_THETA_GRID`, the rest held; where one lowers the deviance the search
        runs again from there (L-BFGS-B only descends, so the result is better than
        the first). Fits whose SD truly is 0 are left as they are.
        """
        x, f, ok = self.minimise(fun, x0, bounds)
        low = [i for i in thetas if x[i] < math.log(_THETA_RESTART)]
        if not low:
            return x, f, ok
        trial, best, f_best = np.array(x, float), None, f
        for value in np.log(_THETA_GRID):
            trial[low] = value
            dev = float(fun(trial))
            if dev < f_best - 1e-9:
                best, f_best = value, dev
        if best is None:
            return x, f, ok
        trial[low] = best
        return self.minimise(fun, trial, bounds)

    def fit(self, start=None):
        """ML optimum over ``v = (log taus, log theta)``: coarse grid, then L-BFGS-B.

        With ``start``, polish from there instead of searching the grid. Where
        L-BFGS-B stops without reporting convergence (a line search failing on a
        flat criterion), Powell's method polishes the point and decides.
        """
        lo, hi = self.log_bounds
        tau_bounds = [(lo, hi)] * self.m
        bounds = tau_bounds + self.theta_bounds()

        full = self.deviance_v

        thetas = range(self.m, self.m + self.q)
        if start is not None:
            x, f, ok = self.minimise_off_boundary(full, start, bounds, thetas)
            return self._polish(full, x, f, ok, bounds)
        # theta at a middle time constant, then a coarse grid of time constants
        mid = [min(max(math.log(5.0), lo), hi)] * self.m
        th0, _, _ = self.minimise(
            lambda t: self.deviance(mid, np.exp(t)), [0.0] * self.q, self.theta_bounds()
        )
        grid1 = np.linspace(lo, hi, 9)
        grids = np.meshgrid(*([grid1] * self.m), indexing="ij")
        cand = np.column_stack([g.ravel() for g in grids]) if self.m else np.zeros((1, 0))
        devs = np.array([self.deviance(c, np.exp(th0)) for c in cand])
        best = None
        for i in np.argsort(devs)[:3]:
            x, f, ok = self.minimise_off_boundary(full, np.r_[cand[i], th0], bounds, thetas)
            if best is None or f < best[1] - 1e-9:
                best = (x, f, ok)
        return self._polish(full, *best, bounds)

    @staticmethod
    def _polish(fun, x, f, ok, bounds):
        if ok:
            return x, f, ok
        res = optimize.minimize(fun, x, method="Powell", bounds=bounds, options={"xtol": 1e-6})
        if res.fun <= f + 1e-9:
            return res.x, float(res.fun), bool(res.success)
        return x, f, bool(res.success)

    def profile_tau(self, k, v_hat, dev_min, zeta_stop):
        """Profile of time constant ``k`` walked outwards from the optimum.

        Steps in log tau adapt to a change of about 0.4 in the signed root of the
        likelihood ratio; the walk stops past ``zeta_stop`` or at the bound. Returns
        the points ``(log_tau, deviance, v)`` sorted by log tau, ``v`` the full
        optimisation vector there (the other parameters re-optimised).
        """
        lo, hi = self.log_bounds
        free_idx = [i for i in range(self.m + self.q) if i != k]
        bounds_all = [(lo, hi)] * self.m + self.theta_bounds()
        bounds = [bounds_all[i] for i in free_idx]
        thetas = [j for j, i in enumerate(free_idx) if i >= self.m]

        def at(x, warm):
            def fun(w):
                v = np.empty(self.m + self.q)
                v[k] = x
                v[free_idx] = w
                return self.deviance_v(v)

            w, f, _ = self.minimise_off_boundary(fun, warm, bounds, thetas)
            v = np.empty(self.m + self.q)
            v[k] = x
            v[free_idx] = w
            return v, f

        rows = [(v_hat[k], dev_min, v_hat)]
        for direction in (1.0, -1.0):
            edge = hi if direction > 0 else lo
            x = v_hat[k]
            warm = v_hat[free_idx]
            step, last_zeta = 0.05, 0.0
            while abs(edge - x) > 1e-9:
                x_new = x + direction * step
                if (x_new - edge) * direction >= 0:
                    x_new = edge
                v, f = at(x_new, warm)
                zeta = math.sqrt(max(f - dev_min, 0.0))
                rows.append((x_new, f, v))
                if zeta > zeta_stop:
                    break
                dz = zeta - last_zeta
                step = min(max(step * min(max(0.4 / max(dz, 1e-6), 0.5), 2.0), 0.01), 0.6)
                x, warm, last_zeta = x_new, v[free_idx], zeta
        rows.sort(key=lambda r: r[0])
        return rows

    def profile_sd(self, which, log_tau, theta_hat, sigma_hat, dev_min, z, X=None):
        """REML profile interval of an SD at fixed time constants.

        ``which`` is ``"residual"`` or the index (into ``zidx``) of a random effect;
        ``X`` the design (default: :meth:`design`; :meth:`reml_design` in use).
        """
        tb = self.theta_bounds()
        log_th = np.log(np.maximum(theta_hat, 1e-5))
        if which == "residual":

            def lr(c):
                f = self.minimise(
                    lambda t: self.deviance(log_tau, np.exp(t), reml=True, sigma=c, X=X),
                    log_th,
                    tb,
                )[1]
                return f - dev_min

            est = sigma_hat
        else:
            others = [i for i in range(self.q) if i != which]

            def lr(c):
                def fun(w):
                    s = math.exp(w[0])
                    th = np.empty(self.q)
                    th[which] = c / s
                    th[others] = np.exp(w[1:])
                    return self.deviance(log_tau, th, reml=True, sigma=s, X=X)

                w0 = np.r_[math.log(sigma_hat), log_th[others]]
                b = [(math.log(sigma_hat) - 5, math.log(sigma_hat) + 5)] + [tb[i] for i in others]
                return self.minimise(fun, w0, b)[1] - dev_min

            est = theta_hat[which] * sigma_hat

        def zeta(c):
            return math.copysign(math.sqrt(max(lr(c), 0.0)), c - est)

        step = 0.3 * est if est > 0 else 0.3 * sigma_hat
        low = _solve_zeta(zeta, est, -step, -z, floor=0.0 if which != "residual" else None)
        high = _solve_zeta(zeta, est, step, z)
        return low, high


def _solve_zeta(zeta, est, step, target, floor=None, max_expand=40):
    """Where the signed root ``zeta(c)`` (increasing, 0 at ``est``) reaches ``target``.

    Secant guesses from ``(est, 0)`` (aimed 5 % beyond, at most 4x further each time)
    until the target is crossed, then Brent's method in the bracket. Returns
    ``(value, open)``: ``(+-inf, True)`` where the target is never reached, and
    ``(floor, False)`` where the profile stays below the target down to ``floor``.
    """
    side = 1.0 if step > 0 else -1.0
    inside = est
    x = est + step if floor is None else max(est + step, floor)
    for _ in range(max_expand):
        f = zeta(x)
        if (f - target) * side >= 0:
            scale = max(abs(est), abs(step))
            root = optimize.brentq(lambda c: zeta(c) - target, inside, x, xtol=1e-5 * scale)
            return float(root), False
        if floor is not None and x <= floor:
            return floor, False
        inside = x
        dist = abs(x - est)
        guess = 1.05 * target / (f / (x - est)) if f * side > 0 else 2 * (x - est)
        x = est + side * min(abs(guess), 4 * dist)
        if floor is not None:
            x = max(x, floor)
    return side * math.inf, True


# --------------------------------------------------------------------------------------
# result object
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ProfileState:
    """What a :class:`TimeCourse`'s methods need of its fit (private).

    ``problem`` the :class:`_Problem`; ``v_hat`` the optimum ``(log taus, log
    thetas)`` and ``dev_min`` its ML deviance; ``traces`` per time constant its
    profile ``(log tau, deviance, conditional beta, conditional variances)``;
    ``cuts`` per fixed effect the cut of its interval.
    """

    problem: _Problem
    v_hat: np.ndarray
    dev_min: float
    traces: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    cuts: dict[str, float]


@dataclass(frozen=True, eq=False, repr=False)
class TimeCourse:
    """An adaptation/recovery time course fitted by :func:`fit_time_course`.

    Attributes
    ----------
    params : pandas.DataFrame
        Indexed by ``b0``, ``A``, ``tau_a``, ``D``, ``tau_r``, ``subject_sd``,
        ``residual_sd`` (and ``A_sd``, ``D_sd`` with random slopes); columns
        ``estimate``, ``ci_low``, ``ci_high``, ``ci_open`` (a side of the interval not
        reached within the time-constant bounds), ``se`` (Wald SE of ``b0``, ``A``,
        ``D`` at the fitted time constants, NaN elsewhere) and ``ci_method``.
        Time constants in days, the rest in the feature's units. Parameters the
        campaign cannot inform (``A``, ``tau_a`` without in-flight sessions) are NaN.
    half_life : pandas.Series
        ``tau_r ln 2`` (days): ``estimate``, ``ci_low``, ``ci_high``.
    profile : dict of str to pandas.DataFrame
        ``"tau_a"``, ``"tau_r"`` -> profile with columns ``tau`` (days), ``loglik``,
        ``lr`` (``2 (max loglik - loglik)``), ``zeta`` (signed root of ``lr``) and the
        conditional estimates ``b0``, ``A``, ``D`` and the other time constant.
    data : pandas.DataFrame
        The rows fitted: ``subject``, ``session``, ``phase``, ``day``, ``value``.
    feature, epoch, units : str
    converged : bool
        The optimiser and statsmodels' ML and REML fits converged.
    flags : list of str
        Everything a reader of the numbers should know, in sentences: dropped rows,
        a phase without data, non-convergence, a time constant at an end of its
        search range (what the schedule cannot resolve, and what it means for
        ``A``/``D``), a random-effect SD at 0.
    loglik : float
        Maximised (ML) log-likelihood.
    n_obs, n_groups : int
        Rows and subjects fitted.
    alpha : float
        1 - confidence level of the intervals.
    margin : float or str or None
        Default recovery margin of :meth:`recovery_day`.
    random : tuple of str
        The random effects fitted.
    tau_bounds : (float, float)
        The search range of the time constants, days.
    model : statsmodels MixedLMResults or None
        statsmodels' ML fit of the linear mixed model at the fitted time constants
        (None where it failed, flagged).

    Notes
    -----
    Frozen: the attributes cannot be rebound (the tables they hold are pandas
    objects, not copied: treat them as read-only). The draws behind :meth:`curve`
    are made once, on first use.
    """

    params: pd.DataFrame
    half_life: pd.Series
    profile: dict[str, pd.DataFrame]
    data: pd.DataFrame
    feature: str
    epoch: str
    units: str
    converged: bool
    flags: list[str]
    loglik: float
    n_obs: int
    n_groups: int
    alpha: float
    margin: float | str | None
    random: tuple[str, ...]
    tau_bounds: tuple[float, float]
    model: Any
    _state: _ProfileState = field(repr=False)

    # derived quantities ---------------------------------------------------------------
    def _margin(self, margin):
        """(absolute margin, fraction of |b0| or None) of a ``margin`` argument."""
        margin = self.margin if margin is None else margin
        b0 = abs(float(self.params.loc["b0", "estimate"]))
        if margin is None:
            return RECOVERY_MARGIN * b0, RECOVERY_MARGIN
        if isinstance(margin, str):
            text = margin.strip()
            try:
                if not text.endswith("%"):
                    raise ValueError(text)
                frac = float(text[:-1]) / 100.0
            except ValueError:
                raise ModelError(
                    f"{self.feature!r} in epoch {self.epoch!r}: margin {margin!r}: give a number in "
                    f"{self.units or 'the feature units'} or a percentage of b0 such as '5%'"
                ) from None
            if not frac > 0:
                raise ModelError(
                    f"{self.feature!r} in epoch {self.epoch!r}: recovery margin must be > 0"
                )
            return frac * b0, frac
        value = float(margin)
        if not value > 0:
            raise ModelError(
                f"{self.feature!r} in epoch {self.epoch!r}: recovery margin must be > 0"
            )
        return value, None

    @staticmethod
    def _recovery(D, tau_r, margin):
        """``tau_r ln(|D| / margin)``, 0 where ``|D| <= margin`` (vectorised)."""
        D, tau_r, margin = np.broadcast_arrays(*(np.asarray(a, float) for a in (D, tau_r, margin)))
        ratio = np.abs(D) / margin
        out = np.where(ratio > 1, tau_r * np.log(np.maximum(ratio, 1.0)), 0.0)
        return float(out) if out.ndim == 0 else out

    def recovery_day(self, margin=None, ci=False):
        """Day after landing when the population curve is back within ``margin`` of b0.

        The curve ``b0 + D exp(-t / tau_r)`` is within ``margin`` of ``b0`` from
        ``t = tau_r ln(|D| / margin)`` on (0 when ``|D| <= margin``).

        Parameters
        ----------
        margin : float or str, optional
            Absolute tolerance in the feature's units, or a percentage of ``|b0|``
            as a string (``"10%"``). Default: the fit's ``margin``, else 5 % of
            ``|b0|`` (:data:`RECOVERY_MARGIN`).
        ci : bool
            Also return the interval, by profile likelihood as for ``D``: along the
            ``tau_r`` profile, each ``tau_r`` inside the cut with the range of ``D``
            (and the conditional ``b0``, for a relative margin) still inside it.

        Returns
        -------
        float or pandas.Series
            Days after landing (NaN without post-flight data); with ``ci=True`` a
            Series ``estimate``, ``ci_low``, ``ci_high`` (``ci_high`` inf where the
            ``tau_r`` interval is open upwards and ``D`` clearly exceeds the margin).

        Examples
        --------
        >>> from cardiolab.stats.design import simulate_feature_table
        >>> table = simulate_feature_table(
        ...     n_subjects=8, pre=62.0, A=3.0, tau_a=4.0, D=8.0, tau_r=3.0,
        ...     between_sd=7.4, residual_sd=1.0, feature="hr", seed=1)
        >>> tc = fit_time_course(table, "hr")
        >>> round(tc.recovery_day(margin=1.0))  # 3 ln(8 / 1) = 6.2 d in truth
        6
        """
        if "tau_r" not in self._state.problem.taus:
            nan = math.nan
            if ci:
                return pd.Series(
                    {"estimate": nan, "ci_low": nan, "ci_high": nan}, name="recovery_day"
                )
            return nan
        m, frac = self._margin(margin)
        D, tau_r = self.params.loc[["D", "tau_r"], "estimate"].astype(float)
        est = self._recovery(D, tau_r, m)
        if not ci:
            return est
        state = self._state
        prob = state.problem
        j = prob.cols.index("D")
        x, d, half, b0 = _trace_band(
            state.traces["tau_r"], j, prob.n, state.dev_min, state.cuts["D"]
        )
        margins = frac * np.abs(b0) if frac is not None else np.full(x.size, m)
        lo_d, hi_d = d - half, d + half
        small = np.where(lo_d * hi_d <= 0, 0.0, np.minimum(np.abs(lo_d), np.abs(hi_d)))
        large = np.maximum(np.abs(lo_d), np.abs(hi_d))
        tau = np.exp(x)
        low = float(np.min(self._recovery(small, tau, margins), initial=est))
        high = float(np.max(self._recovery(large, tau, margins), initial=est))
        row = self.params.loc["D"]
        if (
            math.isinf(self.params.loc["tau_r", "ci_high"])
            and min(abs(row["ci_low"]), abs(row["ci_high"])) > m
            and row["ci_low"] * row["ci_high"] > 0
        ):
            high = math.inf  # recovery may never come within the time-constant bounds
        return pd.Series({"estimate": est, "ci_low": low, "ci_high": high}, name="recovery_day")

    @functools.cached_property
    def _draws(self):
        """Draws of (log taus, beta) for the curve band (computed once per result)."""
        prob, v_hat = self._state.problem, self._state.v_hat
        rng = np.random.default_rng(20160915)
        z_crit = stats.norm.ppf(1 - self.alpha / 2)
        lo_b, hi_b = prob.log_bounds
        log_tau = np.empty((_N_DRAWS, prob.m))
        for k, name in enumerate(prob.taus):
            est = v_hat[k]
            lo, hi = self.params.loc[name, ["ci_low", "ci_high"]]
            up = (min(math.log(hi), hi_b) if np.isfinite(hi) else hi_b) - est
            down = est - max(math.log(lo), lo_b)
            zz = rng.standard_normal(_N_DRAWS)
            log_tau[:, k] = np.clip(est + np.where(zz > 0, zz * up, zz * down) / z_crit, lo_b, hi_b)
        theta = np.exp(v_hat[prob.m :])
        betas = np.empty((_N_DRAWS, prob.p))
        for i in range(_N_DRAWS):
            _, b, cov, _ = prob.solve(log_tau[i], theta)
            if b is None:
                betas[i] = np.nan
                continue
            chol = np.linalg.cholesky(cov + 1e-12 * np.eye(prob.p))
            betas[i] = b + chol @ rng.standard_normal(prob.p)
        return log_tau, betas

    def curve(self, n: int = 200) -> pd.DataFrame:
        """The population curve with its pointwise band.

        Parameters
        ----------
        n : int
            Points per phase.

        Returns
        -------
        pandas.DataFrame
            Columns ``phase``, ``day``, ``estimate``, ``ci_low``, ``ci_high``: pre-flight
            (flat at ``b0``, band = the ``b0`` interval) from the first pre-flight day
            to 0, in flight from 0 to the last in-flight day, after landing from 0 to
            the last post-flight day. The in/post band is the pointwise
            ``alpha/2, 1 - alpha/2`` quantiles over draws of the parameters (see the
            module notes). Phases without data are left out.

        Examples
        --------
        >>> from cardiolab.stats.design import simulate_feature_table
        >>> table = simulate_feature_table(
        ...     n_subjects=8, pre=62.0, A=3.0, tau_a=4.0, D=8.0, tau_r=3.0,
        ...     between_sd=7.4, residual_sd=2.0, feature="hr", seed=1)
        >>> c = fit_time_course(table, "hr").curve(n=50)
        >>> c.groupby("phase", sort=False).size().to_dict()
        {'pre': 50, 'in': 50, 'post': 50}
        """
        prob = self._state.problem
        data = self.data
        p = self.params
        frames = []
        pre_days = data.loc[data["phase"] == "pre", "day"]
        b0 = p.loc["b0"]
        frames.append(
            pd.DataFrame(
                {
                    "phase": "pre",
                    "day": np.linspace(min(float(pre_days.min()), 0.0), 0.0, n),
                    "estimate": b0["estimate"],
                    "ci_low": b0["ci_low"],
                    "ci_high": b0["ci_high"],
                }
            )
        )
        log_tau, betas = self._draws
        q = [self.alpha / 2, 1 - self.alpha / 2]
        for phase, col, tau_name in (("in", "A", "tau_a"), ("post", "D", "tau_r")):
            if col not in prob.cols:
                continue
            days = np.linspace(0.0, float(data.loc[data["phase"] == phase, "day"].max()), n)
            k = prob.taus.index(tau_name)
            j = prob.cols.index(col)

            def shape(tau, days=days, phase=phase):
                t = days[None, :] / np.asarray(tau, float)[:, None]
                return -np.expm1(-t) if phase == "in" else np.exp(-t)

            est = b0["estimate"] + p.loc[col, "estimate"] * shape([p.loc[tau_name, "estimate"]])[0]
            draws = betas[:, [0]] + betas[:, [j]] * shape(np.exp(log_tau[:, k]))
            band = np.nanquantile(draws, q, axis=0)
            frames.append(
                pd.DataFrame(
                    {
                        "phase": phase,
                        "day": days,
                        "estimate": est,
                        "ci_low": band[0],
                        "ci_high": band[1],
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: feature, epoch, model, term, estimate, ci_low, ci_high, df, ci_method,
        p, converged.

        Terms are the rows of :attr:`params` plus ``half_life`` and ``recovery_day``
        (default margin); ``df`` and ``p`` are NaN (no test is made); ``ci_method``
        from :attr:`params`.
        """
        rows = self.params[["estimate", "ci_low", "ci_high"]].copy()
        rows.loc["half_life"] = self.half_life[["estimate", "ci_low", "ci_high"]].to_numpy()
        rows.loc["recovery_day"] = self.recovery_day(ci=True)[
            ["estimate", "ci_low", "ci_high"]
        ].to_numpy()
        out = rows.rename_axis("term").reset_index()
        out.insert(0, "model", "time_course")
        out.insert(0, "epoch", self.epoch)
        out.insert(0, "feature", self.feature)
        out["df"] = np.nan
        methods = self.params["ci_method"].to_dict()
        methods["half_life"] = methods.get("tau_r", "")
        methods["recovery_day"] = "profile likelihood (tau_r, D)"
        out["ci_method"] = out["term"].map(methods).fillna("").astype(str)
        out["p"] = np.nan
        out["converged"] = bool(self.converged)
        return out[
            [
                "feature", "epoch", "model", "term", "estimate", "ci_low", "ci_high", "df",
                "ci_method", "p", "converged",
            ]
        ]  # fmt: skip

    def __repr__(self) -> str:
        def fmt(name, unit):
            if name not in self.params.index:
                return None
            e, lo, hi = self.params.loc[name, ["estimate", "ci_low", "ci_high"]]
            if not np.isfinite(e):
                return f"{name} n/a"
            return f"{name} {e:.4g} [{lo:.4g}, {hi:.4g}]{unit}"

        u = f" {self.units}" if self.units not in ("", "1") else ""
        parts = [
            fmt("b0", u),
            fmt("A", u),
            fmt("tau_a", " d"),
            fmt("D", u),
            fmt("tau_r", " d"),
        ]
        head = f"TimeCourse({self.feature}, {self.epoch}: " + ", ".join(p for p in parts if p)
        tail = f"; {self.n_obs} rows, {self.n_groups} subjects"
        if not self.converged:
            tail += ", NOT CONVERGED"
        if self.flags:
            tail += f", {len(self.flags)} flag{'s' if len(self.flags) > 1 else ''}"
        return head + tail + ")"


# --------------------------------------------------------------------------------------
# public function
# --------------------------------------------------------------------------------------


def _one_blas_thread():
    """Context holding BLAS to one thread (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def fit_time_course(
    table: pd.DataFrame,
    feature: str,
    epoch: str = "supine",
    random: Sequence[str] = ("intercept",),
    tau_bounds: tuple[float, float] = (0.1, 200.0),
    margin=None,
    alpha: float = 0.05,
) -> TimeCourse:
    """Fit the in-flight adaptation and post-flight recovery time course of a feature.

    Model: ``y = b0 + u_i + A (1 - exp(-t / tau_a)) [in flight] + D exp(-t / tau_r)
    [after landing] + e``, a random intercept per subject (see the module notes for
    the estimation and the intervals).

    Parameters
    ----------
    table : pandas.DataFrame
        A features table (:func:`cardiolab.pipeline.features_table`): columns
        ``subject``, ``session``, ``phase``, ``day`` (days from launch/landing),
        ``epoch`` and the feature; units in ``attrs["units"]``.
    feature : str
        The feature column.
    epoch : str
        The protocol epoch whose rows are fitted.
    random : sequence of str
        Random effects per subject: ``"intercept"`` (always), plus ``"A"`` and/or
        ``"D"`` for random slopes on the in-flight and post-flight regressors
        (independent of the intercept).
    tau_bounds : (float, float)
        Search range of both time constants, days.
    margin : float or str, optional
        Default margin of :meth:`TimeCourse.recovery_day`: an absolute value in the
        feature's units or a percentage string ("5%"); None = 5 % of ``|b0|``.
    alpha : float
        The intervals are ``1 - alpha`` (cut ``chi2_1(1 - alpha)``, 3.84 at 0.05;
        ``F(1, n_subjects - 1)`` for coefficients that vary between subjects).

    Returns
    -------
    TimeCourse
        Coverage of the 95 % intervals over 400 simulated 12-subject campaigns
        (benchmarks/coverage_time_course.py): b0 0.94, A 0.95, tau_a 0.94, D 0.94,
        tau_r 0.95, subject_sd 0.94, residual_sd 0.95. About 0.2 s per fit for
        8 subjects x 10 sessions.

    Raises
    ------
    ModelError
        Starting ``"'<feature>' in epoch '<epoch>': "``: every refusal of
        :func:`cardiolab.stats.table.check_features_table` (a missing column or
        epoch, an unknown phase, a feature that is not numeric or all NaN, fewer
        than 2 subjects, no variance, no pre-flight row, neither in-flight nor
        post-flight rows), fewer than 2 distinct days in a phase whose time constant
        is fitted, an unknown random term, bad bounds or alpha. Rows with a missing
        value are dropped (flagged); a fit that does not converge is flagged, not
        raised, and so is a time constant whose estimate or interval meets an end of
        ``tau_bounds``: a sentence saying what the schedule cannot resolve (e.g.
        ``"tau_r = 0.1 d is at the lower end of its search range [0.1, 200] d: the
        recovery may be faster than the schedule can resolve (post-flight sessions
        at days 0, 1, 3, ... after landing); ..."``).

    Examples
    --------
    >>> from cardiolab.stats.design import simulate_feature_table
    >>> table = simulate_feature_table(
    ...     n_subjects=12, pre=62.0, A=3.0, tau_a=4.0, D=8.0, tau_r=3.0,
    ...     between_sd=7.4, residual_sd=2.0, feature="hr", units="bpm", seed=3)
    >>> tc = fit_time_course(table, "hr")
    >>> lo, hi = tc.params.loc["tau_r", ["ci_low", "ci_high"]]
    >>> bool(lo < 3.0 < hi)
    True
    >>> list(tc.params.index)
    ['b0', 'A', 'tau_a', 'D', 'tau_r', 'subject_sd', 'residual_sd']
    """
    # Thousands of tiny matrix operations: a multi-threaded BLAS only adds overhead
    # (10x slower on a loaded 2-core machine), so it is held to one thread here.
    with _one_blas_thread():
        return _fit_time_course(table, feature, epoch, random, tau_bounds, margin, alpha)


def _fit_time_course(table, feature, epoch, random, tau_bounds, margin, alpha) -> TimeCourse:
    """Body of :func:`fit_time_course` (its arguments, defaults applied there).

    The named steps: check the table and options (:func:`_check`) -> build the design
    (:func:`_design`) -> fit (:func:`_fit`: the ML optimum, the time-constant profiles,
    statsmodels at the optimum) -> intervals (:func:`_intervals`) -> the result
    (:func:`_result`).
    """
    checked = _check(table, feature, epoch, random, tau_bounds, alpha)
    prob = _design(checked)
    opt = _fit(prob, alpha, checked.where)
    ivals = _intervals(prob, opt, alpha)
    return _result(checked, prob, opt, ivals, margin, alpha)


@dataclass(frozen=True)
class _Checked:
    """The checked input of a time-course fit (:func:`_check`)."""

    data: pd.DataFrame  # subject, session, phase, day, value (the feature), sorted as given
    flags: list[str]
    units: str
    feature: str
    epoch: str
    where: str  # "'hr' in epoch 'supine'": the start of every message
    random: tuple[str, ...]
    tau_bounds: tuple[float, float]
    fit_a: bool
    fit_d: bool


def _check(table, feature, epoch, random, tau_bounds, alpha) -> _Checked:
    """Check the options and the features table for a time course.

    The rows of the feature in the epoch come from
    :func:`cardiolab.stats.table.check_features_table` (2 subjects, a pre-flight and
    an in- or post-flight row); here the model's own needs are added: at least 2
    distinct days in a phase whose time constant is fitted, a random slope only on a
    phase with data. A phase without data is left out of the model (flagged).

    Raises
    ------
    ModelError
        Starting with the feature and the epoch (see :func:`fit_time_course`).
    """
    where = f"{feature!r} in epoch {epoch!r}"
    random = tuple(random)
    unknown = [r for r in random if r not in _RANDOM_TERMS]
    if unknown or "intercept" not in random:
        raise ModelError(
            f"{where}: random={random!r}: terms are {_RANDOM_TERMS} and must include 'intercept'"
        )
    lo_b, hi_b = (float(b) for b in tau_bounds)
    if not (0 < lo_b < hi_b < math.inf):
        raise ModelError(f"{where}: tau_bounds {tau_bounds!r} must satisfy 0 < low < high < inf")
    if not 0 < alpha < 1:
        raise ModelError(f"{where}: alpha must be in (0, 1), got {alpha!r}")

    rows = check_features_table(table, feature, epoch, require_pre=True, require_change=True)
    data = rows.rows[["subject", "session", "phase", "day", feature]]
    data = data.rename(columns={feature: "value"})
    flags = list(rows.flags)
    fit = {}
    for phase, name, col in (("in", "in-flight", "A"), ("post", "post-flight", "D")):
        days = np.unique(data.loc[data["phase"] == phase, "day"])
        tau = "tau_a" if phase == "in" else "tau_r"
        if days.size == 0:
            fit[col] = False
            flags.append(f"no {name} sessions: {col} and {tau} not estimated")
            continue
        if days.size < 2:
            raise ModelError(
                f"{where}: {tau} needs >= 2 distinct {name} days, the table has one "
                f"(day {days[0]:g}); drop the {name} rows to fit the other phase alone, "
                "or use phase contrasts"
            )
        fit[col] = True
    for term in ("A", "D"):
        if term in random and not fit[term]:
            raise ModelError(f"{where}: random slope on {term!r} needs that phase's data")
    return _Checked(
        data=data,
        flags=flags,
        units=rows.units,
        feature=feature,
        epoch=epoch,
        where=where,
        random=random,
        tau_bounds=(lo_b, hi_b),
        fit_a=fit["A"],
        fit_d=fit["D"],
    )


def _design(checked: _Checked) -> _Problem:
    """The model's design and profiled deviance on the checked rows (:class:`_Problem`).

    Subjects are coded in sorted order of their labels (as strings); the time
    constants are searched on the log scale within ``tau_bounds``.
    """
    data = checked.data
    _, codes = np.unique(data["subject"].astype(str).to_numpy(), return_inverse=True)
    lo_b, hi_b = checked.tau_bounds
    return _Problem(
        data["value"].to_numpy(),
        data["phase"].to_numpy(),
        data["day"].to_numpy(),
        codes,
        fit_a=checked.fit_a,
        fit_d=checked.fit_d,
        random=checked.random,
        log_bounds=(math.log(lo_b), math.log(hi_b)),
    )


@dataclass(frozen=True)
class _Optimum:
    """The fitted model (:func:`_fit`).

    ``v_hat`` the ML optimum ``(log taus, log thetas)``, ``dev_min`` its deviance,
    ``walks`` per time constant its profile points ``(log tau, deviance, v)``,
    ``beta``/``cov`` the fixed effects and their covariance at the optimum, ``ml``
    and ``reml`` statsmodels' fits at the optimal time constants (None where they
    failed).
    """

    v_hat: np.ndarray
    dev_min: float
    walks: list[list[tuple[float, float, np.ndarray]]]
    beta: np.ndarray
    cov: np.ndarray
    ml: Any
    reml: Any
    converged: bool
    flags: list[str]

    def log_tau(self, m: int) -> np.ndarray:
        return self.v_hat[:m]

    def theta(self, m: int) -> np.ndarray:
        return np.exp(self.v_hat[m:])


def _fit(prob: _Problem, alpha: float, where: str) -> _Optimum:
    """The ML optimum, the time-constant profiles, and statsmodels at the optimum.

    The optimum over ``(log taus, log thetas)`` is :meth:`_Problem.fit`; each time
    constant's profile is walked from it (:meth:`_Problem.profile_tau`) far enough
    past the ``1 - alpha`` cut for the intervals. A profile that meets a clearly
    higher likelihood (> 0.01 in deviance) restarts the optimisation from there,
    once. statsmodels ``MixedLM`` is then fitted at the optimal time constants by ML
    (its log-likelihood must equal the profile's maximum) and by REML on the
    linearised design (:func:`_statsmodels_fits`).
    """
    z = math.sqrt(float(stats.chi2.ppf(1 - alpha, 1)))
    zeta_stop = max(z + 1.3, math.sqrt(stats.chi2.ppf(0.999, 1)))
    flags = []
    start = None
    for attempt in range(2):
        v_hat, dev_min, opt_ok = prob.fit(start)
        walks = [prob.profile_tau(k, v_hat, dev_min, zeta_stop) for k in range(prob.m)]
        best = min((r for w in walks for r in w), key=lambda r: r[1])
        if best[1] < dev_min - 0.01 and attempt == 0:
            log.debug("fit_time_course %s: restart from a profile point", where)
            start = best[2]
            continue
        break
    if best[1] < dev_min - 0.01:
        flags.append("a profile met a higher likelihood than the fit: the optimum may be local")
    if not opt_ok:
        flags.append("the optimiser over the time constants did not report convergence")
    log_tau_hat, theta_hat = v_hat[: prob.m], np.exp(v_hat[prob.m :])
    _, beta_hat, cov_hat, _ = prob.solve(log_tau_hat, theta_hat)

    ml, rl, sm_flags = _statsmodels_fits(prob, log_tau_hat, theta_hat, beta_hat)
    flags += sm_flags
    converged = bool(opt_ok and ml is not None and ml.converged and rl is not None and rl.converged)
    if not converged:
        flags.append("the fit did not converge")
    loglik = -0.5 * dev_min
    if ml is not None and abs(ml.llf - loglik) > 1e-3 * max(1.0, abs(loglik)):
        flags.append(
            f"statsmodels ML log-likelihood {ml.llf:.4f} differs from the profile's "
            f"maximum {loglik:.4f}"
        )
    return _Optimum(
        v_hat=v_hat,
        dev_min=dev_min,
        walks=walks,
        beta=beta_hat,
        cov=cov_hat,
        ml=ml,
        reml=rl,
        converged=converged,
        flags=flags,
    )


def _statsmodels_fits(prob: _Problem, log_tau, theta, beta):
    """statsmodels ``MixedLM`` at the time constants ``exp(log_tau)``: (ML, REML, flags).

    ML on the design (the fit's likelihood, started at ``beta`` and ``theta``), REML
    on the design linearised in the time constants (the SDs, see
    :meth:`_Problem.reml_design`). A fit that fails is None (flagged); statsmodels'
    convergence warnings are flags, except its boundary warning (the SDs at 0 are
    flagged by :func:`_sd_intervals`, scale-free).
    """
    from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    X = prob.design(log_tau)
    Z = X[:, prob.zidx]
    fits, flags = {}, []
    for reml, exog in ((False, X), (True, prob.reml_design(log_tau))):
        k = exog.shape[1]
        free = MixedLMParams.from_components(np.ones(k), np.eye(prob.q)) if prob.q > 1 else None
        start = MixedLMParams.from_components(
            np.r_[beta, np.zeros(k - prob.p)], np.diag(np.maximum(theta, 1e-3) ** 2)
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                # one model per criterion: results evaluate llf lazily on their model
                model = MixedLM(prob.y, exog, prob.groups, exog_re=Z)
                res = model.fit(reml=reml, method="lbfgs", start_params=start, free=free)
                res.llf  # noqa: B018 (evaluate now)
            except (np.linalg.LinAlgError, ValueError) as exc:
                res = None
                flags.append(f"statsmodels MixedLM {'REML' if reml else 'ML'} fit failed: {exc}")
        fits[reml] = res
        for w in caught:
            if issubclass(w.category, ConvergenceWarning) and "boundary" not in str(w.message):
                flags.append(f"MixedLM {'REML' if reml else 'ML'}: {w.message}")
    return fits[False], fits[True], flags


@dataclass(frozen=True)
class _Intervals:
    """The parameters' estimates and intervals (:func:`_intervals`).

    ``rows`` maps a parameter to its ``params`` row; ``edges`` a time constant to
    whether its interval reaches (lower, upper) end of the search range;
    ``coef_open`` a fixed effect to whether its interval is open at a time-constant
    bound; ``profiles`` the tables of :attr:`TimeCourse.profile`; ``traces`` and
    ``cuts`` as in :class:`_ProfileState`.
    """

    rows: dict[str, dict]
    edges: dict[str, tuple[bool, bool]]
    coef_open: dict[str, bool]
    profiles: dict[str, pd.DataFrame]
    traces: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    cuts: dict[str, float]
    flags: list[str]


def _intervals(prob: _Problem, opt: _Optimum, alpha: float) -> _Intervals:
    """Estimates and ``1 - alpha`` intervals of every parameter (see the module notes).

    Time constants by profile likelihood (:func:`_tau_intervals`); ``b0``, ``A``,
    ``D`` by profile likelihood along the time-constant profiles
    (:func:`_coefficient_intervals`); the SDs by REML profiles at the fitted time
    constants (:func:`_sd_intervals`).
    """
    cut = float(stats.chi2.ppf(1 - alpha, 1))
    rows, edges, profiles, traces = _tau_intervals(prob, opt, math.sqrt(cut))
    coef_rows, coef_open, cuts = _coefficient_intervals(prob, opt, traces, cut, alpha)
    sd_rows, flags = _sd_intervals(prob, opt, math.sqrt(cut))
    return _Intervals(
        rows={**rows, **coef_rows, **sd_rows},
        edges=edges,
        coef_open=coef_open,
        profiles=profiles,
        traces=dict(zip(prob.taus, traces, strict=True)),
        cuts=cuts,
        flags=flags,
    )


def _tau_intervals(prob: _Problem, opt: _Optimum, z: float):
    """Profile-likelihood intervals of the time constants.

    The interval is where the signed root ``zeta`` of the likelihood ratio is within
    ``+-z``, its ends interpolated linearly in ``zeta`` between profile points
    (:func:`_crossing`); a side the profile does not close within the bounds is open
    (``ci_low`` = the lower bound, ``ci_high`` = inf).

    Returns
    -------
    rows : dict
        ``tau_a``/``tau_r`` -> params row.
    edges : dict
        ``tau_a``/``tau_r`` -> (lower side open, upper side open).
    profiles : dict
        ``tau_a``/``tau_r`` -> the profile table of :attr:`TimeCourse.profile`.
    traces : list
        Per time constant ``(log tau, deviance, conditional beta, conditional
        variances)`` at its profile points.
    """
    log_tau_hat = opt.log_tau(prob.m)
    rows, edges, profiles, traces = {}, {}, {}, []
    for k, (name, walk) in enumerate(zip(prob.taus, opt.walks, strict=True)):
        taus = np.array([r[0] for r in walk])
        devs = np.array([r[1] for r in walk])
        lr = np.maximum(devs - opt.dev_min, 0.0)
        zeta = np.sign(taus - log_tau_hat[k]) * np.sqrt(lr)
        solved = [prob.solve(r[2][: prob.m], np.exp(r[2][prob.m :])) for r in walk]
        cond = np.array([r[1] for r in solved])
        traces.append((taus, devs, cond, np.array([np.diag(r[2]) for r in solved])))
        frame = pd.DataFrame({"tau": np.exp(taus), "loglik": -0.5 * devs, "lr": lr, "zeta": zeta})
        for j, col in enumerate(prob.cols):
            frame[col] = cond[:, j]
        for kk, other in enumerate(prob.taus):
            if kk != k:
                frame[other] = np.exp([r[2][kk] for r in walk])
        profiles[name] = frame
        lo, lo_open = _crossing(taus, zeta, -z, log_tau_hat[k], prob.log_bounds[0])
        hi, hi_open = _crossing(taus, zeta, z, log_tau_hat[k], math.inf)
        rows[name] = dict(
            estimate=math.exp(log_tau_hat[k]),
            ci_low=math.exp(lo),
            ci_high=math.exp(hi),
            ci_open=lo_open or hi_open,
            se=math.nan,
            ci_method="profile likelihood",
        )
        edges[name] = (lo_open, hi_open)
    return rows, edges, profiles, traces


def _coefficient_intervals(prob: _Problem, opt: _Optimum, traces, cut: float, alpha: float):
    """Intervals of ``b0``, ``A``, ``D``: profile likelihood along the tau profiles.

    A coefficient that a random effect varies between subjects (``b0`` always) is
    informed by ``n_groups`` subjects only: its cut is ``F(1, n_groups - 1)``
    (= t^2), a small-sample correction of ``chi2_1`` (12 subjects: 4.84 instead of
    3.84). The ``se`` column is statsmodels' Wald SE at the fitted time constants.

    Returns
    -------
    rows : dict
        Coefficient -> params row.
    open : dict
        Coefficient -> its interval is still moving at its own time constant's bound
        (:func:`_beta_interval`).
    cuts : dict
        Coefficient -> the cut used.
    """
    se = np.asarray(opt.ml.bse_fe, float) if opt.ml is not None else np.sqrt(np.diag(opt.cov))
    cut_between = float(stats.f.ppf(1 - alpha, 1, prob.n_groups - 1))
    cuts = {col: cut_between if j in prob.zidx else cut for j, col in enumerate(prob.cols)}
    rows, is_open = {}, {}
    for j, col in enumerate(prob.cols):
        own = {"A": "tau_a", "D": "tau_r"}.get(col)
        lo, hi, is_open[col] = _beta_interval(
            traces,
            j,
            prob.n,
            opt.dev_min,
            cuts[col],
            prob.log_bounds,
            own=prob.taus.index(own) if own else None,
        )
        method = "profile likelihood over the tau profiles"
        if j in prob.zidx:
            method += f", F(1, {prob.n_groups - 1}) cut"
        rows[col] = dict(
            estimate=opt.beta[j],
            ci_low=lo,
            ci_high=hi,
            ci_open=is_open[col],
            se=se[j],
            ci_method=method,
        )
    return rows, is_open, cuts


def _sd_intervals(prob: _Problem, opt: _Optimum, z: float):
    """The SDs: REML at the optimal time constants, with REML profile intervals.

    REML on the design linearised in the time constants (:meth:`_Problem.reml_design`),
    so that the time constants count as fixed effects in the residual degrees of
    freedom. Estimates are statsmodels' REML fit (this module's REML where it
    failed); a random-effect SD below 1e-3 of the residual SD is flagged as on the
    boundary. Returns ``(rows, flags)``.
    """
    log_tau_hat, theta_hat = opt.log_tau(prob.m), opt.theta(prob.m)
    X_r = prob.reml_design(log_tau_hat)
    log_th_r, dev_r, _ = prob.minimise(
        lambda t: prob.deviance(log_tau_hat, np.exp(t), reml=True, X=X_r),
        np.log(theta_hat),
        prob.theta_bounds(),
    )
    th_r = np.exp(log_th_r)
    sigma_r = math.sqrt(prob.solve(log_tau_hat, th_r, reml=True, X=X_r)[3])
    if opt.reml is not None:
        sigma_sm = math.sqrt(opt.reml.scale)
        sd_sm = np.sqrt(np.maximum(np.diag(np.asarray(opt.reml.cov_re, float)), 0.0))
    else:
        sigma_sm, sd_sm = sigma_r, th_r * sigma_r
    method = "REML profile (linearised in the taus) at the fitted taus"
    rows, flags = {}, []
    sd_names = ["subject_sd"] + [f"{prob.cols[i]}_sd" for i in prob.zidx[1:]]
    for i, name in enumerate(sd_names):
        (lo, _), (hi, hi_open) = prob.profile_sd(i, log_tau_hat, th_r, sigma_r, dev_r, z, X=X_r)
        rows[name] = dict(
            estimate=float(sd_sm[i]),
            ci_low=lo,
            ci_high=hi,
            ci_open=hi_open,
            se=math.nan,
            ci_method=method,
        )
        if sd_sm[i] < 1e-3 * sigma_sm:
            flags.append(f"{name} estimated at 0 (boundary of the parameter space)")
    (lo, _), (hi, hi_open) = prob.profile_sd(
        "residual", log_tau_hat, th_r, sigma_r, dev_r, z, X=X_r
    )
    rows["residual_sd"] = dict(
        estimate=sigma_sm, ci_low=lo, ci_high=hi, ci_open=hi_open, se=math.nan, ci_method=method
    )
    return rows, flags


#: per time constant: its coefficient, phase, the phase in words, the process
_TAU_WORDS = {
    "tau_a": ("A", "in", "in-flight", "adaptation", "launch"),
    "tau_r": ("D", "post", "post-flight", "recovery", "landing"),
}


def _days_text(days: np.ndarray, first: bool = True, n: int = 3) -> str:
    shown = days[:n] if first else days[-n:]
    text = ", ".join(f"{d:g}" for d in shown)
    if days.size > n:
        text = text + ", ..." if first else "..., " + text
    return text


def _edge_flags(prob: _Problem, ivals: _Intervals, alpha: float, units: str) -> list[str]:
    """A sentence for each time constant whose estimate or interval meets a bound.

    A time constant is at an end of its search range ``tau_bounds`` when its
    estimate is within :data:`_BOUND_TOL` (in log tau) of a bound, or its interval
    is open on that side (the profile does not reach the cut within the range) or
    ends within :data:`_BOUND_TOL` of the bound. The sentence says what the
    schedule cannot resolve and what it means for the time constant and its
    coefficient (``A`` for ``tau_a``, ``D`` for ``tau_r``):

    * lower end: the process may be faster than the first sessions of its phase can
      resolve; the time constant is only bounded above;
    * upper end: it may be slower than the last session can follow; the time
      constant (and for ``tau_r`` the half-life) is only bounded below;
    * both ends: the time constant is not identified (and, where the coefficient's
      interval includes 0, there is no clear change in that phase);
    * a coefficient whose interval is still moving at that bound
      (:func:`_beta_interval`) holds only within the search range; otherwise it is
      bounded nonetheless.

    Example (8 subjects, the demo schedule, a recovery ten times faster than R+1)::

        tau_r = 0.1 d is at the lower end of its search range [0.1, 200] d: the
        recovery may be faster than the schedule can resolve (post-flight sessions
        at days 0, 1, 3, ... after landing); tau_r is only known to be below 0.459 d;
        D = 8.52 [7.03, 10] bpm is bounded nonetheless
    """
    lo_b, hi_b = prob.log_bounds
    span = f"[{math.exp(lo_b):g}, {math.exp(hi_b):g}] d"
    level = f"{100 * (1 - alpha):g} %"
    u = f" {units}" if units not in ("", "1") else ""
    flags = []
    for name in prob.taus:
        coef, phase, words, process, anchor = _TAU_WORDS[name]
        row, c = ivals.rows[name], ivals.rows[coef]
        est, lo, hi = row["estimate"], row["ci_low"], row["ci_high"]
        lo_open, hi_open = ivals.edges[name]
        at_low = math.log(est) - lo_b < _BOUND_TOL
        at_high = hi_b - math.log(est) < _BOUND_TOL
        low_edge = at_low or lo_open or math.log(lo) - lo_b < _BOUND_TOL
        high_edge = at_high or hi_open or hi_b - math.log(hi) < _BOUND_TOL
        if not (low_edge or high_edge):
            continue
        days = np.unique(prob.day[prob.phase == phase])
        interval = f"[{lo:.3g}, {hi:.3g}] d"
        coef_text = f"{coef} = {c['estimate']:.3g} [{c['ci_low']:.3g}, {c['ci_high']:.3g}]{u}"
        if low_edge and high_edge:
            text = (
                f"{name} = {est:.3g} d {interval} is not identified: its {level} interval "
                f"spans the whole search range {span}; the {words} sessions (days "
                f"{_days_text(days, n=6)}) show no {process} time course"
            )
            if c["ci_low"] <= 0.0 <= c["ci_high"]:
                text += f" ({coef_text} includes 0: no clear {words} change)"
                coef_text = f"the interval of {coef}"
        elif low_edge:
            head = (
                f"{name} = {est:.3g} d is at the lower end of its search range {span}"
                if at_low
                else f"the {level} interval of {name} = {est:.3g} d {interval} reaches the "
                f"lower end of its search range {span}"
            )
            text = (
                f"{head}: the {process} may be faster than the schedule can resolve "
                f"({words} sessions at days {_days_text(days)} after {anchor}); {name} is "
                f"only known to be below {hi:.3g} d"
            )
        else:
            head = (
                f"{name} = {est:.3g} d is at the upper end of its search range {span}"
                if at_high
                else f"the {level} interval of {name} = {est:.3g} d {interval} reaches the "
                f"upper end of its search range {span}"
            )
            text = (
                f"{head}: the {process} may be slower than the schedule can follow (last "
                f"{words} session at day {days[-1]:g} after {anchor}); {name} is only known "
                f"to be above {lo:.3g} d"
            )
            if name == "tau_r" and math.isinf(hi):
                text += f" (the half-life above {lo * math.log(2.0):.3g} d)"
        if low_edge and high_edge:
            text += f"; treat {name} as unidentified"
        if ivals.coef_open[coef]:
            text += f"; {coef_text} holds only for {name} within {span}"
            if coef == "A" and high_edge:
                text += " (the in-flight plateau, extrapolated beyond the last session)"
        elif not (low_edge and high_edge):
            text += f"; {coef_text} is bounded nonetheless"
        flags.append(text)
    return flags


_PARAM_ORDER = ("b0", "A", "tau_a", "D", "tau_r", "subject_sd", "residual_sd", "A_sd", "D_sd")
_NAN_ROW = dict(
    estimate=math.nan,
    ci_low=math.nan,
    ci_high=math.nan,
    ci_open=False,
    se=math.nan,
    ci_method="not estimated",
)


def _result(
    checked: _Checked,
    prob: _Problem,
    opt: _Optimum,
    ivals: _Intervals,
    margin,
    alpha: float,
) -> TimeCourse:
    """The :class:`TimeCourse`: the params table, the half-life, the flags.

    Parameters of a phase without data are NaN rows; ``A_sd``/``D_sd`` appear only
    when fitted. The flags are the data's, the fit's, the time constants at an end
    of their search range (:func:`_edge_flags`) and the SDs on the boundary, in that
    order; each is also logged (INFO).
    """
    order = [n for n in _PARAM_ORDER if n not in ("A_sd", "D_sd") or n in ivals.rows]
    params = pd.DataFrame({name: ivals.rows.get(name, _NAN_ROW) for name in order}).T
    params = params.astype(
        {
            "estimate": float,
            "ci_low": float,
            "ci_high": float,
            "ci_open": bool,
            "se": float,
            "ci_method": str,
        }
    )
    params.index.name = "parameter"
    empty = pd.DataFrame({"tau": [], "loglik": [], "lr": [], "zeta": []}, dtype=float)
    profiles = {name: ivals.profiles.get(name, empty) for name in ("tau_a", "tau_r")}
    tr = params.loc["tau_r"]
    half_life = pd.Series(
        {name: tr[name] * math.log(2.0) for name in ("estimate", "ci_low", "ci_high")},
        name="half_life",
    )
    flags = checked.flags + opt.flags + _edge_flags(prob, ivals, alpha, checked.units) + ivals.flags
    for msg in flags:
        log.info("fit_time_course %s: %s", checked.where, msg)
    result = TimeCourse(
        params=params,
        half_life=half_life,
        profile=profiles,
        data=checked.data.copy(),
        feature=checked.feature,
        epoch=checked.epoch,
        units=checked.units,
        converged=opt.converged,
        flags=flags,
        loglik=float(-0.5 * opt.dev_min),
        n_obs=int(prob.n),
        n_groups=int(prob.n_groups),
        alpha=float(alpha),
        margin=margin,
        random=checked.random,
        tau_bounds=checked.tau_bounds,
        model=opt.ml,
        _state=_ProfileState(
            problem=prob,
            v_hat=opt.v_hat,
            dev_min=opt.dev_min,
            traces=ivals.traces,
            cuts=ivals.cuts,
        ),
    )
    if margin is not None:
        result._margin(margin)  # validate now rather than at the first recovery_day()
    return result


def _trace_band(trace, j, n, dev_min, cut):
    """Conditional range of fixed effect ``j`` along one time-constant profile.

    At fixed time constants and variance ratios the ML deviance with ``beta_j = c``
    is exact: ``dev + n log(1 + (c - beta_j)^2 / (n var_j))`` (``var_j`` the
    conditional ML variance), so at a profile point with ``lr < cut`` the values of
    ``c`` inside the cut are ``beta_j +- sqrt(n var_j (exp((cut - lr) / n) - 1))``.
    Deviance, estimate and log variance are interpolated monotonically (PCHIP) in
    log tau on a 400-point grid.

    Returns
    -------
    x, beta_j, half, b0 : ndarray
        At the grid points inside the cut: log tau, the conditional estimate, the
        half-width, and the conditional ``b0``.
    """
    x, dev, beta, var = trace
    b, v, b0 = beta[:, j], var[:, j], beta[:, 0]
    if x.size >= 3:
        fine = np.linspace(x[0], x[-1], 400)
        dev = interpolate.PchipInterpolator(x, dev)(fine)
        b = interpolate.PchipInterpolator(x, b)(fine)
        b0 = interpolate.PchipInterpolator(x, b0)(fine)
        v = np.exp(interpolate.PchipInterpolator(x, np.log(v))(fine))
        x = fine
    lr = dev - dev_min
    ok = lr < cut
    half = np.sqrt(n * v[ok] * np.expm1((cut - np.maximum(lr[ok], 0.0)) / n))
    return x[ok], b[ok], half, b0[ok]


def _beta_interval(traces, j, n, dev_min, cut, log_bounds, own=None):
    """Profile-likelihood interval of fixed effect ``j`` along the time-constant profiles.

    The profile of ``beta_j`` is the minimum over the time constants of its exact
    conditional profile; taken along each time-constant profile, the interval is the
    union of the conditional ranges of :func:`_trace_band`.

    Returns ``(low, high, open)``: ``open`` where an end is reached at a bound of
    the coefficient's own time constant (trace ``own``: tau_a for A, tau_r for D)
    inside the cut and is still moving there (it changes by more than 1 % of the
    interval's width over the last 0.5 log-tau); the interval then holds only within
    the bounds (A as tau_a grows without bound; not D as tau_r does, which tends to a
    step).
    """
    low, high, drift = math.inf, -math.inf, [0.0, 0.0]
    for t, trace in enumerate(traces):
        xs, b, half, _ = _trace_band(trace, j, n, dev_min, cut)
        if xs.size == 0:
            continue
        for side, end in enumerate((b - half, b + half)):
            i = int(np.argmin(end)) if side == 0 else int(np.argmax(end))
            if (end[i] < low) if side == 0 else (end[i] > high):
                if side == 0:
                    low = float(end[i])
                else:
                    high = float(end[i])
                move = 0.0
                on_edge = xs[i] <= log_bounds[0] + _BOUND_TOL or xs[i] >= log_bounds[1] - _BOUND_TOL
                if t == own and on_edge:
                    inner = xs[i] + (0.5 if xs[i] <= log_bounds[0] + _BOUND_TOL else -0.5)
                    move = abs(end[i] - end[int(np.argmin(np.abs(xs - inner)))])
                drift[side] = move
    is_open = max(drift) > 0.01 * (high - low)
    return low, high, bool(is_open)


def _crossing(x, zeta, target, x_hat, edge):
    """Where ``zeta`` (sorted by ``x``) first reaches ``target`` away from ``x_hat``.

    Linear interpolation between the bracketing profile points; ``(edge, True)`` where
    the profile never reaches the target on that side.
    """
    side = 1.0 if target > 0 else -1.0
    idx = (
        np.flatnonzero(x >= x_hat - 1e-12) if side > 0 else np.flatnonzero(x <= x_hat + 1e-12)[::-1]
    )
    prev = None
    for i in idx:
        if (zeta[i] - target) * side >= 0:
            if prev is None:
                return x[i], False
            x0, z0 = x[prev], zeta[prev]
            return x0 + (target - z0) * (x[i] - x0) / (zeta[i] - z0), False
        prev = i
    return edge, True
