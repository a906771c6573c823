"""The lab without root (gateway.lab.userns): a normal user brings a whole lab up in user namespaces,
acts on it with later, separate ``gateway lab`` commands, and takes it down leaving nothing behind.

The test runs as root (CI) and plays the normal user with the lab's own unprivileged user (the one
snmpsim runs as).  When the checkout or the interpreter sits under a directory that user cannot enter (a
venv whose Python lives under /root, say), the user's commands run in a mount namespace of the test's
where those paths, and only they, are bound back at the same place behind a tmpfs over the closed
directory, so the very same interpreter and checkout are used.  Traffic goes only to the host's loopback
and the lab's own namespaces."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.lab.userns import members
from tests.conftest import needs_root, wait_until
from tests.lab.test_lab import recorded_pids

pytestmark = [pytest.mark.lab, needs_root]

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_KEYS = {"web", "ups", "switches", "netns", "modem", "config", "inet", "lan"}

# the test's mount namespace: a tmpfs over each closed directory, the needed paths bound back in
_HELPER = r"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
def mount(src, dst, fstype, flags, data=None):
    if libc.mount(src.encode(), dst.encode(), fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                  data.encode() if data else None) != 0:
        raise OSError(ctypes.get_errno(), f"mount {src} on {dst}")
spec = [line.split("\t") for line in sys.argv[1].splitlines()]  # closed dir, path under it
fds = {path: os.open(path, os.O_PATH) for _, path in spec}
for closed in dict.fromkeys(c for c, _ in spec):
    mount("tmpfs", closed, "tmpfs", 0, "mode=755")
for _, path in spec:
    os.makedirs(path, mode=0o755, exist_ok=True)
    mount(f"/proc/self/fd/{fds[path]}", path, None, 0x1000 | 0x4000)  # MS_BIND | MS_REC
sigs = {signal.SIGTERM, signal.SIGINT}
signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
print("ready", flush=True)
signal.sigwait(sigs)
"""


def _traversable(path: Path, uid: int, gid: int) -> bool:
    st = path.stat()
    bit = 0o100 if st.st_uid == uid else 0o010 if st.st_gid == gid else 0o001
    return bool(st.st_mode & bit)


def _closed_ancestor(path: Path, uid: int, gid: int) -> Path | None:
    """The outermost directory on the way to ``path`` that the user cannot enter, if any."""
    for p in [*reversed(path.parents), path]:
        if p.is_dir() and not _traversable(p, uid, gid):
            return p
    return None


