"""NetDriver's link query (one RTM_GETLINK by name on a plain netlink socket) in a namespace of its own:
carrier follows the link going down and up, a missing interface is None, and the index is the kernel's."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from gateway.drivers.net import NetDriver
from tests.conftest import needs_root

pytestmark = [needs_root]


def ip(*argv: str) -> str:
    return subprocess.run(["ip", *argv], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"oglq{os.getpid()}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "add", "lqa0", "type", "veth", "peer", "name", "lqb0")
        yield name
    finally:
        ip("netns", "del", name)


def test_carrier_and_index_follow_the_kernel(netns: str) -> None:
    net = NetDriver(netns)
    try:
        assert net.carrier("lqa0") is False  # down
        ip("-n", netns, "link", "set", "lqa0", "up")
        assert net.carrier("lqa0") is False  # up, but its peer is down: no carrier
        ip("-n", netns, "link", "set", "lqb0", "up")
        assert net.carrier("lqa0") is True and net.carrier("lo") is False
        index = int(ip("-n", netns, "-o", "link", "show", "lqa0").split(":")[0])
        assert net.ifindex("lqa0") == index and net.ifindex("lo") == 1
        ip("-n", netns, "link", "set", "lqb0", "down")
        assert net.carrier("lqa0") is False
        for missing in ("nosuch0", "x" * 15, "y" * 40):
            assert net.carrier(missing) is None and net.ifindex(missing) is None
    finally:
        net.close()
