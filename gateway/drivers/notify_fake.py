"""A notifier with the same interface that records messages and fails on demand (for unit tests)."""

from __future__ import annotations

from gateway.core.errors import DeviceRefused, DeviceUnavailable


class FakeNotifier:
    def __init__(self, targets: dict[str, str]) -> None:
        self.targets = dict(targets)
        self.invalid: set[str] = set()
        self.sent: list[tuple[str, str, str]] = []
        self.failing: set[str] = set()

    async def send(self, target: str, title: str, body: str) -> None:
        if target not in self.targets:
            raise DeviceRefused(f"no notify target named {target!r}")
        if target in self.failing:
            raise DeviceUnavailable(f"{target}: unreachable (fake)")
        self.sent.append((target, title, body))
