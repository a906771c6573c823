"""Network faults in a whole lab office: the wired link flapping, both uplinks down, the DNS server gone.

Faults go in through `gateway lab isp|lte|dns ...` (nftables and links in the lab's own namespaces) and
are judged through the daemon's public faces: /api/v1/status, /metrics, its journal (events after a
baseline id, of the kinds the fault causes), the gateway namespace's default route, and its pid.  For each:
the daemon stays up, its state is right, one journal event per transition, and it recovers by itself once
the fault ends.  The lab config's failback hold is 5 s (the box: 60 s).
"""

from __future__ import annotations

import re
import subprocess
import urllib.request
from typing import Any

from tests.faults.conftest import Office, needs_root, still_the_same_daemon, transition_chain

pytestmark = needs_root


def uplink(office: Office, name: str) -> dict[str, Any]:
    snap = office.snapshot()
    assert snap is not None
    return next(u for u in snap["uplinks"] if u["name"] == name)


def wired_carries_traffic(office: Office) -> bool:
    w = uplink(office, "wired")
    return bool(w["state"] == "up" and w["active"]) and uplink(office, "lte")["state"] in ("standby", "up")


def default_dev(office: Office) -> str | None:
    out = office.ns("gw", ["ip", "-4", "route", "show", "default"]).stdout
    m = re.search(r"\bdev (\S+)", out)
    return m.group(1) if m else None


def probes_sent(office: Office) -> dict[str, float]:
    with urllib.request.urlopen(office.web + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r'^gateway_uplink_probes_sent_total\{uplink="([^"]+)"\} (\S+)$', text, re.M)}


def settle(office: Office) -> tuple[int, int]:
    """Wait for the office at rest (wired carrying traffic, LTE healthy behind it); return (baseline, pid)."""
    # LTE too, and the modem done with any recovery: after a test that cut LTE, a rung the modem took
    # (re-dial, radio reset) bounces its link until the modem reports it recovered
    office.wait(lambda: wired_carries_traffic(office) and default_dev(office) == "wan0" and journaled_up(office)
                and uplink(office, "lte")["state"] in ("up", "standby")
                and (office.snapshot() or {}).get("modem", {}).get("recovery_rung", "?") is None,
                90, "wired up and active, LTE healthy, and the journal caught up")
    return office.last_event_id(), office.pid


def journaled_up(office: Office) -> bool:
    """The journal agrees with the snapshot: wired's last transition journaled is to up (the snapshot can
    be a moment ahead of the journal, and a baseline taken then would count that transition as ours)."""
    last = [e for e in office.events("uplink.state") if e["data"]["uplink"] == "wired"]
    return bool(last) and last[-1]["data"]["to"] == "up"


def transitions(office: Office, name: str, since: int) -> list[str]:
    """``name``'s health journaled after ``since``, one event per transition."""
    return transition_chain([e for e in office.events("uplink.state", since) if e["data"]["uplink"] == name])[1:]


