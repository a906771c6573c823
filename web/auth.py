"""Who may read and who may act: LAN readers, the admin's session (cookie + CSRF token), bearer tokens.

- Reading: with ``[web] read_only = "lan"`` anyone from a private/loopback address may look; with
  ``"login"`` every page and API read needs the admin session or a bearer token.
- Acting: the admin session plus the CSRF token (header ``X-CSRF-Token`` or form field ``csrf_token``),
  or ``Authorization: Bearer <token>`` (the daemon's token, or one matching ``[web] api_token_hash``).
- Logins are rate-limited per client address (``login_attempts_per_minute`` failed attempts).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from flask import current_app, request, session
from werkzeug.security import check_password_hash

from web.util import ApiFault


@dataclass(frozen=True)
class Principal:
    kind: str  # admin | token
    who: str


def backend() -> Any:
    return current_app.config["BACKEND"]


def client_addr() -> str:
    return request.remote_addr or "?"


def is_lan(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_private or ip.is_loopback or ip.is_link_local


def csrf_token() -> str:
    tok = session.get("csrf")
    if not isinstance(tok, str):
        tok = secrets.token_urlsafe(24)
        session["csrf"] = tok
    return tok


def _bearer() -> str | None:
    h = request.headers.get("Authorization", "")
    if h[:7].lower() == "bearer ":
        return h[7:].strip()
    return None


def _token_ok(tok: str) -> bool:
    be = backend()
    if be.token and hmac.compare_digest(tok.encode(), str(be.token).encode()):
        return True
    h = be.config.web.api_token_hash
    if h:
        try:
            return bool(check_password_hash(h, tok))
        except (ValueError, TypeError):
            return False
    return False


def session_admin() -> bool:
    if not session.get("admin"):
        return False
    started = session.get("login_at")
    limit = backend().config.web.session_minutes * 60
    if not isinstance(started, (int, float)) or time.time() - started > limit:
        session.pop("admin", None)
        return False
    return True


def principal() -> Principal | None:
    """The authenticated caller, or None.  A wrong bearer token is a 401, never a silent fallback."""
    tok = _bearer()
    if tok is not None:
        if not _token_ok(tok):
            raise ApiFault(401, "bad_token", "the bearer token is not valid")
        return Principal("token", "api")
    if session_admin():
        return Principal("admin", f"admin@{client_addr()}")
    return None


def can_read() -> bool:
    if principal() is not None:
        return True
    return backend().config.web.read_only == "lan" and is_lan(client_addr())


def check_csrf() -> None:
    sent = request.headers.get("X-CSRF-Token") or (request.form.get("csrf_token") if request.form else None)
    want = session.get("csrf")
    if not sent or not isinstance(want, str) or not hmac.compare_digest(str(sent).encode(), want.encode()):
        raise ApiFault(403, "csrf", "missing or wrong CSRF token: reload the page and try again")


def require_admin() -> Principal:
    """For actions: a valid bearer token, or the admin session with its CSRF token."""
    p = principal()
    if p is None:
        raise ApiFault(401, "login_required", "this action needs the admin login or a bearer token",
                       {"WWW-Authenticate": 'Bearer realm="office-gateway"'})
    if p.kind == "admin":
        check_csrf()
    return p


def require_reader_post() -> str:
    """For staff forms (temporary order numbers): a reader with the page's CSRF token, or a token."""
    p = principal()
    if p is not None and p.kind == "token":
        return p.who
    if not can_read():
        raise ApiFault(401, "login_required", "log in first")
    check_csrf()
    return p.who if p else f"staff@{client_addr()}"


class LoginLimiter:
    """Failed login attempts per client address in a sliding minute."""

    def __init__(self) -> None:
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, addr: str, now: float) -> deque[float]:
        q = self._fails.setdefault(addr, deque())
        while q and now - q[0] > 60:
            q.popleft()
        return q

    def retry_after(self, addr: str, limit: int, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._recent(addr, now)
            if len(q) >= limit:
                return max(1, int(60 - (now - q[0])) + 1)
            return 0

    def failed(self, addr: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._recent(addr, now).append(now)
            if len(self._fails) > 10000:  # bounded memory under a spray of addresses
                self._fails = {a: q for a, q in self._fails.items() if q and now - q[-1] <= 60}

    def succeeded(self, addr: str) -> None:
        with self._lock:
            self._fails.pop(addr, None)


def check_password(password: str) -> bool:
    h = backend().config.web.admin_password_hash
    if not h or not password:
        return False
    try:
        return bool(check_password_hash(h, password))
    except (ValueError, TypeError):
        return False


def login() -> None:
    session.clear()
    session.permanent = True
    session["admin"] = True
    session["login_at"] = time.time()
    session["csrf"] = secrets.token_urlsafe(24)  # a fresh token with the fresh privilege


def logout() -> None:
    session.clear()
