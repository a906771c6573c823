"""The lab without root: in a user namespace of its own (``gateway lab ...`` run by a normal user).

Where the kernel lets an unprivileged user make user namespaces (probed with ``unshare -Urm true``), a
non-root ``gateway lab up|run|...`` runs the lab inside a user + mount namespace made for that lab:

- a *holder* process (``python -m gateway.lab.userns hold``, started through ``unshare --user
  --map-root-user --mount``) keeps the two namespaces alive for as long as the lab is up.  Inside them the
  user is root (uid 0, mapped to the real user; no other uid exists there), and ``/run/netns`` is a
  private tmpfs, so the lab's named network namespaces belong to this lab alone (neither the host's nor
  another lab's ``ip netns`` see them).  Its pid, start time and user-namespace inode are recorded in
  ``<lab base dir>/.<prefix>.userns``;
- every ``gateway lab`` command of a normal user enters those namespaces (like ``nsenter --user --mount``)
  and runs there as the lab's root, with ``$GATEWAY_LAB_DIR`` set to the user's own lab base dir
  (``$XDG_RUNTIME_DIR/office-gateway-lab``, or ``/tmp/office-gateway-lab-UID/office-gateway-lab``); so
  ``power cut``, ``isp down``, ``status --json``, ``down``, ... act on the lab an earlier ``up`` made;
- the network namespace stays the host's: the lab's peers listen on the host's 127.0.0.1 and the status
  page socket is made there and passed to the daemon, as with root.  The gateway namespace cannot have a
  link to the host (only root can add one there), so the lab's management address lives on ``lo`` in
  ``{p}gw`` and small relays (the switches' fronts, :mod:`gateway.lab.relay` for upsd) listen on it inside
  ``{p}gw`` and pass traffic on to the peers on the host's 127.0.0.1;
- programs that refuse to run as root or switch to a user of their own (snmpsim, NUT's ``upsd`` and
  ``dummy-ups``) run in a nested user namespace where they are the real user, not root
  (:func:`unprivileged`);
- when the lab is gone (``down``, a failed first ``up``, Ctrl-C of ``run``) the holder is stopped, and any
  process still in the lab's user namespace with it, so nothing of the lab outlives it.

Root is never asked for.  Without user namespaces a normal user gets one line saying what is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INNER_ENV = "GATEWAY_LAB_USERNS"  # set (to the holder's pid) for a lab command run inside the namespaces
HOLD_READY_TIMEOUT_S = 20.0
MS_BIND, MS_REC = 0x1000, 0x4000


# ------------------------------------------------------------------------------------------ probes

def _map(which: str) -> list[list[int]]:
    try:
        text = Path(f"/proc/self/{which}").read_text()
    except OSError:
        return []
    return [[int(x) for x in line.split()] for line in text.splitlines() if line.strip()]


def rootless() -> bool:
    """True inside a user namespace where uid 0 is one unprivileged user of the host, alone (so no other
    uid can be switched to): the namespaces :func:`start_holder` makes."""
    uids = _map("uid_map")
    return os.geteuid() == 0 and len(uids) == 1 and uids[0][0] == 0 and uids[0][1] != 0 and uids[0][2] == 1


def outer_ids() -> tuple[int, int]:
    """The host's uid and gid of this process (those uid 0 and gid 0 stand for in a rootless lab)."""
    if rootless():
        gids = _map("gid_map")
        return _map("uid_map")[0][1], (gids[0][1] if gids else os.getgid())
    return os.getuid(), os.getgid()


def unprivileged(argv: list[str]) -> list[str]:
    """``argv`` as a program that must not be root: unchanged outside a rootless lab; in one, run in a
    nested user namespace where it is the real (unprivileged) user, with no capabilities over the lab."""
    if not rootless():
        return argv
    uid, gid = outer_ids()
    return ["unshare", "--user", f"--map-user={uid}", f"--map-group={gid}", "--", *argv]


_available: bool | None = None


def available() -> bool:
    """Can this user make user namespaces with a mount namespace (``unshare -Urm true``)?"""
    global _available
    if _available is None:
        try:
            _available = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                                        capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.SubprocessError):
            _available = False
    return _available


