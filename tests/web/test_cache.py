"""The shared render (web/cache.py): concurrent clients of /api/v1/status and the page share one snapshot and
one render within STATUS_CACHE_S; an action through the web clears it, so the next page shows its result."""

from __future__ import annotations

import threading
from typing import Any

from tests.conftest import Clock
from tests.web.conftest import Env, Served
from web.cache import RenderCache


def test_value_is_kept_for_the_ttl_built_once_and_dropped_on_clear() -> None:
    clock = Clock(100.0)
    cache = RenderCache(clock)
    built: list[int] = []

    def build() -> int:
        built.append(len(built))
        return len(built)

    assert cache.get("k", build, 0.25) == 1
    clock.t += 0.2
    assert cache.get("k", build, 0.25) == 1
    clock.t += 0.1  # older than the ttl: built again
    assert cache.get("k", build, 0.25) == 2
    cache.clear()
    assert cache.get("k", build, 0.25) == 3
    assert cache.get("other", build, 0.25) == 4
    assert cache.get("k", build, 0) == 5 and cache.get("k", build, 0) == 6  # ttl 0: no sharing at all
    assert cache.builds == 6


def test_a_build_that_fails_caches_nothing_and_a_clear_during_a_build_wins() -> None:
    clock = Clock(100.0)
    cache = RenderCache(clock)

    def boom() -> int:
        raise RuntimeError("snapshot failed")

    try:
        cache.get("k", boom, 1.0)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the error must reach the caller")

    def build_then_clear() -> str:
        cache.clear()  # an action lands while the old state is being rendered
        return "old"

    assert cache.get("k", build_then_clear, 1.0) == "old"
    assert cache.get("k", lambda: "new", 1.0) == "new"  # the render from before the action was not kept


class CountingBackend:
    """Counts the snapshots the web app asks the test backend for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
        return dict(self.inner.snap)


def test_concurrent_status_clients_share_one_snapshot_and_render(env: Env) -> None:
    import http.client

    env.app.config["STATUS_CACHE_S"] = 60.0  # long enough that every client below lands in the same render
    counter = CountingBackend(env.backend)
    env.backend.snapshot = counter.snapshot  # type: ignore[method-assign]
    srv = Served(env.app, threads=8)
    bodies: list[tuple[int, bytes, str]] = []
    start = threading.Barrier(20)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", int(srv.url.rsplit(":", 1)[1]), timeout=30)
        start.wait()
        conn.request("GET", "/api/v1/status")
        r = conn.getresponse()
        bodies.append((r.status, r.read(), r.headers["ETag"]))
        conn.close()

    try:
        threads = [threading.Thread(target=client) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        srv.close()
    assert len(bodies) == 20 and {b[0] for b in bodies} == {200}
    assert len({b[1] for b in bodies}) == 1 and len({b[2] for b in bodies}) == 1
    assert counter.calls == 1, "twenty clients, one snapshot"
    assert b'"state":"on_battery"' in bodies[0][1]


def test_an_action_through_the_web_clears_the_shared_render(env: Env) -> None:
    env.app.config["STATUS_CACHE_S"] = 60.0
    c, csrf = env.admin()
    assert c.get("/api/v1/status").get_json()["override"] is None
    env.backend.snap["override"] = "lte"  # what the daemon would show after the failover below
    assert c.get("/api/v1/status").get_json()["override"] is None  # still the shared render
    r = c.post("/api/v1/failover", json={"target": "lte"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.data
    assert c.get("/api/v1/status").get_json()["override"] == "lte"
    assert "held on lte" in c.get("/").get_data(as_text=True)
