"""Business-app checks against real peers on loopback: an HTTP app, a silent TCP listener, a closed port."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.core.errors import ConfigError
from gateway.drivers.apps import AppProbe, AppTarget, target_of
from tests.continuity.conftest import App, free_port


def check(t: AppTarget) -> object:
    return asyncio.run(AppProbe().check(t))


def test_http_expected_status_is_reachable_with_latency(http_app: App) -> None:
    r = check(AppTarget("CRM", url=http_app.url))
    assert r.reachable and r.status == 200 and r.latency_ms is not None and r.latency_ms >= 0
    assert http_app.requests == 1


def test_http_other_status_is_unreachable_with_reason(http_app: App) -> None:
    http_app.status = 503
    r = check(AppTarget("CRM", url=http_app.url))
    assert not r.reachable and r.status == 503 and "status 503" in r.error
    r = check(AppTarget("CRM", url=http_app.url, expect_status=503))
    assert r.reachable


def test_http_refused_and_silent_peer_time_out(tcp_listener: socket.socket) -> None:
    r = check(AppTarget("CRM", url=f"http://127.0.0.1:{free_port()}/"))
    assert not r.reachable and r.error == "refused"
    port = tcp_listener.getsockname()[1]
    r = check(AppTarget("CRM", url=f"http://127.0.0.1:{port}/", timeout_s=0.3))
    assert not r.reachable and r.error == "timeout"


def test_tcp_check(tcp_listener: socket.socket) -> None:
    port = tcp_listener.getsockname()[1]
    r = check(AppTarget("ERP", address=f"127.0.0.1:{port}"))
    assert r.reachable and r.latency_ms is not None
    r = check(AppTarget("ERP", address=f"127.0.0.1:{free_port()}"))
    assert not r.reachable and r.error == "refused"


def test_garbled_http_reply_is_unreachable() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    async def main() -> object:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()
            writer.write(b"SSH-2.0-OpenSSH\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, sock=srv)
        async with server:
            return await AppProbe().check(AppTarget("CRM", url=f"http://127.0.0.1:{port}/"))

    r = asyncio.run(main())
    assert not r.reachable and "not an HTTP reply" in r.error


@pytest.mark.parametrize("url,address", [("ftp://x/", None), (None, "nohost"), (None, "h:99999"), (None, None)])
def test_bad_targets_are_config_errors(url: str | None, address: str | None) -> None:
    with pytest.raises(ConfigError):
        target_of("X", url, address)