def why_unavailable() -> str:
    """One line on why a normal user cannot run the lab here, and what to do."""
    hints = []
    for path, bad, fix in (("/proc/sys/kernel/unprivileged_userns_clone", "0",
                            "sysctl -w kernel.unprivileged_userns_clone=1"),
                           ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
                            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"),
                           ("/proc/sys/user/max_user_namespaces", "0", "sysctl -w user.max_user_namespaces=15000")):
        with contextlib.suppress(OSError):
            if Path(path).read_text().strip() == bad:
                hints.append(fix)
    how = f" (as root: {'; '.join(hints)})" if hints else ""
    return ("the lab needs root, or user namespaces for a normal user, and this kernel refuses them"
            f"{how}: run it with sudo")


# what a lab needs from Debian (a normal user cannot install it): a program each, and its package
NEEDS = (("ip", "iproute2"), ("nft", "nftables"), ("unshare", "util-linux"), ("sysctl", "procps"),
         ("upsc", "nut-client"), ("snmpget", "snmp"))


def missing_packages() -> list[str]:
    """The Debian packages whose programs the lab runs and that are not installed."""
    from gateway.lab.ups import NUT_BIN

    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    missing = [pkg for prog, pkg in NEEDS if shutil.which(prog, path=path) is None]
    if not (NUT_BIN / "upsd").exists() or not (NUT_BIN / "dummy-ups").exists():
        missing.append("nut-server")
    return list(dict.fromkeys(missing))


# ------------------------------------------------------------------------------------------ holder

def holder_file(base: Path, prefix: str) -> Path:
    return base / f".{prefix}.userns"


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _userns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/user").st_ino
    except OSError:
        return None


