"""The lab's UPS: NUT's real ``upsd`` and ``dummy-ups`` replaying a copy of a real ``upsc`` dump.

Everything lives in one private directory (``conf/`` = NUT_CONFPATH, ``state/`` = NUT_STATEPATH and
NUT_ALTPIDPATH, the replayed ``conf/ups.dev``, ``peer.json`` with ports and pids, logs), so several labs can
run at once and ``stop()`` removes exactly what ``start()`` made.

Mains is cut by editing the replayed file (``dummy-ups`` re-reads it when its mtime changes):

- ``cut()``: ``OB DISCHRG``; a small companion process (``python -m gateway.lab.ups drain``) then lets
  ``battery.runtime`` and ``battery.charge`` fall every ``tick_s`` (ten seconds of runtime per second of
  outage, so a drained battery is minutes away, not an hour), adding ``LB`` at the dump's own
  ``battery.runtime.low`` / ``battery.charge.low``, like a real UPS;
- ``restore()``: ``OL CHRG``, charging back to the dump's charge, then ``OL``; a stopped driver is restarted;
- ``low()``: ``OB DISCHRG LB`` with charge and runtime at the low marks;
- ``comm_lost()``: the driver is stopped, so ``upsd`` reports the UPS stale ("Data stale");
- ``kill_upsd()`` / ``start_upsd()``: ``upsd`` itself dies (SIGKILL) and comes back on the same port.

An object can be re-attached to a running peer from another process with :meth:`UpsPeer.attach`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from gateway.lab.userns import rootless, unprivileged

NUT_BIN = Path(os.environ.get("GATEWAY_LAB_NUT_BIN", "/lib/nut"))
UPSD = NUT_BIN / "upsd"  # not /usr/sbin/upsd: a Debian wrapper that insists on /etc/nut/nut.conf
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DEFAULT_DUMP = SHARED / "nut-ddl" / "APC" / "APC__Smart-UPS_1500__usbhid-ups__2.7.2__01.dev"
RUNTIME_SPEEDUP = 10.0  # seconds of runtime a second of outage costs in the lab
START_TIMEOUT_S = 15.0


class UpsPeerError(RuntimeError):
    """NUT could not be started or answered nonsense."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_pid(pid: int | None, timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; reaps it if it is our child."""
    if not pid or not alive(pid):
        _reap(pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.02)  # poll interval while it exits
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int | None) -> None:
    if pid:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


# ------------------------------------------------------------------------------- the replayed file

