"""The real daemon (all services) on mock pins, in a network namespace of its own so it can touch no real
route: the panel socket answers, a button hold sets the manual override that /api/v1/status shows, a second
hold clears it, and the panel is part of the status snapshot."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.lab import panel_client
from tests.conftest import needs_root, wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "gateway/example.toml"


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


@pytest.fixture
def daemon() -> Iterator[tuple[Path, str]]:
    d = Path(tempfile.mkdtemp(prefix="pnd", dir="/tmp"))
    state = d / "state"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    text = EXAMPLE.read_text().replace("/var/lib/office-gateway", str(state))
    text = text.replace('"/dev/gateway-modem"', f'"{d}/no-modem"').replace('pin_factory = "auto"', 'pin_factory = "mock"')
    text = text.replace("hold_s = 3.0", "hold_s = 0.5").replace('"0.0.0.0:8080"', '"127.0.0.1:8080"')
    assert 'pin_factory = "mock"' in text
    cfg = d / "g.toml"
    cfg.write_text(text)
    ns = f"pnl-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    # the web server listens on loopback inside the namespace; reach it through a socket passed in (fd 3)
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    fd = sock.fileno()
    log = open(d / "daemon.log", "wb")
    proc = subprocess.Popen(["sh", "-c", f"LISTEN_PID=$$ LISTEN_FDS=1 exec ip netns exec {ns} "
                             f"{sys.executable} -m gateway run --config {cfg}"],
                            close_fds=False, preexec_fn=lambda: os.dup2(fd, 3), stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(EXAMPLE.parents[1])})
    sock.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: (state / "panel.sock").exists() and _get(url + "/healthz") is not None
                   or proc.poll() is not None, 30, what="daemon ready")
        assert proc.poll() is None, (d / "daemon.log").read_text()
        yield state, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        print((d / "daemon.log").read_text()[-4000:])  # shown when a test fails
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(d, ignore_errors=True)


@needs_root
@pytest.mark.lab
def test_button_hold_sets_and_clears_the_override_in_the_status(daemon: tuple[Path, str]) -> None:
    state, url = daemon
    st = panel_client.state(state)
    assert set(st) == {"leds", "buzzer"} and set(st["leds"]) == {"power", "network", "alert"}
    r = panel_client.hold(state)
    assert r["decided"] == "failover_lte"
    assert _get(url + "/api/v1/status")["override"] == "lte"
    r = panel_client.press(state)
    assert r["decided"] == "ack"
    r = panel_client.hold(state, 1.0)
    assert r["decided"] == "failover_auto"
    snap = _get(url + "/api/v1/status")
    assert snap["override"] is None
    assert snap["panel"]["pins"] == "mock" and snap["panel"]["button"]["last"] == "failover_auto"
