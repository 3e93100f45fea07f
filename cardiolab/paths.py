"""Path strings as users write them in catalogs and on the command line."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from pathlib import Path

__all__ = ["atomic_directory", "expand_path", "expand_variables", "is_url", "missing_variables"]

_VAR = re.compile(r"\$\{(\w+)(?::-((?:[^{}]|\{[^{}]*\})*))?\}")


def expand_variables(text: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` only (defaults may nest).

    Unlike :func:`expand_path`, ``~`` and bare ``$VAR`` are left as they are: this is
    for values that are not paths (credentials in ``storage_options``). An unset
    ``${VAR}`` without default becomes ``""`` (check :func:`missing_variables` first).

    Examples
    --------
    >>> expand_variables("${CARDIOLAB_UNSET_EXAMPLE:-a$b}")
    'a$b'
    """
    text = str(text)
    previous = None
    while previous != text:
        previous = text
        text = _VAR.sub(
            lambda m: os.environ.get(m.group(1)) or (m.group(2) if m.group(2) is not None else ""),
            text,
        )
    return text


def missing_variables(text: str) -> list[str]:
    """The ``${VAR}`` references (without default) whose variable is unset or empty."""
    return [
        m.group(1)
        for m in _VAR.finditer(str(text))
        if m.group(2) is None and not os.environ.get(m.group(1))
    ]


def expand_path(text: str) -> str:
    """Expand ``~``, ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` (defaults may nest).

    Examples
    --------
    >>> expand_path("${CARDIOLAB_UNSET_EXAMPLE:-/data}/demo")
    '/data/demo'
    """
    return os.path.expanduser(os.path.expandvars(expand_variables(text)))


def is_url(text: str) -> bool:
    """Whether a path string is an fsspec URL (``s3://…``, ``memory://…``)."""
    return "://" in str(text)


@contextlib.contextmanager
def atomic_directory(target):
    """Write a folder (e.g. a zarr group) aside, then put it in place in one rename.

    Yields a hidden temporary folder beside ``target``; when the ``with`` block ends
    without error it replaces ``target`` (an older ``target`` is moved away first and
    deleted after), so readers see either the old folder or the new one, never a half
    written one. On error the temporary folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
