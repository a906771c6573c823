"""The asyncio daemon: config, journal, services, web server, signals, systemd notify and watchdog."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import importlib
import json
import logging
import os
import secrets
import signal
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import config as config_mod
from gateway.config import Config
from gateway.core.errors import ActionRejected, ConfigError, GatewayError
from gateway.runtime.service import Context, Service
from gateway.store import Journal, JournalReader

log = logging.getLogger("gateway")

JOURNAL_RETRY_S = 1.0

# Each capability's service, imported by name so one area can be built (and fail) on its own.
SERVICES = [
    "gateway.runtime.power:PowerService",
    "gateway.runtime.uplinks:UplinkService",
    "gateway.runtime.modem:ModemService",
    "gateway.runtime.panel:PanelService",
    "gateway.runtime.continuity:ContinuityService",
    "gateway.runtime.notify:NotifyService",
]


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else \
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn", "pysnmp", "pyroute2", "asyncio", "urllib3", "apprise"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def sd_notify(message: str) -> bool:
    """Tell systemd (Type=notify) about readiness and liveness; a no-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(message.encode(), addr)
        except OSError:
            return False
    return True


def trim_heap() -> None:
    """Give back to the system the heap that start-up (imports, the config, the schema) left free: glibc keeps
    freed memory at the top of its arenas otherwise.  Not glibc (musl): nothing to do."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def listen_sockets() -> list[socket.socket]:
    """Sockets passed by systemd socket activation (or the lab), LISTEN_FDS protocol."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    n = int(os.environ.get("LISTEN_FDS", "0"))
    socks = [socket.socket(fileno=3 + i) for i in range(n)]
    for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(k, None)
    return socks


def token_path(cfg: Config) -> Path:
    return cfg.state_dir / "api.token"


def ensure_token(cfg: Config) -> str:
    """A random bearer token for the local CLI, readable by root only."""
    path = token_path(cfg)
    if path.exists():
        return path.read_text().strip()
    tok = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(tok + "\n")
    return tok


