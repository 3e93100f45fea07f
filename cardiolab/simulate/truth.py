"""The known truth behind a simulated campaign, saved beside its store."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..encoding import variable_length_strings
from ..errors import CardiolabError
from .effects import time_course

__all__ = ["Truth", "TRUTH_DIR"]

#: Folder (beside the campaign store) holding the truth.
TRUTH_DIR = "truth"


@dataclass
class Truth:
    """What made a simulated campaign, for scoring every later stage against it.

    Attributes
    ----------
    effects : pandas.DataFrame
        Population effects, indexed by (quantity, epoch), columns ``pre``, ``A``,
        ``tau_a``, ``D``, ``tau_r``, ``between_sd`` (see
        :func:`cardiolab.simulate.default_effects`).
    subjects : pandas.DataFrame
        Each subject's own pre-flight level: index (subject, quantity, epoch),
        columns ``pre`` and ``z`` (the standard-normal draw behind it).
    sessions : pandas.DataFrame
        The true value of every quantity in every session and epoch (subject
        level, time course and day-to-day deviation): index (subject, session,
        epoch), columns ``phase``, ``day`` and one per quantity.
    realised : pandas.DataFrame
        Same layout; what the generated physiology actually has (epoch means of
        the clean signals and of the per-beat truth), which differs from
        ``sessions`` by beat-to-beat variability.
    params : dict
        Simulation parameters (kind, seed, rates, artefact rates, ...).
    path : pathlib.Path or None
        Where the truth is saved (``<campaign>/truth``).
    """

    effects: pd.DataFrame
    subjects: pd.DataFrame
    sessions: pd.DataFrame
    realised: pd.DataFrame
    params: dict
    path: Path | None = None
    _beats: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        n_sub = self.sessions.index.get_level_values("subject").nunique()
        n_ses = len(self.sessions.index.droplevel("epoch").unique())
        return (
            f"<Truth {self.params.get('kind', '?')}: {n_sub} subjects, {n_ses} sessions, "
            f"{len(self.effects)} effect rows; saved at {self.path}>"
        )

    def population(self, quantity, epoch, phase, day):
        """The population curve of ``quantity`` (no subject effect), vectorised.

        Parameters
        ----------
        quantity, epoch : str
        phase : str or array-like of str
        day : float or array-like
            Days from the phase anchor.
        """
        row = self.effects.loc[(quantity, epoch)]
        return time_course(row["pre"], row["A"], row["tau_a"], row["D"], row["tau_r"], phase, day)

    def beats(self, subject: str, session: str) -> xr.Dataset:
        """Per-beat truth of one session (R-peak sample indices, SBP/DBP, ...)."""
        key = (subject, session)
        if key in self._beats:
            return self._beats[key]
        if self.path is None:
            raise CardiolabError("this Truth was not saved and holds no beats for {key}")
        store = self.path / "beats.zarr"
        try:
            ds = xr.open_dataset(store, engine="zarr", group=f"{subject}/{session}")
        except (FileNotFoundError, KeyError, OSError) as err:
            raise CardiolabError(f"{store}: no beat truth for {subject}/{session}") from err
        return ds

    def save(self, path) -> Path:
        """Write the truth to ``path`` (a folder): CSV tables, params JSON, beats zarr."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.effects.to_csv(path / "effects.csv")
        self.subjects.to_csv(path / "subjects.csv")
        self.sessions.to_csv(path / "sessions.csv")
        self.realised.to_csv(path / "realised.csv")
        (path / "params.json").write_text(json.dumps(self.params, indent=2, default=_json))
        if self._beats:
            tree = xr.DataTree.from_dict(
                {f"{s}/{ses}": variable_length_strings(ds) for (s, ses), ds in self._beats.items()}
            )
            tree.to_zarr(path / "beats.zarr", mode="w", consolidated=True)
        self.path = path
        return path

    @classmethod
    def load(cls, path) -> Truth:
        """Read a truth saved by :meth:`save` (``path`` is the truth folder or the
        campaign folder that holds it)."""
        path = Path(path)
        if not (path / "effects.csv").exists() and (path / TRUTH_DIR / "effects.csv").exists():
            path = path / TRUTH_DIR
        if not (path / "effects.csv").exists():
            raise CardiolabError(f"{path}: no simulator truth here (effects.csv missing)")
        effects = pd.read_csv(path / "effects.csv", index_col=["quantity", "epoch"])
        subjects = pd.read_csv(path / "subjects.csv", index_col=["subject", "quantity", "epoch"])
        sessions = pd.read_csv(path / "sessions.csv", index_col=["subject", "session", "epoch"])
        realised = pd.read_csv(path / "realised.csv", index_col=["subject", "session", "epoch"])
        params = json.loads((path / "params.json").read_text())
        return cls(effects, subjects, sessions, realised, params, path=path)


def _json(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
