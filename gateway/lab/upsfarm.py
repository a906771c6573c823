"""Many real UPS dumps served at once: one NUT ``upsd`` and one ``dummy-ups`` per dump, several UPSes in one
``ups.conf``, so hundreds of dumps replay in minutes (the lab's :class:`~gateway.lab.ups.UpsPeer` is one
UPS with its own upsd, for the office).

``farm.load(dumps)`` replaces the current batch: it stops the previous drivers, writes ``ups.conf`` with a
section per dump (``d000``, ``d001``, ...; the dump itself is read in place through a symlink, so odd file
names need no quoting), starts the drivers, then upsd, and returns ``{name: dump}``.  ``farm.raw(name)``
reads a UPS with a plain ``LIST VAR`` (NUT's own view, to tell a dump NUT cannot serve from a bug of ours);
``farm.stop()`` stops exactly the processes it started, by pid, and removes its directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.lab.ups import NUT_BIN, UPSD, NutDirs, UpsPeerError, alive, free_port, kill_pid

SERVE_TIMEOUT_S = 30.0


class UpsFarm(NutDirs):
    user = "gateway"
    password = "gateway-farm"

    def __init__(self, workdir: Path | str, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.port = port or free_port(host)
        self.drivers: dict[str, int] = {}
        self.upsd: int | None = None
        self.dumps: dict[str, Path] = {}


    def load(self, dumps: Sequence[Path]) -> dict[str, Path]:
        """Serve these dumps (replacing the previous batch); returns {ups name: dump}."""
        if not (NUT_BIN / "dummy-ups").exists() or not UPSD.exists():
            raise UpsPeerError("NUT is missing (dummy-ups, upsd): apt-get install nut-server nut-client")
        self._stop_processes()
        for sub in (self.conf, self.state):
            shutil.rmtree(sub, ignore_errors=True)
            sub.mkdir(parents=True)
        self.state.chmod(0o770)
        links = self.workdir / "dumps"
        shutil.rmtree(links, ignore_errors=True)
        links.mkdir()
        self.dumps = {}
        sections = []
        for i, dump in enumerate(dumps):
            name = f"d{i:03d}"
            link = links / f"{name}.dev"
            link.symlink_to(Path(dump).resolve())
            self.dumps[name] = Path(dump)
            sections.append(f"[{name}]\n\tdriver = dummy-ups\n\tport = {link}\n\tmode = dummy-once\n"
                            f"\tpollinterval = 1\n")
        (self.conf / "nut.conf").write_text("MODE=standalone\n")
        (self.conf / "ups.conf").write_text("maxretry = 3\n" + "".join(sections))
        (self.conf / "upsd.conf").write_text(f"LISTEN {self.host} {self.port}\nMAXAGE 15\n")
        users = self.conf / "upsd.users"
        users.write_text(f"[{self.user}]\n\tpassword = {self.password}\n\tupsmon primary\n")
        users.chmod(0o600)
        log = self.workdir / "nut.log"
        with open(log, "ab") as out:
            for name in self.dumps:
                p = subprocess.Popen(self._nut_argv(NUT_BIN / "dummy-ups", "-a", name, "-F"),
                                     env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     start_new_session=True)
                self.drivers[name] = p.pid
            # upsd connects to each driver's socket when it starts (and retries later): let them make it first
            deadline = time.monotonic() + SERVE_TIMEOUT_S
            while time.monotonic() < deadline:
                waiting = [n for n, pid in self.drivers.items() if alive(pid) and not self._socket(n).exists()]
                if not waiting:
                    break
                time.sleep(0.05)  # poll interval while the drivers start
            p = subprocess.Popen(self._nut_argv(UPSD, "-F"), env=self.env, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=out, start_new_session=True)
            self.upsd = p.pid
        while not self._answers():
            if not alive(self.upsd) or time.monotonic() > deadline:
                raise UpsPeerError(f"upsd did not start on {self.host}:{self.port}; see {log}")
            time.sleep(0.05)  # poll interval while upsd starts
        return dict(self.dumps)

    def _socket(self, name: str) -> Path:
        return self.state / f"dummy-ups-{name}"

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def driver_alive(self, name: str) -> bool:
        return alive(self.drivers.get(name))

    def raw(self, name: str) -> dict[str, str]:
        """``LIST VAR`` as upsd answers it; raises UpsPeerError with upsd's error (e.g. DATA-STALE)."""
        with socket.create_connection((self.host, self.port), timeout=5) as s:
            f = s.makefile("rw", encoding="utf-8", errors="replace")
            f.write(f"LIST VAR {name}\n")
            f.flush()
            first = f.readline().strip()
            if not first.startswith("BEGIN"):
                raise UpsPeerError(first.removeprefix("ERR").strip() or "no reply")
            out: dict[str, str] = {}
            for line in f:
                if line.startswith("END"):
                    break
                m = re.match(r'VAR \S+ (\S+) "(.*)"$', line.strip())
                if m:
                    out[m.group(1)] = m.group(2).replace('\\"', '"').replace("\\\\", "\\")
            return out

    def _stop_processes(self) -> None:
        kill_pid(self.upsd)
        self.upsd = None
        pids = list(self.drivers.values())
        for pid in pids:  # SIGTERM to all first, then wait: a batch stops in one go, not one by one
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        for pid in pids:
            kill_pid(pid)
        self.drivers = {}

    def stop(self) -> None:
        self._stop_processes()
        shutil.rmtree(self.workdir, ignore_errors=True)