class UserLab:
    """A lab of the unprivileged user, driven through ``gateway lab`` as that user."""

    def __init__(self, home: Path, uid: int, gid: int) -> None:
        self.home, self.uid, self.gid = home, uid, gid
        self.prefix = f"r{os.getpid() % 10000}u"
        self.base = home / "labs"
        self.helper: subprocess.Popen[str] | None = None
        site = [p for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]} if p]
        self.env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                    "HOME": str(home), "GATEWAY_LAB_DIR": str(self.base), "GATEWAY_LAB_PREFIX": self.prefix,
                    "PYTHONPATH": os.pathsep.join([str(ROOT), *site]), "PYTHONDONTWRITEBYTECODE": "1"}
        needed = {ROOT, ROOT.parent / "shared", Path(sys.prefix), Path(sys.base_prefix).resolve(),
                  Path(sys.executable).resolve().parent, *(Path(p) for p in site)}
        spec = []
        for path in sorted(n for n in needed if n.exists()):
            closed = _closed_ancestor(path, uid, gid)
            if closed is not None:
                spec.append(f"{closed}\t{path}")
        if spec:
            self.helper = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", sys.executable,
                                            "-c", _HELPER, "\n".join(spec)], stdout=subprocess.PIPE, text=True,
                                           start_new_session=True)
            assert self.helper.stdout is not None
            line = self.helper.stdout.readline()
            if line.strip() != "ready":
                self.close()
                pytest.skip(f"the checkout or interpreter is closed to an unprivileged user ({spec}) and a mount "
                            "namespace to open it could not be made")

    def argv(self, *argv: str) -> list[str]:
        enter = ["nsenter", "-t", str(self.helper.pid), "--mount", f"--wd={self.home}", "--"] if self.helper else []
        return [*enter, "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--", *argv]

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*argv), capture_output=True, text=True, env=self.env, cwd=str(self.home),
                              timeout=timeout)

    def lab(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "gateway", "lab", *args, timeout=timeout)

    def holder(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads((self.base / f".{self.prefix}.userns").read_text())
        return info

    def in_lab(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """``argv`` as root in the lab's mount namespace (its /run/netns), for looking into its namespaces."""
        return subprocess.run(["nsenter", "-t", str(self.holder()["pid"]), "--mount", "--", *argv],
                              capture_output=True, text=True, timeout=30)

    def close(self) -> None:
        if self.helper is not None:
            self.helper.send_signal(signal.SIGTERM)
            self.helper.wait(timeout=10)
            self.helper = None


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _ups_status(address: str) -> str:
    name, _, hostport = address.partition("@")
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2) as s:
            s.sendall(f"GET VAR {name} ups.status\n".encode())
            reply = s.makefile().readline()
    except OSError:
        return ""
    return reply.split('"')[1] if reply.startswith("VAR") else ""


@pytest.fixture(scope="module")
def user_lab() -> Iterator[UserLab]:
    from gateway.lab.snmp import ensure_lab_user

    pw = ensure_lab_user()
    closed = [p for p in (ROOT / "gateway" / "lab" / "cli.py", ROOT / "gateway" / "__main__.py")
              if not p.stat().st_mode & 0o004 and p.stat().st_uid != pw.pw_uid]
    if closed:
        pytest.skip(f"the checkout's files are not readable by an unprivileged user (umask?): {closed[0]}")
    home = Path(tempfile.mkdtemp(prefix="ogt-rootless-"))
    os.chown(home, pw.pw_uid, pw.pw_gid)
    home.chmod(0o700)
    run = UserLab(home, pw.pw_uid, pw.pw_gid)
    userns: int | None = None
    try:
        probe = run.run("unshare", "--user", "--map-root-user", "--mount", "true")
        if probe.returncode != 0:
            pytest.skip(f"the kernel refuses user namespaces to a normal user: {probe.stderr.strip()}")
        yield run
    finally:
        with_lab = (run.base / f".{run.prefix}.userns").exists()
        if with_lab:
            userns = run.holder().get("userns")
            run.lab("down")
        if isinstance(userns, int):  # whatever a failed test left in the lab's namespace: the test started it
            for pid in members(userns, uid=pw.pw_uid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        run.close()
        shutil.rmtree(home, ignore_errors=True)


def test_a_normal_user_brings_a_lab_up_acts_on_it_and_takes_it_down(user_lab: UserLab) -> None:
    lab = user_lab
    t0 = time.monotonic()
    up = lab.lab("up", timeout=120)
    up_s = time.monotonic() - t0
    assert up.returncode == 0, up.stdout + up.stderr
    assert "rootless" in up.stdout
    holder = lab.holder()
    assert _running(holder["pid"])

    # a later, separate command sees the same lab: the contract's keys
    r = lab.lab("status", "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert CONTRACT_KEYS <= set(st)
    assert st["web"].startswith("http://127.0.0.1:")
    assert st["ups"].startswith("ups@127.0.0.1:")
    assert set(st["netns"]) == {"gw", "isp", "lte", "inet", "lan"}
    assert st["faults"] == {"isp": "up", "lte": "up"}
    assert st["mgmt"]["relayed"] is True
    # the namespaces are the lab's own: not in the host's /run/netns, in the lab's
    host_netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    assert st["netns"]["gw"] not in host_netns
    route = lab.in_lab("ip", "-n", st["netns"]["gw"], "route", "show", "default")
    assert route.returncode == 0 and "via 192.0.2.1" in route.stdout, route.stdout + route.stderr

    # the gateway's namespace reaches upsd and the switch on the host's loopback through the relays
    mgmt, ups_port = st["mgmt"]["host"], st["ups"].rsplit(":", 1)[1]
    r = lab.in_lab("ip", "netns", "exec", st["netns"]["gw"], "upsc", f"ups@{mgmt}:{ups_port}", "ups.status")
    assert r.returncode == 0 and r.stdout.strip().startswith("OL"), r.stdout + r.stderr
    core = st["switches"]["core"]
    r = lab.in_lab("ip", "netns", "exec", st["netns"]["gw"], "snmpget", "-v2c", "-c", "public", "-Oqv", "-t", "2",
                   f"{mgmt}:{core['port']}", "1.3.6.1.2.1.105.1.1.1.3.3.3")
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stdout + r.stderr

    # a fault through a later command, seen by an outsider through upsd within 2 s
    r = lab.lab("power", "cut")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: _ups_status(st["ups"]).startswith("OB"), timeout=2.0, what="upsd to report OB")

    # the daemon in the lab serves its page on the host's 127.0.0.1
    r = lab.lab("daemon", "start", timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    with urllib.request.urlopen(st["web"] + "/healthz", timeout=5) as resp:
        assert resp.status == 200

    # down leaves nothing: no process of the lab, no namespace (they die with it), no file
    lab_dir = lab.base / lab.prefix
    pids = [*recorded_pids(lab_dir), holder["pid"]]
    t0 = time.monotonic()
    r = lab.lab("down")
    down_s = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert "namespaces" in r.stdout
    assert not members(holder["userns"], uid=lab.uid)
    assert not [p for p in pids if _running(p)]
    assert not lab.base.exists() or not any(lab.base.iterdir()), list(lab.base.iterdir())
    r = lab.lab("status", "--json")
    assert r.returncode == 1 and "no lab" in r.stderr
    print(f"rootless lab: up {up_s:.1f} s, down (with the daemon) {down_s:.1f} s")
