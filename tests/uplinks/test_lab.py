"""The uplink service in real namespaces: probes through each uplink, failover, failback, override, conntrack."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from gateway.core.errors import DeviceUnavailable
from gateway.drivers.net import NetDriver
from gateway.drivers.probe import dns_check, http_check, tcp_connect
from gateway.lab.net import INET_CRM, INET_DNS, INET_HOSTS, LTE_ADDR, WIRED_ADDR, Topology
from tests.conftest import needs_root
from tests.uplinks.conftest import make_service, until, uplink

pytestmark = [needs_root, pytest.mark.lab]


def route_iface(topo: Topology) -> str | None:
    cur = NetDriver(topo.ns["gw"]).default_route()
    return cur[0] if cur else None


def lan_curl(topo: Topology) -> bool:
    r = subprocess.run(topo.exec_argv("lan", ["curl", "-s", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}",
                                              f"http://{INET_CRM}/"]), capture_output=True, text=True)
    return r.stdout.strip() == "200"


def test_checks_bound_to_each_uplink(topo: Topology) -> None:
    async def main() -> None:
        ns = topo.ns["gw"]
        net = NetDriver(ns)
        assert net.ensure_uplink("wan0", "192.0.2.1", None, 101) == WIRED_ADDR
        assert net.ensure_uplink("lte0", "198.51.100.1", None, 102) == LTE_ADDR
        assert await tcp_connect(INET_CRM, 80, LTE_ADDR, "lte0", 2.0, ns) >= 0
        assert await http_check(f"http://{INET_CRM}/", WIRED_ADDR, "wan0", 2.0, ns) >= 0
        assert await dns_check(INET_DNS, "crm.office.example", LTE_ADDR, "lte0", 2.0, ns) >= 0
        topo.fault("lte", "blackhole")
        with pytest.raises(DeviceUnavailable):
            await tcp_connect(INET_CRM, 80, LTE_ADDR, "lte0", 0.5, ns)
        assert await tcp_connect(INET_CRM, 80, WIRED_ADDR, "wan0", 2.0, ns) >= 0  # wired untouched

    asyncio.run(main())


def test_blackhole_fails_over_and_back_after_the_hold(topo: Topology, tmp_path: Path) -> None:
    async def main() -> None:
        svc, ctx = make_service(topo, tmp_path, hold_s=1.5)
        await svc.start()
        try:
            await until(lambda: uplink(svc, "wired")["state"] == "up" and uplink(svc, "lte")["state"] == "standby",
                        what="both uplinks judged")
            assert route_iface(topo) == "wan0"
            # LTE probes go through LTE although wired is the default: an LTE blackhole takes LTE down only
            topo.fault("lte", "blackhole")
            await until(lambda: uplink(svc, "lte")["state"] == "down", what="lte down")
            assert uplink(svc, "wired")["state"] == "up" and route_iface(topo) == "wan0"
            topo.fault("lte", "up")
            await until(lambda: uplink(svc, "lte")["state"] == "standby", what="lte back")

            topo.fault("isp", "blackhole")
            await until(lambda: route_iface(topo) == "lte0", what="default route via lte")
            assert svc.snapshot()["uplinks"][0]["active"] is False
            assert await asyncio.to_thread(lan_curl, topo), "the office PC reaches the CRM through LTE"
            sw = [e for e in ctx.journal.events(kind_prefix="uplink.switch")]
            assert "wired: down" in sw[-1]["message"] and "targets lost" in sw[-1]["message"]

            topo.fault("isp", "up")
            await until(lambda: uplink(svc, "wired")["state"] == "standby", what="wired healthy again")
            assert route_iface(topo) == "lte0", "no failback before the hold"
            await until(lambda: route_iface(topo) == "wan0", what="failback")
            back = ctx.journal.events(kind_prefix="uplink.switch")[-1]
            assert "healthy for" in back["message"] and "hold 1.5 s" in back["message"]
            assert await asyncio.to_thread(lan_curl, topo)
        finally:
            await svc.stop()

    asyncio.run(main())


def test_link_down_is_immediate_and_routes_come_back(topo: Topology, tmp_path: Path) -> None:
    async def main() -> None:
        svc, ctx = make_service(topo, tmp_path, hold_s=0.5)
        await svc.start()
        try:
            await until(lambda: uplink(svc, "wired")["state"] == "up", what="wired up")
            topo.fault("isp", "down")
            await until(lambda: route_iface(topo) == "lte0", what="default via lte")
            assert uplink(svc, "wired")["reason"] == "carrier lost"
            topo.fault("isp", "up")
            await until(lambda: route_iface(topo) == "wan0", timeout=15, what="failback after the link returned")
            out = subprocess.run(["ip", "-n", topo.ns["gw"], "route", "show", "table", "101"],
                                 capture_output=True, text=True).stdout
            assert "default via 192.0.2.1 dev wan0" in out, "the uplink's table is re-installed"
        finally:
            await svc.stop()

    asyncio.run(main())


def test_one_dead_target_never_fails_over(topo: Topology, tmp_path: Path) -> None:
    async def main() -> None:
        svc, ctx = make_service(topo, tmp_path)
        await svc.start()
        try:
            await until(lambda: uplink(svc, "wired")["state"] == "up", what="wired up")
            topo.run("inet", ["nft", "add table ip t; add chain ip t c { type filter hook input priority 0; }; "
                              f"add rule ip t c ip daddr {INET_HOSTS[0]} drop"])
            await until(lambda: any(t["lost"] for t in uplink(svc, "wired")["targets"]), what="target lost")
            sent = svc.runs["wired"].sent
            await until(lambda: svc.runs["wired"].sent > sent + 60, what="many more probes")
            assert uplink(svc, "wired")["active"] and route_iface(topo) == "wan0"
            assert ctx.journal.events(kind_prefix="uplink.switch") == []
        finally:
            await svc.stop()

    asyncio.run(main())


def test_override_wins_until_auto(topo: Topology, tmp_path: Path) -> None:
    async def main() -> None:
        svc, ctx = make_service(topo, tmp_path, hold_s=0.5)
        await svc.start()
        try:
            await until(lambda: uplink(svc, "wired")["state"] == "up", what="wired up")
            res = await ctx.action("failover", {"target": "lte"}, "admin")
            assert res["override"] == "lte" and route_iface(topo) == "lte0"
            assert svc.snapshot()["override"] == "lte"
            sent = svc.runs["wired"].sent
            await until(lambda: svc.runs["wired"].sent > sent + 20, what="more probes")
            assert route_iface(topo) == "lte0"
            from gateway.core.errors import ActionRejected
            with pytest.raises(ActionRejected):
                await ctx.action("failover", {"target": "carrier-pigeon"}, "admin")
            await ctx.action("failover", {"target": "auto"}, "admin")
            await until(lambda: route_iface(topo) == "wan0", what="back to wired")
            assert svc.snapshot()["override"] is None
        finally:
            await svc.stop()

    asyncio.run(main())


def test_conntrack_flush_only_through_the_dead_uplink(topo: Topology, tmp_path: Path) -> None:
    async def main() -> None:
        svc, ctx = make_service(topo, tmp_path)
        await svc.start()
        try:
            await until(lambda: uplink(svc, "wired")["state"] == "up", what="wired up")
            assert await asyncio.to_thread(lan_curl, topo)  # a LAN flow NATed out of wired
            # a flow of the box's own, out of LTE (its source address picks the LTE table)
            assert await dns_check(INET_DNS, "crm.office.example", LTE_ADDR, None, 2.0, topo.ns["gw"]) >= 0
            net = NetDriver(topo.ns["gw"])

            def lan_flow() -> bool:
                return any(o_src == "192.168.77.10" and r_dst == WIRED_ADDR
                           for o_src, _, _, r_dst in net.conntrack_entries())

            def lte_flow() -> bool:
                return any(o_src == LTE_ADDR and o_dst == INET_DNS for o_src, o_dst, _, _ in net.conntrack_entries())

            assert lan_flow() and lte_flow()
            topo.fault("isp", "blackhole")
            await until(lambda: route_iface(topo) == "lte0", what="failover")
            await until(lambda: not lan_flow(), what="the wired flow is forgotten")
            assert lte_flow(), "flows through LTE are untouched"
        finally:
            await svc.stop()

    asyncio.run(main())


def test_raw_icmp_mode_works_too(topo: Topology, tmp_path: Path) -> None:
    async def main() -> None:
        svc, ctx = make_service(topo, tmp_path, icmp_mode="raw")
        await svc.start()
        try:
            # judged by probes (health no longer unknown), not merely shown: an unjudged active uplink
            # already reads "up" and an unjudged idle one "standby"
            await until(lambda: svc.state is not None and svc.state.uplink("wired").health == "up"
                        and svc.state.uplink("lte").health == "up", what="both judged with raw sockets")
            assert uplink(svc, "wired")["state"] == "up" and uplink(svc, "lte")["state"] == "standby"
            assert svc.runs["wired"].ok_n + svc.runs["lte"].ok_n > 0
            assert getattr(svc.runs["wired"].prober, "mode", None) == "raw"
        finally:
            await svc.stop()

    asyncio.run(main())


