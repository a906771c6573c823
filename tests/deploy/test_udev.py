"""udev rules: parsed (udevadm in systemd 252 has no `verify`) and evaluated against described devices."""

from __future__ import annotations

import glob
import shutil
import subprocess

import pytest

from tests.deploy._helpers import REPO, load_script

RULES = REPO / "hw/udev/70-office-gateway.rules"
udev = load_script("udevrules")


def test_rules_parse() -> None:
    rules = udev.load(RULES)
    assert rules.rules and "office_gateway_end" in rules.labels


def test_udevadm_verify_when_available() -> None:
    udevadm = shutil.which("udevadm")
    if udevadm is None or "verify" not in subprocess.run([udevadm, "--help"], capture_output=True, text=True).stdout:
        pytest.skip("udevadm has no verify (systemd < 253); the parser above stands in")
    res = subprocess.run([udevadm, "verify", "--resolve-names=never", str(RULES)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_parser_accepts_the_systems_own_rules() -> None:
    """The parser is not stricter than udev: every rules file shipped on this machine parses."""
    files = sorted(glob.glob("/lib/udev/rules.d/*.rules"))
    if not files:
        pytest.skip("no system udev rules here")
    for f in files:
        udev.load(f)


@pytest.mark.parametrize("line, complaint", [
    ('SUBSYSTEM="tty", SYMLINK+="x"', "is a match key"),
    ('ATTRS{idVendor}="2c7c", MODE="0660"', "is a match key"),
    ('SUBSYSTEM=="tty", GROUP=="dialout"', "can only be assigned"),
    ('SUBSYSTEM=="tty", MODE="rw"', "not an octal mode"),
    ('ENV="1"', "needs {attribute}"),
    ('SUBSYSTEM=="tty" SYMLINK+="x"', "text after"),
    ('SUBSYSTEM=="tty", SYMLNK+="x"', "unknown key"),
    ('SUBSYSTEM=="tty", GOTO="nowhere"', "has no LABEL"),
    ('SUBSYSTEM=="tty", SYMLINK+="x",', "trailing comma"),
])
def test_parser_rejects_common_mistakes(line: str, complaint: str) -> None:
    with pytest.raises(udev.RulesError, match=complaint):
        udev.parse(line + "\n", "t.rules")


def _modem_port(vendor: str, product: str, interface: str) -> object:
    dev = udev.Device("usb", kernel="1-1", devtype="usb_device", attrs={"idVendor": vendor, "idProduct": product})
    intf = udev.Device("usb", kernel=f"1-1:1.{int(interface)}", devtype="usb_interface", driver="option",
                       attrs={"bInterfaceNumber": interface}, parent=dev)
    port = udev.Device("usb-serial", kernel=f"ttyUSB{int(interface)}", driver="option1", parent=intf)
    return udev.Device("tty", kernel=f"ttyUSB{int(interface)}", parent=port)


@pytest.mark.parametrize("vendor, product", [("2c7c", "0125"), ("1e0e", "9001")])
def test_modem_at_port_gets_the_stable_name(vendor: str, product: str) -> None:
    rules = udev.load(RULES)
    at = udev.evaluate(rules, _modem_port(vendor, product, "02"))
    assert at.symlinks == ["gateway-modem"]
    assert at.group == "dialout" and at.mode == "0660" and "systemd" in at.tags
    assert at.env["ID_MM_DEVICE_IGNORE"] == "1"
    for other in ("00", "01", "03"):
        out = udev.evaluate(rules, _modem_port(vendor, product, other))
        assert out.symlinks == [], f"interface {other} must not be /dev/gateway-modem"
        assert out.env.get("ID_MM_DEVICE_IGNORE") == "1", "ModemManager must stay off every port"


def test_other_serial_devices_are_left_alone() -> None:
    out = udev.evaluate(udev.load(RULES), _modem_port("0403", "6001", "02"))  # an FTDI cable
    assert out.symlinks == [] and "ID_MM_DEVICE_IGNORE" not in out.env and out.group is None


@pytest.mark.parametrize("vendor", ["051d", "0463", "0764", "09ae"])
def test_ups_usb_device_is_readable_by_nut(vendor: str) -> None:
    dev = udev.Device("usb", kernel="1-2", devtype="usb_device", attrs={"idVendor": vendor, "idProduct": "0002"})
    out = udev.evaluate(udev.load(RULES), dev)
    assert out.group == "nut" and out.mode == "0664"
    removed = udev.evaluate(udev.load(RULES), dev, action="remove")
    assert removed.group is None


def test_ups_interfaces_and_unknown_vendors_untouched() -> None:
    rules = udev.load(RULES)
    ups = udev.Device("usb", kernel="1-2", devtype="usb_device", attrs={"idVendor": "051d"})
    intf = udev.Device("usb", kernel="1-2:1.0", devtype="usb_interface", parent=ups)
    assert udev.evaluate(rules, intf).group is None
    other = udev.Device("usb", kernel="1-3", devtype="usb_device", attrs={"idVendor": "046d"})
    assert udev.evaluate(rules, other).group is None


def test_evaluator_enforces_same_ancestor_for_attrs() -> None:
    """The mistake the modem rule avoids: ATTRS keys on one line must match one device."""
    rules = udev.parse('SUBSYSTEM=="tty", ATTRS{idVendor}=="2c7c", ATTRS{bInterfaceNumber}=="02", '
                       'SYMLINK+="wrong"\n')
    assert udev.evaluate(rules, _modem_port("2c7c", "0125", "02")).symlinks == []
