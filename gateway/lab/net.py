"""The lab's network: the office gateway, its two ISPs, "the internet" and an office PC, in namespaces.

::

    {p}lan  eth0 192.168.77.10 ──── lan0 192.168.77.1   {p}gw   wan0 192.0.2.2 ──── eth0 192.0.2.1      {p}isp
                                                               lte0 198.51.100.2 ── eth0 198.51.100.1  {p}lte
    {p}isp  up0 203.0.113.2 ──── isp0 203.0.113.1 {p}inet        (hosts 203.0.113.10-12, DNS .53, CRM .80)
    {p}lte  up0 203.0.113.6 ──── lte0 203.0.113.5 {p}inet

The gateway masquerades the LAN out of both uplinks (table ``lab_nat``); the ISP routers forward; the
internet routes the gateway's two uplink networks back through the right ISP.  Faults are nftables rules
in ``{p}isp``/``{p}lte`` (table ``lab_fault``): ``blackhole`` drops every forwarded packet with the link
up, ``loss N`` drops packets at random so N % of round trips fail, ``down`` takes the ISP side of the link down (the gateway
sees carrier loss), ``up`` clears all of it; ``flap`` toggles that link's carrier HZ times a second for a while.
``dns(False)`` blackholes the internet's DNS server (table ``lab_dns_fault`` in ``{p}inet``).

The gateway side of the LTE link (``lte0`` in ``{p}gw``) can also be driven by the modem emulator
(``modem_emu.start(..., data_iface_netns=f"{p}gw", data_iface="lte0")``): it sets it up/down with the
data call, independently of the faults here.

A small server process in ``{p}inet`` answers DNS (dnslib) and HTTP (the "CRM"); it lives and dies with
the namespace.  ``destroy()`` removes the five namespaces and that process, nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROLES = ("gw", "isp", "lte", "inet", "lan")

GW_WIRED_IF, GW_LTE_IF, GW_LAN_IF = "wan0", "lte0", "lan0"
WIRED_GW_ADDR, WIRED_ADDR, WIRED_NET = "192.0.2.1", "192.0.2.2", "192.0.2.0/24"
LTE_GW_ADDR, LTE_ADDR, LTE_NET = "198.51.100.1", "198.51.100.2", "198.51.100.0/24"
LAN_GW_ADDR, LAN_PC_ADDR, LAN_NET = "192.168.77.1", "192.168.77.10", "192.168.77.0/24"
INET_ISP_ADDR, ISP_UP_ADDR = "203.0.113.1", "203.0.113.2"  # 203.0.113.0/30
INET_LTE_ADDR, LTE_UP_ADDR = "203.0.113.5", "203.0.113.6"  # 203.0.113.4/30
INET_HOSTS = ("203.0.113.10", "203.0.113.11", "203.0.113.12")
INET_DNS = "203.0.113.53"
INET_CRM = "203.0.113.80"
CRM_PORT = 80
CRM_NAME = "crm.office.example"

FAULT_TABLE = "lab_fault"
DNS_FAULT_TABLE = "lab_dns_fault"
NAT_TABLE = "lab_nat"
CLONE_NEWNET = 0x40000000


class LabNetError(RuntimeError):
    """A command building or changing the lab network failed."""


def _run(argv: list[str], input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise LabNetError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def add_netns(name: str) -> None:
    """A new named network namespace, like ``ip netns add``.  In a rootless lab (see
    :mod:`gateway.lab.userns`) ``ip netns add`` cannot work (it switches back to the host's namespace,
    which the lab's user namespace does not own), so there the namespace is made by ``unshare`` and
    bound to its ``/run/netns`` file, which is all ``ip netns add`` does besides."""
    from gateway.lab.userns import rootless

    if not rootless():
        _run(["ip", "netns", "add", name])
        return
    path = Path("/run/netns") / name
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o444)
    except FileExistsError:
        raise LabNetError(f"network namespace {name} already exists") from None
    os.close(fd)
    proc = _run(["unshare", f"--net={path}", "true"], check=False)
    if proc.returncode != 0:
        with contextlib.suppress(OSError):
            path.unlink()
        raise LabNetError(f"unshare --net={path}: {proc.stderr.strip()}")


def socket_in_netns(netns: str, host: str, port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket bound to ``host``:``port`` inside ``netns`` (listening, for TCP), made by a short-lived thread
    that enters the namespace; it stays there while this process uses it from its own namespace."""
    import ctypes

    result: list[socket.socket | OSError] = []

    def work() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            s = socket.socket(socket.AF_INET, kind)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            if kind == socket.SOCK_STREAM:
                s.listen(64)
            result.append(s)
        except OSError as exc:
            result.append(exc)

    t = threading.Thread(target=work, name="netns-socket")  # the thread ends, taking its namespace with it
    t.start()
    t.join()
    if isinstance(result[0], OSError):
        raise result[0]
    return result[0]


class Topology:
    """The five namespaces named ``{prefix}gw``, ``{prefix}isp``, ``{prefix}lte``, ``{prefix}inet``,
    ``{prefix}lan``; see the module docstring for the picture."""

    def __init__(self, prefix: str = "og") -> None:
        if not prefix or len(prefix) > 10 or not all(c.isalnum() or c in "-_" for c in prefix):
            raise ValueError(f"bad namespace prefix {prefix!r}: 1-10 letters, digits, '-' or '_'")
        self.prefix = prefix
        self.ns = {role: f"{prefix}{role}" for role in ROLES}

    # ------------------------------------------------------------------------------------ helpers
    def _ip(self, role: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "-n", self.ns[role], *args], check=check)

    def exec_argv(self, role: str, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace of ``role``."""
        return ["ip", "netns", "exec", self.ns[role], *argv]

    def run(self, role: str, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(self.exec_argv(role, argv), check=check)

    def _sysctl(self, role: str, key: str, value: str) -> None:
        self.run(role, ["sysctl", "-qw", f"{key}={value}"])

    def _nft(self, role: str, script: str) -> None:
        _run(self.exec_argv(role, ["nft", "-f", "-"]), input_text=script)

    def _veth(self, a: str, a_if: str, b: str, b_if: str) -> None:
        self._ip(a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", self.ns[b])

    def _addr(self, role: str, iface: str, cidr: str) -> None:
        self._ip(role, "addr", "replace", cidr, "dev", iface)
        self._ip(role, "link", "set", iface, "up")

    # -------------------------------------------------------------------------------- life cycle
    def exists(self) -> bool:
        names = set(_run(["ip", "netns", "list"]).stdout.split())
        return all(n in names for n in self.ns.values())

    def create(self) -> None:
        """Build the network (idempotent: an existing complete one is kept; a partial one is rebuilt)."""
        if self.exists() and self._server_alive():
            return
        self.destroy()
        try:
            self._build()
        except Exception:
            self.destroy()
            raise

    def _build(self) -> None:
        for name in self.ns.values():
            add_netns(name)
        for role in ROLES:
            self._ip(role, "link", "set", "lo", "up")
        # links
        self._veth("gw", GW_WIRED_IF, "isp", "eth0")
        self._veth("gw", GW_LTE_IF, "lte", "eth0")
        self._veth("gw", GW_LAN_IF, "lan", "eth0")
        self._veth("isp", "up0", "inet", "isp0")
        self._veth("lte", "up0", "inet", "lte0")
        # addresses
        self._addr("gw", GW_WIRED_IF, f"{WIRED_ADDR}/24")
        self._addr("gw", GW_LTE_IF, f"{LTE_ADDR}/24")
        self._addr("gw", GW_LAN_IF, f"{LAN_GW_ADDR}/24")
        self._addr("isp", "eth0", f"{WIRED_GW_ADDR}/24")
        self._addr("isp", "up0", f"{ISP_UP_ADDR}/30")
        self._addr("lte", "eth0", f"{LTE_GW_ADDR}/24")
        self._addr("lte", "up0", f"{LTE_UP_ADDR}/30")
        self._addr("inet", "isp0", f"{INET_ISP_ADDR}/30")
        self._addr("inet", "lte0", f"{INET_LTE_ADDR}/30")
        self._addr("lan", "eth0", f"{LAN_PC_ADDR}/24")
        for host in (*INET_HOSTS, INET_DNS, INET_CRM):  # the internet's hosts live on its loopback
            self._ip("inet", "addr", "add", f"{host}/32", "dev", "lo")
        # routes
        self._ip("isp", "route", "replace", "default", "via", INET_ISP_ADDR)
        self._ip("lte", "route", "replace", "default", "via", INET_LTE_ADDR)
        self._ip("inet", "route", "replace", WIRED_NET, "via", ISP_UP_ADDR)
        self._ip("inet", "route", "replace", LTE_NET, "via", LTE_UP_ADDR)
        self._ip("lan", "route", "replace", "default", "via", LAN_GW_ADDR)
        # the gateway starts on the wired ISP; the uplink service takes the default route over
        self._ip("gw", "route", "replace", "default", "via", WIRED_GW_ADDR, "dev", GW_WIRED_IF, "metric", "100")
        for role in ("gw", "isp", "lte"):
            self._sysctl(role, "net.ipv4.ip_forward", "1")
        # like systemd's default on the box: unprivileged ICMP echo sockets for everyone (in a rootless lab
        # only gid 0 exists, and the kernel takes no range beyond the groups the namespace has)
        from gateway.lab.userns import rootless

        self._sysctl("gw", "net.ipv4.ping_group_range", "0 0" if rootless() else "0 2147483647")
        # replies for an uplink's address arrive on that uplink even while the other one is the default
        self._sysctl("gw", "net.ipv4.conf.all.rp_filter", "2")
        self._sysctl("gw", "net.ipv4.conf.default.rp_filter", "2")
        self._nft("gw", f"""
table ip {NAT_TABLE} {{
    chain post {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {LAN_NET} oifname {{ "{GW_WIRED_IF}", "{GW_LTE_IF}" }} masquerade
    }}
}}
""")
        for role in ("isp", "lte"):
            self._nft(role, f"table inet {FAULT_TABLE} {{\n"
                            "    chain faults { type filter hook forward priority filter; policy accept; }\n}\n")
        self._start_server()

    def destroy(self) -> None:
        """Remove what :meth:`create` made: the server in ``{p}inet`` and the five namespaces."""
        names = set(_run(["ip", "netns", "list"], check=False).stdout.split())
        if self.ns["inet"] in names:
            for pid in self._pids("inet"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while self._pids("inet") and time.monotonic() < deadline:
                time.sleep(0.02)  # poll interval while the server exits
            for pid in self._pids("inet"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for name in self.ns.values():
            if name in names:
                _run(["ip", "netns", "delete", name], check=False)

    def _pids(self, role: str) -> list[int]:
        out = _run(["ip", "netns", "pids", self.ns[role]], check=False).stdout.split()
        return [int(p) for p in out if p.isdigit()]

    # --------------------------------------------------------------------------------- the server
    def _start_server(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        argv = self.exec_argv("inet", [sys.executable, "-m", "gateway.lab.net", "serve",
                                       "--dns", INET_DNS, "--http", f"{INET_CRM}:{CRM_PORT}"])
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, start_new_session=True, cwd=root, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the server prints "ready" once both sockets listen
        proc.stdout.close()
        if line.strip() != "ready":
            proc.kill()
            raise LabNetError(f"lab DNS/HTTP server in {self.ns['inet']} did not start (exit {proc.poll()})")

    def _server_alive(self) -> bool:
        return bool(self._pids("inet"))

    # ------------------------------------------------------------------------------------- faults
    def fault(self, side: str, what: str, percent: float | None = None) -> None:
        """``side`` isp|lte; ``what`` down (ISP side of the link down: carrier loss at the gateway),
        up (clear every fault), blackhole (drop everything forwarded, link up), loss (drop ``percent`` %)."""
        if side not in ("isp", "lte"):
            raise ValueError(f"unknown side {side!r}: isp or lte")
        if what not in ("down", "up", "blackhole", "loss"):
            raise ValueError(f"unknown fault {what!r}: down, up, blackhole or loss")
        if what == "loss":
            if percent is None or not 0 <= percent <= 100:
                raise ValueError("loss needs a percentage between 0 and 100")
        rule = ""
        if what == "blackhole":
            rule = "drop"
        elif what == "loss":
            # applied to both directions, so that a round trip (a ping) is lost ``percent`` % of the time
            one_way = 1.0 - (1.0 - (percent or 0.0) / 100.0) ** 0.5
            rule = f"numgen random mod 10000 < {int(round(one_way * 10000))} drop"
        script = f"flush chain inet {FAULT_TABLE} faults\n"
        if rule:
            script += f"add rule inet {FAULT_TABLE} faults {rule}\n"
        self._nft(side, script)
        self._ip(side, "link", "set", "eth0", "down" if what == "down" else "up")

    def flap(self, side: str, hz: float, seconds: float) -> int:
        """Toggle the carrier of ``side``'s link to the gateway ``hz`` times a second (down, up) for
        ``seconds``, ending up; return the number of down/up cycles.  One netlink socket in the namespace,
        so each toggle costs microseconds, not an ``ip`` process."""
        if side not in ("isp", "lte"):
            raise ValueError(f"unknown side {side!r}: isp or lte")
        if not 0 < hz <= 100 or not 0 < seconds <= 600:
            raise ValueError("flap needs 0 < HZ <= 100 and 0 < SECONDS <= 600")
        from pyroute2 import IPRoute

        half = 0.5 / hz
        cycles = 0
        with IPRoute(netns=self.ns[side]) as ipr:
            idx = ipr.link_lookup(ifname="eth0")[0]
            end = time.monotonic() + seconds
            try:
                while time.monotonic() < end:
                    ipr.link("set", index=idx, state="down")
                    time.sleep(half)  # the fault's own rhythm, not a wait for an outcome
                    ipr.link("set", index=idx, state="up")
                    cycles += 1
                    time.sleep(half)
            finally:
                ipr.link("set", index=idx, state="up")
        return cycles

    def dns(self, up: bool) -> None:
        """The internet's DNS server answers (``up``) or is blackholed: every packet to it dropped in
        ``{p}inet`` (ICMP and the other hosts untouched)."""
        script = f"table inet {DNS_FAULT_TABLE} {{}}\ndelete table inet {DNS_FAULT_TABLE}\n"
        if not up:
            script += (f"table inet {DNS_FAULT_TABLE} {{\n  chain in {{ type filter hook input priority filter; "
                       f"policy accept;\n    ip daddr {INET_DNS} meta l4proto {{ tcp, udp }} th dport 53 drop\n  }}\n}}\n")
        self._nft("inet", script)

    def dns_down(self) -> bool:
        out = self.run("inet", ["nft", "list", "tables"], check=False).stdout
        return f"inet {DNS_FAULT_TABLE}" in out

    def faults(self) -> dict[str, str]:
        """The current fault per side: up, down, blackhole or ``loss N`` (and ``dns: down`` while the
        internet's DNS server is blackholed)."""
        out: dict[str, str] = {}
        for side in ("isp", "lte"):
            link = self._ip(side, "-o", "link", "show", "eth0").stdout
            rules = self.run(side, ["nft", "list", "chain", "inet", FAULT_TABLE, "faults"]).stdout
            if "state DOWN" in link or ",UP" not in link.replace("<UP", ",UP"):
                out[side] = "down"
            elif "numgen" in rules:
                one_way = int(rules.split("<", 1)[1].split()[0]) / 10000.0
                out[side] = f"loss {100.0 * (1.0 - (1.0 - one_way) ** 2):.0f}"
            elif "drop" in rules:
                out[side] = "blackhole"
            else:
                out[side] = "up"
        if self.dns_down():
            out["dns"] = "down"
        return out

    # ----------------------------------------------------------------------------------- describe
    def describe(self) -> dict[str, Any]:
        """Names and addresses for the lab's status JSON and config."""
        return {
            "netns": dict(self.ns),
            "inet": {"crm": f"http://{INET_CRM}:{CRM_PORT}/" if CRM_PORT != 80 else f"http://{INET_CRM}/",
                     "crm_name": CRM_NAME, "hosts": list(INET_HOSTS), "dns": INET_DNS},
            "lan": {"pc": LAN_PC_ADDR, "gateway": LAN_GW_ADDR, "network": LAN_NET, "interface": GW_LAN_IF},
            "uplinks": {
                "wired": {"interface": GW_WIRED_IF, "address": WIRED_ADDR, "gateway": WIRED_GW_ADDR,
                          "network": WIRED_NET},
                "lte": {"interface": GW_LTE_IF, "address": LTE_ADDR, "gateway": LTE_GW_ADDR,
                        "network": LTE_NET},
            },
        }

    def uplinks_toml(self, wired_table: int = 101, lte_table: int = 102) -> str:
        """The ``[[uplinks]]`` sections of a lab config for this network."""
        hosts = ", ".join(f'"{h}"' for h in INET_HOSTS)
        return (f'[[uplinks]]\nname = "wired"\ninterface = "{GW_WIRED_IF}"\nrole = "primary"\n'
                f'gateway = "{WIRED_GW_ADDR}"\nsource = "{WIRED_ADDR}"\ntable = {wired_table}\n'
                f'probe_targets = [{hosts}]\ndns = ["{INET_DNS}"]\n\n'
                f'[[uplinks]]\nname = "lte"\ninterface = "{GW_LTE_IF}"\nrole = "backup"\n'
                f'gateway = "{LTE_GW_ADDR}"\nsource = "{LTE_ADDR}"\ntable = {lte_table}\n'
                f'probe_targets = [{hosts}]\ndns = ["{INET_DNS}"]\n')


# ------------------------------------------------------------------------- DNS + HTTP in inet

class _CrmHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b"<!doctype html><title>CRM</title><h1>CRM</h1><p>ok</p>\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def serve(dns_addr: str, http_addr: str, http_port: int) -> None:
    """Answer DNS on ``dns_addr``:53 (every A query: the CRM name → the CRM, anything else → the first
    internet host) and HTTP on ``http_addr``:``http_port`` until SIGTERM."""
    from dnslib import QTYPE, RR, A
    from dnslib.server import BaseResolver, DNSServer

    class Resolver(BaseResolver):  # type: ignore[misc]
        def resolve(self, request: Any, handler: Any) -> Any:
            reply = request.reply()
            qname = request.q.qname
            if request.q.qtype in (QTYPE.A, QTYPE.ANY):
                addr = INET_CRM if str(qname).rstrip(".") == CRM_NAME else INET_HOSTS[0]
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(addr), ttl=60))
            return reply

    class QuietLogger:
        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: None

    dns = DNSServer(Resolver(), address=dns_addr, port=53, logger=QuietLogger())
    dns.start_thread()
    httpd = ThreadingHTTPServer((http_addr, http_port), _CrmHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    print("ready", flush=True)
    with contextlib.suppress(OSError):
        sys.stdout.close()
    stop.wait()
    httpd.shutdown()
    dns.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.lab.net")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="DNS + HTTP server (runs inside the inet namespace)")
    s.add_argument("--dns", required=True)
    s.add_argument("--http", required=True, help="ADDR:PORT")
    for name in ("create", "destroy", "describe"):
        c = sub.add_parser(name)
        c.add_argument("--prefix", default="og")
    f = sub.add_parser("fault")
    f.add_argument("--prefix", default="og")
    f.add_argument("side", choices=("isp", "lte"))
    f.add_argument("what", choices=("down", "up", "blackhole", "loss"))
    f.add_argument("percent", nargs="?", type=float)
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        host, _, port = args.http.rpartition(":")
        serve(args.dns, host, int(port))
        return 0
    topo = Topology(args.prefix)
    if args.cmd == "create":
        topo.create()
    elif args.cmd == "destroy":
        topo.destroy()
    elif args.cmd == "fault":
        topo.fault(args.side, args.what, args.percent)
    import json
    print(json.dumps(topo.describe(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
