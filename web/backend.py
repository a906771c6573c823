"""The web app's view of the daemon, and a fake of it for tests."""

from __future__ import annotations

from typing import Any, Protocol

from gateway.config import Config
from gateway.store import JournalReader


class Backend(Protocol):
    reader: JournalReader

    @property
    def config(self) -> Config: ...

    @property
    def token(self) -> str: ...

    def snapshot(self) -> dict[str, Any]: ...

    def submit(self, action: str, params: dict[str, Any], who: str) -> dict[str, Any]: ...

    def metrics(self) -> list[tuple[str, str, dict[str, str], float]]: ...


class FakeBackend:
    """Same interface, for Flask test-client tests: a fixed snapshot, a real journal, recorded actions."""

    def __init__(self, config: Config, journal_path: str, snapshot: dict[str, Any] | None = None,
                 token: str = "test-token") -> None:
        self._config = config
        self._token = token
        self.reader = JournalReader(journal_path)
        self.snap: dict[str, Any] = snapshot or {}
        self.submitted: list[tuple[str, dict[str, Any], str]] = []
        self.results: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, Exception] = {}  # action -> exception submit() raises (e.g. ActionRejected)
        self.metric_rows: list[tuple[str, str, dict[str, str], float]] = []
        self.ready = True  # /healthz answers 503 while False

    @property
    def config(self) -> Config:
        return self._config

    @property
    def token(self) -> str:
        return self._token

    def snapshot(self) -> dict[str, Any]:
        return self.snap

    def submit(self, action: str, params: dict[str, Any], who: str) -> dict[str, Any]:
        if action in self.errors:
            raise self.errors[action]
        self.submitted.append((action, params, who))
        return self.results.get(action, {"ok": True, "message": f"{action} done"})

    def metrics(self) -> list[tuple[str, str, dict[str, str], float]]:
        return list(self.metric_rows)
