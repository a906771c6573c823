"""The web server (web/serve.py) over real loopback sockets: uvicorn answers the stored status on its event loop,
runs the request that renders anew there too, and sends everything else to Flask in a2wsgi's pool; binding,
bad HTTP and a stop with an action in progress."""

from __future__ import annotations

import errno
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Clock, wait_until
from tests.web.conftest import TOKEN, Env, Served
from web.fastpath import StatusFastPath
from web.serve import MAX_HEAD_BYTES, WebServer, bind


@pytest.fixture
def served(env: Env) -> Iterator[tuple[Env, Served, Clock, list[str]]]:
    """The app served on 127.0.0.1 with a hand-moved render clock; the names of the threads that built a
    snapshot."""
    clock = Clock()
    env.app.config["RENDER_CACHE"].clock = clock
    env.app.config["STATUS_CACHE_S"] = 0.25
    built_on: list[str] = []
    snapshot = env.backend.snapshot

    def counted() -> dict[str, Any]:
        built_on.append(threading.current_thread().name)
        return snapshot()

    env.backend.snapshot = counted  # type: ignore[method-assign]
    srv = Served(env.app, threads=4)
    yield env, srv, clock, built_on
    srv.close()


def fast(env: Env) -> StatusFastPath:
    fp = env.app.wsgi_app
    assert isinstance(fp, StatusFastPath)
    return fp


def get(srv: Served, path: str = "/api/v1/status", headers: dict[str, str] | None = None,
        body: bytes | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    host, port = srv.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders() if k.lower() != "date"}, r.read()
    finally:
        conn.close()


def test_the_stored_status_is_answered_on_the_event_loop_byte_for_byte(served: Any) -> None:
    env, srv, _, built_on = served
    fp = fast(env)
    first = get(srv)
    assert first[0] == 200 and fp.hits == 0 and len(built_on) == 1
    second = get(srv)
    assert fp.hits == 1 and second == first and len(built_on) == 1
    assert json.loads(second[2])["power"]["state"] == "on_battery"
    assert first[1]["server"] == "office-gateway-test" and first[1]["cache-control"] == "no-cache"
    tag = first[1]["etag"]
    via_flask = get(srv, headers={"If-None-Match": tag})
    assert via_flask[0] == 304 and fp.hits == 1
    again = get(srv, headers={"If-None-Match": tag})
    assert again == via_flask and again[2] == b"" and fp.hits == 2


