"""The UPS poll's own LIST VAR reader against a fake upsd on loopback, for what real upsd rarely says: escaped
quotes, an ERR line, a garbled line, a connection cut mid-list.  Real upsd is in test_drivers.py."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from gateway.core.errors import DeviceUnavailable, ParseError
from gateway.drivers.ups import UpsDriver, UpsStale

GOOD = (b'BEGIN LIST VAR ups\nVAR ups ups.status "OL"\nVAR ups ups.mfr "A \\"quoted\\" \\\\name"\n'
        b'VAR ups battery.charge "100"\nEND LIST VAR ups\n')
CLOSE = b""  # after a reply: close the connection there


@pytest.fixture
def fake_upsd() -> Iterator[Callable[..., int]]:
    """``fake_upsd(reply, ...)``: a upsd on loopback that answers each request line with the next reply
    (a CLOSE after a reply closes the connection right after sending it)."""
    servers: list[tuple[socket.socket, threading.Thread]] = []

    def start(*replies: bytes) -> int:
        srv = socket.create_server(("127.0.0.1", 0))
        todo = list(replies)

        def serve() -> None:
            while todo:
                try:
                    conn, _ = srv.accept()
                except OSError:  # closed by the fixture
                    return
                with conn, conn.makefile("rb") as f:
                    while todo and f.readline():
                        conn.sendall(todo.pop(0))
                        if todo and todo[0] == CLOSE:
                            todo.pop(0)
                            break

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        servers.append((srv, t))
        return int(srv.getsockname()[1])

    yield start
    for srv, t in servers:
        srv.close()
        t.join(5)


def test_values_are_unescaped_and_the_socket_kept(fake_upsd: Callable[..., int]) -> None:
    d = UpsDriver("ups", "127.0.0.1", fake_upsd(GOOD, GOOD), timeout_s=2.0)
    want = {"ups.status": "OL", "ups.mfr": 'A "quoted" \\name', "battery.charge": "100"}
    assert d._list_vars_blocking() == want
    assert d._list_vars_blocking() == want  # the same connection, asked again


@pytest.mark.parametrize("reply, error, match", [
    (b"ERR DATA-STALE\n", UpsStale, "ERR DATA-STALE"),
    (b"BEGIN LIST VAR ups\nVAR ups ups.status OL\nEND LIST VAR ups\n", ParseError, "garbled reply"),
    (b"BEGIN LIST VAR ups\nVAR ups ups.status \"OL\"\n", DeviceUnavailable, "closed the connection"),
    (b"BEGIN LIST VAR ups\nEND LIST VAR ups\n", ParseError, "empty variable list"),
])
def test_what_a_broken_upsd_says_is_one_clear_error(fake_upsd: Callable[..., int], reply: bytes,
                                                    error: type[Exception], match: str) -> None:
    d = UpsDriver("ups", "127.0.0.1", fake_upsd(reply, CLOSE, GOOD), timeout_s=2.0)  # then a new connection
    with pytest.raises(error, match=match):
        d._list_vars_blocking()
    assert d._list_vars_blocking()["ups.status"] == "OL"  # a fresh connection after the failure
