"""The front panel through gpiozero: LEDs, the buzzer, the button and the modem's USB power line.

Which GPIO does what is data (``hw/boards/*.toml``, parsed by :func:`load_board`); gpiozero's pin factory
decides the backend (:func:`make_factory`): lgpio on a Raspberry Pi (the only one that drives a Pi 5),
``MockFactory`` with PWM pins in the lab and the tests.  The driver is deliberately dumb: the runtime tells
it the brightness of each LED and whether the buzzer sounds, and gets told when the button's pin changes.
Every gpiozero error is translated here into :class:`DeviceUnavailable`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.core.errors import ConfigError, DeviceUnavailable

log = logging.getLogger("gateway.panel")

LED_KINDS = ("led", "pwmled", "rgbled")
BUZZER_KINDS = ("tonal", "active")
RGB = tuple[float, float, float]
Level = float | RGB


# ------------------------------------------------------------------------------------------- board

@dataclass(frozen=True)
class LedSpec:
    name: str
    kind: str  # led | pwmled | rgbled
    pins: tuple[int, ...]  # one pin, or red, green, blue
    active_high: bool = True
    color: str = ""
    colors: dict[str, RGB] = field(default_factory=dict)  # rgbled: colour name -> channel duty


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    leds: tuple[LedSpec, ...]
    buzzer_pin: int
    buzzer_kind: str = "tonal"
    frequency_hz: float = 2700.0
    chirp_hz: float = 3300.0
    buzzer_active_high: bool = True
    button_pin: int = 5
    button_pull_up: bool = True
    modem_pin: int | None = None
    modem_active_high: bool = True
    modem_initial: bool = True

    def led(self, name: str) -> LedSpec | None:
        return next((x for x in self.leds if x.name == name), None)


DEFAULT_COLORS: dict[str, RGB] = {"green": (0.0, 1.0, 0.0), "amber": (1.0, 0.4, 0.0), "red": (1.0, 0.0, 0.0),
                                  "blue": (0.0, 0.0, 1.0)}


def _pin(v: Any, key: str, probs: list[str]) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 53:
        probs.append(f"{key}: {v!r} is not a BCM GPIO number (0-53)")
        return -1
    return v


def parse_board(text: str, name: str, where: str) -> Board:
    """A board pin map from TOML; every problem is reported as ``where: key: message``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: {exc}"]) from None
    probs: list[str] = []
    leds: list[LedSpec] = []
    for lname, spec in (data.get("leds") or {}).items():
        if not isinstance(spec, dict):
            probs.append(f"leds.{lname}: must be a table")
            continue
        kind = spec.get("kind", "led")
        if kind not in LED_KINDS:
            probs.append(f"leds.{lname}.kind: {kind!r} is not one of {', '.join(LED_KINDS)}")
            continue
        if kind == "rgbled":
            pins_d = spec.get("pins")
            if not isinstance(pins_d, dict) or set(pins_d) != {"red", "green", "blue"}:
                probs.append(f"leds.{lname}.pins: needs red, green and blue")
                continue
            pins = tuple(_pin(pins_d[c], f"leds.{lname}.pins.{c}", probs) for c in ("red", "green", "blue"))
            colors = dict(DEFAULT_COLORS)
            for cname, rgb in (spec.get("colors") or {}).items():
                if (not isinstance(rgb, list) or len(rgb) != 3
                        or not all(isinstance(x, int | float) and 0 <= x <= 1 for x in rgb)):
                    probs.append(f"leds.{lname}.colors.{cname}: must be [red, green, blue], each 0..1")
                    continue
                colors[cname] = (float(rgb[0]), float(rgb[1]), float(rgb[2]))
        else:
            pins = (_pin(spec.get("pin"), f"leds.{lname}.pin", probs),)
            colors = {}
        leds.append(LedSpec(lname, kind, pins, bool(spec.get("active_high", True)), str(spec.get("color", "")),
                            colors))
    for needed in ("power", "network", "alert"):
        if not any(x.name == needed for x in leds):
            probs.append(f"leds.{needed}: missing (the panel shows power, network and alert)")
    bz = data.get("buzzer") or {}
    bt = data.get("button") or {}
    mp = data.get("modem_power")
    buzzer_kind = bz.get("kind", "tonal")
    if buzzer_kind not in BUZZER_KINDS:
        probs.append(f"buzzer.kind: {buzzer_kind!r} is not one of {', '.join(BUZZER_KINDS)}")
    freq, chirp = bz.get("frequency_hz", 2700.0), bz.get("chirp_hz", bz.get("frequency_hz", 2700.0))
    for key, hz in (("frequency_hz", freq), ("chirp_hz", chirp)):
        if isinstance(hz, bool) or not isinstance(hz, int | float) or not 100 <= hz <= 10_000:
            probs.append(f"buzzer.{key}: {hz!r} is not a frequency between 100 and 10000 Hz")
    if not probs and not freq / 2 <= chirp <= freq * 2:
        probs.append(f"buzzer.chirp_hz: {chirp} must lie within an octave of frequency_hz ({freq})")
    board = Board(
        name=str(data.get("name", name)), description=str(data.get("description", "")), leds=tuple(leds),
        buzzer_pin=_pin(bz.get("pin"), "buzzer.pin", probs), buzzer_kind=buzzer_kind,
        frequency_hz=float(freq) if isinstance(freq, int | float) else 0.0,
        chirp_hz=float(chirp) if isinstance(chirp, int | float) else 0.0,
        buzzer_active_high=bool(bz.get("active_high", True)),
        button_pin=_pin(bt.get("pin"), "button.pin", probs), button_pull_up=bool(bt.get("pull_up", True)),
        modem_pin=None if mp is None else _pin(mp.get("pin"), "modem_power.pin", probs),
        modem_active_high=bool((mp or {}).get("active_high", True)),
        modem_initial=bool((mp or {}).get("initial", True)))
    used: dict[int, str] = {}
    for what, pins in [(f"leds.{x.name}", x.pins) for x in board.leds] + [
            ("buzzer", (board.buzzer_pin,)), ("button", (board.button_pin,)),
            ("modem_power", () if board.modem_pin is None else (board.modem_pin,))]:
        for p in pins:
            if p >= 0 and p in used:
                probs.append(f"{what}: GPIO{p} is already used by {used[p]}")
            used.setdefault(p, what)
    if probs:
        raise ConfigError([f"{where}: {p}" for p in probs])
    return board