@pytest.mark.parametrize("how", ["token", "cookie", "query", "body"])
def test_requests_that_could_be_answered_differently_go_to_flask(served: Any, how: str) -> None:
    env, srv, _, _ = served
    fp = fast(env)
    assert get(srv)[0] == 200
    if how == "token":
        r = get(srv, headers={"Authorization": "Bearer wrong"})
        assert r[0] == 401 and json.loads(r[2])["error"]["code"] == "bad_token"
        assert get(srv, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    elif how == "cookie":
        assert get(srv, headers={"Cookie": "session=garbage"})[0] == 200
    elif how == "query":
        assert get(srv, "/api/v1/status?x=1")[0] == 200
    else:
        r = get(srv, method="POST", body=b"{}", headers={"Content-Type": "application/json"})
        assert r[0] == 405 and json.loads(r[2])["error"]["code"] == "method_not_allowed"
    assert fp.hits == 0


def test_the_request_that_renders_anew_runs_on_the_event_loop_not_in_the_pool(served: Any) -> None:
    env, srv, clock, built_on = served
    fp = fast(env)
    assert get(srv)[0] == 200 and built_on == [built_on[0]] and built_on[0].startswith("WSGI")  # nothing stored yet
    env.backend.snap["power"]["state"] = "online"
    clock.t += 1.0  # the render aged: the next anonymous GET makes the next one
    r = get(srv)
    assert json.loads(r[2])["power"]["state"] == "online"
    assert built_on[1] == "web", built_on  # uvicorn's thread: no hand-off to a worker and back
    hits = fp.hits
    assert get(srv) == r and fp.hits == hits + 1  # and it was stored
    # one with a body (a GET with Content-Length) is never run there: it goes to the pool
    env.backend.snap["power"]["state"] = "on_battery"
    clock.t += 1.0
    r = get(srv, body=b"abc")
    assert r[0] == 200 and json.loads(r[2])["power"]["state"] == "on_battery"
    assert built_on[2].startswith("WSGI"), built_on


def test_an_action_over_the_wire_drops_the_stored_answer(served: Any) -> None:
    env, srv, _, built_on = served
    fp = fast(env)
    get(srv)
    assert get(srv)[0] == 200 and fp.hits == 1
    env.backend.snap["override"] = {"target": "lte", "who": "api"}
    r = get(srv, "/api/v1/failover", method="POST", body=json.dumps({"target": "lte"}).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert r[0] == 200, r
    assert env.backend.submitted[-1][:2] == ("failover", {"target": "lte"})
    after = get(srv)
    assert json.loads(after[2])["override"] == {"target": "lte", "who": "api"} and fp.hits == 1


def raw(srv: Served, data: bytes) -> tuple[bytes, dict[str, Any]]:
    """Send bytes as they are; the status line and the JSON body of the answer (the server closes)."""
    host, port = srv.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return head.split(b"\r\n")[0], json.loads(body)


def test_bad_http_gets_a_json_400_and_the_server_goes_on(served: Any) -> None:
    _, srv, _, _ = served
    for data in (b"\x00\x01garbage\r\n\r\n", b"GET /api/v1/\xffstatus HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        status, body = raw(srv, data)
        assert status == b"HTTP/1.1 400 Bad Request" and body["error"]["code"] == "bad_request", data
    assert get(srv)[0] == 200


def test_a_request_head_over_64_kib_gets_431(served: Any) -> None:
    _, srv, _, _ = served
    assert get(srv, headers={"X-Pad": "a" * (MAX_HEAD_BYTES - 1024)})[0] == 200  # just under: answered
    status, body = raw(srv, b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * MAX_HEAD_BYTES
                       + b"\r\n\r\n")
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large" and body["error"]["code"] == "head_too_large"
    status, body = raw(srv, b"GET /" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 431 ")
    assert get(srv)[0] == 200


def test_a_stop_lets_the_action_in_progress_finish(env: Env) -> None:
    release, entered = threading.Event(), threading.Event()
    submit = env.backend.submit

    def slow(action: str, params: dict[str, Any], who: str) -> dict[str, Any]:
        entered.set()
        release.wait(30)
        return submit(action, params, who)

    env.backend.submit = slow  # type: ignore[method-assign]
    srv = Served(env.app)
    answers: list[tuple[int, dict[str, str], bytes]] = []
    client = threading.Thread(target=lambda: answers.append(get(
        srv, "/api/v1/failover", method="POST", body=b'{"target": "lte"}',
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})))
    client.start()
    try:
        assert entered.wait(30)
        stopper = threading.Thread(target=srv.close)
        stopper.start()
        wait_until(lambda: srv.server.server.should_exit, 10, what="the stop began")
        release.set()
        stopper.join(60)
        client.join(60)
        assert not stopper.is_alive() and not client.is_alive()
        assert answers and answers[0][0] == 200 and json.loads(answers[0][2])["ok"] is True
        with pytest.raises(OSError) as exc:
            get(srv)
        assert exc.value.errno == errno.ECONNREFUSED
    finally:
        release.set()
        srv.close()


def test_bind_every_address_of_a_name_on_one_port_and_nothing_left_on_failure() -> None:
    socks = bind("localhost:0")
    try:
        ports = {s.getsockname()[1] for s in socks}
        assert len(ports) == 1 and {s.family for s in socks} >= {socket.AF_INET}
        port = ports.pop()
        with pytest.raises(OSError) as exc:
            bind(f"127.0.0.1:{port}")
        assert exc.value.errno == errno.EADDRINUSE
    finally:
        for s in socks:
            s.close()
    one = bind("[::1]:0") if socket.has_ipv6 and _has_v6_loopback() else bind("127.0.0.1:0")
    assert len(one) == 1
    one[0].close()


def test_the_daemon_url_names_a_reachable_address(env: Env) -> None:
    srv = WebServer(env.app, listen=":0").start()  # every IPv4 address: the URL says 127.0.0.1
    try:
        assert srv.url.startswith("http://127.0.0.1:") and srv.addresses[0][0] == "0.0.0.0"
        host, port = srv.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        srv.close()


def _has_v6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_a_server_that_cannot_start_says_why(env: Env) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    srv = WebServer(env.app, sockets=[udp])
    with pytest.raises(RuntimeError, match="did not start: .*[Ss]tream"):
        srv.start()
    assert not srv.thread.is_alive() and udp.fileno() == -1  # closed: nothing left behind
