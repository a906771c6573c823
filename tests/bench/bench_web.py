"""Web figures: page weight, /api/v1/status latency (in-process vs a trivial Flask route, and under 50
concurrent loopback clients through the daemon's web server), and first render in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flask import Flask

from web.app import STATUS_CACHE_S
from web.serve import WORKERS


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def _timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


WRK_SCRIPT = """
done = function(summary, latency, requests)
  io.write(string.format("WRK %d %d %d %d %d\\n", summary.requests, summary.errors.status + summary.errors.connect
    + summary.errors.read + summary.errors.write + summary.errors.timeout, latency:percentile(50),
    latency:percentile(99), summary.duration))
end
"""


def _concurrent(url: str, path: str, clients: int = 50, seconds: int = 5) -> dict[str, float]:
    """Closed-loop load: ``clients`` connections each sending its next request as soon as the last is answered,
    from wrk (Debian's wrk, a C load generator: the clients' own work does not queue behind the server's GIL).
    Returns p50 and p99 in ms and the requests per second."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT)
        script.flush()
        res = subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "-s", script.name, url + path],
                             capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = [x for x in res.stdout.splitlines() if x.startswith("WRK ")]
    if not line:
        raise RuntimeError(f"wrk printed no summary: {res.stdout} {res.stderr}")
    n, errors, p50_us, p99_us, dur_us = (int(x) for x in line[-1].split()[1:])
    if errors:
        raise RuntimeError(f"{errors} of {n} requests failed under load")
    return {"p50": p50_us / 1000, "p99": p99_us / 1000, "rps": n / (dur_us / 1e6), "n": n}


PACED_CLIENT = r"""
import http.client, json, sys, threading, time
host, port, path, clients, every, rounds = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
lat, lock, t0 = [], threading.Lock(), time.monotonic() + 0.5
def client(i):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    mine = []
    for k in range(rounds):
        due = t0 + (k + i / clients) * every  # the clients' polls spread over the interval, as real pages drift
        time.sleep(max(0.0, due - time.monotonic()))
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"HTTP {r.status}")
        mine.append((time.perf_counter() - t) * 1000)
    conn.close()
    with lock:
        lat.extend(mine)
threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(lat))
"""


def _paced(url: str, path: str, clients: int = 50, every_s: float = 1.0, rounds: int = 10) -> list[float]:
    """Open-loop load: ``clients`` keep-alive connections each asking once every ``every_s`` (the page polls
    every 5 s), from a separate process; the latency of each request in ms."""
    host, port = url.removeprefix("http://").split(":")
    res = subprocess.run([sys.executable, "-c", PACED_CLIENT, host, port, path, str(clients), str(every_s),
                          str(rounds)], capture_output=True, text=True, timeout=300, check=True)
    return [float(x) for x in json.loads(res.stdout)]


