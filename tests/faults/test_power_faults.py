"""Power-side faults in the lab, each against the running daemon: upsd killed, the UPS driver stale, a PoE
switch stopped, refusing our community (it changed), slow beyond the timeout, and a load on a port the
switch does not have.

For each: the daemon stays up (same pid, /healthz ok), /api/v1/status says what is going on (comm_lost and
not on battery; the load's error), the journal has exactly one event on entering the fault and one on
leaving it (counted after a baseline id, for the kinds the fault causes), the daemon keeps retrying without
journaling again (its /metrics failure counters grow while the event count stays at one), and it recovers by
itself when the fault ends.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import cli as gateway_cli
from gateway.lab.snmp_front import split_community, with_community
from tests.faults.conftest import Office

LOAD = "camera-entrance"  # tier 1, switch "core" (the Cisco walk, RFC 3621 group 3), port 7
ADMIN_OID = "1.3.6.1.2.1.105.1.1.1.3.3.{port}"


# ------------------------------------------------------------------------------------------- helpers

def metric(office: Office, name: str, **labels: str) -> float:
    with urllib.request.urlopen(office.web + "/metrics", timeout=5) as r:
        text = r.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pat = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", re.M)
    for m in pat.finditer(text):
        got = ",".join(sorted((m.group(1) or "").split(","))) if m.group(1) else ""
        if got == want:
            return float(m.group(2))
    raise KeyError(f"{name}{{{want}}} not in /metrics")


def kinds(office: Office, since: int, kind: str, key: str | None = None, **data: Any) -> list[dict[str, Any]]:
    """Events of exactly ``kind`` after ``since`` (optionally with data[key-ish] matching)."""
    out = []
    for e in office.events(kind, since):
        if e["kind"] != kind:
            continue
        d = e.get("data") or {}
        if key is not None and d.get("key") != key:
            continue
        if any(d.get(k) != v for k, v in data.items()):
            continue
        out.append(e)
    return out


def power(office: Office) -> dict[str, Any]:
    snap = office.snapshot()
    assert snap is not None
    return dict(snap["power"])


def load_row(office: Office, name: str = LOAD) -> dict[str, Any]:
    """The load's row in /api/v1/status ({} until the snapshot has it, e.g. just after a reload)."""
    snap = office.snapshot()
    assert snap is not None
    return next((ld for ld in snap["loads"] if ld["name"] == name), {})


def daemon_pid(office: Office) -> int:
    """The pid the daemon itself wrote (state_dir/daemon.json): no subprocess, so cheap to ask often."""
    return int(json.loads((Path(office.info["state_dir"]) / "daemon.json").read_text())["pid"])


def healthy(office: Office, pid: int, since: int) -> None:
    """Same process, not a zombie, serving /healthz, and no daemon.start journaled since ``since``."""
    assert daemon_pid(office) == pid, "the daemon was restarted"
    with open(f"/proc/{pid}/stat") as f:
        assert f.read().rsplit(")", 1)[1].split()[0] != "Z", "the daemon is a zombie"
    with urllib.request.urlopen(office.web + "/healthz", timeout=5) as r:
        assert r.status == 200
    assert not kinds(office, since, "daemon.start"), "the daemon was restarted"


