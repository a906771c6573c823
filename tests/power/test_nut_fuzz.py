"""Fuzzing the NUT reply handling: whatever upsd (or something pretending to be it) sends, the poll gives a
variable map or one of the driver's own errors, the mapping to a reading never raises, and the power
machine takes any reading it produces."""

from __future__ import annotations

import socket
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core import power as core
from gateway.core.errors import GatewayError
from gateway.drivers.ups import UpsDriver
from tests.power.test_core import POLICY

VAR_NAMES = ["ups.status", "battery.charge", "battery.runtime", "ups.load", "input.voltage", "battery.voltage",
             "ups.mfr", "ups.model", "battery.charge.low", "battery.runtime.low", "ups.test.result"]
FLAGS = ["OL", "OB", "LB", "HB", "RB", "CHRG", "DISCHRG", "BYPASS", "CAL", "OFF", "OVER", "TRIM", "BOOST",
         "FSD", "ALARM", "WAIT", "HE", "#", "ol"]
NUMBERISH = st.one_of(st.integers(-70000, 70000).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                      st.sampled_from(["", " ", "65535", "0xFFFF", "1e309", "nan", "-0", "100.5%", "12,5"]),
                      st.text(max_size=12))
VALUES = st.dictionaries(st.one_of(st.sampled_from(VAR_NAMES), st.text(string.printable, max_size=20)),
                         st.one_of(NUMBERISH, st.lists(st.sampled_from(FLAGS), max_size=6).map(" ".join)),
                         max_size=12)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_any_variables_map_to_a_reading_the_power_machine_takes(values: dict[str, str]) -> None:
    reading = core.reading_from_vars(values)
    assert reading.charge_pct is None or 0.0 <= reading.charge_pct <= 100.0
    assert reading.runtime_s is None or reading.runtime_s >= 0.0
    state = core.initial(POLICY, 0.0)
    for t in (1.0, 2.0, 10.0):
        state, _ = core.step(state, reading, t)
    assert state.state in core.STATES


def _quoted(value: str) -> bytes:
    return ('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"').encode("utf-8", "surrogatepass")


LINE = st.one_of(
    st.tuples(st.sampled_from(VAR_NAMES), st.text(max_size=20)).map(lambda nv: b"VAR ups " + nv[0].encode() + b" "
                                                                     + _quoted(nv[1])),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from([b"ERR DATA-STALE", b"ERR UNKNOWN-UPS", b"ERR ACCESS-DENIED", b"END LIST VAR ups",
                     b"BEGIN LIST VAR ups", b"VAR ups ups.status OL", b'VAR ups "', b"VAR other ups.load \"3\""]),
)
REPLY = st.tuples(st.booleans(), st.lists(LINE, max_size=8), st.sampled_from(["end", "eof", "cut"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(REPLY)
def test_any_reply_to_list_var_is_a_map_or_the_drivers_own_error(reply: tuple[bool, list[bytes], str]) -> None:
    begin, lines, ending = reply
    data = (b"BEGIN LIST VAR ups\n" if begin else b"") + b"".join(ln + b"\n" for ln in lines)
    data += {"end": b"END LIST VAR ups\n", "eof": b"", "cut": b"VAR ups ups.lo"}[ending]
    ours, upsd = socket.socketpair()
    ours.settimeout(2.0)
    drv = UpsDriver("ups", timeout_s=2.0)
    drv._poll_sock, drv._poll_file = ours, ours.makefile("rb")  # the kept poll connection, already open
    try:
        upsd.sendall(data)
        upsd.shutdown(socket.SHUT_WR)  # then upsd says no more: a reply without its end is cut short
        try:
            values = drv._list_vars_blocking()
        except GatewayError:
            return  # DeviceUnavailable / ParseError / UpsStale: a logged transition for the service
        assert isinstance(values, dict) and values and all(isinstance(v, str) for v in values.values())
        core.reading_from_vars(values)
    finally:
        drv._drop()
        ours.close()
        upsd.close()
