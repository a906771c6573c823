"""Business-app checks (CRM, ERP): an HTTP(S) request with an expected status, or a TCP connect.

The daemon runs in the appliance's network namespace, so a check goes out through whichever uplink holds
the default route — exactly the path the office's own traffic takes.  Latency is the time to the HTTP
status line (or to the TCP handshake), name resolution included, as a user would feel it.

Every failure is translated once into a short reason (``timeout``, ``refused``, ``status 503``,
``tls: ...``) carried in the result; :meth:`AppProbe.check` never raises for a peer's behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.core.errors import ConfigError


@dataclass(frozen=True)
class AppTarget:
    name: str
    url: str | None = None  # http:// or https://
    address: str | None = None  # host:port, for a TCP check
    expect_status: int = 200
    timeout_s: float = 3.0

    def describe(self) -> str:
        return self.url or f"tcp://{self.address}"


@dataclass(frozen=True)
class AppResult:
    reachable: bool
    latency_ms: float | None = None
    status: int | None = None
    error: str = ""


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ConfigError on anything else."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError([f"services: address {address!r} must be host:port"])
    return host, int(port)


def target_of(name: str, url: str | None, address: str | None, expect_status: int = 200,
              timeout_s: float = 3.0) -> AppTarget:
    if url:
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ConfigError([f"services: {name}: url {url!r} must be http:// or https://"])
    elif address:
        split_address(address)
    else:
        raise ConfigError([f"services: {name}: give url or address"])
    return AppTarget(name, url, address, expect_status, timeout_s)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ssl.SSLError):
        return f"tls: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, socket.gaierror):
        return f"dns: {exc.strerror or exc}"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


class AppProbe:
    """Checks business apps; one instance is shared by all checks."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context

    async def check(self, t: AppTarget) -> AppResult:
        started = time.monotonic()
        try:
            if t.url:
                async with asyncio.timeout(t.timeout_s):
                    status = await self._http(t.url)
                ms = round((time.monotonic() - started) * 1000, 2)
                if status != t.expect_status:
                    return AppResult(False, ms, status, f"status {status} (expected {t.expect_status})")
                return AppResult(True, ms, status)
            assert t.address is not None
            host, port = split_address(t.address)
            async with asyncio.timeout(t.timeout_s):
                await self._tcp(host, port)
            return AppResult(True, round((time.monotonic() - started) * 1000, 2))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer's behaviour, translated once
            return AppResult(False, None, None, _reason(exc))

    async def _tcp(self, host: str, port: int) -> None:
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def _http(self, url: str) -> int:
        u = urlsplit(url)
        tls = u.scheme == "https"
        host = u.hostname or ""
        port = u.port or (443 if tls else 80)
        ctx = (self.ssl_context or ssl.create_default_context()) if tls else None
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if tls else None)
        try:
            path = (u.path or "/") + (f"?{u.query}" if u.query else "")
            host_hdr = host if u.port is None else f"{host}:{u.port}"
            if ":" in host and not host.startswith("["):
                host_hdr = f"[{host}]" + (f":{u.port}" if u.port else "")
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host_hdr}\r\nUser-Agent: office-gateway-check\r\n"
                         "Accept: */*\r\nConnection: close\r\n\r\n".encode("ascii", "replace"))
            await writer.drain()
            line = await reader.readline()
            parts = line.decode("latin-1").split()
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise ValueError(f"not an HTTP reply: {line[:40]!r}")
            return int(parts[1])
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
