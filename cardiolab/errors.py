"""Exceptions raised by cardiolab.

Every error a user can cause by feeding cardiolab a bad file, catalog or signal is a
:class:`CardiolabError`, so that a batch run can record it and go on, and so that the
command line can print it without a traceback.
"""

from __future__ import annotations

__all__ = [
    "CardiolabError",
    "CatalogError",
    "ModelError",
    "SessionFormatError",
    "SignalQualityError",
    "UnitError",
]


class CardiolabError(Exception):
    """Base class of every error cardiolab raises on purpose."""


class CatalogError(CardiolabError):
    """A campaign catalog is malformed or points at something that is not there.

    Parameters
    ----------
    message : str
        What is wrong.
    file : str, optional
        The catalog file.
    entry : str, optional
        The catalog entry (e.g. ``sessions[3] (S01 L-30)``).
    field : str, optional
        The field within that entry (e.g. ``files[0].path``).
    """

    def __init__(self, message: str, *, file=None, entry=None, field=None):
        self.file = None if file is None else str(file)
        self.entry = entry
        self.field = field
        self.message = message
        where = [p for p in (self.file, entry, field) if p]
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class SessionFormatError(CardiolabError):
    """A session (a file, or a node of a campaign tree) breaks the data model.

    The message names the file or session, the group and the field at fault; when
    several violations are found at once they are all listed, one per line.
    """

    def __init__(self, message: str, *, violations: list[str] | None = None):
        self.violations = list(violations) if violations else [message]
        super().__init__(message)


class UnitError(SessionFormatError):
    """A physical unit is unknown, or cannot be converted to the unit a group needs."""


class SignalQualityError(CardiolabError):
    """A signal is too poor (too short, flat, too noisy) for the analysis asked of it."""


class ModelError(CardiolabError):
    """A statistical model cannot be fitted to the data it was given.

    Raised before the fit (too few subjects, no variance, a timepoint without data)
    with a message that names the feature, the epoch and what is missing; a fit that
    runs but does not converge is *not* an error: it is flagged in its result.
    """
