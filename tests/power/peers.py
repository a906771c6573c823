"""Real peers for the power tests: NUT (dummy-ups + upsd) and snmpsim, in private temp dirs.

Uses the lab's ``gateway.lab.ups.UpsPeer`` / ``gateway.lab.snmp.SnmpPeer`` when they exist; until then
these minimal stand-ins with the same surface (start/stop, cut/restore/low/comm_lost, upsc).  Each
starts its processes in their own session and stops exactly those, by pid.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import wait_until

SHARED = Path(__file__).resolve().parents[3] / "shared"
DDL = SHARED / "nut-ddl"
CISCO = SHARED / "snmp" / "cisco-catalyst-3750-48ps.snmprec"
NUT_BIN = Path("/lib/nut")
DEFAULT_DUMP = DDL / "APC" / "APC__Back-UPS_BK650M2-CH__usbhid-ups__2.8.0__01.dev"
RFC3621_ADMIN = "1.3.6.1.2.1.105.1.1.1.3"
TPLINK_ADMIN = "1.3.6.1.4.1.11863.6.56.1.1.2.1.1.2"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(p: subprocess.Popen[bytes] | None) -> None:
    if p is None or p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def nut_available() -> bool:
    return (NUT_BIN / "dummy-ups").exists() and (NUT_BIN / "upsd").exists()


class NutPeer:
    """dummy-ups replaying a copy of a dump, served by upsd on a free loopback port."""

    user, password = "gateway", "gateway-secret"

    def __init__(self, workdir: Path, dump_path: Path = DEFAULT_DUMP, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.dump_path = Path(dump_path)
        self.name, self.host = "ups", "127.0.0.1"
        self.port = port or free_port()
        self.dev = self.workdir / "conf" / "ups.dev"
        self.driver: subprocess.Popen[bytes] | None = None
        self.upsd: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "NUT_CONFPATH": str(self.workdir / "conf"),
                "NUT_STATEPATH": str(self.workdir / "state"), "NUT_ALTPIDPATH": str(self.workdir / "state")}

    def start(self) -> NutPeer:
        conf, state = self.workdir / "conf", self.workdir / "state"
        conf.mkdir(parents=True, exist_ok=True)
        state.mkdir(exist_ok=True)
        state.chmod(0o777)
        text = self.dump_path.read_text(encoding="utf-8", errors="replace")
        if not re.search(r"^ups\.status:", text, re.M):
            text += "\nups.status: OL\n"
        self.dev.write_text(text)
        (conf / "nut.conf").write_text("MODE=standalone\n")
        (conf / "ups.conf").write_text(f"[ups]\n\tdriver = dummy-ups\n\tport = {self.dev}\n\tdesc = \"test\"\n"
                                       "\tpollinterval = 1\n")
        (conf / "upsd.users").write_text(f"[{self.user}]\n\tpassword = {self.password}\n\tactions = SET FSD\n"
                                         "\tinstcmds = ALL\n")
        root = ["-u", "root"] if os.geteuid() == 0 else []
        self._start_driver(root)
        for _attempt in range(3):
            (conf / "upsd.conf").write_text(f"LISTEN 127.0.0.1 {self.port}\nMAXAGE 5\n")
            self.upsd = subprocess.Popen([str(NUT_BIN / "upsd"), "-F", *root], env=self.env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            upsd = self.upsd

            def served(p: subprocess.Popen[bytes] = upsd) -> bool:
                return p.poll() is not None or self.upsc().get("ups.status", "WAIT") != "WAIT"
            wait_until(served, 15, what="upsd serving the dump")
            if upsd.poll() is None:
                return self
            # our upsd is gone (the free port was taken meanwhile): whatever answered there is not ours
            self.port = free_port()
        raise RuntimeError("upsd would not start on a free loopback port")

    def _start_driver(self, root: list[str]) -> None:
        self.driver = subprocess.Popen([str(NUT_BIN / "dummy-ups"), "-a", "ups", "-F", *root], env=self.env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        _stop(self.upsd)
        _stop(self.driver)

    def upsc(self) -> dict[str, str]:
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as s:
                f = s.makefile("rw")
                f.write(f"LIST VAR {self.name}\n")
                f.flush()
                out: dict[str, str] = {}
                line = f.readline()
                if not line.startswith("BEGIN"):
                    return {}
                while True:
                    line = f.readline()
                    if not line or line.startswith("END"):
                        return out
                    m = re.match(r'VAR \S+ (\S+) "(.*)"$', line.strip())
                    if m:
                        out[m.group(1)] = m.group(2)
        except OSError:
            return {}

    def set_vars(self, **values: str) -> None:
        """Rewrite the dump with new values (dummy-ups re-reads it when its mtime changes)."""
        text = self.dev.read_text()
        for key, value in values.items():
            key = key.replace("_", ".")
            pat = re.compile(rf"^{re.escape(key)}:.*$", re.M)
            text = pat.sub(f"{key}: {value}", text) if pat.search(text) else text + f"\n{key}: {value}\n"
        tmp = self.dev.with_suffix(".tmp")
        tmp.write_text(text)
        # dummy-ups notices a change by the file's mtime in whole seconds: two edits within one second
        # must still differ, so the mtime steps forward at least a second each time
        self._mtime_s = max(int(time.time()), getattr(self, "_mtime_s", 0) + 1)
        os.replace(tmp, self.dev)
        os.utime(self.dev, (self._mtime_s, self._mtime_s))

    def status(self) -> str:
        return self.upsc().get("ups.status", "")

    def cut(self) -> None:
        self.set_vars(ups_status="OB DISCHRG")

    def restore(self) -> None:
        self.set_vars(ups_status="OL CHRG")

    def low(self) -> None:
        self.set_vars(ups_status="OB DISCHRG LB", battery_charge="8", battery_runtime="60")

    def comm_lost(self) -> None:
        """The driver dies: upsd reports the UPS stale."""
        _stop(self.driver)

    def comm_back(self) -> None:
        self._start_driver(["-u", "root"] if os.geteuid() == 0 else [])


def ups_peer(workdir: Path, dump: Path = DEFAULT_DUMP) -> NutPeer:
    return NutPeer(workdir, dump)


# ------------------------------------------------------------------------------------------- snmp

def snmpsim_available() -> bool:
    return shutil.which("snmpsim-command-responder", path=str(Path(__file__).resolve().parents[2] / ".venv/bin")) \
        is not None


def _writable(line: str, prefix: str) -> str:
    oid, tag, value = line.split("|", 2)
    if oid.startswith(prefix + ".") and ":" not in tag:
        return f"{oid}|{tag}:writecache|value={value}"
    return line


# snmpsim drops root for nobody; the interpreter's stdlib may live where nobody cannot read it (a pyenv
# under /root), so what it imports lazily (encodings, dbm) is imported before the drop.
_LAUNCH = """
import sys, importlib, pkgutil, encodings
for m in pkgutil.iter_modules(encodings.__path__):
    try:
        importlib.import_module("encodings." + m.name)
    except Exception:
        pass
