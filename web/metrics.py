"""/metrics: the daemon's figures (backend.metrics()) plus the web server's own, in Prometheus text format."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("gateway.web")

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class DaemonCollector(Collector):
    """Turns backend.metrics() rows (name, help, labels, value) into gauge families, read at scrape time."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        try:
            rows = list(self.backend.metrics())
        except Exception:
            log.exception("metrics: the daemon's figures could not be read")
            rows = []
        families: dict[str, tuple[str, list[tuple[dict[str, str], float]]]] = {}
        for row in rows:
            try:
                name, help_text, labels, value = row
                if not _NAME.fullmatch(name) or not all(_LABEL.fullmatch(k) for k in labels):
                    continue
                families.setdefault(name, (help_text, []))[1].append(({k: str(v) for k, v in labels.items()},
                                                                      float(value)))
            except (TypeError, ValueError):
                continue
        for name, extra_help, extra in self._journal_figures(set(families)):
            families[name] = (extra_help, extra)
        for name, (help_text, samples) in families.items():
            keys = sorted({k for labels, _ in samples for k in labels})
            fam = GaugeMetricFamily(name, help_text or name, labels=keys)
            seen = set()
            for labels, value in samples:
                key = tuple(labels.get(k, "") for k in keys)
                if key in seen:
                    continue
                seen.add(key)
                fam.add_metric(list(key), value)
            yield fam

    def _journal_figures(self, have: set[str]) -> list[tuple[str, str, list[tuple[dict[str, str], float]]]]:
        out: list[tuple[str, str, list[tuple[dict[str, str], float]]]] = []
        try:
            reader = self.backend.reader
            if "gateway_incidents_open" not in have:
                n = reader.query("SELECT count(*) AS n FROM incidents WHERE closed_at IS NULL")[0]["n"]
                out.append(("gateway_incidents_open", "Incidents currently open", [({}, float(n))]))
            if "gateway_incidents" not in have:
                rows = reader.query("SELECT coalesce(kind, '') AS kind, count(*) AS n FROM incidents GROUP BY kind")
                out.append(("gateway_incidents", "Incidents recorded in the journal, by kind",
                            [({"kind": r["kind"]}, float(r["n"])) for r in rows]))
        except Exception:
            log.debug("metrics: journal figures unavailable", exc_info=True)
        return out


class WebMetrics:
    """A registry per app (so several apps in one process, as in tests, do not collide)."""

    def __init__(self, backend: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("gateway_web_requests", "HTTP requests served by the status page and API",
                                ["method", "endpoint", "status"], registry=self.registry)
        self.latency = Histogram("gateway_web_request_seconds", "Time to answer an HTTP request", ["endpoint"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
                                 registry=self.registry)
        self.logins = Counter("gateway_web_logins", "Admin login attempts", ["result"], registry=self.registry)
        self.registry.register(DaemonCollector(backend))

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(method, endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
