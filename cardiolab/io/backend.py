"""cardiolab's readers as one xarray backend: ``xr.open_datatree(path, engine="cardiolab")``.

One :class:`xarray.backends.BackendEntrypoint` serves every format of the registry
(:mod:`cardiolab.io.registry`), so that a new format needs no entry point of its own::

    tree = xr.open_datatree("S01_R+1.edf", engine="cardiolab", channels={"ECG": "ecg"})
    abp = xr.open_dataset("rec.hea", engine="cardiolab", format="wfdb",
                          channels={"ABP": "abp"}, group="abp")

``format`` is the registry's name; without it the file's ending chooses (it must
belong to one format only). ``channels`` and the format's options are those of a
catalog file entry. The backend never claims a file by itself (``guess_can_open`` is
false): its endings (``.csv``, ``.txt``, ``.mat``, ``.nc``) are shared with other
backends, so ``engine="cardiolab"`` is always said.
"""

from __future__ import annotations

from pathlib import Path

from xarray.backends import BackendEntrypoint

from ..errors import SessionFormatError
from .registry import file_formats

__all__ = ["CardiolabBackend", "format_of"]


def format_of(path) -> str:
    """The registered format whose suffixes end ``path``'s name (one and only one).

    Raises
    ------
    SessionFormatError
        No format, or several, have that ending (the message lists them).
    """
    name = str(path).rstrip("/").lower()
    hits = [f.name for f in file_formats() if f.suffixes and name.endswith(f.suffixes)]
    if len(hits) != 1:
        known = {f.name: list(f.suffixes) for f in file_formats()}
        what = f"several formats ({hits})" if hits else "no format"
        raise SessionFormatError(
            f"{path}: {what} read files of this ending; say which with format= "
            f"(formats and their endings: {known})"
        )
    return hits[0]


class CardiolabBackend(BackendEntrypoint):
    """Every cardiolab file format, as an xarray backend (``engine="cardiolab"``)."""

    description = "Physiological recordings read by cardiolab's format registry"
    url = "https://github.com/cardiolab"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "format", "channels", "group")

    def open_datatree(
        self, filename_or_obj, *, format=None, channels=None, drop_variables=None, **options
    ):
        """The session node of a file (see :func:`cardiolab.io.read_session`)."""
        from . import read_session

        path = Path(filename_or_obj) if not isinstance(filename_or_obj, Path) else filename_or_obj
        fmt = format or format_of(path)
        tree = read_session(path, fmt, channels=channels, **options)
        if drop_variables:
            tree = tree.map_over_datasets(lambda ds: ds.drop_vars(drop_variables, errors="ignore"))
        return tree

    def open_dataset(
        self,
        filename_or_obj,
        *,
        format=None,
        channels=None,
        group=None,
        drop_variables=None,
        **options,
    ):
        """One group of the session node (``group="ecg"``; the only one if there is one)."""
        tree = self.open_datatree(
            filename_or_obj,
            format=format,
            channels=channels,
            drop_variables=drop_variables,
            **options,
        )
        groups = [name for name in tree.children if name != "protocol"]
        if group is None:
            if len(groups) != 1:
                raise SessionFormatError(
                    f"{filename_or_obj}: the session has groups {groups}; say which with group="
                )
            group = groups[0]
        if group not in tree.children:
            raise SessionFormatError(
                f"{filename_or_obj}: no group {group!r} (the session has {list(tree.children)})"
            )
        return tree[group].to_dataset(inherit=False)

    def guess_can_open(self, filename_or_obj) -> bool:
        return False
