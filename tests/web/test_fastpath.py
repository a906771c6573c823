"""The status fast path (web/fastpath.py): an anonymous LAN GET of /api/v1/status is answered with the very
response Flask gave for the same render; anything that could change the answer goes through Flask."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Clock
from tests.web.conftest import TOKEN, Env
from web.fastpath import StatusFastPath


def fast(env: Env) -> StatusFastPath:
    env.app.config["STATUS_CACHE_S"] = 60.0  # one render for the whole test, as clients polling within 0.25 s see
    fp = env.app.wsgi_app
    assert isinstance(fp, StatusFastPath)
    return fp


def answer(r: Any) -> tuple[str, list[tuple[str, str]], bytes]:
    return r.status, sorted(r.headers.to_wsgi_list()), r.get_data()


def test_the_second_anonymous_get_is_the_first_ones_answer_byte_for_byte(env: Env) -> None:
    fp = fast(env)
    c = env.client()
    first = c.get("/api/v1/status")
    assert first.status_code == 200 and fp.hits == 0  # made by Flask, kept
    second = c.get("/api/v1/status")
    assert fp.hits == 1 and answer(second) == answer(first)
    assert second.get_json()["power"]["state"] == "on_battery"
    tag = first.headers["ETag"]
    via_flask = c.get("/api/v1/status", headers={"If-None-Match": tag})
    assert via_flask.status_code == 304 and fp.hits == 1  # the first 304 comes from Flask
    again = c.get("/api/v1/status", headers={"If-None-Match": tag})
    assert fp.hits == 2 and answer(again) == answer(via_flask) and again.get_data() == b""
    other = c.get("/api/v1/status", headers={"If-None-Match": 'W/"someoneelse"'})
    assert other.status_code == 200 and fp.hits == 2  # a tag it does not hold: Flask decides
    # the route's counter in /metrics counts the fast answers too
    metrics = c.get("/metrics").get_data(as_text=True)
    line = [x for x in metrics.splitlines()
            if x.startswith("gateway_web_requests_total{") and 'endpoint="api.status"' in x and 'status="200"' in x]
    assert line and float(line[0].rsplit(" ", 1)[1]) == 3.0, line


@pytest.mark.parametrize("how", ["token", "bad-token", "cookie", "query", "post", "outside"])
def test_requests_that_could_be_answered_differently_go_through_flask(env: Env, how: str) -> None:
    fp = fast(env)
    c = env.client()
    assert c.get("/api/v1/status").status_code == 200  # an answer is kept
    if how == "token":
        r = c.get("/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200
    elif how == "bad-token":
        r = c.get("/api/v1/status", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "bad_token"
    elif how == "cookie":
        c.set_cookie("session", "garbage")  # the test client keeps Cookie headers in its own jar
        r = c.get("/api/v1/status")
        assert r.status_code == 200
    elif how == "query":
        r = c.get("/api/v1/status?x=1")
        assert r.status_code == 200
    elif how == "post":
        r = c.post("/api/v1/status")
        assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"
    else:
        r = env.client("100.64.0.9").get("/api/v1/status")  # not the LAN: the read rule wants a login
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "login_required"
    assert fp.hits == 0


def test_read_behind_login_is_never_answered_here(login_env: Env) -> None:
    fp = fast(login_env)
    c = login_env.client()
    for _ in range(3):
        r = c.get("/api/v1/status")
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "login_required"
    assert fp.hits == 0


def test_an_action_drops_the_kept_answer(env: Env) -> None:
    fp = fast(env)
    c = env.client()
    admin, csrf = env.admin()
    assert c.get("/api/v1/status").get_json()["override"] is None
    assert c.get("/api/v1/status").get_json()["override"] is None and fp.hits == 1
    env.backend.snap["override"] = "lte"  # what the daemon shows after the failover below
    r = admin.post("/api/v1/failover", json={"target": "lte"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.data
    assert c.get("/api/v1/status").get_json()["override"] == "lte"  # through Flask: a new render
    assert fp.hits == 1
    assert c.get("/api/v1/status").get_json()["override"] == "lte" and fp.hits == 2


def test_a_stale_render_is_not_kept(env: Env) -> None:
    fp = fast(env)
    env.app.config["STATUS_CACHE_S"] = 1e-9  # every render is already old when its answer comes back
    c = env.client()
    for _ in range(3):
        assert c.get("/api/v1/status").status_code == 200
    assert fp.hits == 0
    env.app.config["STATUS_CACHE_S"] = 0.0  # no shared render at all: no fast path either
    assert c.get("/api/v1/status").status_code == 200 and fp.hits == 0


def test_while_one_request_makes_the_next_render_the_others_get_the_last_answer(env: Env) -> None:
    import threading

    from web.cache import RenderCache

    fp = fast(env)
    clock = Clock()
    env.app.config["RENDER_CACHE"] = cache = RenderCache(clock)
    env.app.config["STATUS_CACHE_S"] = 0.25
    c = env.client()
    first = c.get("/api/v1/status")
    assert c.get("/api/v1/status").get_data() == first.get_data() and fp.hits == 1 and cache.builds == 1

    rendering, release = threading.Event(), threading.Event()
    real = env.backend.snapshot

    def slow_snapshot() -> Any:
        rendering.set()
        assert release.wait(30), "the test never released the render"
        return real()

    env.backend.snapshot = slow_snapshot  # type: ignore[method-assign]
    clock.t += 0.3  # the render is now older than STATUS_CACHE_S: the next request makes a new one
    refreshed: list[Any] = []
    t = threading.Thread(target=lambda: refreshed.append(env.client().get("/api/v1/status")))
    t.start()
    try:
        assert rendering.wait(30), "no request went to make the next render"
        during = c.get("/api/v1/status")  # meanwhile: the last answer, not a queue behind the render
        assert fp.hits == 2 and answer(during) == answer(first)
        clock.t += 0.3  # 0.6 s old: past twice STATUS_CACHE_S, no longer handed out (such a request goes
        assert fp._stored({}) is None  # through Flask and waits there for the render in flight)
        env.backend.snapshot = real  # type: ignore[method-assign]
    finally:
        release.set()
        t.join(30)
    assert refreshed and refreshed[0].status_code == 200 and cache.builds == 2
    # that render is dated from when it started (0.3 s ago by the test's clock): this request makes the next,
    assert c.get("/api/v1/status").status_code == 200 and cache.builds == 3 and fp.hits == 2
    assert c.get("/api/v1/status").status_code == 200 and fp.hits == 3  # whose answer is kept


def test_after_an_action_the_answer_from_before_is_never_handed_out_even_during_a_refresh(env: Env) -> None:
    fp = fast(env)
    c = env.client()
    assert c.get("/api/v1/status").get_json()["override"] is None
    assert c.get("/api/v1/status").status_code == 200 and fp.hits == 1
    fp._refreshing = True  # as if another request were making the next render right now
    env.backend.snap["override"] = "lte"
    env.app.config["RENDER_CACHE"].clear()  # what every action does
    # a newer render appears (a script with a token asked); the stored answer is from before the action
    assert c.get("/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()["override"] == "lte"
    assert c.get("/api/v1/status").get_json()["override"] == "lte" and fp.hits == 1
