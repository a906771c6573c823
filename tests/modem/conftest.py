"""Fixtures of the modem tests: the lab's pty AT emulator, started and stopped by each test that needs it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.lab import modem_emu


@dataclass
class Emu:
    dir: Path
    path: str
    pid: int

    def control(self, command: str, value: str | None = None) -> None:
        modem_emu.control(self.dir, command, value)

    def status(self) -> dict[str, object]:
        return modem_emu.status(self.dir)


@pytest.fixture
def emu() -> Iterator[Emu]:
    # a short directory: the control socket's path must fit a sockaddr_un (108 bytes)
    d = Path(tempfile.mkdtemp(prefix="mdm", dir="/tmp"))
    pid, path = modem_emu.start(d, reg_delay_s=0.05, reset_delay_s=0.3)
    try:
        yield Emu(d, path, pid)
    finally:
        modem_emu.stop(d)
        print((d / "modem.log").read_text())  # shown when a test fails
        shutil.rmtree(d, ignore_errors=True)
