"""The hot read served without Flask: an anonymous ``GET /api/v1/status`` from the LAN.

Fifty scripts and pages polling the status at once spend most of each request in Flask itself (request
context, routing, the access and header hooks, a Response object), not in the status: the render is already
shared (web/cache.py).  This WSGI layer sits in front of Flask and answers that one request from the response
Flask itself produced for the same render — byte for byte the same status line, headers and body — so the
route, its access rule and its headers stay the one definition.

A request takes the fast path only when nothing about it can change the answer:

- ``GET`` of exactly ``/api/v1/status``, no query string, no ``Authorization`` and no ``Cookie`` (a bearer
  token or a session goes through Flask, which checks it), from an address the read rule lets in without a
  login (``[web] read_only = "lan"`` and a LAN address);
- either no ``If-None-Match``, or exactly the ETag the stored answer carries (then the stored 304 answers).

Anything else, and every request while no answer for the current render is stored, goes through Flask; the
answer it gives is stored when it is for the render the shared cache now holds (a render that was replaced
meanwhile is not stored).  An action clears the shared cache and so every stored answer with it.  The
request still counts in ``/metrics`` under the route's name.

When the render grows older than ``STATUS_CACHE_S``, one request goes through Flask to make the next one;
the others meanwhile get the stored answer, at most two ``STATUS_CACHE_S`` old (half a second by default),
instead of all queueing behind that render: without this, every quarter second all the server's threads
met in Flask at once and the 50-client p99 was four times the server's own floor.

The daemon's server (web/serve.py) asks ``asgi_answer`` first, on its event loop, so a stored answer never
reaches a WSGI thread at all; the request that is to make the next answer runs this layer and Flask on that
loop too.  Everything else, and this layer's own WSGI path, serves any WSGI server (and the test client).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from web.auth import is_lan

PATH = "/api/v1/status"
ENDPOINT = "api.status"
# status line, headers, body; and the same as uvicorn's two messages (start, body), made once when kept
_Answer = tuple[str, list[tuple[str, str]], bytes, dict[str, Any], dict[str, Any]]


class StatusFastPath:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.wsgi: Callable[..., Iterable[bytes]] = app.wsgi_app
        self.hits = 0  # answers given here (tests and the bench)
        self.enabled = True  # off: every request goes through Flask (the bench's baseline)
        self._lock = threading.Lock()
        self._render: Any = None  # the shared cache's value the stored answers were made from
        self._answers: dict[str, _Answer] = {}  # "full" (200) and, by the ETag sent, "304"
        self._refreshing = False  # a request is making the next answer through Flask
        self._built_at = 0.0  # when the stored answers' render was built (the shared cache's clock)
        self._generation = -1  # the shared cache's generation they belong to
        self._lan: dict[str, bool] = {}

    def _open_to(self, addr: str) -> bool:
        if self.app.config["BACKEND"].config.web.read_only != "lan":
            return False
        ok = self._lan.get(addr)
        if ok is None:
            ok = is_lan(addr)
            if len(self._lan) > 1024:
                self._lan.clear()
            self._lan[addr] = ok
        return ok

    def _eligible(self, environ: dict[str, Any]) -> bool:
        return (self.enabled and environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "GET"
                and not environ.get("QUERY_STRING") and not environ.get("SCRIPT_NAME")
                and "HTTP_AUTHORIZATION" not in environ and "HTTP_COOKIE" not in environ
                and self.app.config["STATUS_CACHE_S"] > 0 and self._open_to(environ.get("REMOTE_ADDR") or ""))

    def _current(self) -> tuple[float, Any, int, float] | None:
        """(age in seconds, value, generation, now) of the status render the shared cache holds, or None."""
        cache = self.app.config["RENDER_CACHE"]
        e = cache.entry("status")
        if e is None:
            return None
        now = cache.clock()
        return now - e[0], e[1], e[2], now

    def _stored(self, environ: dict[str, Any], claim: bool = True) -> _Answer | bool | None:
        """The stored answer for this request; True when this request is to make the next answer (it is then
        marked as being made, if ``claim``); None: Flask."""
        current, ttl = self._current(), self.app.config["STATUS_CACHE_S"]
        with self._lock:
            if current is None or self._render is None or current[2] != self._generation:
                return None  # nothing stored, or an action since: only Flask may answer
            age, render, _, now = current
            if render is not self._render or age >= ttl:
                # the render aged, or a newer one has no answer here yet: one request goes to Flask for it;
                # the others get the stored answer while it is younger than twice STATUS_CACHE_S
                if not self._refreshing:
                    self._refreshing = claim
                    return True
                if now - self._built_at >= 2 * ttl:
                    return None
            inm = environ.get("HTTP_IF_NONE_MATCH")
            if inm is None:
                return self._answers.get("full")
            hit = self._answers.get("304")
            return hit if hit is not None and _etag(hit[1]) == inm else None

    def _keep(self, environ: dict[str, Any], status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        current = self._current()
        if current is None or current[0] >= self.app.config["STATUS_CACHE_S"]:
            return  # made from a render that is already old
        age, render, generation, now = current
        if _etag(headers) != f'W/"{render[0]}"':
            return  # made from a render the cache no longer holds
        variant = "full" if status.startswith("200") and "HTTP_IF_NONE_MATCH" not in environ else (
            "304" if status.startswith("304") else None)
        if variant is None:
            return
        with self._lock:
            if render is not self._render or generation != self._generation:
                self._render, self._answers = render, {}
                self._built_at, self._generation = now - age, generation
            self._answers[variant] = (status, headers, body, {
                "type": "http.response.start", "status": int(status[:3]),
                "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]},
                {"type": "http.response.body", "body": body})

    def asgi_answer(self, scope: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | bool | None:
        """For an ASGI request (web/serve.py asks on its event loop): the stored answer as uvicorn's two messages
        (start, body); True when this request is to make the next answer (through the WSGI side, this layer
        included, which marks it); None: the WSGI side answers."""
        if scope["path"] != PATH or scope["method"] != "GET":
            return None
        started = time.perf_counter()
        environ: dict[str, Any] = {"PATH_INFO": PATH, "REQUEST_METHOD": "GET",
                                   "QUERY_STRING": scope["query_string"].decode("latin-1"),
                                   "SCRIPT_NAME": scope.get("root_path", ""),
                                   "REMOTE_ADDR": (scope.get("client") or ("",))[0]}
        for k, v in scope["headers"]:
            if k in _ASGI_HEADERS:
                environ[_ASGI_HEADERS[k]] = v.decode("latin-1")
        if not self._eligible(environ):
            return None
        hit = self._stored(environ, claim=False)
        if not isinstance(hit, tuple):
            return hit
        self.hits += 1
        self.app.config["METRICS"].observe("GET", ENDPOINT, int(hit[0][:3]), time.perf_counter() - started)
        return hit[3], hit[4]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self._eligible(environ):
            return self.wsgi(environ, start_response)
        started = time.perf_counter()
        hit = self._stored(environ)
        if hit is True:
            try:
                return self._through_flask(environ, start_response)
            finally:
                with self._lock:
                    self._refreshing = False
        if isinstance(hit, tuple):
            status, headers, body = hit[:3]
            start_response(status, headers)
            self.hits += 1
            self.app.config["METRICS"].observe("GET", ENDPOINT, int(status[:3]), time.perf_counter() - started)
            return [body]
        return self._through_flask(environ, start_response)

    def _through_flask(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen[:] = [status, list(headers)]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        chunks = self.wsgi(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if seen:
            self._keep(environ, seen[0], seen[1], body)
        return [body]


_ASGI_HEADERS = {b"authorization": "HTTP_AUTHORIZATION", b"cookie": "HTTP_COOKIE",
                 b"if-none-match": "HTTP_IF_NONE_MATCH"}


def _etag(headers: list[tuple[str, str]]) -> str | None:
    for k, v in headers:
        if k.lower() == "etag":
            return v
    return None
