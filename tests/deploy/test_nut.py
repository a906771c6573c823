"""NUT templates rendered by image/render.py and checked by NUT itself: a real dummy-ups + upsd on a
free loopback port answer LIST UPS, the daemon's account may SET (and a wrong password may not), and
a real upsmon logs in as the primary with the rendered upsmon.conf."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.deploy._helpers import REPO, load_script

render = load_script("render")
NUT_BIN = Path("/lib/nut")
DDL = REPO.parent / "shared/nut-ddl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dev_file() -> Path:
    for p in sorted(DDL.glob("APC/*usbhid-ups*.dev")) + sorted(DDL.glob("*/*usbhid-ups*.dev")):
        return p
    pytest.skip(f"no NUT device dump under {DDL}")


def _render(out: Path, port: int, dev: Path) -> dict[str, str]:
    cfg = tomllib.loads((REPO / "gateway/example.toml").read_text())
    values = render.nut_values(
        {"driver": "dummy-ups", "port": str(dev), "shutdown_cmd": "/bin/true",
         "powerdown_flag": str(out / "killpower"), "listen_port": port, "mode": "standalone"},
        cfg["ups"], {"gateway_password": cfg["ups"]["password"], "upsmon_password": "upsmon-secret"})
    files = render.render_nut(values, REPO / "hw/nut")
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    return files


def _stop_group(p: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    # the group's other members (upsmon's forked child) are gone when the group is empty
    wait_until(lambda: not _group_alive(p.pid), 5, what="process group gone")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Upsd:
    def __init__(self, port: int, user: str, password: str) -> None:
        self.port, self.user, self.password = port, user, password

    def talk(self, *lines: str) -> list[str]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=3) as s:
            f = s.makefile("rw")
            replies = []
            for line in lines:
                f.write(line + "\n")
                f.flush()
                reply = f.readline().strip()
                if reply.startswith("BEGIN"):
                    body = [reply]
                    while not reply.startswith("END"):
                        reply = f.readline().strip()
                        body.append(reply)
                    reply = "\n".join(body)
                replies.append(reply)
            return replies

    def answers(self) -> bool:
        try:
            return "UPS ups " in self.talk("LIST UPS")[0]
        except OSError:
            return False


@pytest.fixture
def nut_stack(tmp_path: Path) -> Iterator[tuple[Upsd, Path]]:
    for prog in ("dummy-ups", "upsd", "upsmon"):
        if not (NUT_BIN / prog).exists():
            pytest.skip("NUT not installed (make deps)")
    port = _free_port()
    conf = tmp_path / "nut"
    _render(conf, port, _dev_file())
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    env = {**os.environ, "NUT_CONFPATH": str(conf), "NUT_STATEPATH": str(state), "NUT_ALTPIDPATH": str(state)}
    as_root = ["-u", "root"] if os.geteuid() == 0 else []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for argv in ([str(NUT_BIN / "dummy-ups"), "-a", "ups", "-F", *as_root], [str(NUT_BIN / "upsd"), "-F", *as_root]):
            procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        cfg = tomllib.loads((REPO / "gateway/example.toml").read_text())["ups"]
        upsd = Upsd(port, cfg["username"], cfg["password"])
        wait_until(lambda: upsd.answers() or any(p.poll() is not None for p in procs), 10, what="upsd answering")
        assert upsd.answers(), "upsd or dummy-ups exited"
        yield upsd, tmp_path
    finally:
        for p in reversed(procs):
            _stop_group(p)


def test_templates_render_without_leftover_placeholders(tmp_path: Path) -> None:
    files = _render(tmp_path / "nut", 3493, Path("/dev/null"))
    for name, text in files.items():
        assert "{" not in text.replace("{placeholders}", ""), name
    assert "LISTEN 127.0.0.1 3493" in files["upsd.conf"]
    assert "MONITOR ups@127.0.0.1:3493 1 upsmon upsmon-secret primary" in files["upsmon.conf"]
    assert "actions = SET FSD" in files["upsd.users"] and "upsmon primary" in files["upsd.users"]
    assert "driver = dummy-ups" in files["ups.conf"]


def test_driver_options_are_rendered_and_injection_refused() -> None:
    v = render.nut_values({"vendorid": "051d", "desc": "Rack UPS"}, {}, {"gateway_password": "a", "upsmon_password": "b"})
    assert "\tvendorid = 051d" in v["driver_options"] and v["desc"] == "Rack UPS"
    with pytest.raises(render.RenderError):
        render.nut_values({"desc": 'x"\n[evil]'}, {}, {"gateway_password": "a", "upsmon_password": "b"})
    with pytest.raises(render.RenderError):
        render.nut_values({"bad key": "1"}, {}, {"gateway_password": "a", "upsmon_password": "b"})


def test_upsd_serves_the_rendered_config(nut_stack: tuple[Upsd, Path]) -> None:
    upsd, _ = nut_stack
    assert "UPS ups " in upsd.talk("LIST UPS")[0]
    wait_until(lambda: "ups.status" in upsd.talk("LIST VAR ups")[0], 10, what="driver data in upsd")
    # the daemon's account has SET rights; a wrong password is refused (upsd.users is really read)
    ok = upsd.talk(f"USERNAME {upsd.user}", f"PASSWORD {upsd.password}", "SET VAR ups ups.delay.shutdown 30")
    assert ok[:2] == ["OK", "OK"] and "ACCESS-DENIED" not in ok[2], ok
    denied = upsd.talk(f"USERNAME {upsd.user}", "PASSWORD wrong", "SET VAR ups ups.delay.shutdown 30")
    assert "ACCESS-DENIED" in denied[2], denied


def test_upsmon_logs_in_as_primary(nut_stack: tuple[Upsd, Path]) -> None:
    upsd, tmp = nut_stack
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("upsmon's pid file lives in /run/nut: needs root for a private mount namespace")
    env = {**os.environ, "NUT_CONFPATH": str(tmp / "nut"), "NUT_STATEPATH": str(tmp / "state"),
           "NUT_ALTPIDPATH": str(tmp / "state")}
    # /run/nut is replaced by a tmpfs in a private mount namespace: nothing of the host's NUT is touched
    cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
           f"mount -t tmpfs tmpfs /run/nut 2>/dev/null || mount -t tmpfs tmpfs /run; "
           f"exec {NUT_BIN / 'upsmon'} -F -u root"]
    # upsmon forks a privileged parent and a monitoring child: own session, so both are stopped by
    # this group's id and nothing else
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        clients = lambda: upsd.talk("LIST CLIENT ups")[0]  # noqa: E731
        wait_until(lambda: "CLIENT ups 127.0.0.1" in clients() or p.poll() is not None, 15, what="upsmon login")
        assert "CLIENT ups 127.0.0.1" in clients(), f"upsmon exited {p.returncode}"
        assert not (tmp / "nut/killpower").exists()
    finally:
        _stop_group(p)
