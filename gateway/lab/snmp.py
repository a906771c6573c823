"""The lab's PoE switches: snmpsim serving a real walk, with the PoE on/off rows writable.

One ``snmpsim-command-responder`` process per switch, each on its own UDP port (on 127.0.0.1 and any
extra address, e.g. the lab's management address that the gateway namespace reaches).  snmpsim refuses
to run as root, so it runs as the unprivileged system user ``gateway-lab`` (created if missing) with a
private copy of the data readable by that user:

- the data file is served under the v2c communities ``public`` and ``private`` (in snmpsim the community
  is the data file's name) and to the v3 user ``gateway`` (auth ``gatewayauth`` SHA, priv ``gatewaypriv``
  AES) with the context ``private`` (or ``public``): snmpsim has no data for the empty v3 context, so a
  lab switch used over v3 needs ``context = "private"`` in its config;
- rows under :data:`WRITABLE` (pethPsePortAdminEnable of RFC 3621, tpPoePortStatus of TP-Link) get snmpsim's
  ``writecache`` variation, so a SET sticks and a GET reads it back; other values are refused like a real
  switch would (wrongValue).  A restarted simulator starts with every port on again.

``SnmpPeer.attach(workdir)`` re-attaches from another process; :data:`CISCO` and :data:`TPLINK` are the two
data files of the lab.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.lab.ups import alive, kill_pid
from gateway.lab.userns import rootless, unprivileged

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CISCO = SHARED / "snmp" / "cisco-catalyst-3750-48ps.snmprec"
TPLINK = Path(__file__).resolve().parent / "data" / "tplink-poe.snmprec"
RFC3621_ADMIN = "1.3.6.1.2.1.105.1.1.1.3"  # pethPsePortAdminEnable.<group>.<port>: 1 on, 2 off
TPLINK_ADMIN = "1.3.6.1.4.1.11863.6.56.1.1.2.1.1.2"  # tpPoePortStatus.<port>: 1 on, 0 off
WRITABLE = {RFC3621_ADMIN: (1, 2), TPLINK_ADMIN: (0, 1)}
LAB_USER = "gateway-lab"
V3_USER, V3_AUTH, V3_PRIV = "gateway", "gatewayauth", "gatewaypriv"
START_TIMEOUT_S = 60.0


class SnmpPeerError(RuntimeError):
    """snmpsim could not be started."""


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ensure_lab_user() -> pwd.struct_passwd:
    """The unprivileged system user the simulator runs as (``useradd --system`` if missing)."""
    try:
        return pwd.getpwnam(LAB_USER)
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise SnmpPeerError(f"user {LAB_USER} is missing and only root can add it "
                            f"(sudo useradd --system --user-group --no-create-home {LAB_USER})")
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", LAB_USER], check=True, capture_output=True, timeout=30)
    return pwd.getpwnam(LAB_USER)


def writable_snmprec(text: str) -> str:
    """The walk with every row under :data:`WRITABLE` turned into a writecache row (values outside the
    MIB's enumeration are refused with wrongValue)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        oid, _, rest = line.partition("|")
        tag, _, value = rest.partition("|")
        for prefix, (lo, hi) in WRITABLE.items():
            if oid.startswith(prefix + ".") and tag == "2":
                line = f"{oid}|2:writecache|value={value},vlist=lt:{lo}:wrongvalue:gt:{hi}:wrongvalue"
                break
        out.append(line)
    return "\n".join(out) + "\n"


def _python_for(user: str) -> list[str]:
    """An interpreter the lab user can run: the system one if it matches ours (the venv's may live under
    /root), with our site-packages on its path."""
    system = Path("/usr/bin/python3")
    if system.exists():
        ver = subprocess.run([str(system), "-c", "import sys;print(sys.version_info[:2])"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        if ver == str(tuple(sys.version_info[:2])):
            return [str(system), "-s"]
    return [sys.executable, "-s"]


_LAUNCH = ("import sys; sys.argv[0] = 'snmpsim-command-responder'; "
           "from snmpsim.commands.responder import main; sys.exit(main())")


class SnmpPeer:
    """snmpsim for one switch in ``workdir``: ``host:port`` (plus ``extra_listen`` addresses, same port)."""

    def __init__(self, workdir: Path | str, host: str = "127.0.0.1", port: int | None = None,
                 data_file: Path | str = CISCO, extra_listen: Sequence[str] = ()) -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.port = port or free_udp_port(host)
        self.data_file = Path(data_file)
        self.extra_listen = list(extra_listen)
        self.pid: int | None = None
        self.rundir: Path | None = None
        self.community, self.read_community = "private", "public"
        self.v3_user, self.v3_auth, self.v3_priv = V3_USER, V3_AUTH, V3_PRIV

    @classmethod
    def attach(cls, workdir: Path | str) -> SnmpPeer:
        info = json.loads((Path(workdir) / "peer.json").read_text())
        peer = cls(workdir, info["host"], info["port"], info["data_file"], info.get("extra_listen", ()))
        peer.pid = info.get("pid")
        peer.rundir = Path(info["rundir"]) if info.get("rundir") else None
        return peer

    def _save(self) -> None:
        info = {"host": self.host, "port": self.port, "data_file": str(self.data_file),
                "extra_listen": self.extra_listen, "pid": self.pid,
                "rundir": str(self.rundir) if self.rundir else None}
        (self.workdir / "peer.json").write_text(json.dumps(info, indent=1))

    def running(self) -> bool:
        return alive(self.pid)

    def start(self) -> SnmpPeer:
        if not self.data_file.is_file():
            raise SnmpPeerError(f"no such SNMP data file: {self.data_file}")
        # in a rootless lab (gateway.lab.userns) no other user exists: snmpsim runs as the real user instead,
        # in a nested user namespace where it is not root (unprivileged() below)
        user = None if rootless() else ensure_lab_user()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # the data lives where the lab user can reach it (the workdir's parents may be private to root)
        self.rundir = Path(tempfile.mkdtemp(prefix="og-snmpsim-"))
        self.rundir.chmod(0o755)
        data, cache = self.rundir / "data", self.rundir / "cache"
        for d in (data, cache):
            d.mkdir()
        text = writable_snmprec(self.data_file.read_text(encoding="utf-8", errors="replace"))
        # the community (v2c) or the context name (v3) names the data file in snmpsim
        for name in (self.read_community, self.community):
            (data / f"{name}.snmprec").write_text(text)
        for p in (data, cache, *data.iterdir()):
            if user is not None:
                os.chown(p, user.pw_uid, user.pw_gid)
        site = [p for p in sys.path if p.endswith("site-packages")]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(cache), "PYTHONPATH": os.pathsep.join(site),
               "PYTHONDONTWRITEBYTECODE": "1"}
        argv = [*_python_for(LAB_USER), "-c", _LAUNCH, f"--data-dir={data}", f"--cache-dir={cache}",
                *(f"--agent-udpv4-endpoint={h}:{self.port}" for h in [self.host, *self.extra_listen]),
                f"--v3-user={self.v3_user}", f"--v3-auth-key={self.v3_auth}", "--v3-auth-proto=SHA",
                f"--v3-priv-key={self.v3_priv}", "--v3-priv-proto=AES",
                "--logging-method=stderr", f"--log-level={os.environ.get('GATEWAY_LAB_SNMP_LOG', 'error')}"]
        argv = unprivileged(argv)
        as_user: dict[str, object] = {}
        if user is not None and os.geteuid() == 0:
            as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        with open(self.workdir / "snmpsim.log", "ab") as log:
            proc = subprocess.Popen(argv, env=env, cwd=str(self.workdir), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=log, start_new_session=True, **as_user)  # type: ignore[call-overload]
        self.pid = proc.pid
        self._save()
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.get("1.3.6.1.2.1.1.1.0", timeout_s=0.5) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.workdir / "snmpsim.log").read_text(errors="replace")[-400:]
                self.stop()
                raise SnmpPeerError(f"snmpsim did not answer on {self.host}:{self.port}: {tail.strip()}")
            time.sleep(0.1)  # poll interval while snmpsim indexes its data
        return self

    def stop(self) -> None:
        kill_pid(self.pid)
        self.pid = None
        if self.rundir is not None and self.rundir.name.startswith("og-snmpsim-"):
            shutil.rmtree(self.rundir, ignore_errors=True)
        self.rundir = None
        for f in ("peer.json", "snmpsim.log"):
            with contextlib.suppress(FileNotFoundError):
                (self.workdir / f).unlink()
        with contextlib.suppress(OSError):
            self.workdir.rmdir()

    # the test's own view through net-snmp's tools (a separate client, as an outsider would see it)
    def get(self, oid: str, community: str = "public", timeout_s: float = 1.0) -> str | None:
        out = subprocess.run(["snmpget", "-v2c", "-c", community, "-On", "-Oqv", "-t", str(timeout_s), "-r", "0",
                              f"{self.host}:{self.port}", oid], capture_output=True, text=True, timeout=30)
        if out.returncode != 0 or "No Such" in out.stdout:
            return None
        return out.stdout.strip().strip('"')

    def set(self, oid: str, value: int, community: str = "private") -> bool:
        out = subprocess.run(["snmpset", "-v2c", "-c", community, "-t", "1", "-r", "1", f"{self.host}:{self.port}",
                              oid, "i", str(value)], capture_output=True, text=True, timeout=30)
        return out.returncode == 0

    def admin(self, port: int, group: int = 3) -> int | None:
        oid = f"{TPLINK_ADMIN}.{port}" if self.data_file.name == TPLINK.name else f"{RFC3621_ADMIN}.{group}.{port}"
        v = self.get(oid)
        return int(v) if v is not None and v.lstrip("-").isdigit() else None
