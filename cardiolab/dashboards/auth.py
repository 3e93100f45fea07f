"""Who may open a served dashboard: hashed credentials and the loopback rule.

A dashboard bound to the loopback interface (``127.0.0.1``, ``localhost``, ``::1``)
is reachable from this machine only and needs no login. Bound to any other address
it serves recordings of named crew to a network, so :func:`serve` refuses to start
it unless a login is configured: a credentials file of hashed passwords (cardiolab's
login page, :mod:`cardiolab.dashboards.access`, checked against scrypt hashes, so no
password is stored in clear), or an OAuth provider configured through Panel's own
settings.

The credentials file is JSON, one entry per reviewer::

    {"alice": "scrypt$16384$8$1$<salt, base64>$<hash, base64>"}

written by ``cardiolab passwd FILE USER`` (or :func:`add_user`).

Two pieces of state keep a served login honest (:mod:`cardiolab.dashboards.access`
puts them on the server): :class:`LoginThrottle` refuses sign-ins for a growing delay
after repeated failures for one user or from one address, and :class:`SignInSessions`
holds the signed-in sessions on the server, so that signing out revokes a session's
cookie for good.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..errors import CardiolabError

log = logging.getLogger("cardiolab")

__all__ = [
    "AuthError",
    "LoginThrottle",
    "SignInSessions",
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


class LoginThrottle:
    """Refuse sign-ins for a while after repeated failures, per user and per address.

    Each key (a user name, a client address) keeps the times of its failed sign-ins.
    ``max_failures`` failures within ``window`` seconds lock the key for
    ``base_delay`` seconds; each further lock-out of the key doubles the delay, up to
    ``max_delay``. While a key is locked every attempt on it is refused, the right
    password too (nothing is checked). A success forgets the key's failures; a key
    quiet for ``window`` seconds after its lock ends starts again from ``base_delay``.

    This is the rate limiting of NIST SP 800-63B (section 5.2.2, "Rate Limiting
    (Throttling)") with the exponentially growing lock-out of the OWASP Authentication
    Cheat Sheet ("Account Lockout"); keying the address as well as the user slows
    one client that tries many user names.

    Parameters
    ----------
    max_failures : int
        Failures within ``window`` that lock a key.
    window : float
        Seconds over which failures are counted.
    base_delay, max_delay : float
        First and longest lock-out, seconds.
    clock : callable
        Seconds, monotonic (default :func:`time.monotonic`).

    Examples
    --------
    >>> throttle = LoginThrottle(max_failures=2, base_delay=30)
    >>> throttle.failed("user:alice", "address:10.0.0.2")
    0.0
    >>> throttle.failed("user:alice", "address:10.0.0.2") > 29
    True
    >>> throttle.locked_for("user:alice") > 29
    True
    """

    def __init__(
        self,
        max_failures: int = 5,
        window: float = 900.0,
        base_delay: float = 30.0,
        max_delay: float = 900.0,
        clock=time.monotonic,
    ):
        if max_failures < 1 or window <= 0 or base_delay <= 0 or max_delay < base_delay:
            raise ValueError(
                "LoginThrottle needs max_failures >= 1, window > 0 and "
                f"0 < base_delay <= max_delay (got {max_failures}, {window}, "
                f"{base_delay}, {max_delay})"
            )
        self.max_failures = max_failures
        self.window = float(window)
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self._clock = clock
        #: key -> [failure times, lock-outs so far, locked until]
        self._keys: dict[str, list] = {}

    def locked_for(self, *keys: str) -> float:
        """Seconds before the longest lock among ``keys`` ends (0: none locked)."""
        now = self._clock()
        return max([0.0] + [self._keys[k][2] - now for k in keys if k in self._keys])

    def failed(self, *keys: str) -> float:
        """Count a failed sign-in against each key; return the lock now in force (s)."""
        now = self._clock()
        self._forget_stale(now)
        for key in keys:
            times, lockouts, until = self._keys.setdefault(key, [deque(), 0, 0.0])
            if until > now:
                continue  # locked: the attempt was refused, nothing more to count
            if times and now - times[-1] > self.window and until <= now - self.window:
                lockouts = 0  # quiet for a window: start again from the base delay
            while times and now - times[0] > self.window:
                times.popleft()
            times.append(now)
            if len(times) >= self.max_failures:
                times.clear()
                until = now + min(self.base_delay * 2**lockouts, self.max_delay)
                lockouts += 1
            self._keys[key] = [times, lockouts, until]
        return self.locked_for(*keys)

    def succeeded(self, *keys: str) -> None:
        """Forget the failures of ``keys`` (after a sign-in that was not refused)."""
        for key in keys:
            self._keys.pop(key, None)

    def _forget_stale(self, now: float) -> None:
        """Drop keys with no failure in a window and no lock (bounded memory)."""
        stale = [
            key
            for key, (times, _, until) in self._keys.items()
            if until <= now - self.window and (not times or now - times[-1] > self.window)
        ]
        for key in stale:
            del self._keys[key]


class SignInSessions:
    """The signed-in sessions of a served dashboard, held on the server.

    A sign-in opens a session: a random identifier (128 bits, :func:`secrets.token_urlsafe`)
    that the browser keeps in a signed cookie. A request is signed in only while its
    session is open here; signing out closes it, so a copy of the cookie replayed
    afterwards is refused (OWASP Session Management Cheat Sheet, "Session Expiration":
    invalidate the session on the server at logout). Sessions live in memory: a restarted
    server signs everybody out.

    Parameters
    ----------
    lifetime : float
        Seconds a session stays open after sign-in.
    clock : callable
        Seconds (default :func:`time.monotonic`).

    Examples
    --------
    >>> sessions = SignInSessions(lifetime=3600)
    >>> sid = sessions.open("alice")
    >>> sessions.user(sid)
    'alice'
    >>> sessions.close(sid)
    >>> sessions.user(sid) is None
    True
    """

    def __init__(self, lifetime: float = 7 * 86400.0, clock=time.monotonic):
        if lifetime <= 0:
            raise ValueError(f"SignInSessions needs a positive lifetime (got {lifetime})")
        self.lifetime = float(lifetime)
        self._clock = clock
        self._open: dict[str, tuple[str, float]] = {}
        self._watchers: dict[str, dict[int, object]] = {}
        self._next_watch = 0

    def open(self, user: str) -> str:
        """Open a session for ``user``; return its identifier."""
        self.sweep()
        sid = secrets.token_urlsafe(16)
        self._open[sid] = (user, self._clock() + self.lifetime)
        return sid

    def user(self, sid: str | None) -> str | None:
        """Who is signed in under ``sid`` (None: no such open session)."""
        user, end = self._open.get(sid or "", (None, 0.0))
        return user if end > self._clock() else None

    def close(self, sid: str | None) -> None:
        """Close a session (signing out), and call what watches it; an unknown one is
        ignored."""
        self._open.pop(sid or "", None)
        for callback in self._watchers.pop(sid or "", {}).values():
            try:
                callback()
            except Exception:  # one failing watcher must not keep the others open
                log.exception("login: a watcher of a closed sign-in session failed")

    def sweep(self) -> int:
        """Close every session past its lifetime (calling what watches it); the served
        app does this every minute, so that the pages of an expired sign-in close.

        Returns
        -------
        int
            Sessions closed.
        """
        now = self._clock()
        expired = [sid for sid, (_, end) in self._open.items() if end <= now]
        for sid in expired:
            self.close(sid)
        return len(expired)

    def watch(self, sid: str, callback) -> Callable[[], None]:
        """Call ``callback()`` (no argument) when session ``sid`` closes.

        The served app closes a page's websocket this way when its user signs out.

        Parameters
        ----------
        sid : str
            An open session.
        callback : callable

        Returns
        -------
        callable
            Stops watching (idempotent): call it when the watcher goes first.

        Raises
        ------
        KeyError
            ``sid`` is not open (closed, expired or never opened).
        """
        if self.user(sid) is None:
            raise KeyError(f"no open sign-in session {sid!r}")
        key = self._next_watch
        self._next_watch += 1
        self._watchers.setdefault(sid, {})[key] = callback

        def stop() -> None:
            watchers = self._watchers.get(sid)
            if watchers is not None:
                watchers.pop(key, None)
                if not watchers:
                    del self._watchers[sid]

        return stop
