"""The lab UPS: real upsd + dummy-ups; faults visible through upsd within 2 s (the wait's deadline)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.lab.ups import NUT_BIN, UpsPeer
from tests.conftest import needs_root, wait_until

pytestmark = [pytest.mark.lab, needs_root,
              pytest.mark.skipif(not (NUT_BIN / "dummy-ups").exists(), reason="NUT not installed")]


@pytest.fixture(scope="module")
def ups(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpsPeer]:
    peer = UpsPeer(tmp_path_factory.mktemp("ups") / "nut").start()
    try:
        yield peer
    finally:
        peer.stop()


def _healthy(ups: UpsPeer) -> None:
    ups.restore()
    wait_until(lambda: ups.status().startswith("OL"), 10, what="back online")


def test_serves_the_dump_to_the_gateway_user(ups: UpsPeer) -> None:
    from nut2 import PyNUTClient

    client = PyNUTClient(ups.host, ups.port, ups.user, ups.password)
    values = client.list_vars(ups.name)
    assert values["ups.status"].startswith("OL")
    assert values["device.model"] == "Smart-UPS 1500"
    assert float(values["battery.runtime"]) > 0 and float(values["ups.load"]) > 0
    # the account may set variables and run commands (SET/FSD rights, instcmds = ALL)
    out = subprocess.run(["upscmd", "-u", ups.user, "-p", ups.password, "-l", f"{ups.address}"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr


def test_cut_drains_then_restore(ups: UpsPeer) -> None:
    before = float(ups.upsc()["battery.runtime"])
    ups.cut()
    wait_until(lambda: ups.status() == "OB DISCHRG", 2.0, what="OB DISCHRG within 2 s")
    wait_until(lambda: float(ups.upsc().get("battery.runtime", before)) < before, 10, what="runtime falling")
    ups.restore()
    wait_until(lambda: ups.status().startswith("OL"), 2.0, what="OL within 2 s")


def test_low_battery(ups: UpsPeer) -> None:
    ups.low()
    wait_until(lambda: ups.status() == "OB DISCHRG LB", 2.0, what="OB DISCHRG LB within 2 s")
    assert float(ups.upsc()["battery.charge"]) <= 10
    _healthy(ups)


def test_comm_lost_and_back(ups: UpsPeer) -> None:
    ups.comm_lost()
    wait_until(lambda: ups.upsc_error() is not None, 2.0, what="upsd reporting the UPS gone")
    assert ups.upsc() == {}
    _healthy(ups)


def test_attach_from_another_process_and_stop_cleans(tmp_path: Path) -> None:
    peer = UpsPeer(tmp_path / "nut").start()
    try:
        other = UpsPeer.attach(tmp_path / "nut")
        assert other.port == peer.port and other.running()
        other.cut()
        wait_until(lambda: peer.status().startswith("OB"), 2.0, what="cut through the attached peer")
    finally:
        pids = list(peer.pids.values())
        peer.stop()
    assert not (tmp_path / "nut").exists()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_bad_dump_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no such UPS dump"):
        UpsPeer(tmp_path / "nut", tmp_path / "missing.dev").start()
