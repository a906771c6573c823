"""Serving the app: uvicorn (httptools' HTTP parser) on its own thread and event loop, Flask in a2wsgi's
thread pool, and the status fast path (web/fastpath.py) answered on the event loop itself.

Why not waitress: fifty clients polling ``/api/v1/status`` at once met waitress's own floor — its pure-Python
I/O loop handing every request to a worker thread and back — at a p99 of 15–90 ms with no application at
all.  uvicorn parses in C and answers a stored status without leaving its event loop (no thread hand-off, no
WSGI environ); every other request still goes to the same Flask app, unchanged, as WSGI.

The daemon, the tests and the benchmark all serve through ``WebServer``: the same stack everywhere.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
from http import HTTPStatus
from typing import Any

import httptools
import uvicorn
from a2wsgi import WSGIMiddleware
from a2wsgi.wsgi import build_environ
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from web.fastpath import StatusFastPath

log = logging.getLogger("gateway.web")

WORKERS = 8  # Flask's threads: a slow request (an action waits up to 15 s for the daemon) holds one
KEEP_ALIVE_S = 30  # an idle connection is kept this long: the page polls every 5 s on the same connection
STARTUP_S = 10.0
# How long a stop waits for requests in progress (an action may wait 15 s for the daemon); then they are
# cancelled.  Idle connections are closed at once.
GRACEFUL_S = 20
_BODY_HEADERS = (b"content-length", b"transfer-encoding")
MAX_HEAD_BYTES = 64 * 1024  # a request's URL and headers together (the page's own are under 2 KB)


class Front:
    """uvicorn's application: the stored status answered here, on the event loop; everything else to the WSGI
    app through a2wsgi's pool.

    The request that makes the next stored status (one per ``STATUS_CACHE_S`` under load) runs Flask here too,
    on the event loop, not in the pool: it takes about a millisecond of CPU, but in a worker thread it
    competes for the GIL with the event loop, which gives the GIL up at every socket call and waits a whole
    switch interval to get it back.  Fifty clients then waited 10–30 ms once a quarter second (the p99); run
    here, they wait that millisecond.  The request has no body (a GET with no Content-Length or
    Transfer-Encoding; else it goes to the pool)."""

    def __init__(self, app: Any, workers: int) -> None:
        self.app = app
        wsgi = getattr(app, "wsgi_app", None)
        self.fast = wsgi if isinstance(wsgi, StatusFastPath) else None
        self.wsgi = WSGIMiddleware(app, workers=workers)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.fast is not None and scope["type"] == "http":
            hit = self.fast.asgi_answer(scope)
            if isinstance(hit, tuple):
                await send(hit[0])
                await send(hit[1])
                return
            if hit is True and not any(k in _BODY_HEADERS for k, _ in scope["headers"]):
                await self._inline(scope, send)
                return
        await self.wsgi(scope, receive, send)  # type: ignore[arg-type]

    async def _inline(self, scope: dict[str, Any], send: Any) -> None:
        seen: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen[:] = [int(status[:3]), [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]]
            return None

        chunks = self.app(build_environ(scope, io.BytesIO()), start_response)  # type: ignore[arg-type]
        try:
            body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        await send({"type": "http.response.start", "status": seen[0], "headers": seen[1]})
        await send({"type": "http.response.body", "body": body})


class Http(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) with two of the box's rules:

    - a request's head (URL and headers) is at most ``MAX_HEAD_BYTES``: httptools sets no limit, so a peer
      sending headers without end would grow the daemon's memory without end;
    - a request the parser refuses gets the API's JSON error (``{"error": {"code", "message"}}``), like every
      other 4xx, not uvicorn's plain text."""

    _head = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head = 0

    def _grow(self, n: int) -> None:
        self._head += n
        if self._head > MAX_HEAD_BYTES:
            raise httptools.HttpParserError("request head too large")  # uvicorn answers it (below) and closes

    def on_url(self, url: bytes) -> None:
        self._grow(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow(len(name) + len(value) + 4)
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        if self._head > MAX_HEAD_BYTES:
            status, code = 431, "head_too_large"
            message = f"the request's URL and headers are over {MAX_HEAD_BYTES // 1024} KiB"
        else:
            status, code, message = 400, "bad_request", "the request is not valid HTTP/1.1"
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json", b"content-length: %d" % len(body), b"connection: close"]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()


def bind(listen: str) -> list[socket.socket]:
    """Listening sockets for ``host:port`` (``[v6]:port``; an empty host is every IPv4 address); every address
    the host resolves to, on one port (port 0: the first one's)."""
    host, _, port_s = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    port = int(port_s)
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                               flags=socket.AI_PASSIVE):
            s = socket.socket(family, kind, proto)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(socks) > 1:
                addr = (addr[0], socks[0].getsockname()[1], *addr[2:])
            s.bind(addr)
            s.listen(2048)
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks


class _Server(uvicorn.Server):
    """uvicorn's server, telling when its sockets accept (or its start failed)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


class WebServer:
    """The WSGI ``app`` on ``sockets`` (already listening, e.g. systemd's) or on ``listen``, in a thread named
    "web".  ``asgi``: serve this ASGI application as it is instead (the benchmark's floor: the server alone)."""

    def __init__(self, app: Any, *, sockets: list[socket.socket] | None = None, listen: str = "127.0.0.1:0",
                 workers: int = WORKERS, name: str = "office-gateway", asgi: Any = None) -> None:
        self.sockets = sockets or bind(listen)
        for s in self.sockets:
            s.setblocking(False)
        self.front = Front(app, workers)
        config = uvicorn.Config(
            asgi or self.front, http=Http, ws="none", loop="asyncio", interface="asgi3", lifespan="off",
            log_config=None, access_log=False, proxy_headers=False,  # the peer's address is the socket's
            server_header=False, headers=[("server", name)], timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=GRACEFUL_S)
        self.server = _Server(config)
        self.thread = threading.Thread(target=self._run, name="web", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.server.run(sockets=self.sockets)
        except BaseException as exc:  # noqa: BLE001 - reported by start() or close(), never lost
            self.error = exc
            log.exception("web server stopped")
        finally:
            self.server.ready.set()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self.sockets]

    @property
    def url(self) -> str:
        host, port = self.addresses[0]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> WebServer:
        """Start serving; returns once the sockets accept (or raises what stopped the server)."""
        self.thread.start()
        self.server.ready.wait(STARTUP_S)
        if not self.server.started:
            self.close()
            raise RuntimeError(f"the web server did not start: {self.error or 'no answer in time'}")
        return self

    def close(self) -> None:
        """Stop: no new connections, idle ones closed, requests in progress finish (up to GRACEFUL_S)."""
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(GRACEFUL_S + 5)
        self.front.wsgi.executor.shutdown(wait=False, cancel_futures=True)
        for s in self.sockets:
            s.close()
