"""Fixtures of the power tests: a real upsd (per test) and a real snmpsim (per module)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.power.peers import NutPeer, SnmpSim, nut_available, snmpsim_available


@pytest.fixture
def nut() -> Iterator[NutPeer]:
    if not nut_available():
        pytest.skip("NUT (dummy-ups, upsd) not installed")
    d = Path(tempfile.mkdtemp(prefix="og-nut-"))
    peer = NutPeer(d)
    try:
        peer.start()
        yield peer
    finally:
        peer.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def snmp() -> Iterator[SnmpSim]:
    if not snmpsim_available():
        pytest.skip("snmpsim not installed")
    sim = SnmpSim()
    try:
        sim.start()
        yield sim
    finally:
        sim.stop()
