"""Sending messages through apprise (e-mail, Telegram, Slack/Teams, webhooks, ntfy, SMS gateways...).

One boundary: every failure of any service becomes DeviceUnavailable/DeviceRefused here.  Messages go
out through the box's main routing table, so they leave through whichever uplink is active (LTE while
the wired line is down).
"""

from __future__ import annotations

import asyncio
import logging

import apprise

from gateway.core.errors import DeviceRefused, DeviceUnavailable


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class Notifier:
    """Sends one message to one named target (an apprise URL from config)."""

    def __init__(self, targets: dict[str, str], timeout_s: float = 20.0) -> None:
        self.targets = dict(targets)
        self.timeout_s = timeout_s
        bad = [name for name, url in self.targets.items() if not apprise.Apprise().add(url)]
        self.invalid = set(bad)

    async def send(self, target: str, title: str, body: str) -> None:
        if target not in self.targets:
            raise DeviceRefused(f"no notify target named {target!r}")
        if target in self.invalid:
            raise DeviceRefused(f"notify target {target!r}: apprise does not understand its URL")
        try:
            ok, errors = await asyncio.wait_for(asyncio.to_thread(self._send, self.targets[target], title, body),
                                                self.timeout_s)
        except TimeoutError:
            raise DeviceUnavailable(f"{target}: no answer within {self.timeout_s:.0f} s") from None
        if not ok:
            raise DeviceUnavailable(f"{target}: " + ("; ".join(errors[-2:]) or "not delivered"))

    @staticmethod
    def _send(url: str, title: str, body: str) -> tuple[bool, list[str]]:
        a = apprise.Apprise()
        a.add(url)
        cap = _Capture()
        log = logging.getLogger("apprise")
        log.addHandler(cap)
        try:
            return bool(a.notify(body=body, title=title)), cap.lines
        finally:
            log.removeHandler(cap)