def read_holder(base: Path, prefix: str) -> dict[str, Any] | None:
    """The holder recorded for this lab, if that very process still runs (pid, start time and namespace)."""
    try:
        info: dict[str, Any] = json.loads(holder_file(base, prefix).read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _start_time(pid) != info.get("start") or _userns_inode(pid) != info.get("userns"):
        return None
    return info


def start_holder(base: Path, prefix: str) -> dict[str, Any]:
    """Make the lab's user + mount namespaces and the process that keeps them; record it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private", "--",
            sys.executable, "-m", "gateway.lab.userns", "hold"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=str(ROOT), start_new_session=True, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()  # "ready" once /run/netns is the lab's own; EOF if it failed
    proc.stdout.close()
    if line.strip() != "ready":
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        err = proc.stderr.read().strip().splitlines()
        proc.wait(timeout=10)
        raise RuntimeError("could not make the lab's user namespace: " + (err[-1] if err else f"exit {proc.returncode}"))
    proc.stderr.close()
    info = {"pid": proc.pid, "start": _start_time(proc.pid), "userns": _userns_inode(proc.pid)}
    holder_file(base, prefix).write_text(json.dumps(info))
    return info


NS_GET_PARENT = 0xB702  # ioctl on a namespace fd: its parent (Linux 4.9)


def _within(pid: int, userns: int) -> bool:
    """Is ``pid`` in the user namespace with inode ``userns`` or one nested in it (snmpsim's, NUT's)?"""
    try:
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
    except OSError:
        return False
    try:
        for _ in range(33):  # the kernel nests user namespaces 32 deep at most
            if os.fstat(fd).st_ino == userns:
                return True
            parent = fcntl.ioctl(fd, NS_GET_PARENT)
            os.close(fd)
            fd = parent
    except OSError:  # the top: no parent, or one beyond this process's sight
        pass
    finally:
        os.close(fd)
    return False


def members(userns: int, uid: int | None = None) -> list[int]:
    """Pids of the running processes (of ``uid``, by default this process's) in the user namespace with inode
    ``userns`` or in one nested in it; zombies waiting for their parent do not count."""
    out = []
    me = os.getuid() if uid is None else uid
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != me:
                continue
        except OSError:
            continue
        if _within(int(entry), userns) and _start_time(int(entry)) is not None:
            out.append(int(entry))
    return out


def stop_holder(base: Path, prefix: str, timeout_s: float = 5.0) -> list[int]:
    """Stop the holder and whatever still runs in the lab's user namespace (SIGTERM, then SIGKILL);
    remove the record.  Returns the pids that were still there besides the holder."""
    try:
        info = json.loads(holder_file(base, prefix).read_text())
    except (OSError, ValueError):
        info = {}
    userns = info.get("userns")
    stray: list[int] = []
    if isinstance(userns, int):
        pids = members(userns)
        stray = [p for p in pids if p != info.get("pid")]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                for pid in pids:
                    with contextlib.suppress(ChildProcessError, OSError):
                        os.waitpid(pid, os.WNOHANG)
                pids = members(userns)
                if not pids:
                    break
                time.sleep(0.02)  # poll interval while they exit
            if not pids:
                break
    with contextlib.suppress(FileNotFoundError):
        holder_file(base, prefix).unlink()
    return stray


# ------------------------------------------------------------------------------- the outside half

def lab_base() -> Path:
    """A normal user's lab base dir, made private to the user (a /tmp path must not be someone else's)."""
    from gateway.lab.cli import base_dir

    base = base_dir()
    base.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    base.mkdir(mode=0o700, exist_ok=True)
    mine = [base.parent, base] if base.parent.name == f"office-gateway-lab-{os.getuid()}" else [base]
    for d in mine:
        if d.stat().st_uid != os.getuid():
            raise RuntimeError(f"{d} belongs to another user: set GATEWAY_LAB_DIR to a directory of yours")
    return base


@contextlib.contextmanager
def _locked(base: Path, prefix: str) -> Iterator[None]:
    with open(base / f".{prefix}.lock", "a") as f:  # the same lock the lab takes inside
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_outside(cmd: str, prefix: str, lab_argv: list[str]) -> int:
    """``gateway lab ...`` for a normal user: into the lab's namespaces (made first by up/run) and run the
    command there; afterwards, a lab that is gone takes its namespaces with it.  ``lab_argv`` is the
    ``gateway`` command line (after the program name)."""
    base = lab_base()
    with _locked(base, prefix):
        holder = read_holder(base, prefix)
        if holder is None:
            if holder_file(base, prefix).exists():  # the holder died: the lab is broken
                if cmd not in ("up", "run", "down"):
                    print(f"gateway lab: the lab '{prefix}' is broken (the process keeping its namespaces is gone): "
                          "gateway lab down removes what is left of it", file=sys.stderr)
                    return 1
                stray = stop_holder(base, prefix)  # what is left of it goes, then a fresh one for up/run
                if stray:
                    print(f"the lab's namespace holder had died: stopped {len(stray)} process(es) left in it")
                if cmd != "down":
                    _remove_lab_dir(base / prefix)
            if cmd not in ("up", "run"):
                rc = _no_lab(base, prefix, cmd)
                _tidy(base, prefix)
                return rc
            missing = missing_packages()
            if missing:
                print(f"gateway lab: missing Debian packages: {' '.join(missing)}; a normal user cannot install "
                      f"them: sudo apt-get install {' '.join(missing)}", file=sys.stderr)
                _tidy(base, prefix)
                return 2
            try:
                if not available():
                    raise RuntimeError(why_unavailable())
                holder = start_holder(base, prefix)
            except (RuntimeError, OSError) as exc:
                print(f"gateway lab: {exc}", file=sys.stderr)
                _tidy(base, prefix)
                return 1
    env = {**os.environ, "GATEWAY_LAB_DIR": str(base), "GATEWAY_LAB_PREFIX": prefix, INNER_ENV: str(holder["pid"])}
    argv = [sys.executable, "-m", "gateway", *lab_argv]
    proc = subprocess.Popen(argv, env=env, preexec_fn=_enter(int(holder["pid"]), os.getcwd()))

    def forward(signum: int, frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    # Ctrl-C reaches the command from the terminal itself (same process group): this side waits for it
    old = {signal.SIGINT: signal.signal(signal.SIGINT, lambda s, f: None),
           signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
           signal.SIGHUP: signal.signal(signal.SIGHUP, forward)}
    try:
        rc = proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    with _locked(base, prefix):
        if (base / prefix / "lab.json").exists():
            return rc
        if read_holder(base, prefix) is not None:  # the lab is gone (down, a failed up, Ctrl-C): its namespaces go
            stop_holder(base, prefix)
        _tidy(base, prefix)
    return rc


def _tidy(base: Path, prefix: str) -> None:
    """Remove the lab's lock, and the base dir (and its /tmp parent) if no other lab is left in them."""
    if holder_file(base, prefix).exists():
        return
    with contextlib.suppress(OSError):
        (base / f".{prefix}.lock").unlink()
    with contextlib.suppress(OSError):
        base.rmdir()
    if base.name == "office-gateway-lab" and base.parent.name == f"office-gateway-lab-{os.getuid()}":
        with contextlib.suppress(OSError):
            base.parent.rmdir()


CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000


def _enter(pid: int, cwd: str) -> Any:
    """What the child runs before exec to join the holder's user and mount namespaces as their root, like
    ``nsenter --user --mount`` (which cannot be used: it calls setgroups(), and a user namespace made
    without root may not).  Its cwd follows (joining a mount namespace moves it to /)."""
    def enter() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fds = [os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY) for ns in ("user", "mnt")]
        for fd, kind in zip(fds, (CLONE_NEWUSER, CLONE_NEWNS), strict=True):
            if libc.setns(fd, kind) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns: {os.strerror(err)}")
            os.close(fd)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        os.chdir(cwd)
    return enter


