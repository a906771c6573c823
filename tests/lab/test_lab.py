"""The whole lab through its CLI: up (idempotent), status keys of the contract, the peers reached the way
the daemon and an outsider reach them, faults, the daemon started and killed, and down leaving nothing."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import needs_root, wait_until

pytestmark = [pytest.mark.lab, needs_root]

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_KEYS = {"web", "ups", "switches", "netns", "modem", "config", "inet", "lan"}


class LabRun:
    def __init__(self, base: Path) -> None:
        self.prefix = f"t{os.getpid() % 10000}l"
        self.base = base
        self.env = {**os.environ, "GATEWAY_LAB_DIR": str(base), "GATEWAY_LAB_PREFIX": self.prefix,
                    "PYTHONPATH": str(ROOT)}

    def gw(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                              env=self.env, cwd=str(ROOT), timeout=timeout)

    def lab(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.gw("lab", *args)

    def status(self) -> dict[str, Any]:
        r = self.lab("status", "--json")
        assert r.returncode == 0, r.stderr
        out: dict[str, Any] = json.loads(r.stdout)
        return out

    def ns(self, role: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", f"{self.prefix}{role}", *argv], capture_output=True,
                              text=True, timeout=30)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    run = LabRun(tmp_path_factory.mktemp("lab"))
    r = run.lab("up")
    try:
        assert r.returncode == 0, r.stderr
        yield run
    finally:
        run.lab("down")


def recorded_pids(lab_dir: Path) -> list[int]:
    """Every process id the lab wrote down in its records (also used by the rootless test)."""
    pids = []
    for f in lab_dir.rglob("*.json"):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        for v in [data.get("pid"), *(data.get("pids") or {}).values(), data.get("sink_pid"),
                  data.get("modem_pid"), data.get("daemon_pid")]:
            if isinstance(v, int):
                pids.append(v)
    return pids


def test_up_is_idempotent_and_status_has_the_contract_keys(lab: LabRun) -> None:
    first = lab.status()
    assert CONTRACT_KEYS <= set(first)
    assert "daemon" not in first
    assert first["web"].startswith("http://127.0.0.1:")
    assert first["ups"].startswith("ups@127.0.0.1:")
    assert set(first["switches"]) == {"core", "tplink"}
    for sw in first["switches"].values():
        assert {"host", "port", "community"} <= set(sw)
    assert set(first["netns"]) == {"gw", "isp", "lte", "inet", "lan"}
    assert first["modem"].startswith("/dev/pts/")
    assert first["inet"]["crm"].startswith("http://") and first["inet"]["hosts"]
    assert first["lan"]["pc"]
    again = lab.lab("up")
    assert again.returncode == 0, again.stderr
    assert "status page" in again.stdout
    second = lab.status()
    for key in CONTRACT_KEYS:
        assert second[key] == first[key], key
    check = lab.gw("check-config", first["config"])
    assert check.returncode == 0, check.stdout + check.stderr


def test_peers_reachable_from_the_gateway_namespace(lab: LabRun) -> None:
    st = lab.status()
    mgmt = st["mgmt"]["host"]
    ups_port = st["ups"].rsplit(":", 1)[1]
    r = lab.ns("gw", ["upsc", f"ups@{mgmt}:{ups_port}", "ups.status"])
    assert r.returncode == 0 and r.stdout.strip().startswith("OL"), r.stderr
    core = st["switches"]["core"]
    r = lab.ns("gw", ["snmpget", "-v2c", "-c", "public", "-Oqv", f"{mgmt}:{core['port']}",
                      "1.3.6.1.2.1.105.1.1.1.3.3.3"])
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
    # the office PC cannot reach the host through the gateway's management link
    r = lab.ns("lan", [sys.executable, "-c", f"import socket; socket.create_connection(('{mgmt}', {ups_port}), 1)"])
    assert r.returncode != 0
    # and the office PC reaches the CRM through the gateway
    r = lab.ns("lan", [sys.executable, "-c", f"import urllib.request; print(urllib.request.urlopen("
                                             f"'{st['inet']['crm']}', timeout=5).status)"])
    assert r.stdout.strip() == "200", r.stderr


def test_power_cut_visible_through_upsd_within_2s(lab: LabRun) -> None:
    from nut2 import PyNUTClient

    st = lab.status()
    host, port = st["ups"].split("@")[1].rsplit(":", 1)
    client = PyNUTClient(host, int(port), "gateway", "gateway-lab")

    def status() -> str:
        try:
            return str(client.list_vars("ups").get("ups.status", ""))
        except Exception:  # nut2 raises its own error while the UPS is stale
            client.__init__(host, int(port), "gateway", "gateway-lab")  # type: ignore[misc]
            return ""

    assert lab.lab("power", "cut").returncode == 0
    wait_until(lambda: status() == "OB DISCHRG", 2.0, what="OB DISCHRG through upsd")
    assert lab.lab("power", "low").returncode == 0
    wait_until(lambda: "LB" in status(), 2.0, what="LB through upsd")
    assert lab.lab("power", "comm-lost").returncode == 0
    wait_until(lambda: status() == "", 2.0, what="the UPS gone stale")
    assert lab.lab("power", "restore").returncode == 0
    wait_until(lambda: status().startswith("OL"), 10, what="back online")


def test_poe_port_set_and_get(lab: LabRun) -> None:
    st = lab.status()
    for name, oid in (("core", "1.3.6.1.2.1.105.1.1.1.3.3.11"), ("tplink", "1.3.6.1.4.1.11863.6.56.1.1.2.1.1.2.6")):
        sw = st["switches"][name]
        addr = f"{sw['host']}:{sw['port']}"
        off = "2" if name == "core" else "0"
        r = subprocess.run(["snmpset", "-v2c", "-c", sw["community"], addr, oid, "i", off], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        r = subprocess.run(["snmpget", "-v2c", "-c", "public", "-Oqv", addr, oid], capture_output=True, text=True,
                           timeout=30)
        assert r.stdout.strip() == off
        subprocess.run(["snmpset", "-v2c", "-c", sw["community"], addr, oid, "i", "1"], capture_output=True,
                       timeout=30, check=True)


def test_modem_and_network_faults(lab: LabRun) -> None:
    import serial

    st = lab.status()
    with serial.Serial(st["modem"], 115200, timeout=2) as port:
        port.reset_input_buffer()
        port.write(b"ATE0\r")
        wait_until(lambda: b"OK" in port.read_until(b"OK\r\n"), 5, what="ATE0 answered")
        port.write(b"AT+CPIN?\r")
        assert b"READY" in port.read_until(b"OK\r\n")
    assert lab.lab("isp", "blackhole").returncode == 0
    assert lab.status()["faults"]["isp"] == "blackhole"
    assert lab.lab("isp", "loss", "30").returncode == 0
    assert lab.status()["faults"]["isp"] == "loss 30"
    assert lab.lab("isp", "up").returncode == 0
    assert lab.lab("lte", "signal", "-101").returncode == 0
    assert lab.lab("lte", "up").returncode == 0
    # bad input: one clear line, exit 2, nothing changed
    for args in (["isp", "loss", "150"], ["isp", "sideways"], ["lte", "signal", "loud"], ["power", "off"],
                 ["frobnicate"]):
        r = lab.lab(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert lab.status()["faults"] == {"isp": "up", "lte": "up"}


def test_daemon_start_status_and_kill(lab: LabRun) -> None:
    r = lab.lab("daemon", "start")
    assert r.returncode == 0, r.stderr + (Path(lab.status()["lab_dir"]) / "daemon.log").read_text()[-2000:]
    st = lab.status()
    pid = st["daemon"]["pid"]
    with urllib.request.urlopen(st["web"] + "/healthz", timeout=5) as resp:
        assert resp.status == 200
    # the CLI finds the lab's daemon by itself
    r = lab.gw("status", "--json")
    assert r.returncode == 0, r.stderr
    assert "power" in json.loads(r.stdout)
    # the daemon runs inside the gateway namespace
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{lab.prefix}gw").st_ino
    # the CLI also finds it through the lab's config (the daemon's daemon.json in its state dir)
    r = lab.gw("--config", st["config"], "status", "--json")
    assert r.returncode == 0, r.stderr
    # the daemon names its first socket (the host's loopback one) in daemon.json, not "http://127.0.0.1:PORT:"
    served = json.loads((Path(st["state_dir"]) / "daemon.json").read_text())
    assert served["url"] == st["web"], served
    # the office PC sees the status page on the gateway's LAN address (on by default)
    page = st["lan"]["page"]
    assert page == f"http://{st['lan']['gateway']}:8080/", st["lan"]
    r = lab.ns("lan", [sys.executable, "-c", "import sys, urllib.request; r = urllib.request.urlopen(sys.argv[1], "
                       "timeout=10); print(r.status, r.headers.get_content_type()); print(r.read().decode())", page])
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition("\n")
    assert head == "200 text/html", r.stdout[:300]
    assert 'id="power"' in body and "Lab Office" in body
    # the mock panel through the daemon's socket
    r = lab.lab("panel", "--json")
    assert r.returncode == 0, r.stderr
    panel = json.loads(r.stdout)
    assert {"leds", "buzzer"} <= set(panel) and "power" in panel["leds"]
    r = lab.lab("button", "press")
    assert r.returncode == 0, r.stderr
    # a value the daemon's panel refuses: one clear line and exit 2, not a traceback
    r = lab.lab("button", "hold", "--seconds", "0")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip().startswith("gateway lab: panel:") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = lab.lab("daemon", "kill")
    assert r.returncode == 0, r.stderr
    assert "daemon" not in lab.status()
    assert lab.gw("status").returncode == 3
    # SIGKILL leaves the panel socket behind with nobody serving it: one clear line, exit 1
    sock_path = Path(st["state_dir"]) / "panel.sock"
    if not sock_path.exists():  # the kernel keeps the file of a killed server; make one stale if it did not
        import socket

        with socket.socket(socket.AF_UNIX) as stale:
            stale.bind(str(sock_path))
    r = lab.lab("panel", "--json")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "panel" in r.stderr


def test_down_leaves_nothing(lab: LabRun) -> None:
    st = lab.status()
    lab_dir = Path(st["lab_dir"])
    pids = recorded_pids(lab_dir)
    snmp_dirs = [json.loads((lab_dir / f"snmp-{n}" / "peer.json").read_text())["rundir"] for n in ("core", "tplink")]
    assert len(pids) >= 6
    r = lab.lab("down")
    assert r.returncode == 0, r.stderr
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert lab.prefix not in names
    assert subprocess.run(["ip", "link", "show", f"{lab.prefix}mg0"], capture_output=True).returncode != 0
    assert not lab_dir.exists()
    assert not any(Path(d).exists() for d in snmp_dirs)

    def gone(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    with contextlib.suppress(AssertionError):  # the assertion below names the ones left
        wait_until(lambda: all(gone(p) for p in pids), 5, what="the lab's last processes to exit")
    assert [p for p in pids if not gone(p)] == []
    again = lab.lab("down")
    assert again.returncode == 0 and "nothing to remove" in again.stdout
