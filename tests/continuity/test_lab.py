"""Business-app checks in the lab's namespaces: the CRM in "the internet" is checked through whichever
uplink holds the gateway's default route, exactly like the daemon (which lives in the gw namespace)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.lab]

CHECK = ("import asyncio, json, sys; from gateway.drivers.apps import AppProbe, AppTarget; "
         "r = asyncio.run(AppProbe().check(AppTarget('CRM', url=sys.argv[1], timeout_s=0.8))); "
         "print(json.dumps({'ok': r.reachable, 'error': r.error, 'ms': r.latency_ms}))")


@pytest.fixture
def topo() -> Iterator[object]:
    from gateway.lab.net import Topology

    t = Topology(f"c{os.getpid() % 10000}")
    t.create()
    try:
        yield t
    finally:
        t.destroy()


def check_in_gw(t: object, url: str) -> dict[str, object]:
    out = t.run("gw", [sys.executable, "-c", CHECK, url])  # type: ignore[attr-defined]
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_crm_check_follows_the_default_route(topo: object) -> None:
    from gateway.lab import net

    crm = topo.describe()["inet"]["crm"]  # type: ignore[attr-defined]
    assert check_in_gw(topo, crm)["ok"] is True
    topo.fault("isp", "blackhole")  # type: ignore[attr-defined]
    r = check_in_gw(topo, crm)
    assert r["ok"] is False and r["error"] == "timeout"
    # the uplinks service would move the default route; here the test does it by hand
    topo._ip("gw", "route", "replace", "default", "via", net.LTE_GW_ADDR, "dev", net.GW_LTE_IF)  # type: ignore[attr-defined]
    assert check_in_gw(topo, crm)["ok"] is True
