"""Simulation-based power for a mission's own schedule: how many crew are enough?

A team planning a flight with 2-6 crew, or a bed-rest study with 8-24 volunteers,
asks: with our session schedule and the between-subject spread we expect, how likely
are we to detect a post-flight change of a given size (or to bound the recovery time
constant)? :func:`power_curve` answers by simulation: for each number of subjects it
draws ``n_sim`` campaigns from the adaptation/recovery model
(:func:`cardiolab.stats.design.simulate_feature_table`), fits the same models the
analysis will use, and counts how often the test succeeds.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ModelError
from ..parallel import run_tasks
from .mixed import INFERENCE

log = logging.getLogger("cardiolab")

__all__ = ["PowerCurve", "StudyDesign", "power_curve"]

DEFAULT_SCHEDULE = ("L-60", "L-30", "FD5", "FD15", "FD25", "R+0", "R+1", "R+3", "R+10", "R+30")


@dataclass(frozen=True)
class StudyDesign:
    """What a planned study looks like, for :func:`power_curve`.

    Parameters
    ----------
    schedule : sequence of str
        Session labels (``L-30``, ``FD5``, ``R+0``, ``R+6h``, ``BDC-9``, ...).
    pre : float
        Pre-flight population mean of the feature (its units).
    between_sd : float
        Between-subject SD of the pre-flight level, as a fraction of ``pre``.
    residual_sd : float
        Within-subject (session to session) SD, in the feature's units.
    units : str
        Units of the feature (for labels).
    """

    schedule: tuple = DEFAULT_SCHEDULE
    pre: float = 62.0
    between_sd: float = 0.12
    residual_sd: float = 2.5
    units: str = "1"

    def __post_init__(self):
        object.__setattr__(self, "schedule", tuple(self.schedule))
        if self.residual_sd <= 0 or self.between_sd < 0:
            raise ModelError("StudyDesign: residual_sd must be > 0 and between_sd >= 0")


@dataclass
class PowerCurve:
    """Power by number of subjects (:func:`power_curve`)."""

    table: pd.DataFrame
    design: StudyDesign
    effect: dict
    test: str
    alpha: float
    n_sim: int
    seed: int
    attrs: dict = field(default_factory=dict)
    inference: str = "Satterthwaite t"

    @property
    def dataset(self) -> xr.Dataset:
        """The curve as a Dataset (dim ``n_subjects``), ready to plot."""
        ds = xr.Dataset.from_dataframe(self.table.set_index("n_subjects"))
        long_names = {
            "power": "probability that the test succeeds",
            "ci_low": "lower 95% bound of the power (Wilson)",
            "ci_high": "upper 95% bound of the power (Wilson)",
            "n_ok": "simulations fitted",
            "n_failed": "simulations whose model could not be fitted",
        }
        for name, long_name in long_names.items():
            ds[name].attrs.update(long_name=long_name, units="1")
        ds["n_subjects"].attrs.update(long_name="number of subjects", units="1")
        ds.attrs.update(
            test=self.test,
            inference=self.inference,
            alpha=self.alpha,
            n_sim=self.n_sim,
            seed=self.seed,
            schedule=", ".join(self.design.schedule),
            **self.effect,
        )
        return ds

    def n_for(self, power: float = 0.8) -> int | None:
        """The smallest number of subjects whose estimated power reaches ``power``."""
        ok = self.table[self.table["power"] >= power]
        return int(ok["n_subjects"].min()) if len(ok) else None

    def __repr__(self) -> str:
        n80 = self.n_for(0.8)
        effect = ", ".join(f"{k}={v:g}" for k, v in self.effect.items())
        return (
            f"<PowerCurve {self.test} ({effect}; {self.inference}), alpha {self.alpha}, "
            f"{self.n_sim} simulations "
            f"per size: 80% power at n = {n80 if n80 is not None else '> ' + str(self.table['n_subjects'].max())}>"
        )


def _one(
    design: StudyDesign,
    effect: dict,
    test: str,
    alpha: float,
    adjust: str,
    inference: str,
    n: int,
    seed_seq,
) -> float:
    """One simulated campaign: 1.0 success, 0.0 failure, NaN not fittable."""
    from .design import simulate_feature_table
    from .mixed import phase_contrasts
    from .timecourse import fit_time_course

    rng_seed = int(np.random.default_rng(seed_seq).integers(2**31 - 1))
    table = simulate_feature_table(
        list(design.schedule),
        n,
        pre=design.pre,
        A=effect.get("A", 0.0),
        tau_a=effect.get("tau_a", 5.0),
        D=effect["D"],
        tau_r=effect.get("tau_r", 5.0),
        between_sd=design.between_sd * abs(design.pre),
        residual_sd=design.residual_sd,
        feature="y",
        units=design.units,
        seed=rng_seed,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if test == "contrast":
                res = phase_contrasts(table, "y", inference=inference)
                post = res.table[res.table["phase"] == "post"]
                if not len(post):
                    raise ModelError("the schedule has no post-flight session")
                first = post.iloc[0]
                p = first["p_holm"] if adjust == "holm" else first["p"]
                return float(p < alpha)
            tc = fit_time_course(table, "y")
            row = tc.params.loc["tau_r"]
            return float(not bool(row["ci_open"]) and np.isfinite(row["ci_high"]))
    except ModelError:
        return np.nan


def _batch(setting: tuple, task: tuple) -> tuple[int, list[float]]:
    """One task of :func:`power_curve`: ``task`` is (n_subjects, seeds) and ``setting``
    (design, effect, test, alpha, adjust, inference); returns (n_subjects, one outcome
    per seed)."""
    n, seeds = task
    return n, [_one(*setting, n, s) for s in seeds]


def power_curve(
    design: StudyDesign | dict | None = None,
    effect: float | dict = 5.0,
    n_subjects=range(2, 25),
    n_sim: int = 200,
    seed: int = 0,
    *,
    test: str = "contrast",
    alpha: float = 0.05,
    adjust: str = "holm",
    inference: str = "satterthwaite",
    client=None,
    workers: int | None = None,
    progress: bool = True,
) -> PowerCurve:
    """Simulated power to detect a post-flight change (or bound recovery) by crew size.

    Parameters
    ----------
    design : StudyDesign or dict, optional
        The schedule and the expected spread (dict keys as :class:`StudyDesign`).
        Default: the demo schedule, supine HR (62 bpm, between-subject SD 12%,
        session-to-session SD 2.5 bpm).
    effect : float or dict
        The post-flight change at landing ``D`` (feature units), or a dict with ``D``
        and optionally ``tau_r`` (days), ``A`` and ``tau_a`` of the
        adaptation/recovery model.
    n_subjects : iterable of int
        Crew sizes to evaluate (each >= 2).
    n_sim : int
        Simulated campaigns per size.
    seed : int
        Seed: the same arguments give the same curve.
    test : {"contrast", "tau_r"}
        ``contrast``: the first post-flight session differs from the pre-flight mean
        (:func:`~cardiolab.stats.mixed.phase_contrasts`, p < ``alpha``; Holm-adjusted
        across timepoints unless ``adjust="none"``). ``tau_r``: the 95%
        profile-likelihood CI of the recovery time constant is bounded on both sides
        (:func:`~cardiolab.stats.timecourse.fit_time_course`).
    alpha : float
        Significance level.
    adjust : {"holm", "none"}
        Multiplicity adjustment of the contrast test.
    inference : {"satterthwaite", "wald"}, default "satterthwaite"
        The contrast test: Student t with Satterthwaite degrees of freedom (as
        lmerTest; the default of :func:`~cardiolab.stats.mixed.phase_contrasts`) or
        Wald z. Named in ``.inference``.
    client : distributed.Client or "sync", optional
        ``None``: a LocalCluster sized to the machine; ``"sync"``: this process.
    workers : int, optional
        Workers of the LocalCluster.
    progress : bool
        Progress bar over simulations.

    Returns
    -------
    PowerCurve
        ``.table`` (columns ``n_subjects``, ``power``, ``ci_low``, ``ci_high``,
        ``n_ok``, ``n_failed``), ``.dataset`` (dim ``n_subjects``), ``.n_for(0.8)``.

    Examples
    --------
    >>> pc = power_curve({"schedule": ["L-30", "L-10", "R+0", "R+3", "R+10"],
    ...                   "pre": 62, "between_sd": 0.12, "residual_sd": 3},
    ...                  effect=4.0, n_subjects=[3, 6, 12], n_sim=50,
    ...                  client="sync", progress=False)  # doctest: +SKIP
    >>> pc.n_for(0.8)  # doctest: +SKIP
    """
    from statsmodels.stats.proportion import proportion_confint

    if design is None:
        design = StudyDesign()
    elif isinstance(design, dict):
        unknown = set(design) - set(StudyDesign.__dataclass_fields__)
        if unknown:
            raise ModelError(f"power_curve: unknown design key(s) {sorted(unknown)}")
        design = StudyDesign(**design)
    effect = (
        {"D": float(effect)} if np.isscalar(effect) else {k: float(v) for k, v in effect.items()}
    )
    if "D" not in effect:
        raise ModelError("power_curve: effect needs D, the post-flight change at landing")
    if test not in ("contrast", "tau_r"):
        raise ModelError(f"power_curve: test must be 'contrast' or 'tau_r', not {test!r}")
    if adjust not in ("holm", "none"):
        raise ModelError(f"power_curve: adjust must be 'holm' or 'none', not {adjust!r}")
    if inference not in INFERENCE:
        raise ModelError(
            f"power_curve: inference must be one of {list(INFERENCE)}, not {inference!r}"
        )
    sizes = sorted({int(n) for n in n_subjects})
    if not sizes or sizes[0] < 2:
        raise ModelError("power_curve: n_subjects must be >= 2 (a mixed model needs two subjects)")
    if n_sim < 1:
        raise ModelError("power_curve: n_sim must be >= 1")

    root = np.random.SeedSequence(seed)
    per_size = root.spawn(len(sizes))
    chunk = max(1, min(n_sim, 25))
    tasks = []
    for n, ss in zip(sizes, per_size, strict=True):
        seeds = ss.spawn(n_sim)
        tasks += [(n, seeds[i : i + chunk]) for i in range(0, n_sim, chunk)]
    outcomes: dict[int, list[float]] = {n: [] for n in sizes}
    run = run_tasks(
        _batch,
        tasks,
        shared=(design, effect, test, alpha, adjust, inference),
        client=client,
        workers=workers,
        progress=progress,
        desc="power simulations",
        unit="simulation",
        size=lambda task: len(task[1]),
    )
    for n, res in run.results:
        outcomes[n] += res
    rows = []
    for n in sizes:
        arr = np.asarray(outcomes[n], dtype=float)
        ok = arr[np.isfinite(arr)]
        hits = int(ok.sum())
        lo, hi = (
            proportion_confint(hits, len(ok), alpha=0.05, method="wilson")
            if len(ok)
            else (np.nan, np.nan)
        )
        rows.append(
            {
                "n_subjects": n,
                "power": hits / len(ok) if len(ok) else np.nan,
                "ci_low": lo,
                "ci_high": hi,
                "n_ok": len(ok),
                "n_failed": int(len(arr) - len(ok)),
            }
        )
    table = pd.DataFrame(rows)
    if table["n_failed"].sum():
        log.warning(
            "power_curve: %d simulated campaigns could not be fitted (counted apart)",
            int(table["n_failed"].sum()),
        )
    return PowerCurve(
        table, design, effect, test, alpha, n_sim, seed, inference=INFERENCE[inference]
    )