def _remove_lab_dir(lab_dir: Path) -> None:
    """The files of a lab whose processes are gone: its dir, and the switches' data copies it points to."""
    for peer in lab_dir.glob("snmp-*/peer.json"):
        with contextlib.suppress(OSError, ValueError, TypeError):
            rundir = Path(json.loads(peer.read_text())["rundir"])
            if rundir.name.startswith("og-snmpsim-") and rundir.stat().st_uid == os.getuid():
                shutil.rmtree(rundir, ignore_errors=True)
    shutil.rmtree(lab_dir, ignore_errors=True)


def _no_lab(base: Path, prefix: str, cmd: str) -> int:
    """No holder runs for this lab: ``down`` removes what is left of its files, other commands say so."""
    lab_dir = base / prefix
    if cmd == "down":
        if lab_dir.exists():
            _remove_lab_dir(lab_dir)
            print(f"removed: {lab_dir}")
        else:
            print("nothing to remove: no lab is up")
        with contextlib.suppress(OSError):
            (base / f".{prefix}.lock").unlink()
        return 0
    print(f"gateway lab: no lab '{prefix}' is up (start one with: gateway lab up)", file=sys.stderr)
    return 1


# ------------------------------------------------------------------------------- the holder itself

def _mount(src: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(src.encode(), target.encode(), fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                  data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} on {target}: {os.strerror(err)}")


def private_netns_dir(whole_run: bool = False) -> None:
    """Make ``/run/netns`` this mount namespace's own, empty.  If it exists, a tmpfs goes over it; if not
    (it cannot be made: /run is the host root's), a tmpfs goes over ``/run`` and everything the host has
    in /run is bound back in (``$XDG_RUNTIME_DIR``, /run/lock, ...), except ``netns``."""
    if os.path.isdir("/run/netns") and not whole_run:
        _mount("tmpfs", "/run/netns", "tmpfs", 0, "mode=755")
        return
    old = os.open("/run", os.O_PATH | os.O_DIRECTORY)
    try:
        _mount("tmpfs", "/run", "tmpfs", 0, "mode=755")
        for name in os.listdir(f"/proc/self/fd/{old}"):
            if name == "netns":
                continue
            src, dst = f"/proc/self/fd/{old}/{name}", f"/run/{name}"
            with contextlib.suppress(OSError):
                if os.path.islink(src):
                    os.symlink(os.readlink(src), dst)
                    continue
                if os.path.isdir(src):
                    os.mkdir(dst)
                else:
                    os.close(os.open(dst, os.O_CREAT | os.O_WRONLY, 0o644))
                _mount(src, dst, None, MS_BIND | MS_REC)
    finally:
        os.close(old)
    os.mkdir("/run/netns", 0o755)


def hold(whole_run: bool = False) -> int:
    try:
        private_netns_dir(whole_run)
    except OSError as exc:
        print(f"hold: {exc}", file=sys.stderr, flush=True)
        return 1
    sigs = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (1, 2):  # nobody reads these any more
        os.dup2(devnull, fd)
    os.close(devnull)
    signal.sigwait(sigs)  # until the lab is taken down
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.lab.userns")
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hold", help="keep the lab's namespaces (run through unshare by the lab)")
    h.add_argument("--whole-run", action="store_true", help="a tmpfs over all of /run, even if /run/netns exists")
    args = ap.parse_args(argv)
    return hold(args.whole_run or os.environ.get("GATEWAY_LAB_USERNS_WHOLE_RUN") == "1")


if __name__ == "__main__":
    sys.exit(main())