def act(office: Office, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """An admin action through the HTTP API, with the local CLI's bearer token (as `gateway loads` does)."""
    token = (Path(office.info["state_dir"]) / "api.token").read_text().strip()
    req = urllib.request.Request(office.web + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        out: dict[str, Any] = json.loads(r.read())
        return out


def admin(office: Office, port: int) -> int | None:
    """The port's PoE admin state as the switch holds it (1 on, 2 off), read through the lab's back door
    (127.0.0.1, not the switch's front where the faults are)."""
    sw = office.info["switches"]["core"]
    r = subprocess.run(["snmpget", "-v2c", "-c", sw["read_community"], "-Oqv", "-t", "1", "-r", "1",
                        f"{sw['host']}:{sw['port']}", ADMIN_OID.format(port=port)],
                       capture_output=True, text=True, timeout=30)
    v = r.stdout.strip()
    return int(v) if r.returncode == 0 and v.isdigit() else None


def pair_balanced(office: Office, since: int, fail_kind: str, ok_kind: str) -> None:
    """Per key: at most one failure event, and one recovery for each (what else the fault touched too)."""
    failed: dict[str, int] = {}
    for e in kinds(office, since, fail_kind):
        k = str((e.get("data") or {}).get("key"))
        failed[k] = failed.get(k, 0) + 1
    assert all(n == 1 for n in failed.values()), f"more than one {fail_kind} for a key: {failed}"

    def ok_for_all() -> bool:
        oks: dict[str, int] = {}
        for e in kinds(office, since, ok_kind):
            k = str((e.get("data") or {}).get("key"))
            oks[k] = oks.get(k, 0) + 1
        return oks == failed

    office.wait(ok_for_all, 15, f"one {ok_kind} for each {fail_kind} ({failed})")


@pytest.fixture
def base(office: Office) -> Iterator[tuple[int, int]]:
    """(baseline event id, daemon pid), with the UPS online and every load on before the test."""
    office.wait(lambda: power(office)["state"] == "online", 30, "the UPS online before the fault")
    office.wait(lambda: all(ld["state"] == "on" and ld["confirmed"] for ld in office.snapshot()["loads"]), 30,
                "every load on and confirmed before the fault")
    pid = daemon_pid(office)
    since = office.last_event_id()
    yield since, pid
    healthy(office, pid, since)


# ------------------------------------------------------------------------------------------- the UPS

def _ups_fault(office: Office, since: int, pid: int, start: Callable[[], None], end: Callable[[], None],
               reason: str) -> None:
    start()
    p = office.wait(lambda: (pw := power(office))["state"] == "comm_lost" and pw, 20, "comm_lost")
    assert re.search(reason, p["comm_lost_reason"] or ""), p["comm_lost_reason"]
    # contact lost is not "on battery": nothing shed, no outage clock, every load still wanted on
    assert p["on_battery_since"] is None and p["shed_tiers"] == [] and not p["shutdown_requested"]
    assert all(ld["desired"] == "on" for ld in office.snapshot()["loads"])
    assert metric(office, "gateway_power_state") == 4 and metric(office, "gateway_ups_on_battery") == 0
    failures = metric(office, "gateway_ups_poll_failures_total")
    office.wait(lambda: metric(office, "gateway_ups_poll_failures_total") >= failures + 4, 20,
                "more failed polls while the fault lasts")
    assert len(kinds(office, since, "power.comm_lost")) == 1
    healthy(office, pid, since)

    end()
    office.wait(lambda: power(office)["state"] == "online", 20, "online again")
    assert len(kinds(office, since, "power.comm_lost")) == 1
    states = kinds(office, since, "power.state")
    assert [(e["data"]["from"], e["data"]["to"]) for e in states] == [("comm_lost", "online")]
    assert not kinds(office, since, "power.shed") and not kinds(office, since, "power.transfer")
    assert power(office)["ups"]["status"][:1] == ["OL"]


def lab_cli(office: Office, *argv: str) -> tuple[int, str]:
    """``gateway lab ARGV`` for this office, run by the CLI's main() in this process: the same parser and
    code as the command (it acts on the lab's processes by pid and keeps nothing here), without starting an
    interpreter per fault on a loaded machine.  Returns (exit code, stderr)."""
    saved = {k: os.environ.get(k) for k in ("GATEWAY_LAB_DIR", "GATEWAY_LAB_PREFIX")}
    os.environ.update({k: office.env[k] for k in saved})
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = gateway_cli.main(["lab", *argv])
            except SystemExit as exc:  # argparse's own refusal
                code = int(exc.code or 0)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, err.getvalue()


class Fault:
    """Start and end a fault through the lab CLI; ``cleanup()`` ends it only if the test did not get there."""

    def __init__(self, office: Office, start: list[str], end: list[str]) -> None:
        self.office, self.start_argv, self.end_argv = office, start, end
        self.on = False

    def _run(self, argv: list[str]) -> None:
        code, err = lab_cli(self.office, *argv)
        assert code == 0, f"gateway lab {' '.join(argv)}: exit {code}: {err}"

    def start(self) -> None:
        self.on = True
        self._run(self.start_argv)

    def end(self) -> None:
        self._run(self.end_argv)
        self.on = False

    def cleanup(self) -> None:
        if self.on:
            lab_cli(self.office, *self.end_argv)


@pytest.fixture
def fault(office: Office) -> Iterator[Callable[[list[str], list[str]], Fault]]:
    made: list[Fault] = []

    def make(start: list[str], end: list[str]) -> Fault:
        made.append(Fault(office, start, end))
        return made[-1]

    yield make
    for f in made:
        f.cleanup()


def test_upsd_killed_and_restarted(office: Office, base: tuple[int, int], fault: Any) -> None:
    f = fault(["ups", "kill"], ["ups", "start"])
    _ups_fault(office, *base, f.start, f.end, r"upsd .*(refused|Connection|no answer|Socket)")


def test_ups_driver_stale(office: Office, base: tuple[int, int], fault: Any) -> None:
    f = fault(["power", "comm-lost"], ["power", "restore"])
    _ups_fault(office, *base, f.start, f.end, r"DATA-STALE|DRIVER-NOT-CONNECTED")


# ------------------------------------------------------------------------------------------ the switch

def _switch_fault(office: Office, since: int, pid: int, start: Callable[[], None], end: Callable[[], None],
                  error: str) -> None:
    """With the fault on, the admin sheds LOAD: the set fails (one event, the error shown, retries without
    more events); with the fault gone the retry lands (one event) and the switch holds the port off."""
    start()
    assert act(office, f"/api/v1/loads/{LOAD}", {"state": "off"})["override"] == "off"
    row = office.wait(lambda: (ld := load_row(office))["error"] and ld, 20, f"{LOAD}'s error shown")
    assert re.search(error, row["error"]), row["error"]
    assert row["desired"] == "off" and not row["confirmed"]
    failures = metric(office, "gateway_load_failures_total", load=LOAD)
    office.wait(lambda: metric(office, "gateway_load_failures_total", load=LOAD) >= failures + 1, 20,
                "the daemon retrying the set")
    assert len(kinds(office, since, "power.load_failed", LOAD)) == 1
    assert not kinds(office, since, "power.load_ok", LOAD)
    assert power(office)["state"] == "online", "a switch fault is not a power fault"
    healthy(office, pid, since)

    end()
    office.wait(lambda: (ld := load_row(office))["error"] is None and ld["state"] == "off" and ld["confirmed"],
                30, f"{LOAD} off and confirmed once the switch answers")
    assert admin(office, 7) == 2, "the switch does not hold the port off"
    assert len(kinds(office, since, "power.load_failed", LOAD)) == 1
    assert len(kinds(office, since, "power.load_ok", LOAD)) == 1
    pair_balanced(office, since, "power.load_failed", "power.load_ok")


@pytest.fixture
def shed_back(office: Office) -> Iterator[None]:
    """LOAD goes back to automatic (on) after the test (the fault itself is ended by ``fault``)."""
    yield
    act(office, f"/api/v1/loads/{LOAD}", {"state": "auto"})
    office.wait(lambda: (ld := load_row(office))["state"] == "on" and ld["confirmed"], 30, f"{LOAD} on again")
    assert admin(office, 7) == 1


@pytest.mark.usefixtures("shed_back")
def test_switch_unreachable(office: Office, base: tuple[int, int], fault: Any) -> None:
    f = fault(["switch", "core", "stop"], ["switch", "core", "start"])
    _switch_fault(office, *base, f.start, f.end, r"no answer")


@pytest.mark.usefixtures("shed_back")
def test_switch_wrong_community(office: Office, base: tuple[int, int], fault: Any) -> None:
    # SNMP v2c agents drop a wrong community silently, so to the gateway it is a switch that does not answer:
    # the same one journaled transition as a dead switch (not a state of its own, and not an event per retry)
    f = fault(["switch", "core", "community", "changed-by-admin"], ["switch", "core", "normal"])
    _switch_fault(office, *base, f.start, f.end, r"no answer")


@pytest.mark.usefixtures("shed_back")
def test_switch_slow(office: Office, base: tuple[int, int], fault: Any) -> None:
    # answers 2 s late: beyond the lab config's 0.5 s timeout x 3 tries
    f = fault(["switch", "core", "slow", "2000"], ["switch", "core", "normal"])
    _switch_fault(office, *base, f.start, f.end, r"no answer")


def test_switch_no_such_object(office: Office, base: tuple[int, int]) -> None:
    """A load on a port the switch does not have (port 60 of a 48-port switch): noSuchInstance is the load's
    error, one event; correcting the config (SIGHUP) heals it with one event."""
    since, pid = base
    cfg = office.config_path
    original = cfg.read_text()
    extra = '\n[[loads]]\nname = "camera-annex"\nswitch = "core"\nport = {port}\ntier = 1\n'

    def reload(text: str) -> None:
        mark = office.last_event_id()
        cfg.write_text(text)
        os.kill(pid, signal.SIGHUP)
        office.wait(lambda: kinds(office, mark, "config.reloaded"), 20, "the config reloaded")

    try:
        reload(original + extra.format(port=60))
        row = office.wait(lambda: (ld := load_row(office, "camera-annex")).get("error") and ld, 20,
                          "the load's error")
        assert re.search(r"NoSuch(Instance|Object)", row["error"]), row["error"]
        failures = metric(office, "gateway_load_failures_total", load="camera-annex")
        office.wait(lambda: metric(office, "gateway_load_failures_total", load="camera-annex") >= failures + 1,
                    20, "the daemon retrying")
        assert len(kinds(office, since, "power.load_failed", "camera-annex")) == 1
        assert power(office)["state"] == "online"
        healthy(office, pid, since)

        reload(original + extra.format(port=9))
        office.wait(lambda: (ld := load_row(office, "camera-annex")).get("port") == 9 and ld["error"] is None
                    and ld["confirmed"], 20, "the corrected load confirmed")
        assert len(kinds(office, since, "power.load_failed", "camera-annex")) == 1
        assert len(kinds(office, since, "power.load_ok", "camera-annex")) == 1
    finally:
        if cfg.read_text() != original:
            reload(original)


# --------------------------------------------------------------------------------- bad input, the front

BAD = [["switch", "core", "slow", "soon"], ["switch", "core", "slow", "-5"], ["switch", "core", "community"],
       ["switch", "core", "community", "two words "], ["switch", "nosuch", "stop"], ["switch", "core", "stop", "now"],
       ["ups", "restart"], ["switch", "core", "reboot"]]


def test_bad_fault_input_is_refused_and_changes_nothing(office: Office) -> None:
    for argv in BAD:
        code, err = lab_cli(office, *argv)
        assert code == 2, (argv, code, err)
        assert err.strip() and "Traceback" not in err, (argv, err)
    after = office.status()
    assert after["switches"]["core"]["faults"] == {"snmpsim": "running", "delay_ms": 0.0, "community": None}
    assert after["daemon"]["pid"] == daemon_pid(office)


def test_front_rewrites_communities_of_any_length() -> None:
    pdu = bytes.fromhex("a01c0204010203040201000201003010300e06082b06010201010100050000")
    for community in (b"public", b"x" * 127, b"y" * 128, b"z" * 300):
        msg = with_community(1, community, pdu)
        assert split_community(msg) == (1, community, pdu)
        assert split_community(with_community(1, b"private", pdu)) == (1, b"private", pdu)
    v3 = bytes.fromhex("3039020103300f02020100020300ffe30401040201030410300e0400020100020100040004000400")
    assert split_community(v3) is None and split_community(b"") is None and split_community(b"\x30\x85") is None
