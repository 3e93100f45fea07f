"""Exceptions raised by cardiolab.

Every error a user can cause by feeding cardiolab a bad file, catalog or signal is a
:class:`CardiolabError`, so that a batch run can record it and go on, and so that the
command line can print it without a traceback.
"""

from __future__ import annotations

import errno
import os
import re

__all__ = [
    "CardiolabError",
    "CatalogError",
    "ModelError",
    "SessionFormatError",
    "SignalQualityError",
    "StorageError",
    "UnitError",
    "storage_error",
    "file_text",
    "file_names",
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


class StorageError(CardiolabError):
    """Reading or writing a store failed in the operating system (a full disk, a
    permission, a lost network mount): the message names the path and what was being
    done.

    Attributes
    ----------
    path : str
        The file or folder at fault (the one the system named, else the store or group
        being written).
    stage : str
        What was being done (``"write"``, ``"lock"``...).
    errno : int or None
        The system's error number (``errno.ENOSPC`` for a full disk).
    """

    def __init__(self, message: str, *, path=None, stage: str = "", errno: int | None = None):
        self.path = None if path is None else str(path)
        self.stage = stage
        self.errno = errno
        super().__init__(message)


_ADVICE = {
    errno.ENOSPC: "the disk is full: free space there or point the catalog's 'derived' elsewhere",
    errno.EDQUOT: "the disk quota is used up: free space or point 'derived' elsewhere",
    errno.EACCES: "no permission to write there",
    errno.EROFS: "the file system is read-only",
}


def storage_error(err: OSError, path, stage: str) -> StorageError:
    """A :class:`StorageError` for an operating-system error met in a stage.

    Parameters
    ----------
    err : OSError
        The error (``OSError(errno.ENOSPC, ...)`` for a full disk).
    path : str or os.PathLike
        The store or group being read or written, named when the system did not name
        a file (``os.write`` on a full disk names none).
    stage : str
        What was being done (for the message and :attr:`StorageError.stage`).

    Returns
    -------
    StorageError
        Message ``"<path>: <stage>: <system message> (<ERRNO>): <advice>"``.
    """
    where = err.filename if err.filename is not None else path
    code = err.errno
    name = errno.errorcode.get(code, "") if code is not None else ""
    text = err.strerror or (os.strerror(code) if code is not None else str(err))
    advice = _ADVICE.get(code)
    message = f"{os.fspath(where)}: {stage}: {text}" + (f" ({name})" if name else "")
    if advice:
        message += f": {advice}"
    return StorageError(message, path=where, stage=stage, errno=code)


# --- what a message may show of a file's contents -------------------------------------

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_LABEL = re.compile(r"[\w .,+\-()\[\]/%#*°µ'<>&~]{1,40}")


def file_text(value) -> str:
    """How a message shows a value read from a file: a number as it is written,
    anything else by its length only.

    A catalog may point a reader at any file in its data roots, and messages reach the
    Campaign page and logs, so they never repeat a file's text (its first line could be
    a password entry or a key). Numbers (a sampling interval, a count) are shown.

    Examples
    --------
    >>> file_text(" 0.01 ")
    "'0.01'"
    >>> file_text("root:x:0:0:root:/root:/bin/bash")
    'a text of 31 characters (not shown)'
    """
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    text = text.strip()
    if text == "":
        return "an empty text"
    if _NUMBER.fullmatch(text) and len(text) <= 32:
        return repr(text)
    return f"a text of {len(text)} characters (not shown)"


def file_names(names) -> str:
    """How a message lists the channel or column names a file declares: the names
    when every one reads as a channel label (at most 40 letters, digits, spaces and
    ``_.,+-()[]/%#*°µ'<>&~``), else only how many there are.

    A line of a file that is not the format (``root:x:0:0:...``, ``KEY=...``) read as
    names is thus never shown; a file whose names are labels is listed, which is what
    a user mapping its channels needs.
    """
    names = [str(n) for n in names]
    if all(_LABEL.fullmatch(n) for n in names):
        return repr(names)
    plural = "s" if len(names) != 1 else ""
    return f"{len(names)} name{plural}, not shown: not all read as channel labels"
