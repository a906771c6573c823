"""A business-app checker with answers set by the test (same interface as ``apps.AppProbe``)."""

from __future__ import annotations

from gateway.drivers.apps import AppResult, AppTarget


class FakeAppProbe:
    def __init__(self, default: AppResult | None = None) -> None:
        self.default = default or AppResult(True, 12.0, 200)
        self.results: dict[str, AppResult] = {}
        self.calls: list[str] = []

    def set(self, name: str, reachable: bool, latency_ms: float | None = 12.0, error: str = "") -> None:
        self.results[name] = AppResult(reachable, latency_ms if reachable else None, 200 if reachable else None,
                                       error or ("" if reachable else "timeout"))

    async def check(self, t: AppTarget) -> AppResult:
        self.calls.append(t.name)
        return self.results.get(t.name, self.default)