def test_wired_link_flapping_ten_times_a_second_does_not_thrash_the_route(office: Office) -> None:
    base, pid = settle(office)
    monitor = subprocess.Popen(["ip", "-n", office.info["netns"]["gw"], "monitor", "route"], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        out = office.lab("isp", "flap", "10", "--seconds", "3").stdout
        cycles = int(re.search(r"flapped (\d+) times", out).group(1))  # type: ignore[union-attr]
        assert cycles >= 10, out
        office.wait(lambda: office.events("uplink.switch", base) and wired_carries_traffic(office)
                    and default_dev(office) == "wan0", 60, "traffic back on wired after the hold")
    finally:
        monitor.terminate()
        lines, _ = monitor.communicate(timeout=10)
    switches = office.events("uplink.switch", base)
    # one move away at the first carrier loss, one back after the hold; never one per flap
    assert [(e["data"]["from"], e["data"]["to"]) for e in switches] == [("wired", "lte"), ("lte", "wired")], \
        [e["message"] for e in switches]
    assert "hold" in switches[-1]["data"]["reason"]
    # the kernel's linkwatch batches carrier changes (at most about one a second), so a bounce the probes
    # judged healthy in between may show, and on a loaded machine probes lost before the first carrier event
    # reaches the daemon may say "degraded" first; what must not happen is one transition per flap (~30 here)
    chain = transitions(office, "wired", base)
    assert chain[0] in ("down", "degraded") and "down" in chain and chain[-1] == "up" and len(chain) <= 7, \
        [e["message"] for e in office.events("uplink.state", base)]
    # the main table's default route changed twice (to LTE and back), not once per carrier flap
    main_defaults = [ln for ln in lines.splitlines() if ln.split(" ", 1)[0] in ("default", "Deleted")
                     and "default" in ln and "table" not in ln]
    assert 1 <= len(main_defaults) <= 4, main_defaults
    assert len(office.events("uplink.all_down", base)) == 0
    still_the_same_daemon(office, pid)


def test_both_uplinks_down_keeps_the_last_route_says_so_once_and_recovers(office: Office) -> None:
    base, pid = settle(office)
    office.lab("isp", "blackhole")
    office.wait(lambda: uplink(office, "lte")["active"] and default_dev(office) == "lte0", 30, "failover to LTE")
    office.lab("lte", "blackhole")
    office.wait(lambda: office.events("uplink.all_down", base), 30, "every uplink down")
    try:
        assert uplink(office, "wired")["state"] == "down" and uplink(office, "lte")["state"] == "down"
        assert uplink(office, "lte")["active"] and default_dev(office) == "lte0", "the last route is kept"
        before = probes_sent(office)
        office.wait(lambda: all(probes_sent(office)[n] >= before[n] + 3 for n in ("wired", "lte")), 30,
                    "probes going on through both dead uplinks")
        alarm = office.events("uplink.all_down", base)
        assert len(alarm) == 1 and alarm[0]["severity"] == "critical" and alarm[0]["data"]["active"] == "lte"
        still_the_same_daemon(office, pid)
    finally:
        office.lab("isp", "up")
        office.lab("lte", "up")
    office.wait(lambda: wired_carries_traffic(office) and default_dev(office) == "wan0", 90,
                "wired carrying traffic again")
    alarms = office.events("uplink.all_down", base)
    assert [e["severity"] for e in alarms] == ["critical", "info"], [e["message"] for e in alarms]
    assert transitions(office, "wired", base) == ["down", "up"]
    lte = transitions(office, "lte", base)  # the modem's own recovery may bounce its link: each once
    assert lte[0] == "down" and lte[-1] in ("up", "standby"), lte
    moves = [(e["data"]["from"], e["data"]["to"]) for e in office.events("uplink.switch", base)]
    assert moves[0] == ("wired", "lte") and moves[-1] == ("lte", "wired"), moves
    still_the_same_daemon(office, pid)


def test_dns_down_degrades_the_uplinks_but_moves_no_traffic(office: Office) -> None:
    base, pid = settle(office)
    office.lab("dns", "down")
    try:
        office.wait(lambda: uplink(office, "wired")["state"] == "degraded", 30, "wired shown degraded")
        w = uplink(office, "wired")
        assert w["active"] and "dns" in w["reason"].lower(), w
        assert default_dev(office) == "wan0"
        # both uplinks still answer ICMP: neither is down, no switch, no "every uplink down"
        assert uplink(office, "lte")["state"] != "down"
        assert office.events("uplink.switch", base) == [] and office.events("uplink.all_down", base) == []
    finally:
        office.lab("dns", "up")
    office.wait(lambda: uplink(office, "wired")["state"] == "up", 30, "wired up again once DNS answers")
    assert transitions(office, "wired", base) == ["degraded", "up"]
    assert office.events("uplink.switch", base) == []
    still_the_same_daemon(office, pid)