def read_dev(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^([a-z0-9_.]+):\s?(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


@contextlib.contextmanager
def _locked(dev: Path) -> Iterator[None]:
    with open(dev.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_vars(dev: Path, values: dict[str, str]) -> None:
    """Replace (or add) ``key: value`` lines; the caller holds the lock.  dummy-ups notices a change by the
    file's mtime in whole seconds, so the mtime steps at least one second past the previous one."""
    text = dev.read_text(encoding="utf-8", errors="replace")
    for key, value in values.items():
        pat = re.compile(rf"^{re.escape(key)}:.*$", re.M)
        line = f"{key}: {value}"
        text = pat.sub(line.replace("\\", "\\\\"), text) if pat.search(text) else text.rstrip("\n") + f"\n{line}\n"
    old_mtime = int(dev.stat().st_mtime)
    tmp = dev.with_suffix(".tmp")
    tmp.write_text(text)
    mtime = max(int(time.time()), old_mtime + 1)
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, dev)


def _num(v: str | None, default: float) -> float:
    try:
        return float(v) if v is not None else default
    except ValueError:
        return default


def _fmt(x: float) -> str:
    return str(int(round(x)))


def drain_step(dev: Path, full: dict[str, str], tick_s: float) -> bool:
    """One tick of the battery model; True if the file changed."""
    with _locked(dev):
        cur = read_dev(dev)
        status = cur.get("ups.status", "OL").split()
        charge = _num(cur.get("battery.charge"), 100.0)
        runtime = _num(cur.get("battery.runtime"), 0.0)
        full_charge = _num(full.get("battery.charge"), 100.0)
        full_runtime = _num(full.get("battery.runtime"), 0.0)
        changes: dict[str, str] = {}
        if "OB" in status:
            if runtime > 0:
                runtime = max(0.0, runtime - tick_s * RUNTIME_SPEEDUP)
                changes["battery.runtime"] = _fmt(runtime)
                if full_runtime > 0:  # charge follows runtime (the load stays the same)
                    charge = min(charge, full_charge * runtime / full_runtime)
                    changes["battery.charge"] = _fmt(charge)
            elif "battery.runtime" not in cur and charge > 0:
                charge = max(0.0, charge - tick_s)
                changes["battery.charge"] = _fmt(charge)
            low = (("battery.runtime" in cur and runtime <= _num(cur.get("battery.runtime.low"), 120.0))
                   or charge <= _num(cur.get("battery.charge.low"), 10.0))
            if low and "LB" not in status:
                changes["ups.status"] = " ".join([*status, "LB"])
        elif "OL" in status and "CHRG" in status:
            charge = min(full_charge, charge + tick_s)
            changes["battery.charge"] = _fmt(charge)
            if "battery.runtime" in cur and full_charge > 0:
                changes["battery.runtime"] = _fmt(full_runtime * charge / full_charge)
            if charge >= full_charge:
                changes["ups.status"] = " ".join(s for s in status if s != "CHRG")
        changes = {k: v for k, v in changes.items() if cur.get(k) != v}
        if changes:
            write_vars(dev, changes)
        return bool(changes)


def _drain_main(dev: Path, full_path: Path, tick_s: float) -> int:
    stop = False

    def _term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    full = read_dev(full_path)
    while not stop:
        with contextlib.suppress(OSError):
            drain_step(dev, full, tick_s)
        end = time.monotonic() + tick_s
        while not stop and time.monotonic() < end:
            time.sleep(0.1)  # the battery model's tick
    return 0


# ------------------------------------------------------------------------------------------ the peer

class NutDirs:
    """A private NUT instance's directories and environment (config, state and pid files under ``workdir``)."""

    workdir: Path

    @property
    def conf(self) -> Path:
        return self.workdir / "conf"

    @property
    def state(self) -> Path:
        return self.workdir / "state"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "NUT_CONFPATH": str(self.conf), "NUT_STATEPATH": str(self.state),
                "NUT_ALTPIDPATH": str(self.state)}

    @staticmethod
    def _as_root() -> list[str]:
        """NUT's daemons drop to user nut unless told to stay root (the lab's private dirs are root's)."""
        return ["-u", "root"] if os.geteuid() == 0 and not rootless() else []

    def _nut_argv(self, program: Path, *args: str) -> list[str]:
        """A NUT daemon's command line: as root, told to stay root; in a rootless lab (where NUT could not
        switch users) as the real user in a nested user namespace, which NUT leaves alone."""
        return unprivileged([str(program), *args, *self._as_root()])


class UpsPeer(NutDirs):
    """NUT upsd + dummy-ups in ``workdir``; ``name@host:port``, user ``gateway`` with SET and FSD rights."""

    name = "ups"
    user = "gateway"
    password = "gateway-lab"

    def __init__(self, workdir: Path | str, dump_path: Path | str | None = None, port: int | None = None,
                 host: str = "127.0.0.1", extra_listen: Sequence[str] = (), tick_s: float = 1.0) -> None:
        self.workdir = Path(workdir)
        self.dump_path = Path(dump_path) if dump_path else DEFAULT_DUMP
        self.host = host
        self.port = port or free_port(host)
        self.extra_listen = list(extra_listen)
        self.tick_s = tick_s
        self.pids: dict[str, int] = {}

    # paths
    @property
    def dev(self) -> Path:
        return self.conf / "ups.dev"

    @property
    def full(self) -> Path:
        return self.workdir / "full.dev"

    @property
    def address(self) -> str:
        return f"{self.name}@{self.host}:{self.port}"

    # life cycle
    @classmethod
    def attach(cls, workdir: Path | str) -> UpsPeer:
        """The peer ``start()`` left running in ``workdir`` (from any process)."""
        info = json.loads((Path(workdir) / "peer.json").read_text())
        peer = cls(workdir, info["dump"], info["port"], info["host"], info.get("extra_listen", ()),
                   info.get("tick_s", 1.0))
        peer.pids = {k: int(v) for k, v in info.get("pids", {}).items()}
        return peer

    def _save(self) -> None:
        info = {"dump": str(self.dump_path), "host": self.host, "port": self.port, "name": self.name,
                "extra_listen": self.extra_listen, "tick_s": self.tick_s, "pids": self.pids,
                "user": self.user, "password": self.password}
        tmp = self.workdir / "peer.json.tmp"
        tmp.write_text(json.dumps(info, indent=1))
        os.replace(tmp, self.workdir / "peer.json")

    def running(self) -> bool:
        return all(alive(self.pids.get(k)) for k in ("upsd", "driver", "drain"))

    def start(self) -> UpsPeer:
        if not (NUT_BIN / "dummy-ups").exists() or not UPSD.exists():
            raise UpsPeerError("NUT is missing (dummy-ups, upsd): apt-get install nut-server nut-client")
        if not self.dump_path.is_file():
            raise UpsPeerError(f"no such UPS dump: {self.dump_path}")
        self.conf.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o770)
        text = self.dump_path.read_text(encoding="utf-8", errors="replace")
        if not re.search(r"^ups\.status:", text, re.M):
            text = text.rstrip("\n") + "\nups.status: OL\n"
        self.full.write_text(text)
        self.dev.write_text(text)
        (self.conf / "nut.conf").write_text("MODE=standalone\n")
        (self.conf / "ups.conf").write_text(
            f"[{self.name}]\n\tdriver = dummy-ups\n\tport = {self.dev}\n\tmode = dummy-once\n"
            f"\tdesc = \"lab UPS replaying {self.dump_path.name}\"\n\tpollinterval = 1\n")
        listen = "".join(f"LISTEN {a} {self.port}\n" for a in [self.host, *self.extra_listen])
        (self.conf / "upsd.conf").write_text(listen + "MAXAGE 5\n")
        users = self.conf / "upsd.users"
        users.write_text(f"[{self.user}]\n\tpassword = {self.password}\n\tactions = SET FSD\n"
                         "\tinstcmds = ALL\n\tupsmon primary\n")
        users.chmod(0o600)
        self._start_driver()
        self._spawn_upsd()
        self._start_drain()
        self._save()
        try:
            self._wait_served()
        except UpsPeerError:
            self.stop()
            raise
        return self

    def _spawn_upsd(self) -> None:
        with open(self.workdir / "upsd.log", "ab") as log:
            upsd = subprocess.Popen(self._nut_argv(UPSD, "-F"), env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, start_new_session=True)
        self.pids["upsd"] = upsd.pid

    def _wait_served(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.upsc().get("ups.status", "WAIT") == "WAIT":
            if not alive(self.pids.get("upsd")) or time.monotonic() > deadline:
                raise UpsPeerError(f"upsd did not serve the UPS within {START_TIMEOUT_S:g} s; "
                                   f"see {self.workdir}/upsd.log")
            time.sleep(0.05)  # poll interval while upsd and the driver start

    def _start_driver(self) -> None:
        with open(self.workdir / "driver.log", "ab") as log:
            p = subprocess.Popen(self._nut_argv(NUT_BIN / "dummy-ups", "-a", self.name, "-F"),
                                 env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True)
        self.pids["driver"] = p.pid

    def _start_drain(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        with open(self.workdir / "drain.log", "ab") as log:
            p = subprocess.Popen([sys.executable, "-m", "gateway.lab.ups", "drain", "--dev", str(self.dev),
                                  "--full", str(self.full), "--tick", str(self.tick_s)],
                                 env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True)
        self.pids["drain"] = p.pid

    def stop(self) -> None:
        """Stop the three processes (by pid) and remove the directory's contents this peer wrote."""
        for key in ("drain", "upsd", "driver"):
            kill_pid(self.pids.get(key))
        self.pids = {}
        for sub in ("conf", "state"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
        for f in ("full.dev", "peer.json", "peer.json.tmp", "upsd.log", "driver.log", "drain.log"):
            with contextlib.suppress(FileNotFoundError):
                (self.workdir / f).unlink()
        with contextlib.suppress(OSError):
            self.workdir.rmdir()

    # faults
    def set_vars(self, **values: str) -> None:
        """Set variables of the replayed dump by NUT name with ``_`` for ``.``: ``battery_charge="50"``."""
        with _locked(self.dev):
            write_vars(self.dev, {k.replace("_", "."): v for k, v in values.items()})

    def cut(self) -> None:
        """Mains fails: on battery, discharging; runtime and charge then fall every tick."""
        self._ensure_driver()
        self.set_vars(ups_status="OB DISCHRG")

    def restore(self) -> None:
        """Mains is back (and the driver, if it was stopped): charging, then online."""
        self._ensure_driver()
        with _locked(self.dev):
            cur = read_dev(self.dev)
            full = read_dev(self.full)
            charging = _num(cur.get("battery.charge"), 100) < _num(full.get("battery.charge"), 100)
            write_vars(self.dev, {"ups.status": "OL CHRG" if charging else "OL"})

    def low(self) -> None:
        """On battery with the battery nearly empty."""
        self._ensure_driver()
        with _locked(self.dev):
            cur = read_dev(self.dev)
            values = {"ups.status": "OB DISCHRG LB",
                      "battery.charge": _fmt(min(_num(cur.get("battery.charge"), 100),
                                                 _num(cur.get("battery.charge.low"), 10)))}
            if "battery.runtime" in cur:
                values["battery.runtime"] = _fmt(min(_num(cur.get("battery.runtime"), 0),
                                                     _num(cur.get("battery.runtime.low"), 120)))
            write_vars(self.dev, values)

    def comm_lost(self) -> None:
        """The USB cable is pulled: the driver stops and upsd reports the UPS stale."""
        kill_pid(self.pids.get("driver"))
        self._save()

    def kill_upsd(self) -> int | None:
        """upsd dies (SIGKILL, like a crash or the OOM killer): the driver keeps running, clients get
        "connection refused".  Returns the pid killed, None if upsd was not running."""
        pid = self.pids.get("upsd")
        if not alive(pid):
            return None
        assert pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.02)  # poll interval while the kernel tears it down
        _reap(pid)
        return pid

    def start_upsd(self) -> int:
        """upsd back (as systemd would restart it), on the same port and config; the driver too if it was
        stopped.  Returns upsd's pid once it serves the UPS again."""
        self._ensure_driver()
        if not alive(self.pids.get("upsd")):
            self._spawn_upsd()
            self._save()
        self._wait_served()
        return self.pids["upsd"]

    def _ensure_driver(self) -> None:
        if not alive(self.pids.get("driver")):
            self._start_driver()
            self._save()

    # reading
    def upsc(self) -> dict[str, str]:
        """``LIST VAR`` through upsd, like ``upsc``; {} while upsd has no data (stale, driver gone, down)."""
        try:
            return self._list_vars()
        except (OSError, UpsPeerError):
            return {}

    def upsc_error(self) -> str | None:
        """upsd's error for the UPS (e.g. ``DATA-STALE``, ``DRIVER-NOT-CONNECTED``), None if it answers."""
        try:
            self._list_vars()
        except UpsPeerError as exc:
            return str(exc)
        except OSError as exc:
            return f"unreachable: {exc}"
        return None

    def _list_vars(self) -> dict[str, str]:
        with socket.create_connection((self.host, self.port), timeout=2) as s:
            f = s.makefile("rw", encoding="utf-8", errors="replace")
            f.write(f"LIST VAR {self.name}\n")
            f.flush()
            first = f.readline().strip()
            if first.startswith("ERR"):
                raise UpsPeerError(first.removeprefix("ERR").strip())
            if not first.startswith("BEGIN"):
                raise UpsPeerError(f"unexpected reply {first!r}")
            out: dict[str, str] = {}
            for line in f:
                if line.startswith("END"):
                    break
                m = re.match(r'VAR \S+ (\S+) "(.*)"$', line.strip())
                if m:
                    out[m.group(1)] = m.group(2).replace('\\"', '"').replace("\\\\", "\\")
            return out

    def status(self) -> str:
        return self.upsc().get("ups.status", "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.lab.ups")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("drain", help="the battery model (the lab starts it)")
    d.add_argument("--dev", required=True, type=Path)
    d.add_argument("--full", required=True, type=Path)
    d.add_argument("--tick", type=float, default=1.0)
    args = ap.parse_args(argv)
    return _drain_main(args.dev, args.full, args.tick)


if __name__ == "__main__":
    sys.exit(main())
