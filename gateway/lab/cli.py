"""``gateway lab ...``: the virtual office of real protocol peers, and the daemon inside it.

A lab is named by a prefix (``--prefix``, ``$GATEWAY_LAB_PREFIX``, default ``og``) and lives in its lab dir
(``$GATEWAY_LAB_DIR/<prefix>``, default ``/run/office-gateway-lab/<prefix>``), whose ``lab.json`` records
every namespace, link, process id and file the lab made, so ``down`` removes exactly those:

- the five network namespaces of :mod:`gateway.lab.net` (``{p}gw`` ``{p}isp`` ``{p}lte`` ``{p}inet`` ``{p}lan``);
- a management veth pair between the host and ``{p}gw`` in the RFC 2544 benchmarking range (a free /30 of
  198.18.0.0/15: host .1, gateway .2), through which the daemon reaches the host's peers; the gateway
  forwards nothing to or from it and the host does not forward what arrives on it;
- NUT (:mod:`gateway.lab.ups`) and two snmpsim switches (:mod:`gateway.lab.snmp`) on the host: upsd listens
  on 127.0.0.1 and the management address; snmpsim on 127.0.0.1, and each switch's management side (same
  port) is a small relay, its front (:mod:`gateway.lab.snmp_front`), where the switch faults live;
- the modem emulator (:mod:`gateway.lab.modem_emu`) on a pty, its data link ``lte0`` in ``{p}gw``;
- a webhook sink in ``{p}inet`` for notifications (:mod:`gateway.lab.sink`);
- ``gateway.toml`` for the daemon, its state dir, and the daemon itself (``daemon start``), which runs in
  ``{p}gw`` with its web socket made on the host's 127.0.0.1 and passed in (systemd's LISTEN_FDS).

Run by a normal user, every command runs inside the lab's own user and mount namespaces instead
(:mod:`gateway.lab.userns`): the lab dir is then under ``$XDG_RUNTIME_DIR`` (or /tmp), there is no management
link to the host but relays on the management address inside ``{p}gw``, and ``down`` ends the namespaces too.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import io
import ipaddress
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.core.errors import DeviceRefused, GatewayError
from gateway.lab import modem_emu
from gateway.lab.net import LabNetError, Topology, socket_in_netns
from gateway.lab.relay import RelayPeer
from gateway.lab.snmp import CISCO, TPLINK, SnmpPeer, SnmpPeerError
from gateway.lab.snmp_front import FrontPeer
from gateway.lab.ups import DEFAULT_DUMP, UpsPeer, UpsPeerError, alive, kill_pid
from gateway.lab.userns import INNER_ENV, rootless

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
ROOT = Path(__file__).resolve().parents[2]
MGMT_NET = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544: never routed on the internet
GW_MGMT_IF = "mgmt0"
SINK_ADDR, SINK_PORT = "203.0.113.10", 8080
LAN_WEB_PORT = 8080  # the page on the gateway's LAN address, for the office PC


def lan_page_enabled() -> bool:
    """A second web socket on the gateway's LAN address, so the office PC sees the page as on the real box;
    on unless $GATEWAY_LAB_LAN_PAGE is 0 (then only the host's 127.0.0.1 socket is passed)."""
    return os.environ.get("GATEWAY_LAB_LAN_PAGE", "1").strip().lower() not in ("0", "no", "false", "off")

DAEMON_START_TIMEOUT_S = 60.0
# GatewayError: what the daemon's side raises through the lab (the panel socket refusing or not answering)
LAB_ERRORS = (LabNetError, UpsPeerError, SnmpPeerError, GatewayError, RuntimeError, OSError,
              subprocess.SubprocessError)


class LabUsage(ValueError):
    """A bad value on the command line (exit 2)."""


def default_prefix() -> str:
    return os.environ.get("GATEWAY_LAB_PREFIX") or "og"


def base_dir() -> Path:
    env = os.environ.get("GATEWAY_LAB_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/run/office-gateway-lab")
    return Path(os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/office-gateway-lab-{os.getuid()}") / \
        "office-gateway-lab"


def _run(argv: list[str], check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, input=input_text)
    if check and proc.returncode != 0:
        raise LabNetError(f"{' '.join(argv)}: {(proc.stderr or proc.stdout).strip()}")
    return proc


def _get(url: str, timeout_s: float = 2.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            data: bytes = resp.read()
            return data
    except OSError:
        return None


class Lab:
    def __init__(self, prefix: str | None = None, base: Path | None = None) -> None:
        self.prefix = prefix or default_prefix()
        self.topo = Topology(self.prefix)  # validates the prefix
        self.dir = (base or base_dir()) / self.prefix
        self.info: dict[str, Any] = {}
        self.load()

    # ------------------------------------------------------------------------------------ records
    @property
    def json_path(self) -> Path:
        return self.dir / "lab.json"

    @property
    def config_path(self) -> Path:
        return self.dir / "gateway.toml"

    @property
    def state_dir(self) -> Path:
        return self.dir / "state"

    @property
    def host_mgmt_if(self) -> str:
        return f"{self.prefix}mg0"

    def exists(self) -> bool:
        return self.json_path.exists()

    def load(self) -> None:
        try:
            self.info = json.loads(self.json_path.read_text())
        except (OSError, ValueError):
            self.info = {}

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.info, indent=1, sort_keys=True))
        os.replace(tmp, self.json_path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.dir.parent / f".{self.prefix}.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                self.load()
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # ---------------------------------------------------------------------------------------- up
    def up(self, ups_dump: Path | None = None) -> dict[str, Any]:
        if os.geteuid() != 0:
            raise RuntimeError("the lab needs root (network namespaces, veth, nftables): run it with sudo")
        dump = Path(ups_dump) if ups_dump else Path(self.info.get("ups_dump") or DEFAULT_DUMP)
        if not dump.is_file():
            raise LabUsage(f"no such UPS dump: {dump}")
        if self.info.get("ups_dump") and Path(self.info["ups_dump"]) != dump:
            self._stop_ups()  # another dump asked for: replay that one
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self.info.update(prefix=self.prefix, netns=dict(self.topo.ns), ups_dump=str(dump),
                         created=self.info.get("created") or time.time(), rootless=rootless())
        self.save()
        self.topo.create()
        self._mgmt_up()
        self.save()
        self._peers_up(dump)
        self._modem_up()
        self._sink_up()
        if not self.info.get("web_port"):
            self.info["web_port"] = _free_tcp_port()
        self.save()
        self.write_config()
        return self.status()

    def _mgmt_up(self) -> None:
        if rootless():
            self._mgmt_up_rootless()
            return
        gw_ns = self.topo.ns["gw"]
        have_host = _run(["ip", "link", "show", self.host_mgmt_if], check=False).returncode == 0
        have_gw = _run(["ip", "-n", gw_ns, "link", "show", GW_MGMT_IF], check=False).returncode == 0
        if have_host and have_gw and self.info.get("mgmt"):
            return
        if have_host:
            _run(["ip", "link", "del", self.host_mgmt_if], check=False)
        with _mgmt_lock():  # labs with other prefixes or lab dirs pick their /30 one at a time
            # the same /30 as before if it is free, so peers already listening on it stay reachable
            host, gw = _free_mgmt_pair((self.info.get("mgmt") or {}).get("host"))
            self.info["mgmt"] = {"host": host, "gw": gw, "host_if": self.host_mgmt_if, "gw_if": GW_MGMT_IF}
            self.save()
            _run(["ip", "link", "add", self.host_mgmt_if, "type", "veth", "peer", "name", GW_MGMT_IF,
                  "netns", gw_ns])
            _run(["ip", "addr", "add", f"{host}/30", "dev", self.host_mgmt_if])
        # what arrives from the gateway on this link is for the host's peers only, never forwarded on
        _run(["sysctl", "-qw", f"net.ipv4.conf.{self.host_mgmt_if}.forwarding=0"], check=False)
        _run(["ip", "link", "set", self.host_mgmt_if, "up"])
        _run(["ip", "-n", gw_ns, "addr", "add", f"{gw}/30", "dev", GW_MGMT_IF])
        _run(["ip", "-n", gw_ns, "link", "set", GW_MGMT_IF, "up"])
        # the office must not reach the host through the gateway, nor the host the office
        _run(["ip", "netns", "exec", gw_ns, "nft", "-f", "-"], input_text=(
            "table inet lab_mgmt {\n  chain guard {\n    type filter hook forward priority filter - 10; policy accept;\n"
            f'    iifname "{GW_MGMT_IF}" drop\n    oifname "{GW_MGMT_IF}" drop\n  }}\n}}\n'))

    def _mgmt_up_rootless(self) -> None:
        """No link to the host can be made from a user namespace: the management address lives on ``lo`` in
        ``{p}gw``, where relays listen and pass traffic on to the peers on the host's 127.0.0.1; only the
        gateway itself reaches it (nothing arriving on another interface)."""
        gw_ns = self.topo.ns["gw"]
        old = (self.info.get("mgmt") or {}).get("host")
        if old and f" {old}/32 " in _run(["ip", "-n", gw_ns, "-4", "-o", "addr", "show", "dev", "lo"],
                                         check=False).stdout:
            return
        host, _ = _free_mgmt_pair(old)
        self.info["mgmt"] = {"host": host, "gw": host, "host_if": None, "gw_if": "lo", "relayed": True}
        self.save()
        _run(["ip", "-n", gw_ns, "addr", "add", f"{host}/32", "dev", "lo"])
        _run(["ip", "netns", "exec", gw_ns, "nft", "-f", "-"], input_text=(
            "table inet lab_mgmt {\n  chain guard {\n    type filter hook input priority filter - 10; policy accept;\n"
            f'    ip daddr {host} iifname != "lo" drop\n  }}\n}}\n'))

    def _ups_relay_up(self, ups_port: int) -> None:
        """A rootless lab's way from ``{p}gw`` to upsd: a relay on the management address, same port."""
        workdir = self.dir / "ups-relay"
        with contextlib.suppress(OSError, ValueError, KeyError):
            relay = RelayPeer.attach(workdir)
            if relay.running() and relay.listen == f"{self.info['mgmt']['host']}:{ups_port}":
                return
            relay.stop()
        RelayPeer(workdir, self.topo.ns["gw"], f"{self.info['mgmt']['host']}:{ups_port}",
                  f"127.0.0.1:{ups_port}").start()

    def _stop_ups_relay(self) -> bool:
        try:
            relay = RelayPeer.attach(self.dir / "ups-relay")
        except (OSError, ValueError, KeyError):
            return False
        relay.stop()
        return True

    def _peers_up(self, dump: Path) -> None:
        mgmt = self.info["mgmt"]["host"]
        relayed = bool(self.info["mgmt"].get("relayed"))
        jobs: dict[str, Any] = {}
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            # a peer that died comes back on its old port, so a running daemon's config stays right
            if not self._ups_running():
                port = self._old_port(self.dir / "ups")
                self._stop_ups()
                extra = [] if relayed else [mgmt]  # rootless: upsd on 127.0.0.1 only, a relay in {p}gw
                jobs["ups"] = pool.submit(UpsPeer(self.dir / "ups", dump, port, extra_listen=extra).start)
            for name, data in (("core", CISCO), ("tplink", TPLINK)):
                if not self._switch_running(name):
                    port = self._old_port(self.dir / f"snmp-{name}")
                    self._stop_switch(name)
                    # the gateway's side of the switch is its front (below), on the same port
                    peer = SnmpPeer(self.dir / f"snmp-{name}", "127.0.0.1", port, data)
                    jobs[name] = pool.submit(peer.start)
            errors = []
            for name, fut in jobs.items():
                try:
                    fut.result()
                except LAB_ERRORS as exc:
                    errors.append(f"{name}: {exc}")
        if errors:
            raise RuntimeError("; ".join(errors))
        if relayed:
            self._ups_relay_up(self.ups().port)
        for name in ("core", "tplink"):
            sw = self.switch(name)
            if mgmt in sw.extra_listen:
                continue  # a switch started before fronts existed serves the management address itself
            if not self._front_running(name):
                self._stop_front(name)
                FrontPeer(self.dir / f"front-{name}", [f"{mgmt}:{sw.port}"], f"127.0.0.1:{sw.port}",
                          netns=self.topo.ns["gw"] if relayed else None).start()

    @staticmethod
    def _old_port(workdir: Path) -> int | None:
        try:
            return int(json.loads((workdir / "peer.json").read_text())["port"])
        except (OSError, ValueError, KeyError):
            return None

    def _ups_running(self) -> bool:
        try:
            return UpsPeer.attach(self.dir / "ups").running()
        except (OSError, ValueError, KeyError):
            return False

    def _switch_running(self, name: str) -> bool:
        try:
            return SnmpPeer.attach(self.dir / f"snmp-{name}").running()
        except (OSError, ValueError, KeyError):
            return False

    def _front_running(self, name: str) -> bool:
        try:
            return FrontPeer.attach(self.dir / f"front-{name}").running()
        except (OSError, ValueError, KeyError):
            return False

    def _stop_front(self, name: str) -> None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            FrontPeer.attach(self.dir / f"front-{name}").stop()

    def front(self, name: str) -> FrontPeer:
        return FrontPeer.attach(self.dir / f"front-{name}")

    def _stop_ups(self) -> None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            UpsPeer.attach(self.dir / "ups").stop()

    def _stop_switch(self, name: str) -> None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            peer = SnmpPeer.attach(self.dir / f"snmp-{name}")
            if alive(peer.pid):  # a switch stopped by `switch NAME stop` must run to handle its SIGTERM
                os.kill(int(peer.pid or 0), signal.SIGCONT)
            peer.stop()

    def ups(self) -> UpsPeer:
        return UpsPeer.attach(self.dir / "ups")

    def switch(self, name: str) -> SnmpPeer:
        return SnmpPeer.attach(self.dir / f"snmp-{name}")

    def _modem_up(self) -> None:
        pid, _device = modem_emu.start(self.dir, data_iface_netns=self.topo.ns["gw"], data_iface="lte0")
        self.info["modem_pid"] = pid

    def _sink_up(self) -> None:
        if alive(self.info.get("sink_pid")):
            return
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        out = self.dir / "notifications.jsonl"
        proc = subprocess.Popen(self.topo.exec_argv("inet", [sys.executable, "-m", "gateway.lab.sink", "--listen",
                                                             f"{SINK_ADDR}:{SINK_PORT}", "--out", str(out)]),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=env, cwd=str(ROOT), start_new_session=True, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proc.stdout.close()
        if line.strip() != "ready":
            kill_pid(proc.pid)
            raise RuntimeError(f"the notification sink in {self.topo.ns['inet']} did not start")
        self.info["sink_pid"] = proc.pid

    # ------------------------------------------------------------------------------------ config
    def write_config(self) -> Path:
        ups, core, tplink = self.ups(), self.switch("core"), self.switch("tplink")
        mgmt = self.info["mgmt"]["host"]
        d = self.topo.describe()
        web = f"http://127.0.0.1:{self.info['web_port']}"
        sink = f"json://{SINK_ADDR}:{SINK_PORT}"
        text = f"""# The lab's config, written by `gateway lab up` ({self.dir}); the daemon runs in {self.topo.ns['gw']}.
[site]
name = "Lab Office ({self.prefix})"
timezone = "UTC"
state_dir = "{self.state_dir}"

[ups]
name = "{ups.name}"
host = "{mgmt}"
port = {ups.port}
username = "{ups.user}"
password = "{ups.password}"
poll_interval_s = 0.5
stale_after_s = 5.0
shutdown_duration_s = 60.0
shutdown_reserve_s = 60.0
shutdown_mode = "fsd"

[[switches]]
name = "core"                        # Cisco Catalyst 3750-48PS (a real walk), RFC 3621 rows, group 3
host = "{mgmt}"
port = {core.port}
profile = "cisco"
version = "2c"
community = "{core.community}"
read_community = "{core.read_community}"
pse_group = 3
timeout_s = 0.5
retries = 2

[[switches]]
name = "tplink"                      # TP-Link private MIB, over SNMP v3
host = "{mgmt}"
port = {tplink.port}
profile = "tplink"
version = "3"
user = "{tplink.v3_user}"
auth_key = "{tplink.v3_auth}"
auth_protocol = "sha"
priv_key = "{tplink.v3_priv}"
priv_protocol = "aes"
context = "private"                  # snmpsim serves v3 per context name
timeout_s = 0.5
retries = 2

[[loads]]
name = "access-point-office"
switch = "core"
port = 3
tier = 0
description = "Wi-Fi for the office"
watts = 9.0

[[loads]]
name = "desk-phones"
switch = "core"
port = 5
tier = 0
description = "VoIP phones"

[[loads]]
name = "camera-entrance"
switch = "core"
port = 7
tier = 1
watts = 6.5

[[loads]]
name = "signage-lobby"
switch = "tplink"
port = 2
tier = 1
watts = 6.5

[[loads]]
name = "access-point-meeting"
switch = "tplink"
port = 1
tier = 2

[[loads]]
name = "camera-yard"
switch = "tplink"
port = 4
tier = 2
watts = 12.8

[power]
debounce_s = 2.0
restore_hold_s = 10.0
restore_stagger_s = 3.0
reapply_interval_s = 30.0

[[power.tiers]]
tier = 1
after_on_battery_s = 0.0

[[power.tiers]]
tier = 2
after_on_battery_s = 60.0
runtime_below_s = 1200.0
charge_below_pct = 60.0

{self.topo.uplinks_toml()}
[failover]
failback_hold_s = 5.0                # short, so a fault test sees failback within seconds (the box: 60 s)

[modem]
device = "{self.dir / 'modem'}"
profile = "quectel-ec25"
apn = "internet"
interface = "lte0"
poll_interval_s = 1.0
# the recovery ladder in seconds, not minutes (the box: 30 s, then 60/120/240 s between rungs), so
# `gateway lab lte hang` walks redial → radio reset → power cycle → give up in about 15 s
recovery_after_s = 3.0
recovery_backoff_s = 1.5
recovery_clear_s = 2.0
registration_timeout_s = 60.0
power_off_s = 1.0

[panel]
board = "rpi-gateway-hat"
pin_factory = "mock"
hold_s = 3.0

[web]
listen = "127.0.0.1:{self.info['web_port']}"
read_only = "lan"

[[services]]
name = "CRM"
url = "{d['inet']['crm']}"
department = "Sales"
rto_s = 900.0
interval_s = 5.0

[notify]
staff = ["staff"]
link_base_url = "{web}"
coalesce_s = 30.0

[[notify.targets]]
name = "duty"
url = "{sink}/duty"

[[notify.targets]]
name = "staff"
url = "{sink}/staff"

[[notify.escalation]]
name = "duty person"
targets = ["duty"]
after_min = 0.0

[incidents]
close_hold_s = 30.0
"""
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return self.config_path

    # ------------------------------------------------------------------------------------ status
    def status(self, faults: bool = False) -> dict[str, Any]:
        d = self.topo.describe()
        out: dict[str, Any] = {
            "web": f"http://127.0.0.1:{self.info.get('web_port')}" if self.info.get("web_port") else None,
            "ups": None, "switches": {}, "netns": d["netns"], "modem": None, "config": str(self.config_path),
            "inet": {**d["inet"], "notify_sink": f"http://{SINK_ADDR}:{SINK_PORT}/"},
            "lan": {**d["lan"], "page": f"http://{d['lan']['gateway']}:{LAN_WEB_PORT}/" if lan_page_enabled()
                    else None},
        }
        with contextlib.suppress(OSError, ValueError, KeyError):
            u = self.ups()
            out["ups"] = f"{u.name}@{u.host}:{u.port}"
        for name in ("core", "tplink"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                s = self.switch(name)
                out["switches"][name] = {"host": s.host, "port": s.port, "community": s.community,
                                         "read_community": s.read_community,
                                         "profile": "cisco" if name == "core" else "tplink",
                                         "v3": {"user": s.v3_user, "auth": s.v3_auth, "priv": s.v3_priv,
                                                "context": "private"}}
                with contextlib.suppress(OSError, ValueError, KeyError):
                    out["switches"][name]["faults"] = {"snmpsim": _proc_state(s.pid), **self.front(name).settings()}
        with contextlib.suppress(OSError):
            out["modem"] = os.path.realpath(self.dir / "modem") if (self.dir / "modem").exists() else None
        pid = self.info.get("daemon_pid")
        if alive(pid):
            out["daemon"] = {"pid": pid}
        out.update(prefix=self.prefix, lab_dir=str(self.dir), state_dir=str(self.state_dir),
                   uplinks=d["uplinks"], mgmt=self.info.get("mgmt"))
        if faults:
            with contextlib.suppress(*LAB_ERRORS):
                out["faults"] = self._faults()
        return out

    def _faults(self) -> dict[str, str]:
        """net.py's view, except that a link the lab did not take down is "up" even without carrier: the
        gateway side of the LTE link is down until the modem dials, which is the modem's business."""
        out = self.topo.faults()
        for side, what in out.items():
            if what == "down" and side in ("isp", "lte"):
                link = _run(["ip", "-n", self.topo.ns[side], "-o", "link", "show", "eth0"], check=False).stdout
                flags = link.split("<", 1)[-1].split(">", 1)[0].split(",")
                if "UP" in flags:
                    out[side] = "up"
        return out

    # ------------------------------------------------------------------------------------ daemon
    def daemon_start(self, timeout_s: float = DAEMON_START_TIMEOUT_S) -> dict[str, Any]:
        pid = self.info.get("daemon_pid")
        url = f"http://127.0.0.1:{self.info['web_port']}"
        if alive(pid):
            if _get(url + "/healthz") is not None:
                return {"pid": pid, "url": url}
            kill_pid(pid)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", int(self.info["web_port"])))
        except OSError:  # the port was taken meanwhile: another one, and the config follows
            sock.close()
            self.info["web_port"] = _free_tcp_port()
            self.save()
            self.write_config()
            sock = socket.socket()
            sock.bind(("127.0.0.1", int(self.info["web_port"])))
            url = f"http://127.0.0.1:{self.info['web_port']}"
        sock.listen(64)
        socks = [sock]
        lan = self.topo.describe()["lan"]["gateway"]
        if lan_page_enabled():  # the page for the office PC too, on the gateway's LAN address, as on the real box
            try:
                socks.append(socket_in_netns(self.topo.ns["gw"], lan, LAN_WEB_PORT))
            except OSError as exc:
                print(f"gateway lab: no page on the LAN side ({lan}:{LAN_WEB_PORT}): {exc}", file=sys.stderr)
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "PYTHONUNBUFFERED": "1"}
        for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
            env.pop(k, None)
        fds = [s.fileno() for s in socks]
        argv = [sys.executable, "-c", _LAUNCH, ",".join(map(str, fds)), "ip", "netns", "exec", self.topo.ns["gw"],
                sys.executable, "-m", "gateway", "run", "--config", str(self.config_path)]
        with open(self.dir / "daemon.log", "ab") as log:
            proc = subprocess.Popen(argv, pass_fds=fds, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env, cwd=str(ROOT), start_new_session=True)
        for s_ in socks:
            s_.close()
        self.info["daemon_pid"] = proc.pid
        self.save()
        deadline = time.monotonic() + timeout_s
        while _get(url + "/healthz") is None:
            if proc.poll() is not None:
                tail = (self.dir / "daemon.log").read_text(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"the daemon exited with {proc.returncode}: " + " | ".join(tail))
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not serve {url} within {timeout_s:g} s; "
                                   f"see {self.dir / 'daemon.log'}")
            time.sleep(0.1)  # poll interval while the daemon starts
        return {"pid": proc.pid, "url": url}

    def daemon_stop(self, kill: bool = False) -> int | None:
        pid = self.info.get("daemon_pid")
        if isinstance(pid, int) and alive(pid):
            if kill:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while alive(pid) and time.monotonic() < deadline:
                    with contextlib.suppress(ChildProcessError, OSError):
                        os.waitpid(pid, os.WNOHANG)
                    time.sleep(0.02)  # poll interval while the kernel tears it down
            else:
                kill_pid(pid, timeout_s=20)
        self.info.pop("daemon_pid", None)
        self.save()
        return pid if isinstance(pid, int) else None

    # ------------------------------------------------------------------------------------ faults
    def power(self, action: str) -> str:
        ups = self.ups()
        {"cut": ups.cut, "restore": ups.restore, "low": ups.low, "comm-lost": ups.comm_lost}[action]()
        return {"cut": "mains cut: UPS on battery (OB DISCHRG), battery draining",
                "restore": "mains back: UPS online (OL CHRG, charging)",
                "low": "UPS on battery with a low battery (OB DISCHRG LB)",
                "comm-lost": "UPS driver stopped: upsd reports the UPS stale"}[action]

    def ups_peer(self, action: str) -> str:
        """``ups kill``: upsd dies (SIGKILL), the driver stays; ``ups start``: upsd back on its port."""
        ups = self.ups()
        if action == "kill":
            pid = ups.kill_upsd()
            return f"upsd killed (pid {pid}): clients get connection refused" if pid else "upsd was not running"
        pid = ups.start_upsd()
        return f"upsd running (pid {pid}) on {ups.host}:{ups.port}, serving {ups.name}"

    def switch_fault(self, name: str, action: str, value: str | None) -> str:
        """A switch fault: ``stop``/``start`` snmpsim; ``slow MS``, ``community WORD`` and ``normal`` on its
        front (what the gateway reaches)."""
        if name not in ("core", "tplink"):
            raise LabUsage(f"no switch {name!r} in the lab (have: core, tplink)")
        if action in ("slow", "community"):
            if value is None:
                raise LabUsage(f"switch {name} {action} needs a value ({'MS' if action == 'slow' else 'WORD'})")
        elif value is not None:
            raise LabUsage(f"switch {name} {action} takes no value (got {value!r})")
        if action == "stop":  # SIGSTOP: the switch hangs; it answers nothing but loses nothing
            peer = self.switch(name)
            if not alive(peer.pid):
                raise RuntimeError(f"switch {name}: snmpsim is not running (gateway lab switch {name} start)")
            os.kill(int(peer.pid or 0), signal.SIGSTOP)
            return f"switch {name}: snmpsim stopped (pid {peer.pid}): no SNMP answers until start"
        if action == "start":
            peer = self.switch(name)
            if alive(peer.pid):
                os.kill(int(peer.pid or 0), signal.SIGCONT)
                return f"switch {name}: snmpsim answering again (pid {peer.pid})"
            peer.stop()  # it died: a new one on the same port (every port on again, like a reset switch)
            new = SnmpPeer(peer.workdir, peer.host, peer.port, peer.data_file, peer.extra_listen).start()
            return f"switch {name}: snmpsim started again (pid {new.pid}) on {new.host}:{new.port}"
        front = self.front(name)
        if action == "slow":
            if not _is_number(value or "") or not 0 <= float(value or 0) <= 600_000:
                raise LabUsage(f"switch {name} slow needs a delay in ms between 0 and 600000, not {value!r}")
            front.set(delay_ms=float(value or 0))
            return f"switch {name}: requests answered {float(value or 0):g} ms late"
        if action == "community":
            if not value or not value.isprintable() or len(value) > 64 or value.strip() != value:
                raise LabUsage(f"switch {name} community needs a word (1-64 printable characters), not {value!r}")
            front.set(community=value)
            return f"switch {name}: answers only community {value!r} now (others are dropped silently)"
        front.set(delay_ms=0, community=None)
        return f"switch {name}: no faults on its front (usual communities, no delay)"

    def isp(self, side: str, what: str, value: str | None, seconds: float | None = None) -> str:
        pct = None
        if what == "flap":
            hz = float(value) if value is not None and _is_number(value) else (10.0 if value is None else -1.0)
            secs = 3.0 if seconds is None else seconds
            if not 0 < hz <= 100 or not 0 < secs <= 600:
                raise LabUsage(f"{side} flap needs HZ in (0, 100] and --seconds in (0, 600], not {value!r}/{secs!r}")
            cycles = self.topo.flap(side, hz, secs)
            return f"{side}: link flapped {cycles} times ({hz:g}/s for {secs:g} s), now up"
        if what == "loss":
            try:
                pct = float(value) if value is not None else None
            except ValueError:
                pct = None
            if pct is None or not 0 <= pct <= 100:
                raise LabUsage(f"{side} loss needs a percentage between 0 and 100, not {value!r}")
        elif value is not None and what not in ("signal",):
            raise LabUsage(f"{side} {what} takes no value (got {value!r})")
        if side == "lte" and what in ("signal", "no-sim", "sim", "hang", "garbage", "unplug", "plug", "power-cycle"):
            if what == "signal":
                if value is None or not (value == "none" or _is_number(value)):
                    raise LabUsage(f"lte signal needs a level in dBm (e.g. -95) or 'none', not {value!r}")
                if value != "none" and not -140 <= float(value) <= -30:
                    raise LabUsage(f"lte signal {value}: dBm between -140 and -30")
            modem_emu.control(self.dir, what, value)
            return f"modem: {what}{' ' + value if value else ''}"
        self.topo.fault(side, what, pct)
        if side == "lte" and what in ("down", "up"):
            modem_emu.control(self.dir, what)
        return f"{side}: {what}{f' {pct:g} %' if pct is not None else ''}"

    # -------------------------------------------------------------------------------------- down
    def down(self) -> list[str]:
        """Remove what the lab made: daemon, sink, modem, peers, management link, namespaces, the lab dir."""
        done: list[str] = []
        if self.info.get("daemon_pid"):
            self.daemon_stop()
            done.append("daemon")
        if self.info.get("sink_pid"):
            kill_pid(self.info.get("sink_pid"))
            done.append("notification sink")
        if (self.dir / "modem.pid").exists():
            modem_emu.stop(self.dir)
            done.append("modem emulator")
        if self._stop_ups_relay():
            done.append("UPS relay")
        if (self.dir / "ups" / "peer.json").exists():
            self._stop_ups()
            done.append("NUT")
        for name in ("core", "tplink"):
            if (self.dir / f"front-{name}" / "peer.json").exists():
                self._stop_front(name)
            if (self.dir / f"snmp-{name}" / "peer.json").exists():
                self._stop_switch(name)
                done.append(f"switch {name}")
        if _run(["ip", "link", "show", self.host_mgmt_if], check=False).returncode == 0:
            _run(["ip", "link", "del", self.host_mgmt_if], check=False)
            done.append(f"link {self.host_mgmt_if}")
        names = set(_run(["ip", "netns", "list"], check=False).stdout.split())
        if any(n in names for n in self.topo.ns.values()):
            self.topo.destroy()
            done.append("namespaces " + " ".join(self.topo.ns.values()))
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
            done.append(str(self.dir))
        self.tidy()
        self.info = {}
        return done

    def tidy(self) -> None:
        """Remove the lock file, and the base dir if no other lab is left in it."""
        with contextlib.suppress(OSError):
            (self.dir.parent / f".{self.prefix}.lock").unlink()
        with contextlib.suppress(OSError):
            self.dir.parent.rmdir()


# systemd's socket-activation protocol without systemd: the passed sockets become fds 3, 4, ... of the daemon
# and LISTEN_PID its pid (this launcher's, which ip netns exec and python keep by exec'ing)
_LAUNCH = """
import fcntl, os, sys
fds = [fcntl.fcntl(int(f), fcntl.F_DUPFD, 64) for f in sys.argv[1].split(",")]
for f in sys.argv[1].split(","):
    os.close(int(f))
for i, f in enumerate(fds):
    os.dup2(f, 3 + i)
    os.close(f)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)))
os.execvp(sys.argv[2], sys.argv[2:])
"""


def _proc_state(pid: int | None) -> str:
    """running | stopped (SIGSTOP) | dead."""
    if not alive(pid):
        return "dead"
    try:
        with open(f"/proc/{pid}/stat") as f:
            return "stopped" if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t") else "running"
    except OSError:
        return "dead"


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _mgmt_lock() -> Iterator[None]:
    """A host-wide lock without a file of its own: flock on /run/lock (or /tmp), a directory every lab shares."""
    path = "/run/lock" if os.path.isdir("/run/lock") else "/tmp"
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _free_mgmt_pair(prefer: str | None = None) -> tuple[str, str]:
    """``prefer``'s /30, else the first /30 of 198.18.0.0/15 that no address of the host is in:
    (host .1, gateway .2)."""
    out = _run(["ip", "-4", "-o", "addr", "show"], check=False).stdout
    used = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    first = [ipaddress.ip_interface(f"{prefer}/30").network] if prefer else []
    nets = itertools.chain(first, MGMT_NET.subnets(new_prefix=30))
    for net in nets:
        if not any(net.overlaps(u) for u in used):
            hosts = list(net.hosts())
            return str(hosts[0]), str(hosts[1])
    raise RuntimeError("no free /30 left in 198.18.0.0/15 for the lab's management link")


# ----------------------------------------------------------------------------------------- the CLI

def add_lab_parser(subparsers: Any) -> argparse.ArgumentParser:
    lab = subparsers.add_parser("lab", help="the virtual office of real peers (make run)",
                                description="The virtual office: NUT, snmpsim switches, network namespaces, the "
                                            "modem emulator, mock GPIO, and the daemon inside it.")
    lab.add_argument("--prefix", help="lab name prefix (default $GATEWAY_LAB_PREFIX or 'og')")
    sub = lab.add_subparsers(dest="lab_cmd", metavar="COMMAND")
    sub.required = True
    s = sub.add_parser("up", help="bring the lab up (idempotent) and print where everything is")
    s.add_argument("--ups-dump", type=Path, help="the .dev file dummy-ups replays (default: an APC Smart-UPS 1500)")
    s.add_argument("--json", action="store_true", help="print the status JSON instead")
    s = sub.add_parser("status", help="where everything is")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("daemon", help="the daemon inside the lab: start|stop|kill")
    s.add_argument("action", choices=["start", "stop", "kill"])
    s = sub.add_parser("power", help="mains and UPS: cut|restore|low|comm-lost")
    s.add_argument("action", choices=["cut", "restore", "low", "comm-lost"])
    s = sub.add_parser("ups", help="NUT's upsd itself: kill (SIGKILL; the driver stays)|start (back on its port)")
    s.add_argument("action", choices=["kill", "start"])
    s = sub.add_parser("switch", help="a PoE switch: NAME stop|start (snmpsim hangs / answers again) | slow MS | "
                                      "community WORD | normal (no delay, usual communities)")
    s.add_argument("name", help="core or tplink")
    s.add_argument("action", choices=["stop", "start", "slow", "community", "normal"])
    s.add_argument("value", nargs="?", help="MS for slow, WORD for community")
    s = sub.add_parser("isp", help="the wired ISP: down|up|blackhole|loss PERCENT|flap [HZ]")
    s.add_argument("action", choices=["down", "up", "blackhole", "loss", "flap"])
    s.add_argument("value", nargs="?", help="PERCENT for loss, HZ for flap (default 10)")
    s.add_argument("--seconds", type=float, default=3.0, help="how long flap goes on (default 3)")
    s = sub.add_parser("lte", help="LTE: down|up|blackhole|loss PERCENT|signal DBM|no-sim|sim|hang|garbage|"
                                   "unplug|plug|power-cycle")
    s.add_argument("action", choices=["down", "up", "blackhole", "loss", "signal", "no-sim", "sim", "hang",
                                      "garbage", "unplug", "plug", "power-cycle"])
    s.add_argument("value", nargs="?", help="PERCENT for loss, DBM (or 'none') for signal")
    s = sub.add_parser("dns", help="the internet's DNS server: down (blackholed) | up")
    s.add_argument("action", choices=["down", "up"])
    s = sub.add_parser("button", help="the panel button: press|hold")
    s.add_argument("action", choices=["press", "hold"])
    s.add_argument("--seconds", type=float, help="how long a hold lasts (default: the config's hold_s + 0.5)")
    s = sub.add_parser("panel", help="LEDs and buzzer")
    s.add_argument("--json", action="store_true")
    sub.add_parser("down", help="remove every namespace, process and file the lab made")
    s = sub.add_parser("run", help="up + daemon start; stay in the foreground until Ctrl-C, then down")
    s.add_argument("--ups-dump", type=Path)
    s.add_argument("--keep", action="store_true", help="leave the lab up on exit")
    return lab  # type: ignore[no-any-return]


def current_lab(prefix: str | None = None) -> dict[str, Any] | None:
    """The status of the lab that is up (for the CLI client: "web", "config", "state_dir"), or None."""
    try:
        lab = Lab(prefix)
    except ValueError:
        return None
    if not lab.exists():
        return None
    return lab.status()


def _err(msg: str) -> None:
    print(f"gateway lab: {msg}", file=sys.stderr)


def run_lab(args: argparse.Namespace) -> int:
    try:
        lab = Lab(getattr(args, "prefix", None))
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    cmd = args.lab_cmd
    if os.geteuid() != 0 and not os.environ.get(INNER_ENV):
        # a normal user: the lab lives in user namespaces of its own (gateway.lab.userns)
        argv = _own_argv(args)
        if argv is None:
            _err("without root the lab command must come from the command line (gateway lab ...)")
            return EXIT_USAGE
        from gateway.lab.userns import run_outside

        try:
            return run_outside(cmd, lab.prefix, argv)
        except (OSError, RuntimeError) as exc:
            _err(str(exc))
            return EXIT_FAIL
    try:
        if cmd == "up":
            existed = lab.exists()
            try:
                with lab.locked():
                    st = lab.up(args.ups_dump)
            except (LabUsage, *LAB_ERRORS):
                if not existed:  # a first up that failed half way leaves nothing behind
                    with lab.locked():
                        lab.down()
                raise
            print(json.dumps(st, indent=2) if args.json else _describe(st))
            return EXIT_OK
        if cmd == "down":
            with lab.locked():
                done = lab.down()
            print("removed: " + ", ".join(done) if done else "nothing to remove: no lab is up")
            return EXIT_OK
        if cmd == "run":
            return _run_foreground(lab, args)
        if not lab.exists():
            _err(f"no lab '{lab.prefix}' is up (start one with: gateway lab up)")
            return EXIT_FAIL
        if cmd == "status":
            st = lab.status(faults=True)
            print(json.dumps(st, indent=2) if args.json else _describe(st))
            return EXIT_OK
        if cmd == "daemon":
            with lab.locked():
                if args.action == "start":
                    r = lab.daemon_start()
                    print(f"daemon running (pid {r['pid']}) in {lab.topo.ns['gw']}: {r['url']}")
                else:
                    pid = lab.daemon_stop(kill=args.action == "kill")
                    print(f"daemon {'killed' if args.action == 'kill' else 'stopped'}" + (f" (pid {pid})" if pid
                                                                                          else ": was not running"))
            return EXIT_OK
        if cmd == "power":
            print(lab.power(args.action))
            return EXIT_OK
        if cmd in ("isp", "lte"):
            print(lab.isp(cmd, args.action, args.value, getattr(args, "seconds", None)))
            return EXIT_OK
        if cmd == "dns":
            lab.topo.dns(args.action == "up")
            print(f"dns: {args.action}" + (" (the internet's DNS server drops every query)"
                                             if args.action == "down" else ""))
            return EXIT_OK
        if cmd == "ups":
            print(lab.ups_peer(args.action))
            return EXIT_OK
        if cmd == "switch":
            print(lab.switch_fault(args.name, args.action, args.value))
            return EXIT_OK
        if cmd in ("button", "panel"):
            return _panel(lab, args)
    except LabUsage as exc:
        _err(str(exc))
        return EXIT_USAGE
    except ValueError as exc:  # the modem emulator refusing a value
        _err(str(exc))
        return EXIT_USAGE
    except DeviceRefused as exc:  # the daemon's side said no to what was asked (e.g. a hold of -1 s)
        _err(str(exc))
        return EXIT_USAGE
    except LAB_ERRORS as exc:
        _err(str(exc))
        return EXIT_FAIL
    _err(f"unknown lab command {cmd!r}")
    return EXIT_USAGE


def _own_argv(args: argparse.Namespace) -> list[str] | None:
    """This process's ``gateway`` command line, if it is the one ``args`` came from (to run it again inside
    the lab's namespaces); None when ``args`` were made some other way."""
    from gateway.cli import build_parser

    argv = sys.argv[1:]
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            again = build_parser().parse_args(argv)
    except SystemExit:
        return None
    return argv if vars(again) == vars(args) else None


def _panel(lab: Lab, args: argparse.Namespace) -> int:
    try:
        from gateway.lab import panel_client
    except ImportError:
        _err("the panel client is not built yet (gateway/lab/panel_client.py)")
        return EXIT_FAIL
    state_dir = lab.state_dir
    if not (state_dir / "panel.sock").exists():
        _err(f"the panel does not answer: is the daemon running? (gateway lab daemon start); "
             f"no {state_dir / 'panel.sock'}")
        return EXIT_FAIL
    if args.lab_cmd == "button":
        if args.action == "press":
            reply = panel_client.press(state_dir)
        else:
            # the daemon judges the value (0 < s <= 300); a refusal comes back as DeviceRefused (exit 2)
            reply = panel_client.hold(state_dir, s=args.seconds) if args.seconds is not None else \
                panel_client.hold(state_dir)
        print(json.dumps(reply) if not isinstance(reply, str) else reply)
        return EXIT_OK
    st = panel_client.state(state_dir)
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        for name, led in (st.get("leds") or {}).items():
            print(f"led {name}: {led}")
        print(f"buzzer: {st.get('buzzer')}")
    return EXIT_OK


def _describe(st: dict[str, Any]) -> str:
    lines = [f"lab '{st['prefix']}' in {st['lab_dir']}",
             f"  status page  {st['web']}" + ("" if st.get("daemon") else "  (daemon not running: "
                                                                          "gateway lab daemon start)"),
             f"  config       {st['config']}",
             f"  UPS          {st['ups']}  (upsc {st['ups']})"]
    for name, sw in st["switches"].items():
        lines.append(f"  switch       {name}: {sw['host']}:{sw['port']} community {sw['community']}/"
                     f"{sw['read_community']}, v3 user {sw['v3']['user']} context {sw['v3']['context']}")
    lines += [f"  modem        {st['modem']}",
              f"  namespaces   {' '.join(st['netns'].values())}",
              f"  internet     CRM {st['inet']['crm']}, probe hosts {', '.join(st['inet']['hosts'])}, "
              f"DNS {st['inet'].get('dns')}, notifications {st['inet']['notify_sink']}",
              f"  office PC    {st['lan']['pc']} (ip netns exec {st['netns']['lan']} ...)"
              + (f", the page there: {st['lan']['page']}" if st["lan"].get("page") else "")]
    if st.get("mgmt") and st["mgmt"].get("relayed"):
        lines.append(f"  management   {st['mgmt']['host']} in {st['netns']['gw']}, relayed to the peers on the host's "
                     "127.0.0.1 (a rootless lab: user namespaces)")
    elif st.get("mgmt"):
        lines.append(f"  management   host {st['mgmt']['host']} <-> gateway {st['mgmt']['gw']}")
    if st.get("daemon"):
        lines.append(f"  daemon       pid {st['daemon']['pid']}")
    if st.get("faults"):
        lines.append("  faults       " + ", ".join(f"{k} {v}" for k, v in st["faults"].items()))
    return "\n".join(lines)


def _run_foreground(lab: Lab, args: argparse.Namespace) -> int:
    stop = False

    def _term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    old = {s: signal.signal(s, _term) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        with lab.locked():
            st = lab.up(args.ups_dump)
            r = lab.daemon_start()
        print(_describe(lab.status()))
        print(f"\nThe office gateway is running (pid {r['pid']}). Status page: {r['url']}/\n"
              "Try, in another terminal:\n"
              "  gateway lab power cut        # mains fails: loads shed by tier; restore with: power restore\n"
              "  gateway lab isp blackhole    # the wired ISP goes dark: failover to LTE; back with: isp up\n"
              "  gateway lab lte signal -110  # weak LTE signal\n"
              "  gateway lab button hold      # manual failover from the rack's button; panel --json shows LEDs\n"
              "  gateway status               # what the daemon sees\n"
              "Ctrl-C stops the daemon and removes the lab.", flush=True)
        del st
        while not stop:
            time.sleep(0.2)  # waiting for Ctrl-C
            if not stop and not alive(lab.info.get("daemon_pid")):
                print(f"the daemon exited; see {lab.dir / 'daemon.log'} (Ctrl-C removes the lab)", flush=True)
                lab.info.pop("daemon_pid", None)
        return EXIT_OK
    except LabUsage as exc:
        _err(str(exc))
        return EXIT_USAGE
    except LAB_ERRORS as exc:
        _err(str(exc))
        return EXIT_FAIL
    finally:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C must not leave half a lab behind
        if not getattr(args, "keep", False):
            print("\nstopping: removing the lab ...", flush=True)
            with lab.locked():
                done = lab.down()
            print("removed: " + ", ".join(done), flush=True)
        for s, h in old.items():
            signal.signal(s, h)
