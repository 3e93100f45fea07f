"""Who may open a served dashboard: hashed credentials and the loopback rule.

A dashboard bound to the loopback interface (``127.0.0.1``, ``localhost``, ``::1``)
is reachable from this machine only and needs no login. Bound to any other address
it serves recordings of named crew to a network, so :func:`serve` refuses to start
it unless a login is configured: a credentials file of hashed passwords (Panel's
basic-auth login page, checked here against scrypt hashes, so no password is stored
in clear), or an OAuth provider configured through Panel's own settings.

The credentials file is JSON, one entry per reviewer::

    {"alice": "scrypt$16384$8$1$<salt, base64>$<hash, base64>"}

written by ``cardiolab passwd FILE USER`` (or :func:`add_user`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
from pathlib import Path

from ..errors import CardiolabError

__all__ = [
    "AuthError",
    "HashedAuthProvider",
    "add_user",
    "hash_password",
    "is_loopback",
    "load_credentials",
    "verify_password",
]

_SCHEME = "scrypt"
_N, _R, _P = 2**14, 8, 1


class AuthError(CardiolabError):
    """A dashboard cannot be served safely, or its credentials file is unusable."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Hash a password for the credentials file (scrypt, random 16-byte salt).

    Examples
    --------
    >>> h = hash_password("correct horse")
    >>> h.startswith("scrypt$") and verify_password("correct horse", h)
    True
    """
    if not password:
        raise AuthError("empty password")
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"{_SCHEME}${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` hash (constant time)."""
    try:
        scheme, n, r, p, salt, digest = hashed.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def load_credentials(path) -> dict[str, str]:
    """Read a credentials file: ``{user: scrypt hash}``.

    Raises
    ------
    AuthError
        The file is missing, not JSON, empty, or holds a password that is not hashed.
    """
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuthError(f"{path}: credentials file not found") from None
    except (OSError, ValueError) as err:
        raise AuthError(f"{path}: not a JSON credentials file ({err})") from None
    if not isinstance(data, dict) or not data:
        raise AuthError(f'{path}: no users (expected {{"user": "scrypt$..."}})')
    for user, hashed in data.items():
        if not isinstance(hashed, str) or not hashed.startswith(_SCHEME + "$"):
            raise AuthError(
                f"{path}: user {user!r}: password is not an scrypt hash; "
                f"write it with `cardiolab passwd {path} {user}`"
            )
    return data


def add_user(path, user: str, password: str) -> Path:
    """Add or replace one user in a credentials file (created if absent, mode 600)."""
    path = Path(path).expanduser()
    if not user or any(c.isspace() for c in user):
        raise AuthError(f"{path}: invalid user name {user!r}")
    data = load_credentials(path) if path.exists() else {}
    data[user] = hash_password(password)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def is_loopback(address: str) -> bool:
    """Whether a bind address is reachable from this machine only."""
    if address in ("localhost", ""):
        return address == "localhost"
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _provider_class():
    from panel.auth import BasicAuthProvider, BasicLoginHandler

    class HashedLoginHandler(BasicLoginHandler):
        credentials: dict[str, str] = {}

        def _validate(self, username, password):
            hashed = self.credentials.get(username)
            return hashed is not None and verify_password(password, hashed)

    class _HashedAuthProvider(BasicAuthProvider):
        """Panel's login page, checked against hashed credentials."""

        def __init__(self, credentials: dict[str, str], **kwargs):
            self._handler = type(
                "CardiolabLoginHandler", (HashedLoginHandler,), {"credentials": dict(credentials)}
            )
            super().__init__(**kwargs)

        @property
        def login_handler(self):
            self._handler._login_endpoint = self._login_endpoint
            self._handler._login_template = self._login_template
            return self._handler

    return _HashedAuthProvider


#: cardiolab's login page: Panel's form, self-contained (Panel's own loads its logo from
#: a CDN, which fails, with a console error, on a network without internet).
LOGIN_TEMPLATE = Path(__file__).with_name("login.html")


def HashedAuthProvider(credentials: dict[str, str], **kwargs):  # noqa: N802 - a class factory
    """A Panel auth provider (login page) checking scrypt-hashed credentials.

    ``kwargs`` go to :class:`panel.auth.BasicAuthProvider`; the login page is
    :data:`LOGIN_TEMPLATE` unless ``login_template`` names another.
    """
    kwargs.setdefault("login_template", str(LOGIN_TEMPLATE))
    return _provider_class()(credentials, **kwargs)
