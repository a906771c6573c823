"""The gpiozero driver on gpiozero's own mock pins (with PWM): real LED, RGBLED, TonalBuzzer, Button objects."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from gateway.core import panel as core
from gateway.core.errors import ConfigError, DeviceUnavailable
from gateway.drivers.panel import PanelDriver, known_boards, load_board, make_factory, parse_board

HAT = Path(__file__).resolve().parents[2] / "hw/boards/rpi-gateway-hat.toml"


@pytest.fixture
def factory() -> MockFactory:
    return MockFactory(pin_class=MockPWMPin)


@pytest.fixture
def driver(factory: MockFactory) -> Iterator[PanelDriver]:
    d = PanelDriver(load_board("rpi-gateway-hat"), factory, mock=True)
    yield d
    d.close()


def test_boards_follow_the_wiring_note() -> None:
    assert {"rpi-gateway-hat", "rpi5-gateway-hat"} <= set(known_boards())
    for name in ("rpi-gateway-hat", "rpi5-gateway-hat"):
        b = load_board(name)
        assert {x.name: x.pins for x in b.leds} == {"power": (17,), "network": (27,), "alert": (22, 23, 24)}
        assert (b.buzzer_pin, b.button_pin, b.modem_pin, b.button_pull_up, b.modem_initial) == (18, 5, 6, True, True)


@pytest.mark.parametrize("edit, key", [
    (("pin = 17", "pin = 99"), "leds.power.pin"),
    (("pin = 27", "pin = 17"), "GPIO17 is already used"),
    (('\nkind = "led"', '\nkind = "lamp"'), "leds.power.kind"),
    (('\nkind = "tonal"', '\nkind = "siren"'), "buzzer.kind"),
    (("chirp_hz = 3300", "chirp_hz = 9000"), "buzzer.chirp_hz"),
    (("[leds.network]", "[leds.net]"), "leds.network: missing"),
    (("pins = { red = 22,", "pins = { rot = 22,"), "leds.alert.pins"),
    (("amber = [1.0, 0.3, 0.0]", "amber = [2.0, 0.3, 0.0]"), "leds.alert.colors.amber"),
    (("[button]", "[button"), "x.toml"),
])
def test_bad_board_files_name_the_key(edit: tuple[str, str], key: str) -> None:
    text = HAT.read_text()
    assert edit[0] in text
    with pytest.raises(ConfigError) as exc:
        parse_board(text.replace(edit[0], edit[1], 1), "x", "x.toml")
    assert key in str(exc.value) and str(exc.value).startswith("x.toml")


def test_unknown_board_and_factory_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DeviceUnavailable, match="no board 'nope' in hw/boards"):
        load_board("nope")
    with pytest.raises(DeviceUnavailable, match="unknown GPIO pin factory"):
        make_factory("wiringpi")
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    f, mock = make_factory("auto")
    assert mock and isinstance(f, MockFactory) and f.pin_class is MockPWMPin


def test_leds_and_rgb_pwm_on_the_pins(driver: PanelDriver, factory: MockFactory) -> None:
    driver.apply({"power": 1.0, "network": 0.0, "alert": (0.0, 0.6, 0.0)}, None)
    assert factory.pin(17).state == 1 and factory.pin(27).state == 0
    assert (factory.pin(22).state, factory.pin(23).state, factory.pin(24).state) == (0, 0.6, 0)
    driver.apply({"alert": (1.0, 0.3, 0.0), "network": 1.0}, None)
    assert (factory.pin(22).state, factory.pin(23).state) == (1.0, 0.3) and factory.pin(27).state == 1
    assert driver.read()["leds"] == {"power": 1.0, "network": 1.0, "alert": [1.0, 0.3, 0.0]}


def test_tonal_buzzer_plays_its_frequency(driver: PanelDriver, factory: MockFactory) -> None:
    pin = factory.pin(18)
    driver.apply({}, 2700.0)
    assert pin.frequency == pytest.approx(2700.0) and pin.state == 0.5
    driver.apply({}, 3300.0)
    assert pin.frequency == pytest.approx(3300.0)
    driver.apply({}, None)
    assert pin.frequency is None and pin.state == 0
    assert driver.read()["buzzer"] == {"on": False, "frequency_hz": None}


def test_buzzer_on_off_sequence_of_a_chirp_rendered_by_hand(driver: PanelDriver, factory: MockFactory) -> None:
    """The runtime renders patterns by evaluating them at its ticks; here the ticks are driven by hand."""
    pin = factory.pin(18)
    pin.clear_states()
    for i in range(40):  # 10 ms steps through the "to LTE" chirp: two beeps
        t = i * 0.01
        driver.apply({}, 3300.0 if core.buzzer_on("chirp_lte", t) else None)
    duty = [s.state for s in pin.states]
    changes = [d for i, d in enumerate(duty) if i == 0 or d != duty[i - 1]]
    assert changes == [0, 0.5, 0, 0.5, 0]


def test_button_pin_edges_reach_the_callback(driver: PanelDriver, factory: MockFactory) -> None:
    seen: list[bool] = []
    driver.on_button(seen.append)
    factory.pin(5).drive_low()  # a finger: the switch pulls the pulled-up pin to ground
    assert driver.button_pressed
    factory.pin(5).drive_high()
    driver.drive_button(True)
    driver.drive_button(False)
    assert seen == [True, False, True, False] and not driver.button_pressed


def test_modem_power_line_is_on_at_start_and_switches(driver: PanelDriver, factory: MockFactory) -> None:
    pin = factory.pin(6)
    assert pin.state == 1 and driver.modem_power is True
    driver.set_modem_power(False)
    assert pin.state == 0 and driver.modem_power is False
    driver.set_modem_power(True)
    assert pin.state == 1


def test_active_buzzer_and_pwm_led_variant(tmp_path: Path, factory: MockFactory) -> None:
    text = HAT.read_text().replace('\nkind = "tonal"', '\nkind = "active"').replace(
        '[leds.network]\nkind = "led"', '[leds.network]\nkind = "pwmled"')
    path = tmp_path / "variant.toml"
    path.write_text(text)
    assert tomllib.loads(text)["leds"]["network"]["kind"] == "pwmled"
    d = PanelDriver(load_board(str(path)), factory, mock=True)
    try:
        d.apply({"network": 0.5}, 2700.0)
        assert factory.pin(27).state == 0.5 and factory.pin(18).state == 1
        d.apply({}, None)
        assert factory.pin(18).state == 0
    finally:
        d.close()


def test_pins_in_use_are_a_clear_error(driver: PanelDriver, factory: MockFactory) -> None:
    with pytest.raises(DeviceUnavailable, match="panel GPIO"):
        PanelDriver(load_board("rpi-gateway-hat"), factory, mock=True)


def test_software_presses_need_mock_pins(factory: MockFactory) -> None:
    d = PanelDriver(load_board("rpi-gateway-hat"), factory, mock=False)
    try:
        with pytest.raises(DeviceUnavailable, match="mock pins"):
            d.drive_button(True)
    finally:
        d.close()
