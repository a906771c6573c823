"""The lab's modem emulator as a process: start/stop by pid, stable device path, data link follows the call."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from gateway.drivers.modem import ModemDriver, load_profile
from gateway.lab import modem_emu
from tests.conftest import IS_ROOT, wait_until


def test_start_is_idempotent_and_stop_cleans_up() -> None:
    d = Path(tempfile.mkdtemp(prefix="mdm", dir="/tmp"))
    try:
        pid, path = modem_emu.start(d)
        assert path == str(d / "modem") and os.readlink(path).startswith("/dev/pts/")
        assert modem_emu.start(d) == (pid, path)  # already running: the same one
        with pytest.raises(ValueError):
            modem_emu.control(d, "signal", "loud")
        modem_emu.stop(d)
        assert not modem_emu._alive(pid)
        assert not (d / "modem").exists() and not (d / "modem.ctl").exists() and not (d / "modem.pid").exists()
    finally:
        modem_emu.stop(d)
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.lab
@pytest.mark.skipif(not IS_ROOT, reason="needs root (network namespaces)")
def test_data_link_follows_the_data_call() -> None:
    d = Path(tempfile.mkdtemp(prefix="mdm", dir="/tmp"))
    ns = f"ogme{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)

    def link_up() -> bool:
        out = subprocess.run(["ip", "-n", ns, "-o", "link", "show", "wwan0"], capture_output=True, text=True).stdout
        return ",UP" in out or "<UP" in out

    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "wwan0", "type", "veth", "peer", "name", "carrier"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "wwan0", "up"], check=True)
        _, path = modem_emu.start(d, ns, "wwan0", reg_delay_s=0.05)
        wait_until(lambda: not link_up(), 5, what="link down before the data call")

        async def main() -> None:
            drv = ModemDriver(path, load_profile("quectel-ec25"), command_timeout_s=1.0)
            wait_until(lambda: modem_emu.status(d)["registered"], 5)
            await drv.dial("internet")
            assert link_up()
            modem_emu.control(d, "down")  # registration lost: the data call drops with it
            wait_until(lambda: not link_up(), 5, what="link down after registration loss")
            modem_emu.control(d, "up")
            wait_until(lambda: modem_emu.status(d)["registered"], 5)
            await drv.dial("internet")
            assert link_up(), (modem_emu.status(d), (d / "modem.log").read_text())
            await drv.hangup()
            assert not link_up()
            await drv.close()

        asyncio.run(main())
    finally:
        modem_emu.stop(d)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(d, ignore_errors=True)
