"""A panel without GPIO, with the same interface as :class:`gateway.drivers.panel.PanelDriver`.

Tests read ``history`` (every change written, in order) and ``levels``/``buzzer_hz``, and move the button
with :meth:`drive_button` like the mock pins do.  ``fail`` makes every write raise, like a lost GPIO chip.
"""

from __future__ import annotations

from typing import Any

from gateway.core.errors import DeviceUnavailable
from gateway.drivers.panel import Board, ButtonCallback, Level


class FakePanelDriver:
    def __init__(self, board: Board) -> None:
        self.board = board
        self.mock = True
        self.factory = None
        self.levels: dict[str, Level] = {}
        self.buzzer_hz: float | None = None
        self.modem: bool | None = board.modem_initial if board.modem_pin is not None else None
        self.pressed = False
        self.history: list[tuple[str, Any]] = []
        self.fail = False
        self.closed = False
        self._callback: ButtonCallback | None = None

    def _check(self) -> None:
        if self.fail:
            raise DeviceUnavailable("panel GPIO: fake failure")

    def apply(self, levels: dict[str, Level], buzzer_hz: float | None) -> None:
        self._check()
        for name, level in levels.items():
            if self.levels.get(name) != level:
                self.levels[name] = level
                self.history.append((name, level))
        if buzzer_hz != self.buzzer_hz:
            self.buzzer_hz = buzzer_hz
            self.history.append(("buzzer", buzzer_hz))

    def set_modem_power(self, on: bool) -> None:
        self._check()
        if self.modem is None:
            raise DeviceUnavailable(f"board {self.board.name} has no modem power line")
        if self.modem != on:
            self.history.append(("modem_power", on))
        self.modem = on

    @property
    def modem_power(self) -> bool | None:
        return self.modem

    def on_button(self, callback: ButtonCallback | None) -> None:
        self._callback = callback

    @property
    def button_pressed(self) -> bool:
        return self.pressed

    def drive_button(self, pressed: bool) -> None:
        if pressed != self.pressed:
            self.pressed = pressed
            if self._callback is not None:
                self._callback(pressed)

    def read(self) -> dict[str, Any]:
        leds = {n: list(v) if isinstance(v, tuple) else v for n, v in self.levels.items()}
        return {"leds": leds, "buzzer": {"on": self.buzzer_hz is not None, "frequency_hz": self.buzzer_hz},
                "button": {"pressed": self.pressed}, "modem_power": self.modem}

    def close(self) -> None:
        self.closed = True
        self._callback = None
