"""The `gateway` command: exit codes, check-config output, and the daemon's lifecycle."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import config
from gateway.store import JournalReader
from tests.conftest import needs_root, wait_until

EXAMPLE = Path(config.__file__).with_name("example.toml")
GW = [sys.executable, "-m", "gateway"]


def gw(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GW, *args], capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload]


def test_help_lists_every_design_command() -> None:
    out = gw("--help").stdout
    for cmd in ("run", "check-config", "status", "failover", "loads", "drill", "incidents", "report",
                "maintenance", "lab"):
        assert cmd in out
    for cmd in ("run", "status", "failover", "loads", "drill", "incidents", "report", "maintenance"):
        r = gw(cmd, "--help")
        assert r.returncode == 0 and "usage:" in r.stdout


def test_check_config_ok_and_bad(tmp_path: Path) -> None:
    r = gw("check-config", str(EXAMPLE))
    assert r.returncode == 0 and r.stdout.strip().endswith(": ok")
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("port = 5\n", "port = 4\n"))
    r = gw("check-config", str(bad))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{bad}:") and "loads[3].port: port 4 on 'core'" in lines[0]
    broken = tmp_path / "broken.toml"
    broken.write_text("[site\n")
    r = gw("check-config", str(broken))
    assert r.returncode == 2 and r.stderr.startswith(f"{broken}:1: toml: ") and "Traceback" not in r.stderr


def test_bad_usage_is_exit_2_one_line() -> None:
    r = gw("failover", "sideways")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = gw("frobnicate")
    assert r.returncode == 2


def test_status_without_daemon_is_exit_3(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text(EXAMPLE.read_text().replace("/var/lib/office-gateway", str(tmp_path / "state")))
    r = gw("--config", str(cfg), "status", "--json")
    assert r.returncode == 3 and "no daemon" in r.stderr
    port = _free_port()
    r = gw("--url", f"http://127.0.0.1:{port}", "status")
    assert r.returncode == 3 and f"127.0.0.1:{port}" in r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lab_free_config(tmp_path: Path, listen: str) -> Path:
    """The example config with everything pointed at addresses that do not answer."""
    text = EXAMPLE.read_text().replace("/var/lib/office-gateway", str(tmp_path / "state"))
    text = text.replace('"0.0.0.0:8080"', f'"{listen}"').replace('"/dev/gateway-modem"', f'"{tmp_path}/no-modem"')
    text = re.sub(r'(?m)^pin_factory = "[a-z]+"', 'pin_factory = "mock"', text)
    assert 'pin_factory = "mock"' in text
    path = tmp_path / "g.toml"
    path.write_text(text)
    config.load(path)
    return path


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    """The daemon in a namespace of its own (so it can touch no real route), its web socket passed in."""
    ns = f"ogt-{uuid.uuid4().hex[:8]}"
    cfg = _lab_free_config(tmp_path, "127.0.0.1:8080")  # before the namespace: a bad config leaves nothing
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc: subprocess.Popen[bytes] | None = None
    log = open(tmp_path / "daemon.log", "wb")
    try:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        fd = sock.fileno()
        # systemd's socket-activation protocol: the listening socket is fd 3 in the child (dup'ed there, since
        # the parent's fd 3 may be in use), LISTEN_PID is the daemon's own pid (sh's, kept across the execs).
        proc = subprocess.Popen(["sh", "-c", f'LISTEN_PID=$$ LISTEN_FDS=1 exec ip netns exec {ns} '
                                 f'{sys.executable} -m gateway run --config {cfg}'],
                                close_fds=False, preexec_fn=lambda: os.dup2(fd, 3), stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": os.getcwd()})
        sock.close()
        running = proc
        wait_until(lambda: _get(url + "/healthz") is not None or running.poll() is not None, 30,
                   what="daemon ready")
        assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
        yield proc, cfg, url
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


@needs_root
def test_daemon_serves_reloads_and_stops_cleanly(daemon: tuple[subprocess.Popen[bytes], Path, str]) -> None:
    proc, cfg, url = daemon
    r = gw("--url", url, "--config", str(cfg), "status", "--json")
    assert r.returncode == 0, r.stderr
    snap = json.loads(r.stdout)
    for key in ("updated_at", "power", "loads", "uplinks", "modem", "incident", "override"):
        assert key in snap
    assert snap["power"]["state"] in ("online", "on_battery", "low_battery", "comm_lost", "shutting_down")
    state = Path(config.load(cfg).site.state_dir)
    journal = JournalReader(state / "journal.db")
    good = cfg.read_text()
    cfg.write_text(good.replace("[site]", "[site]\nbogus = 1"))
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: journal.events(kind_prefix="config.reload_failed"), 15, what="reload refused")
    assert proc.poll() is None and (_get(url + "/healthz") or {}).get("ok") is True
    cfg.write_text(good.replace('name = "Example Office"', 'name = "Renamed Office"'))
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: (_get(url + "/api/v1/status") or {}).get("site") == "Renamed Office", 15, what="reload")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    kinds = [e["kind"] for e in journal.events()]
    assert kinds[0] == "daemon.start" and kinds[-1] == "daemon.stop"