def load_board(name: str) -> Board:
    """A board by name (``rpi-gateway-hat``) from hw/boards, or by path to a .toml file."""
    if name.endswith(".toml") or "/" in name:
        p = Path(name)
        try:
            return parse_board(p.read_text(encoding="utf-8"), p.stem, str(p))
        except OSError as exc:
            raise DeviceUnavailable(f"board {p}: {exc.strerror}") from None
    res = resources.files("hw.boards").joinpath(f"{name}.toml")
    if not res.is_file():
        raise DeviceUnavailable(f"no board {name!r} in hw/boards (have: {', '.join(known_boards())})")
    return parse_board(res.read_text(encoding="utf-8"), name, f"hw/boards/{name}.toml")


def known_boards() -> list[str]:
    return sorted(x.name.removesuffix(".toml") for x in resources.files("hw.boards").iterdir()
                  if x.name.endswith(".toml"))


# ------------------------------------------------------------------------------------ pin factory

def is_raspberry_pi() -> bool:
    for p in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            return "Raspberry Pi" in Path(p).read_text(errors="replace")
        except OSError:
            continue
    return False


def _prepare_lgpio(workdir: Path | None) -> None:
    """lgpio makes a notification pipe in the current directory when it is imported, which fails under
    systemd's ProtectSystem=strict (cwd "/"): point it (LG_WD) and the import at a writable directory."""
    if workdir is None or "lgpio" in sys.modules:
        return
    os.environ.setdefault("LG_WD", str(workdir))
    try:
        with contextlib.chdir(workdir):
            import lgpio  # noqa: F401
    except Exception as exc:  # not installed, or not a Pi: gpiozero reports it when it tries
        log.debug("panel: lgpio not imported: %s", exc)


