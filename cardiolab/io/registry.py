"""The format registry: one declaration per file format, asked by everything else.

A format is one module of :mod:`cardiolab.io` that defines its reader and declares it
once with :func:`register_format` (MNE-Python's one reader module per format; xarray's
``BackendEntrypoint``)::

    FORMAT = register_format(
        FileFormat(
            name="acq",
            reader=read_acq,
            description="BIOPAC AcqKnowledge 3.x-5.x (bioread)",
            suffixes=(".acq",),
        )
    )

The catalog validates a file entry's options from the declaration (an option another
format declares is refused, naming the key and the formats it is for), checks that
the raw input exists with :attr:`FileFormat.raw_files`, and the pipeline hashes those
files for its cache; :func:`cardiolab.io.read_session` dispatches on the name; the
README's format table lists :func:`file_formats`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SessionFormatError, UnitError
from ..units import conversion_factor

__all__ = [
    "FileFormat",
    "FormatOption",
    "register_format",
    "get_format",
    "file_formats",
    "option_formats",
    "single_file",
    "file_or_siblings",
    "directory_tree",
    "positive_number",
    "one_of",
    "nonempty_text",
    "time_unit",
]


# --- raw input: which files hold a session's raw data ------------------------------------


def single_file(path: Path) -> list[Path]:
    """The file itself (empty where it does not exist)."""
    return [path] if path.is_file() else []


def file_or_siblings(path: Path) -> list[Path]:
    """The file, or where ``path`` names a record (WFDB: ``100`` for ``100.hea``,
    ``100.dat``, ``100.atr``), every file ``<path>.<extension>`` beside it."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.parent.glob(path.name + ".*") if p.is_file())


def directory_tree(path: Path) -> list[Path]:
    """Every file below a directory store (zarr), or the file itself."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return single_file(path)


# --- option checks: value in, checked value out, ValueError with a sentence ---------------


def positive_number(value: Any) -> float:
    """A finite number > 0 (a sampling rate, a duration)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number > 0, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a number > 0, not {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise ValueError(f"must be a number greater than 0, not {value!r}")
    return number


def one_of(*choices: str) -> Callable[[Any], str]:
    """A check that the value is one of ``choices``."""

    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {list(choices)}, not {value!r}")
        return value

    check.__doc__ = f"One of {list(choices)}."
    return check


def nonempty_text(value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty text, not {value!r}")
    return value.strip()


def time_unit(value: Any) -> str:
    """A unit of time known to :mod:`cardiolab.units`."""
    value = nonempty_text(value)
    try:
        conversion_factor(value, "time")
    except UnitError as err:
        raise ValueError(str(err)) from None
    return value


# --- declarations ---------------------------------------------------------------------


@dataclass(frozen=True)
class FormatOption:
    """One option a format's reader takes from the catalog's file entry.

    Attributes
    ----------
    name : str
        The key in the catalog's file entry and the reader's keyword.
    check : callable
        ``check(value) -> value``; raises ``ValueError`` with a sentence on a bad value.
    doc : str
        What it means, for the docs and for messages.
    """

    name: str
    check: Callable[[Any], Any]
    doc: str


@dataclass(frozen=True)
class FileFormat:
    """A file format: its name, reader, options and raw files.

    Attributes
    ----------
    name : str
        What a catalog writes in ``format:``.
    reader : callable
        ``reader(path, channels, **options) -> xarray.DataTree`` (a session node of the
        data model, lazy); formats without channel mappings are called with
        ``channels=None``.
    description : str
        One line for the docs.
    suffixes : tuple of str
        File name endings, lower case (``.edf``), for guessing and the docs.
    options : tuple of FormatOption
        The file-entry keys the reader takes.
    channels : bool
        Whether a file entry takes a channel mapping (file channel -> group).
    channels_optional : bool
        Whether the mapping may be left out (the reader knows the file's columns).
    native : bool
        Whether the files hold whole sessions of the data model (zarr, netCDF stores;
        read with ``group``), which the catalog may name as its ``store``.
    raw_files : callable
        ``raw_files(path) -> list of Path``: the local files that hold the raw input (the
        catalog checks they exist, the pipeline hashes their names, sizes and times).
    missing : str
        What to call a missing input in messages (``"file"``, ``"record (no .hea
        header)"``).
    """

    name: str
    reader: Callable[..., Any]
    description: str
    suffixes: tuple[str, ...] = ()
    options: tuple[FormatOption, ...] = ()
    channels: bool = True
    channels_optional: bool = False
    native: bool = False
    raw_files: Callable[[Path], list[Path]] = single_file
    missing: str = "file"

    def option(self, name: str) -> FormatOption | None:
        """The declared option ``name``, or None."""
        return next((o for o in self.options if o.name == name), None)

    @property
    def option_names(self) -> list[str]:
        return [o.name for o in self.options]


#: name -> FileFormat, in registration order
_REGISTRY: dict[str, FileFormat] = {}


def register_format(fmt: FileFormat) -> FileFormat:
    """Add a format to the registry (its module's one registration line).

    Raises
    ------
    ValueError
        A format of that name is registered already by another reader, or an option
        name is one of the file entry's own keys (path, format, channels).
    """
    old = _REGISTRY.get(fmt.name)
    if old is not None and old.reader is not fmt.reader:
        raise ValueError(f"format {fmt.name!r} is registered already ({old.description})")
    reserved = {"path", "format", "channels"} & set(fmt.option_names)
    if reserved:
        raise ValueError(f"format {fmt.name!r}: option names {sorted(reserved)} are reserved")
    _REGISTRY[fmt.name] = fmt
    return fmt


def file_formats() -> list[FileFormat]:
    """Every registered format, in registration order."""
    return list(_REGISTRY.values())


def get_format(name: str, source=None) -> FileFormat:
    """The registered format ``name``.

    Raises
    ------
    SessionFormatError
        No such format (the message lists those known; ``source`` names the file).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        where = f"{source}: " if source is not None else ""
        raise SessionFormatError(
            f"{where}unknown format {name!r} (known: {sorted(_REGISTRY)})"
        ) from None


def option_formats() -> dict[str, list[str]]:
    """Option name -> the formats that declare it (for the catalog's schema)."""
    out: dict[str, list[str]] = {}
    for fmt in _REGISTRY.values():
        for name in fmt.option_names:
            out.setdefault(name, []).append(fmt.name)
    return out
