"""The lab switches: snmpsim (as an unprivileged user) with writable PoE rows, seen through net-snmp's tools
and pysnmp."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.lab.snmp import LAB_USER, RFC3621_ADMIN, TPLINK, TPLINK_ADMIN, SnmpPeer
from tests.conftest import needs_root

pytestmark = [pytest.mark.lab, needs_root,
              pytest.mark.skipif(shutil.which("snmpget") is None, reason="net-snmp tools (snmp) not installed")]


@pytest.fixture(scope="module")
def cisco(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpPeer]:
    peer = SnmpPeer(tmp_path_factory.mktemp("snmp") / "cisco").start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="module")
def tplink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpPeer]:
    peer = SnmpPeer(tmp_path_factory.mktemp("snmp") / "tplink", data_file=TPLINK).start()
    try:
        yield peer
    finally:
        peer.stop()


def test_runs_unprivileged(cisco: SnmpPeer) -> None:
    owner = subprocess.run(["ps", "-o", "user=", "-p", str(cisco.pid)], capture_output=True, text=True).stdout
    assert owner.strip() in (LAB_USER, str(__import__("pwd").getpwnam(LAB_USER).pw_uid))


def test_cisco_port_off_and_on_v2c(cisco: SnmpPeer) -> None:
    oid = f"{RFC3621_ADMIN}.3.7"
    addr = f"{cisco.host}:{cisco.port}"
    assert cisco.get(oid) == "1"
    out = subprocess.run(["snmpset", "-v2c", "-c", "private", "-t", "2", "-r", "1", addr, oid, "i", "2"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert cisco.get(oid) == "2" and cisco.get(oid, community="private") == "2"
    assert cisco.set(oid, 1) and cisco.admin(7) == 1
    # a value outside the MIB's TruthValue is refused and changes nothing
    assert not cisco.set(oid, 5) and cisco.admin(7) == 1
    # the rest of the walk is the real switch
    assert "C3750" in (cisco.get("1.3.6.1.2.1.1.1.0") or "") or cisco.get("1.3.6.1.2.1.1.5.0") == "Profiler3750"
    # an unknown community gets no answer
    assert cisco.get(oid, community="nope", timeout_s=0.3) is None


def test_cisco_v3_user_with_pysnmp(cisco: SnmpPeer) -> None:
    from pysnmp.hlapi.v3arch import asyncio as h

    oid = f"{RFC3621_ADMIN}.3.9"

    async def go() -> tuple[int, int]:
        eng = h.SnmpEngine()
        try:
            user = h.UsmUserData("gateway", "gatewayauth", "gatewaypriv", authProtocol=h.usmHMACSHAAuthProtocol,
                                 privProtocol=h.usmAesCfb128Protocol)
            target = await h.UdpTransportTarget.create((cisco.host, cisco.port), timeout=2, retries=1)
            ctx = h.ContextData(contextName="private")
            ei, es, _, vb = await h.set_cmd(eng, user, target, ctx, h.ObjectType(h.ObjectIdentity(oid), h.Integer(2)))
            assert not ei and not es, (ei, es)
            ei, es, _, vb = await h.get_cmd(eng, user, target, ctx, h.ObjectType(h.ObjectIdentity(oid)))
            assert not ei and not es, (ei, es)
            after_off = int(vb[0][1])
            await h.set_cmd(eng, user, target, ctx, h.ObjectType(h.ObjectIdentity(oid), h.Integer(1)))
            ei, es, _, vb = await h.get_cmd(eng, user, target, ctx, h.ObjectType(h.ObjectIdentity(oid)))
            return after_off, int(vb[0][1])
        finally:
            eng.close_dispatcher()

    assert asyncio.run(go()) == (2, 1)


def test_tplink_private_mib(tplink: SnmpPeer) -> None:
    assert "JetStream" in (tplink.get("1.3.6.1.2.1.1.1.0") or "")
    for port in range(1, 9):
        assert tplink.admin(port) == 1
    assert tplink.set(f"{TPLINK_ADMIN}.4", 0) and tplink.admin(4) == 0
    assert not tplink.set(f"{TPLINK_ADMIN}.4", 2) and tplink.admin(4) == 0
    assert tplink.set(f"{TPLINK_ADMIN}.4", 1) and tplink.admin(4) == 1
    assert tplink.get(f"{TPLINK_ADMIN}.9") is None


def test_stop_removes_what_it_made(tmp_path: Path) -> None:
    peer = SnmpPeer(tmp_path / "sw", data_file=TPLINK).start()
    rundir, pid = peer.rundir, peer.pid
    assert rundir is not None and rundir.exists()
    attached = SnmpPeer.attach(tmp_path / "sw")
    assert attached.running() and attached.admin(1) == 1
    attached.stop()
    assert not rundir.exists() and not (tmp_path / "sw").exists()
    assert not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()
