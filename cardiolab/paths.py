"""Path strings as users write them in catalogs and on the command line."""

from __future__ import annotations

import os
import re

__all__ = ["expand_path", "is_url"]

_VAR = re.compile(r"\$\{(\w+)(?::-((?:[^{}]|\{[^{}]*\})*))?\}")


def expand_path(text: str) -> str:
    """Expand ``~``, ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` (defaults may nest).

    Examples
    --------
    >>> expand_path("${CARDIOLAB_UNSET_EXAMPLE:-/data}/demo")
    '/data/demo'
    """
    text = str(text)
    previous = None
    while previous != text:
        previous = text
        text = _VAR.sub(
            lambda m: os.environ.get(m.group(1)) or (m.group(2) if m.group(2) is not None else ""),
            text,
        )
    return os.path.expanduser(os.path.expandvars(text))


def is_url(text: str) -> bool:
    """Whether a path string is an fsspec URL (``s3://…``, ``memory://…``)."""
    return "://" in str(text)