import dbm, dbm.dumb, shelve, pickle, json, uuid, random, hashlib, hmac
sys.argv[0] = "snmpsim-command-responder"
from snmpsim.commands.responder import main
sys.exit(main())
"""


class SnmpSim:
    """snmpsim-command-responder (as nobody) serving the real Cisco walk with writable
    pethPsePortAdminEnable rows, and a TP-Link context; v2c communities and the v3 user of the brief."""

    v3_user, v3_auth, v3_priv = "gateway", "gatewayauth", "gatewaypriv"

    def __init__(self, port: int | None = None, tplink_ports: int = 8, more_argv: tuple[str, ...] = ()) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port(socket.SOCK_DGRAM)
        self.tplink_ports = tplink_ports
        self.more_argv = more_argv  # e.g. more --v3-user=... groups
        self.dir = Path(tempfile.mkdtemp(prefix="og-snmp-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SnmpSim:
        self.dir.chmod(0o755)
        data = self.dir / "data"
        data.mkdir()
        cisco = "\n".join(_writable(line, RFC3621_ADMIN) for line in CISCO.read_text().splitlines() if line)
        for community in ("public", "private"):
            (data / f"{community}.snmprec").write_text(cisco + "\n")
        tp = [f"{TPLINK_ADMIN}.{p}|2:writecache|value=1" for p in range(1, self.tplink_ports + 1)]
        tp += [f"1.3.6.1.4.1.11863.6.56.1.1.2.1.1.7.{p}|2|{40 + p}" for p in range(1, self.tplink_ports + 1)]
        (data / "tplink.snmprec").write_text("\n".join(tp) + "\n")
        cache = self.dir / "cache"
        cache.mkdir()
        for p in (data, cache):
            p.chmod(0o777)
        for f in data.iterdir():
            f.chmod(0o644)
        argv = [sys.executable, "-c", _LAUNCH, f"--data-dir={data}", f"--cache-dir={cache}",
                f"--agent-udpv4-endpoint={self.host}:{self.port}",
                f"--v3-user={self.v3_user}", f"--v3-auth-key={self.v3_auth}", "--v3-auth-proto=SHA",
                f"--v3-priv-key={self.v3_priv}", "--v3-priv-proto=AES", "--logging-method=stderr", "--log-level=error",
                *self.more_argv]
        if os.geteuid() == 0:
            argv += ["--process-user=nobody", "--process-group=nogroup"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(self.dir / "log", "wb"),
                                     start_new_session=True, cwd=self.dir)
        wait_until(lambda: self.answers() or self.proc is None or self.proc.poll() is not None, 60,
                   interval=0.2, what="snmpsim answering")
        assert self.proc.poll() is None, "snmpsim exited"
        return self

    def answers(self) -> bool:
        return self.get(f"{RFC3621_ADMIN}.3.3") is not None

    def get(self, oid: str, community: str = "public") -> int | None:
        """A plain v2c GET as a separate process would do it (the test's own view of the switch)."""
        import asyncio

        from pysnmp.hlapi.v3arch import asyncio as h

        async def go() -> int | None:
            eng = h.SnmpEngine()
            try:
                t = await h.UdpTransportTarget.create((self.host, self.port), timeout=0.5, retries=0)
                ei, es, _, vb = await h.get_cmd(eng, h.CommunityData(community), t, h.ContextData(),
                                                h.ObjectType(h.ObjectIdentity(oid)))
                if ei or es:
                    return None
                try:
                    return int(vb[0][1])
                except (TypeError, ValueError):
                    return None
            finally:
                eng.close_dispatcher()

        # its own loop in its own thread: callable from sync tests and from inside a running loop alike
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()

    def admin(self, port: int, group: int = 3) -> int | None:
        return self.get(f"{RFC3621_ADMIN}.{group}.{port}")

    def stop(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)