def make_factory(choice: str = "auto", workdir: Path | None = None) -> tuple[Any, bool]:
    """(gpiozero pin factory, is it the mock).  ``auto``: GPIOZERO_PIN_FACTORY if set (``mock`` means mock
    pins with PWM), else gpiozero's default on a Raspberry Pi, else mock pins (a lab or a laptop).
    ``workdir`` is a writable directory for lgpio's notification pipe (the state directory)."""
    env = os.environ.get("GPIOZERO_PIN_FACTORY", "").strip().lower()
    if choice == "auto":
        if env:
            choice = env
        elif is_raspberry_pi():
            _prepare_lgpio(workdir)
            return None, False  # gpiozero picks: lgpio, then RPi.GPIO, then pigpio, then native
        else:
            log.warning("panel: not a Raspberry Pi: using mock GPIO pins")
            choice = "mock"
    try:
        if choice == "mock":
            from gpiozero.pins.mock import MockFactory, MockPWMPin

            return MockFactory(pin_class=MockPWMPin), True
        if choice == "lgpio":
            _prepare_lgpio(workdir)
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory(), False
        if choice == "rpigpio":
            from gpiozero.pins.rpigpio import RPiGPIOFactory

            return RPiGPIOFactory(), False
        if choice == "native":
            from gpiozero.pins.native import NativeFactory

            return NativeFactory(), False
    except Exception as exc:  # ImportError, a missing /dev/gpiochip, no permission ...
        raise DeviceUnavailable(f"GPIO pin factory {choice!r}: {type(exc).__name__}: {exc}") from None
    raise DeviceUnavailable(f"unknown GPIO pin factory {choice!r} (auto, mock, lgpio, rpigpio, native)")


# ------------------------------------------------------------------------------------------ driver

ButtonCallback = Callable[[bool], None]


