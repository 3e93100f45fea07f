"""Path strings as users write them in catalogs and on the command line."""

from __future__ import annotations

import os
import re

__all__ = ["expand_path", "expand_variables", "is_url", "missing_variables"]

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