class Daemon:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(cfg.state_dir / "journal.db")
        self.ctx = Context(config=cfg, journal=self.journal)
        self.token = ensure_token(cfg)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = asyncio.Event()
        self.started_at = time.time()
        self.started_mono = time.monotonic()  # uptime must not go negative when the wall clock jumps back
        self.web_server: Any = None
        self.missing: list[str] = []

    # ---------------------------------------------------------------------------------- services
    def _load_services(self) -> None:
        for spec in SERVICES:
            mod_name, _, cls_name = spec.partition(":")
            try:
                mod = importlib.import_module(mod_name)
            except ModuleNotFoundError as exc:
                if exc.name == mod_name:
                    self.missing.append(mod_name.rsplit(".", 1)[1])
                    continue
                raise
            svc: Service = getattr(mod, cls_name)(self.ctx)
            self.ctx.services[svc.name] = svc

    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {
            "updated_at": datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="seconds"),
            "site": self.cfg.site.name,
            "power": {"state": "comm_lost", "ups": {"status": [], "charge_pct": None, "runtime_s": None,
                                                    "load_pct": None, "input_voltage": None}},
            "loads": [], "uplinks": [], "modem": {"present": False, "sim": None, "registration": None,
                                                   "operator": None, "rssi_dbm": None, "technology": None,
                                                   "data_used_bytes": 0},
            "incident": None, "override": None,
        }
        for svc in list(self.ctx.services.values()):
            try:
                snap.update(svc.snapshot())
            except Exception:
                log.exception("snapshot of %s failed", svc.name)
        j = self.journal
        snap["journal"] = {"state": "full" if j.full else "ok", "held_rows": len(j.held),
                           "since": datetime.fromtimestamp(j.full_since, UTC).isoformat(timespec="seconds")
                           if j.full_since is not None else None, "error": j.full_error if j.full else None}
        snap["daemon"] = {"pid": os.getpid(), "uptime_s": round(time.monotonic() - self.started_mono, 1),
                          "services": sorted(self.ctx.services), "not_built": self.missing}
        return snap

    def submit(self, action: str, params: dict[str, Any], who: str, timeout: float = 15.0) -> dict[str, Any]:
        """Run an action on the daemon's loop from another thread (the web server) and wait for it."""
        assert self.loop is not None
        fut = asyncio.run_coroutine_threadsafe(self.ctx.action(action, params, who), self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            raise ActionRejected("timeout", f"{action} did not finish within {timeout:.0f} s") from None

    def metrics(self) -> list[tuple[str, str, dict[str, str], float]]:
        out: list[tuple[str, str, dict[str, str], float]] = []
        for svc in list(self.ctx.services.values()):
            try:
                out.extend(svc.metrics())
            except Exception:
                log.exception("metrics of %s failed", svc.name)
        return out

    # ---------------------------------------------------------------------------------------- web
    def _start_web(self) -> str:
        from web.app import create_app
        from web.serve import WebServer

        app = create_app(DaemonBackend(self))
        self.web_server = WebServer(app, sockets=listen_sockets() or None, listen=self.cfg.web.listen).start()
        return str(self.web_server.url)

    # ---------------------------------------------------------------------------------- lifecycle
    def reload(self) -> None:
        try:
            new = config_mod.load(self.cfg.path)
        except ConfigError as exc:
            for p in exc.problems:
                log.error("reload refused, keeping the running config: %s", p)
            self.journal.add_event("config.reload_failed", "config reload refused: " + exc.problems[0],
                                   "warning", {"problems": exc.problems})
            return
        self.cfg = new
        self.ctx.config = new
        for svc in self.ctx.services.values():
            try:
                svc.reload(new)
            except Exception:
                log.exception("%s: reload failed", svc.name)
        self.journal.add_event("config.reloaded", f"config reloaded from {new.path}")
        log.info("config reloaded from %s", new.path)

    async def _watchdog(self) -> None:
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        if not usec:
            return
        while True:
            sd_notify("WATCHDOG=1")
            await asyncio.sleep(usec / 2e6)

    async def _journal_retry(self) -> None:
        """While the journal's disk is full, try every second to write what is held (no write may come)."""
        while True:
            await asyncio.sleep(JOURNAL_RETRY_S)
            if self.journal.full:
                self.journal.flush()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.journal.retention_interval_s)
            try:
                n = self.journal.apply_retention(self.cfg.journal.retention_days, self.cfg.journal.max_mb)
                if n:
                    log.info("journal retention removed %d rows", n)
                    trim_heap()  # the delete's pages and row buffers
            except GatewayError as exc:
                log.warning("journal retention failed: %s", exc)

    async def main(self) -> int:
        self.loop = asyncio.get_running_loop()
        for sig, fn in ((signal.SIGTERM, self.stopping.set), (signal.SIGINT, self.stopping.set),
                        (signal.SIGHUP, self.reload)):
            self.loop.add_signal_handler(sig, fn)
        self.journal.add_event("daemon.start", f"daemon started (pid {os.getpid()})", data={"pid": os.getpid()})
        self._load_services()
        for svc in self.ctx.services.values():
            await svc.start()
        url = self._start_web()
        (self.cfg.state_dir / "daemon.json").write_text(json.dumps({"pid": os.getpid(), "url": url}))
        log.info("serving %s; services: %s%s", url, ", ".join(sorted(self.ctx.services)),
                 f"; not built: {', '.join(self.missing)}" if self.missing else "")
        sd_notify("READY=1\nSTATUS=running")
        trim_heap()
        extra = [asyncio.ensure_future(self._watchdog()), asyncio.ensure_future(self._housekeeping()),
                 asyncio.ensure_future(self._journal_retry())]
        await self.stopping.wait()
        sd_notify("STOPPING=1")
        log.info("stopping")
        for t in extra:
            t.cancel()
        if self.web_server is not None:
            # first, off the loop: an action in progress still needs the loop (and the services) to finish
            await asyncio.to_thread(self.web_server.close)
        for svc in reversed(list(self.ctx.services.values())):
            try:
                async with asyncio.timeout(10):
                    await svc.stop()
            except Exception:
                log.exception("%s: stop failed", svc.name)
        self.journal.add_event("daemon.stop", "daemon stopped")
        if not self.journal.flush():
            log.error("journal: %d rows could not be written before stopping (%s)", len(self.journal.held),
                      self.journal.full_error)
        self.journal.close()
        return 0


class DaemonBackend:
    """What the web app sees of the daemon: snapshot, journal (read side), actions, metrics."""

    def __init__(self, daemon: Daemon) -> None:
        self._d = daemon
        self.reader = JournalReader(daemon.journal.path)

    @property
    def config(self) -> Config:
        return self._d.cfg

    @property
    def token(self) -> str:
        return self._d.token

    @property
    def ready(self) -> bool:
        """For /healthz: serving (services started) and not stopping."""
        return self._d.loop is not None and not self._d.stopping.is_set()

    def snapshot(self) -> dict[str, Any]:
        return self._d.snapshot()

    def submit(self, action: str, params: dict[str, Any], who: str) -> dict[str, Any]:
        return self._d.submit(action, params, who)

    def metrics(self) -> list[tuple[str, str, dict[str, str], float]]:
        return self._d.metrics()


def run(config_path: str) -> int:
    setup_logging()
    try:
        cfg = config_mod.load(config_path)
    except ConfigError as exc:
        for p in exc.problems:
            print(p)
        return 2
    try:
        daemon = Daemon(cfg)
        return asyncio.run(daemon.main())
    except GatewayError as exc:
        log.error("%s", exc)
        return 1
