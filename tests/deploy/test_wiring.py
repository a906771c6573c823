"""hw/WIRING.md and the board pin map agree on which BCM GPIOs are used."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from tests.deploy._helpers import REPO

WIRING = REPO / "hw/WIRING.md"
BOARD = REPO / "hw/boards/rpi-gateway-hat.toml"
AGREED = {"power LED": 17, "network LED": 27, "alert LED red": 22, "alert LED green": 23,
          "alert LED blue": 24, "buzzer": 18, "button": 5, "modem power": 6}
# BCM GPIO -> physical header pin (40-pin header)
HEADER = {17: 11, 27: 13, 22: 15, 23: 16, 24: 18, 18: 12, 5: 29, 6: 31}


def _table() -> dict[str, tuple[int, int]]:
    rows = {}
    for line in WIRING.read_text().splitlines():
        m = re.match(r"\| ([^|]+?)(?: \([a-z]+\))? \| GPIO(\d+) \| (\d+) \|", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return rows


def test_wiring_table_uses_the_agreed_pins() -> None:
    rows = _table()
    assert {k: v[0] for k, v in rows.items()} == AGREED
    for name, (gpio, pin) in rows.items():
        assert HEADER[gpio] == pin, f"{name}: GPIO{gpio} is header pin {HEADER[gpio]}, not {pin}"


def _ints(node: Any) -> set[int]:
    if isinstance(node, bool):
        return set()
    if isinstance(node, int):
        return {node}
    if isinstance(node, dict):
        return set().union(*(_ints(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_ints(v) for v in node)) if node else set()
    return set()


def test_board_pin_map_matches_the_wiring_note() -> None:
    if not BOARD.exists():
        pytest.skip("hw/boards/rpi-gateway-hat.toml not written yet")
    board = tomllib.loads(BOARD.read_text())
    numbers = _ints(board)
    missing = {name: gpio for name, gpio in AGREED.items() if gpio not in numbers}
    assert not missing, f"{BOARD.name} does not use {missing} from hw/WIRING.md"
