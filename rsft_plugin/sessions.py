"""Operator login sessions of the console: server-side, random ids, a fixed lifetime, one CSRF token each.

The browser holds only a random session id (a cookie, HttpOnly, SameSite=Strict); everything else stays in this
process. Sessions live in memory: restarting the web server logs every operator out, which is the safe direction.
A session ends `console.session_minutes` after login (not after the last request: the console polls while a
round runs, so an idle timeout would never fire in an open tab).

Why not aiohttp-session: its storages are the client-side cookie ones (SimpleCookieStorage is plain JSON;
EncryptedCookieStorage/NaClCookieStorage need `cryptography`/PyNaCl and a secret key to keep) or a Redis /
Memcached server. With a cookie-held session, logout only asks the browser to forget it — a copied cookie stays
valid until it expires — and its CSRF token would live in the cookie it is meant to back up. The server-side
alternatives add a service to run for a single-operator console. What is needed here is small: a server-side table
that logout and expiry revoke at once, a CSRF token bound to each session, and a cap on how many exist; this module
does that in about 80 lines with no extra dependency or process.

Wrong tokens are throttled by `LoginThrottle`: per client address, the first ten within five minutes get 401, later
ones 429 after a growing delay; the right token always logs in. The address is the TCP peer (aiohttp's
`request.remote`). Behind a reverse proxy that is the proxy's address, so every client shares one budget of wrong
tokens: a guesser anywhere slows down every wrong token, but cannot keep the operator (with the right token) out.
`X-Forwarded-For` and `Forwarded` are not read: rsft installs no forwarded-header middleware, so a client cannot
pick its own address by sending those headers. To throttle per end client behind a proxy you trust, configure the
app with a middleware that rewrites `request.remote` from that proxy's header only (e.g. aiohttp-remotes'
`XForwardedStrict` with the proxy's address).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .secrets import matches

COOKIE_NAME = "rsft_operator"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Session:
    key: str  # sha256 of the cookie value: the cookie itself is never stored
    csrf_token: str
    created: float
    expires: float


class SessionStore:
    """Create, look up and end operator sessions. Thread-safe; the clock is injectable for tests."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic, max_sessions: int = 1000) -> None:
        self.lifetime = minutes * 60.0
        self.clock = clock
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    @property
    def max_age_seconds(self) -> int:
        """The cookie's Max-Age: the browser forgets it when the server would."""
        return max(1, int(self.lifetime))

    def create(self) -> tuple[str, Session]:
        """A new session; returns the cookie value (shown to the browser once) and the session."""
        cookie = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(_key(cookie), secrets.token_urlsafe(32), now, now + self.lifetime)
        with self._lock:
            self._sweep(now)
            if len(self._sessions) >= self.max_sessions:  # the oldest goes first; no unbounded growth
                oldest = min(self._sessions.values(), key=lambda s: s.created)
                del self._sessions[oldest.key]
            self._sessions[session.key] = session
        return cookie, session

    def get(self, cookie: str | None) -> Session | None:
        """The live session behind a cookie value, or None (unknown, malformed or expired)."""
        if not cookie or len(cookie) > 200:
            return None
        key = _key(cookie)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if self.clock() >= session.expires:
                del self._sessions[key]
                return None
            return session

    def end(self, cookie: str | None) -> None:
        if cookie:
            with self._lock:
                self._sessions.pop(_key(cookie), None)

    def __len__(self) -> int:
        with self._lock:
            self._sweep(self.clock())
            return len(self._sessions)

    def _sweep(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if now >= s.expires]:
            del self._sessions[key]


def csrf_ok(session: Session, given: str | None) -> bool:
    """Whether a state-changing request carries its session's CSRF token (compared in constant time)."""
    return matches(given, session.csrf_token)


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8", "replace")).hexdigest()


class LoginThrottle:
    """Slows down guessing at the operator token without ever refusing the right one.

    Wrong tokens (on the login form, or in an `Authorization` header on /api) are counted per client address.
    The first `attempts` wrong tokens within `window` seconds are answered 401 at once; every further wrong token
    from that address, until the older ones age out of the window, is refused with 429 after a delay: `delay`
    seconds, doubling with each further wrong token up to `max_delay`. The right token is checked first and is
    never refused or delayed, whatever came before it from the same address (an earlier version locked the whole
    address, so anyone sharing it could keep the operator out).

    What makes guessing hopeless is the token's length, not this throttle: the generated token has 256 random
    bits; a hand-chosen RSFT_OPERATOR_TOKEN should be as long and random. The throttle bounds a guesser on one
    address to about one wrong token per `max_delay` seconds per connection it keeps open.

    Args:
        attempts: wrong tokens per address answered without delay within `window`.
        window: seconds a wrong token counts against its address.
        delay: the first throttled refusal's delay, in seconds; tests pass 0.
        max_delay: the longest delay before a throttled refusal.
        clock: injectable for tests.
    """

    def __init__(self, attempts: int = 10, window: float = 300.0, delay: float = 1.0, max_delay: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts, self.window, self.clock = attempts, window, clock
        self.delay, self.max_delay = delay, max_delay
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, address: str) -> bool:
        """Whether the next wrong token from `address` will be refused with 429 (the right one never is)."""
        with self._lock:
            return len(self._recent(address)) >= self.attempts

    def failed(self, address: str) -> float | None:
        """Record a wrong token from `address`.

        Returns:
            None while the address is under the limit (answer 401 at once); else the seconds to wait before
            refusing this attempt with 429.
        """
        with self._lock:
            recent = self._recent(address)
            over = len(recent) - self.attempts
            # the newest timestamps are enough to stay over the limit; older ones would only use memory
            self._failures[address] = [*recent[-(self.attempts + 64):], self.clock()]
            if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
                now = self.clock()
                self._failures = {a: t for a, t in self._failures.items() if t and now - t[-1] < self.window}
        if over < 0:
            return None
        return min(self.max_delay, self.delay * 2.0 ** min(over, 32))

    def _recent(self, address: str) -> list[float]:
        now = self.clock()
        return [t for t in self._failures.get(address, []) if now - t < self.window]
