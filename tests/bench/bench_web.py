"""Web figures: page weight, /api/v1/status latency (in-process vs a trivial Flask route, and under 50
concurrent loopback clients through waitress), and first render in headless Chromium."""

from __future__ import annotations

import json
import logging
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


LOAD_CLIENT = r"""
import http.client, json, sys, threading, time
host, port, path, clients, per_client = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
lat, lock, start = [], threading.Lock(), threading.Barrier(clients)
def worker():
    conn = http.client.HTTPConnection(host, port, timeout=30)
    mine = []
    start.wait()
    for _ in range(per_client):
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        mine.append((time.perf_counter() - t) * 1000)
        if r.status != 200:
            raise SystemExit(f"HTTP {r.status}")
    conn.close()
    with lock:
        lat.extend(mine)
threads = [threading.Thread(target=worker) for _ in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(lat))
"""


def _concurrent(url: str, path: str, clients: int = 50, per_client: int = 40) -> list[float]:
    """Closed-loop load from a separate process (so the clients do not share the server's GIL)."""
    host, port = url.removeprefix("http://").split(":")
    res = subprocess.run([sys.executable, "-c", LOAD_CLIENT, host, port, path, str(clients), str(per_client)],
                         capture_output=True, text=True, timeout=300, check=True)
    return [float(x) for x in json.loads(res.stdout)]


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

        logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth" under load is expected
        srv = Served(env.app, threads=8)  # as the daemon serves it
        try:
            # baseline: every request renders the status itself (no shared render), measured in the same run
            env.app.config["STATUS_CACHE_S"] = 0.0
            lat0 = _concurrent(srv.url, "/api/v1/status")
            env.app.config["STATUS_CACHE_S"] = STATUS_CACHE_S  # the daemon's default
            lat = _concurrent(srv.url, "/api/v1/status")
            out["web_status_p50_50clients"] = {"value": round(_pct(lat, 50), 2), "unit": "ms",
                                               "baseline": round(_pct(lat0, 50), 2),
                                               "goal": "loopback, waitress; baseline: no shared render"}
            out["web_status_p99_50clients"] = {"value": round(_pct(lat, 99), 2), "unit": "ms",
                                               "baseline": round(_pct(lat0, 99), 2),
                                               "goal": "<= 20 ms; baseline: no shared render"}
            if os.path.exists("/usr/bin/chromium"):
                out.update(_first_render(srv.url))
        finally:
            srv.close()
            env.journal.close()
    return out


def _first_render(url: str) -> dict[str, dict[str, object]]:
    from playwright.sync_api import sync_playwright

    from tests.web.test_browser import ARGS, CHROMIUM

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        times = []
        for _ in range(5):
            ctx = b.new_context(bypass_csp=True)  # wait_for_function evaluates a string
            page = ctx.new_page()
            page.goto(url + "/")
            try:
                page.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0",
                                       timeout=5000)
            except Exception:
                pass
            fcp = page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || -1")
            load = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
            times.append((float(fcp), float(load)))
            ctx.close()
        b.close()
    fcps = [f for f, _ in times if f > 0]
    return {"web_first_render_chromium": {"value": round(statistics.median(fcps), 1) if fcps else -1, "unit": "ms",
                                          "baseline": None, "goal": "<= 300 ms (first contentful paint)"},
            "web_load_event_chromium": {"value": round(statistics.median(t for _, t in times), 1), "unit": "ms",
                                        "baseline": None, "goal": "page + CSS + JS loaded"}}
