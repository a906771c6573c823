"""The LTE nftables policy for real, in network namespaces this test makes: applied, idempotent, effective
(business apps pass, the rest is rate-limited or blocked) and removed on failback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import config
from gateway.core.modem import TABLE, render_lte_policy
from gateway.core.signals import ActiveUplinkChanged
from gateway.drivers.modem import Nft
from gateway.drivers.modem_fake import FakeModemDriver
from gateway.runtime.modem import ModemService
from gateway.runtime.service import Context
from gateway.store import Journal
from tests.conftest import IS_ROOT

pytestmark = [pytest.mark.lab, pytest.mark.skipif(not IS_ROOT, reason="needs root (network namespaces)")]

PRIO = "198.51.100.10"
OTHER = "198.51.100.20"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture
def nets() -> Iterator[tuple[str, str]]:
    """gw side (has 'wwan0') and carrier side, joined by a veth pair."""
    tag = f"ogm{os.getpid() % 100000}"
    gw, carrier = f"{tag}gw", f"{tag}lte"
    sh("ip", "netns", "add", gw)
    sh("ip", "netns", "add", carrier)
    try:
        sh("ip", "-n", gw, "link", "add", "wwan0", "type", "veth", "peer", "name", "eth0", "netns", carrier)
        sh("ip", "-n", gw, "addr", "add", "198.51.100.2/24", "dev", "wwan0")
        sh("ip", "-n", carrier, "addr", "add", f"{PRIO}/24", "dev", "eth0")
        sh("ip", "-n", carrier, "addr", "add", f"{OTHER}/24", "dev", "eth0")
        for ns, dev in ((gw, "wwan0"), (carrier, "eth0")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield gw, carrier
    finally:
        sh("ip", "netns", "del", gw, check=False)
        sh("ip", "netns", "del", carrier, check=False)


def table(ns: str) -> str | None:
    r = sh("ip", "netns", "exec", ns, "nft", "list", "table", "inet", TABLE, check=False)
    return r.stdout if r.returncode == 0 else None


RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# room for every datagram even if this process is not scheduled while they arrive (a loaded machine): what
# is measured is what nftables lets through, not what a full socket buffer drops (SO_RCVBUFFORCE, as root)
s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 16 << 20)
s.bind((sys.argv[1], 9999))
print("ready", flush=True)
s.settimeout(1.0)  # the sender is done once nothing arrives for this long
n = 0
try:
    while True:
        s.recv(65536)
        n += 1
except socket.timeout:
    pass
print(n, flush=True)
"""

SENDER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[2])):
    try:
        s.sendto(b"x" * 1200, (sys.argv[1], 9999))
    except PermissionError:  # a local packet dropped by nftables fails with EPERM
        pass
"""


def delivered_pct(nets: tuple[str, str], dst: str, count: int = 200) -> float:
    """Send ``count`` 1200-byte UDP datagrams from gw over wwan0 to ``dst``; the share that arrived."""
    gw, carrier = nets
    py = sys.executable
    rx = subprocess.Popen(["ip", "netns", "exec", carrier, py, "-c", RECEIVER, dst], stdout=subprocess.PIPE,
                          text=True)
    try:
        assert rx.stdout is not None and rx.stdout.readline().strip() == "ready"
        sh("ip", "netns", "exec", gw, py, "-c", SENDER, dst, str(count))
        out, _ = rx.communicate(timeout=30)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    return 100.0 * int(out.strip()) / count


def test_policy_applies_idempotently_and_limits(nets: tuple[str, str]) -> None:
    gw, _ = nets
    nft = Nft(gw)
    script = render_lte_policy("limit", "wwan0", (PRIO,), (), (5060, 5061), 64)
    asyncio.run(nft.apply(script))
    first = table(gw)
    asyncio.run(nft.apply(script))  # again: same single table, no duplicate rules
    assert first is not None and table(gw) == first
    assert sh("ip", "netns", "exec", gw, "nft", "list", "tables").stdout.count(TABLE) == 1
    assert delivered_pct(nets, PRIO) == 100.0  # business app: never limited
    assert delivered_pct(nets, OTHER) < 50.0  # the rest: 240 kB at once against 8 kB/s + 16 kB burst
    asyncio.run(nft.apply(render_lte_policy("block", "wwan0", (PRIO,), (), (), 64)))
    assert delivered_pct(nets, PRIO, 20) == 100.0
    assert delivered_pct(nets, OTHER, 20) == 0.0
    asyncio.run(nft.apply(render_lte_policy("none", "wwan0", (), (), (), 64)))
    assert table(gw) is None
    asyncio.run(nft.apply(render_lte_policy("none", "wwan0", (), (), (), 64)))  # removing twice is fine
    assert delivered_pct(nets, OTHER, 50) == 100.0


CFG = """
[site]
name = "Policy test"
state_dir = "{state}"

[ups]

[[uplinks]]
name = "wired"
interface = "eth1"
role = "primary"

[[uplinks]]
name = "lte"
interface = "wwan0"
role = "backup"
table = 102

[[services]]
name = "CRM"
url = "http://{prio}:8080/"

[failover.lte]
priority_ports = [5060]
restrict_rate_kbit = 64

[modem]
interface = "wwan0"
"""


def test_service_applies_on_lte_and_removes_on_failback(nets: tuple[str, str], tmp_path: Path) -> None:
    gw, _ = nets
    cfg = config.parse(CFG.format(state=tmp_path, prio=PRIO), "t.toml")
    ctx = Context(config=cfg, journal=Journal(tmp_path / "journal.db"), netns=gw)
    svc = ModemService(ctx, driver=FakeModemDriver(), counters=lambda: (None, None))

    async def main() -> None:
        await svc.poll()
        assert table(gw) is None and svc.policy_mode == "none"
        ctx.bus.publish(ActiveUplinkChanged("lte", "wired", "wired down"))
        await svc.poll()
        text = table(gw)
        assert text is not None and PRIO in text and "5060" in text
        ctx.bus.publish(ActiveUplinkChanged("wired", "lte", "failback"))
        await svc.poll()
        assert table(gw) is None

    asyncio.run(main())
    assert [e["data"]["mode"] for e in ctx.journal.events(kind_prefix="modem.lte_policy")] == ["limit", "none"]