def _floor_app(body: bytes) -> Any:
    """The server's own floor: an ASGI app that answers the same bytes and does nothing else."""
    start = {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
    done = {"type": "http.response.body", "body": body}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(start)
        await send(done)
    return app


def run() -> dict[str, dict[str, object]]:
    from tests.web.conftest import Env, Served

    out: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as d:
        env = Env(Path(d))
        c = env.client("127.0.0.1")
        page = c.get("/").data
        css = c.get("/static/app.css").data
        js = c.get("/static/app.js").data
        frag = c.get("/fragment/status").data
        total = len(page) + len(css) + len(js)
        external = len(re.findall(rb"(?:src|href)=\"(?:https?:)?//", page))
        out["web_page_weight"] = {"value": round(total / 1000, 1), "unit": "KB", "baseline": None,
                                  "goal": "<= 100 KB all in (HTML + CSS + JS, no external)"}
        out["web_fragment_bytes"] = {"value": round(len(frag) / 1000, 1), "unit": "KB", "baseline": None,
                                     "goal": "only on change; 304 otherwise"}
        out["web_external_refs"] = {"value": external, "unit": "count", "baseline": None, "goal": "0"}

        trivial = Flask("trivial")
        trivial.add_url_rule("/t", "t", lambda: {"ok": True})
        tc = trivial.test_client()
        for _ in range(50):
            c.get("/api/v1/status")
            tc.get("/t")
        api = _timed(lambda: c.get("/api/v1/status"), 500)
        base = _timed(lambda: tc.get("/t"), 500)
        out["web_status_p50_inprocess"] = {"value": round(statistics.median(api), 3), "unit": "ms",
                                           "baseline": round(statistics.median(base), 3),
                                           "goal": "baseline: a trivial Flask route"}
        page_t = _timed(lambda: c.get("/"), 100)
        out["web_page_render_p50"] = {"value": round(statistics.median(page_t), 2), "unit": "ms", "baseline": None,
                                      "goal": "server-side render incl. SVG charts"}

        srv = Served(env.app, threads=WORKERS)  # as the daemon serves it
        body = c.get("/api/v1/status").data
        floor = Served(env.app, asgi=_floor_app(body))
        fast = env.app.wsgi_app
        try:
            # the same run, the same server, three ways: Flask's route with the shared render (the fast path
            # off), the fast path, and the server answering the same bytes with no application at all
            env.app.config["STATUS_CACHE_S"] = STATUS_CACHE_S  # the daemon's default
            fast.enabled = False
            flask = _concurrent(srv.url, "/api/v1/status")
            fast.enabled = True
            hits = fast.hits
            lat = _concurrent(srv.url, "/api/v1/status")
            served_fast = fast.hits - hits
            bare = _concurrent(floor.url, "/")
            out["web_status_p50_50clients"] = {
                "value": round(lat["p50"], 2), "unit": "ms", "baseline": round(flask["p50"], 2),
                "floor": round(bare["p50"], 2),
                "goal": "loopback, uvicorn, 50 closed-loop wrk connections; baseline: through Flask's route"}
            out["web_status_p99_50clients"] = {
                "value": round(lat["p99"], 2), "unit": "ms", "baseline": round(flask["p99"], 2),
                "floor": round(bare["p99"], 2),
                "goal": "<= 20 ms; baseline: through Flask's route; floor: uvicorn with no app"}
            out["web_status_p99_50clients_floor"] = {
                "value": round(bare["p99"], 2), "unit": "ms", "baseline": None,
                "goal": "uvicorn answering the same bytes with no application: the server's own floor"}
            out["web_status_rps_50clients"] = {
                "value": round(lat["rps"]), "unit": "req/s", "baseline": round(flask["rps"]),
                "floor": round(bare["rps"]), "fast_share": round(min(1.0, served_fast / lat["n"]), 3),
                "goal": "throughput of the same load; floor: uvicorn with no app"}
            paced = _paced(srv.url, "/api/v1/status")
            out["web_status_p99_50pages"] = {
                "value": round(_pct(paced, 99), 2), "unit": "ms", "baseline": None,
                "p50": round(_pct(paced, 50), 2),
                "goal": "50 clients each polling once a second (5x the page's rate), open loop"}
            if os.path.exists("/usr/bin/chromium"):
                trivial = Served(env.app, asgi=_trivial_page)
                try:
                    out.update(_first_render(srv.url, trivial.url))
                finally:
                    trivial.close()
        finally:
            floor.close()
            srv.close()
            env.journal.close()
    return out


TRIVIAL_PAGE = (b"<!doctype html><html lang=en><head><meta charset=utf-8><title>Office Gateway</title></head>"
                b"<body><h1>Office Gateway</h1><p>All systems normal.</p></body></html>")


async def _trivial_page(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html; charset=utf-8"),
                            (b"content-length", str(len(TRIVIAL_PAGE)).encode())]})
    await send({"type": "http.response.body", "body": TRIVIAL_PAGE})


def _first_render(url: str, trivial_url: str) -> dict[str, dict[str, object]]:
    """First contentful paint of the page in a fresh browser context each time, alternating with a trivial page
    from the same server (the browser's own floor on this machine, which moves with its load)."""
    from playwright.sync_api import sync_playwright

    from tests.web.test_browser import ARGS, CHROMIUM

    def measure(b: Any, where: str) -> tuple[float, float]:
        ctx = b.new_context(bypass_csp=True)  # wait_for_function evaluates a string
        page = ctx.new_page()
        page.goto(where)
        try:
            page.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0",
                                   timeout=5000)
        except Exception:
            pass
        fcp = page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || -1")
        load = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        ctx.close()
        return float(fcp), float(load)

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        times, floor = [], []
        for _ in range(9):
            times.append(measure(b, url + "/"))
            floor.append(measure(b, trivial_url + "/")[0])
        b.close()
    fcps = [f for f, _ in times if f > 0]
    floors = [f for f in floor if f > 0]
    return {"web_first_render_chromium": {"value": round(statistics.median(fcps), 1) if fcps else -1, "unit": "ms",
                                          "baseline": round(statistics.median(floors), 1) if floors else None,
                                          "goal": "<= 300 ms (first contentful paint); baseline: a trivial page"},
            "web_load_event_chromium": {"value": round(statistics.median(t for _, t in times), 1), "unit": "ms",
                                        "baseline": None, "goal": "page + CSS + JS loaded"}}
