"""Probes without a network, with the same interface as the probers in :mod:`gateway.drivers.probe`.

A :class:`FakeWorld` says, per (interface, target), whether a probe is answered and how fast; each fake
prober answers from it through the event loop, like the real ones.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gateway.core.errors import DeviceUnavailable
from gateway.drivers.probe import OnReply


@dataclass
class FakeWorld:
    rtt_ms: float = 5.0
    dead: set[tuple[str, str]] = field(default_factory=set)  # (iface, target) never answered
    down: set[str] = field(default_factory=set)  # ifaces that answer nothing
    unreachable: set[str] = field(default_factory=set)  # ifaces where send itself fails
    sent: dict[str, int] = field(default_factory=dict)  # iface → probes sent

    def answers(self, iface: str, target: str) -> bool:
        return iface not in self.down and (iface, target) not in self.dead


class FakeProber:
    def __init__(self, world: FakeWorld, kind: str, source: str | None, iface: str | None,
                 on_reply: OnReply) -> None:
        self.world, self.kind, self.iface, self.on_reply = world, kind, iface or source or "", on_reply
        self.token = 0
        self.sent_count = 0
        self.closed = False

    def send(self, target: str) -> int:
        if self.iface in self.world.unreachable:
            raise DeviceUnavailable(f"{self.kind} {target}: Network is unreachable")
        self.token += 1
        self.sent_count += 1
        self.world.sent[self.iface] = self.world.sent.get(self.iface, 0) + 1
        if self.world.answers(self.iface, target):
            token, rtt = self.token, self.world.rtt_ms
            asyncio.get_running_loop().call_later(rtt / 1000.0, self._reply, target, token, rtt)
        return self.token

    def _reply(self, target: str, token: int, rtt: float) -> None:
        if not self.closed:
            self.on_reply(target, token, rtt)

    def close(self) -> None:
        self.closed = True
