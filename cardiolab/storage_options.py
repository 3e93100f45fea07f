"""fsspec storage options as users give them: in a catalog, in Python, on the command line.

A catalog's ``storage_options:`` section (:mod:`cardiolab.catalog`), the
``storage_options=`` argument of :func:`cardiolab.catalog.open_catalog` and the CLI's
``--storage-option KEY=VALUE`` all end up as one nested dict of fsspec options
(``anon``, ``key``, ``secret``, ``client_kwargs: {endpoint_url: ...}``, ...; see the
options of the filesystem of the URL's protocol, e.g. ``s3fs.S3FileSystem``). This
module holds the steps between: parsing ``KEY=VALUE`` pairs, merging two sets,
expanding ``${VAR}`` references, and naming the options without their values (for
errors and reprs: a value may be a credential).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping

from .errors import CatalogError
from .paths import expand_variables, missing_variables

__all__ = [
    "CREDENTIAL_KEYS",
    "expand_storage_options",
    "merge_storage_options",
    "option_names",
    "parse_storage_option",
    "storage_options_from_pairs",
]

#: Option names that hold credentials (s3fs, gcsfs, adlfs): a catalog gives them as
#: ``${VAR}`` references only, since a catalog is shared and its values are not secret.
CREDENTIAL_KEYS = frozenset(
    {
        "key",
        "secret",
        "token",
        "session_token",
        "password",
        "account_key",
        "sas_token",
        "client_secret",
        "connection_string",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
    }
)


def parse_storage_option(text: str) -> tuple[tuple[str, ...], object]:
    """Parse one ``KEY=VALUE`` option of the command line.

    Parameters
    ----------
    text : str
        ``KEY=VALUE``; dots in ``KEY`` name nested keys
        (``client_kwargs.endpoint_url=http://127.0.0.1:9000``). ``VALUE`` is read as
        JSON when it parses (``true``, ``5``, ``{"a": 1}``, ``"007"`` for a string of
        digits), else kept as the string given.

    Returns
    -------
    (tuple of str, object)
        The key path and the value.

    Raises
    ------
    ValueError
        Without ``=``, or with an empty key or key part. The message names the key,
        never the value (it may be a credential).
    """
    key, sep, value = str(text).partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(
            "a storage option is KEY=VALUE (e.g. client_kwargs.endpoint_url=http://host:9000)"
        )
    parts = tuple(p.strip() for p in key.split("."))
    if any(not p for p in parts):
        raise ValueError(f"storage option {key!r}: empty part in the dotted key")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return parts, parsed


def storage_options_from_pairs(pairs) -> dict:
    """Build nested storage options from ``KEY=VALUE`` strings (see
    :func:`parse_storage_option`); a later pair replaces an earlier one of the same key.

    Raises
    ------
    ValueError
        A pair is malformed, or a key is given both as a value and as the parent of
        nested keys (``client_kwargs=1`` and ``client_kwargs.region_name=x``).
    """
    out: dict = {}
    for text in pairs or ():
        parts, value = parse_storage_option(text)
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(
                    f"storage option {'.'.join(parts)!r}: {'.'.join(parts[: depth + 1])!r} "
                    "is also given a value"
                )
            node = child
        if isinstance(node.get(parts[-1]), dict) and not isinstance(value, dict):
            raise ValueError(
                f"storage option {'.'.join(parts)!r} is also the parent of nested options"
            )
        node[parts[-1]] = value
    return out


def merge_storage_options(base: Mapping | None, override: Mapping | None) -> dict:
    """Merge two sets of storage options into a new dict (the inputs are not changed).

    Keys of ``override`` win; where both give a mapping (``client_kwargs``) the two
    are merged key by key, recursively. The result shares nothing with the inputs
    (botocore rewrites a ``config_kwargs.retries`` mapping in place when it uses it).
    """
    out = copy.deepcopy(dict(base or {}))
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_storage_options(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def expand_storage_options(options: Mapping, *, file=None, entry: str = "storage_options") -> dict:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string of a set of options.

    Parameters
    ----------
    options : mapping
        Options as written in a catalog (nested mappings and lists allowed).
    file : str or pathlib.Path, optional
        The catalog, for errors.
    entry : str
        The catalog entry, for errors.

    Returns
    -------
    dict
        A new dict with the variables' values (the input is not changed).

    Raises
    ------
    CatalogError
        Naming the catalog, the entry and the option (``client_kwargs.endpoint_url``)
        of every ``${VAR}`` without default whose variable is unset or empty; the
        variable is named, never a value.
    """
    missing: list[tuple[str, str]] = []

    def walk(value, where: str):
        if isinstance(value, Mapping):
            return {k: walk(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str):
            missing.extend((where, var) for var in missing_variables(value))
            return expand_variables(value)
        return value

    out = walk(options, "")
    if missing:
        problems = [
            (entry, where, f"environment variable {var!r} is not set") for where, var in missing
        ]
        if len(problems) == 1:
            err = CatalogError(problems[0][2], file=file, entry=entry, field=problems[0][1])
        else:
            lines = "\n".join(f"  - {entry}: {w}: {m}" for _, w, m in problems)
            err = CatalogError(f"{len(problems)} problems:\n{lines}", file=file)
        err.problems = problems
        raise err
    return out


def option_names(options: Mapping | None) -> list[str]:
    """The dotted names of a set of options, without their values (for reprs and errors).

    Examples
    --------
    >>> option_names({"anon": False, "client_kwargs": {"endpoint_url": "http://h:9000"}})
    ['anon', 'client_kwargs.endpoint_url']
    """
    names: list[str] = []
    for key, value in (options or {}).items():
        if isinstance(value, Mapping) and value:
            names += [f"{key}.{sub}" for sub in option_names(value)]
        else:
            names.append(str(key))
    return names
