"""Sending messages through apprise (e-mail, Telegram, Slack/Teams, webhooks, ntfy, SMS gateways...).

One boundary: every failure of any service becomes DeviceUnavailable/DeviceRefused here.  Messages go
out through the box's main routing table, so they leave through whichever uplink is active (LTE while
the wired line is down).

apprise (~200 modules, ~12 MB once used) is imported on the first send, in the sending thread: a box that
has nothing to say never loads it, and the event loop never waits on the import.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from gateway.core.errors import DeviceRefused, DeviceUnavailable


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


_import_lock = threading.Lock()


def _apprise() -> Any:
    with _import_lock:  # two first sends at once: one import
        import apprise

    return apprise


class Notifier:
    """Sends one message to one named target (an apprise URL from config)."""

    def __init__(self, targets: dict[str, str], timeout_s: float = 20.0) -> None:
        self.targets = dict(targets)
        self.timeout_s = timeout_s
        self.invalid: set[str] = set()  # targets whose URL apprise did not understand (found on first send)

    async def send(self, target: str, title: str, body: str) -> None:
        if target not in self.targets:
            raise DeviceRefused(f"no notify target named {target!r}")
        url = self.targets[target]
        try:
            async with asyncio.timeout(self.timeout_s):
                ok, errors = await asyncio.to_thread(self._send, url, title, body)
        except TimeoutError:
            raise DeviceUnavailable(f"{target}: no answer within {self.timeout_s:.0f} s") from None
        if ok is None:
            self.invalid.add(target)
            raise DeviceRefused(f"notify target {target!r}: apprise does not understand its URL")
        self.invalid.discard(target)
        if not ok:
            raise DeviceUnavailable(f"{target}: " + ("; ".join(errors[-2:]) or "not delivered"))

    @staticmethod
    def _send(url: str, title: str, body: str) -> tuple[bool | None, list[str]]:
        """(True, []) sent; (False, apprise's warnings) not delivered; (None, []) a URL apprise refuses."""
        a = _apprise().Apprise()
        if not a.add(url):
            return None, []
        cap = _Capture()
        log = logging.getLogger("apprise")
        log.addHandler(cap)
        try:
            return bool(a.notify(body=body, title=title)), cap.lines
        finally:
            log.removeHandler(cap)