class PanelDriver:
    """The board's devices as gpiozero objects; thread-safe setters that write only what changed."""

    def __init__(self, board: Board, factory: Any = None, mock: bool = False) -> None:
        from gpiozero import LED, PWMLED, RGBLED, Buzzer, DigitalInputDevice, DigitalOutputDevice, TonalBuzzer
        from gpiozero.tones import Tone

        self.board = board
        self.factory = factory
        self.mock = mock
        self._lock = threading.Lock()
        self._devices: list[Any] = []
        self._levels: dict[str, Level] = {}
        self._buzz_hz: float | None = None
        self._callback: ButtonCallback | None = None
        self.leds: dict[str, Any] = {}
        self._tone = Tone
        try:
            for spec in board.leds:
                if spec.kind == "rgbled":
                    r, g, b = spec.pins
                    dev: Any = RGBLED(r, g, b, active_high=spec.active_high, pin_factory=factory)
                elif spec.kind == "pwmled":
                    dev = PWMLED(spec.pins[0], active_high=spec.active_high, pin_factory=factory)
                else:
                    dev = LED(spec.pins[0], active_high=spec.active_high, pin_factory=factory)
                self._devices.append(dev)
                self.leds[spec.name] = dev
            if board.buzzer_kind == "tonal":
                self.buzzer: Any = TonalBuzzer(board.buzzer_pin, mid_tone=Tone.from_frequency(board.frequency_hz),
                                               octaves=1, pin_factory=factory)
            else:
                self.buzzer = Buzzer(board.buzzer_pin, active_high=board.buzzer_active_high, pin_factory=factory)
            self._devices.append(self.buzzer)
            # no gpiozero debouncing: the core judges edges by their times (bounce, press, hold, stuck).  A plain
            # input, not gpiozero's Button: Button's hold thread wakes ten times a second for when_held, which
            # the core's own hold timing makes unused
            self.button: Any = DigitalInputDevice(board.button_pin, pull_up=board.button_pull_up, bounce_time=None,
                                                  pin_factory=factory)
            self._devices.append(self.button)
            self.button.when_activated = lambda: self._edge(True)
            self.button.when_deactivated = lambda: self._edge(False)
            self.modem: Any = None
            if board.modem_pin is not None:
                self.modem = DigitalOutputDevice(board.modem_pin, active_high=board.modem_active_high,
                                                 initial_value=board.modem_initial, pin_factory=factory)
                self._devices.append(self.modem)
        except Exception as exc:
            self.close()
            raise DeviceUnavailable(f"panel GPIO ({board.name}): {type(exc).__name__}: {exc}") from None

    # --------------------------------------------------------------------------------- outputs
    def apply(self, levels: dict[str, Level], buzzer_hz: float | None) -> None:
        """Set LED brightness (0..1, or an (r, g, b) for RGB LEDs) and the buzzer (a frequency, or None: off)."""
        with self._lock:
            try:
                for name, level in levels.items():
                    if self._levels.get(name) == level or name not in self.leds:
                        continue
                    dev, spec = self.leds[name], self.board.led(name)
                    if isinstance(level, tuple):
                        dev.color = level
                    elif spec is not None and spec.kind == "pwmled":
                        dev.value = level
                    else:
                        dev.value = 1 if level >= 0.5 else 0
                    self._levels[name] = level
                if buzzer_hz != self._buzz_hz:
                    if buzzer_hz is None:
                        self.buzzer.off() if self.board.buzzer_kind == "active" else self.buzzer.stop()
                    elif self.board.buzzer_kind == "active":
                        self.buzzer.on()
                    else:
                        self.buzzer.play(self._tone.from_frequency(buzzer_hz))
                    self._buzz_hz = buzzer_hz
            except Exception as exc:
                raise DeviceUnavailable(f"panel GPIO: {type(exc).__name__}: {exc}") from None

    def set_modem_power(self, on: bool) -> None:
        if self.modem is None:
            raise DeviceUnavailable(f"board {self.board.name} has no modem power line")
        with self._lock:
            try:
                self.modem.value = 1 if on else 0
            except Exception as exc:
                raise DeviceUnavailable(f"modem power GPIO{self.board.modem_pin}: {type(exc).__name__}: {exc}") \
                    from None

    @property
    def modem_power(self) -> bool | None:
        return None if self.modem is None else bool(self.modem.value)

    # ---------------------------------------------------------------------------------- button
    def on_button(self, callback: ButtonCallback | None) -> None:
        """``callback(pressed)`` runs on every edge of the button, in whatever thread saw it."""
        self._callback = callback

    def _edge(self, pressed: bool) -> None:
        cb = self._callback
        if cb is not None:
            cb(pressed)

    @property
    def button_pressed(self) -> bool:
        return bool(self.button.is_active)

    def drive_button(self, pressed: bool) -> None:
        """Mock pins only: move the button's pin as a finger would (pressed pulls it to ground)."""
        if not self.mock:
            raise DeviceUnavailable("the button can only be pressed by software on mock pins")
        pin = self.factory.pin(self.board.button_pin)
        low = pressed if self.board.button_pull_up else not pressed
        pin.drive_low() if low else pin.drive_high()

    # ------------------------------------------------------------------------------------ read
    def read(self) -> dict[str, Any]:
        """What the pins hold now: LED values (RGB as a list), buzzer, button, modem power."""
        with self._lock:
            leds: dict[str, Any] = {}
            for name, dev in self.leds.items():
                v = dev.value
                leds[name] = [round(float(c), 3) for c in v] if isinstance(v, tuple) else round(float(v), 3)
            if self.board.buzzer_kind == "tonal":
                tone = self.buzzer.tone
                hz = None if tone is None else round(float(tone.frequency), 1)
            else:
                hz = self.board.frequency_hz if self.buzzer.is_active else None
            return {"leds": leds, "buzzer": {"on": hz is not None, "frequency_hz": hz},
                    "button": {"pressed": self.button_pressed}, "modem_power": self.modem_power}

    def close(self) -> None:
        self._callback = None
        for dev in reversed(self._devices):
            try:
                dev.close()
            except Exception as exc:  # closing must never stop the daemon from stopping
                log.debug("panel: close %r failed: %s", dev, exc)
        self._devices.clear()
