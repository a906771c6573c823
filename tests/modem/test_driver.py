"""The AT driver against the lab's pty emulator (a real peer): every reply kind, hang, garbage, unplug."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.core.errors import ParseError
from gateway.drivers.modem import (
    AsyncAtPort,
    AtError,
    AtPort,
    ModemDriver,
    ModemGone,
    ModemTimeout,
    load_profile,
    parse_csq,
)
from tests.conftest import wait_until
from tests.modem.conftest import Emu


@pytest.fixture
def port(emu: Emu):  # type: ignore[no-untyped-def]
    p = AtPort(emu.path)
    yield p
    p.close()


def registered(emu: Emu) -> bool:
    return bool(emu.status()["registered"])


def test_ok_and_information_lines(emu: Emu, port: AtPort) -> None:
    assert port.command("AT", 1.0) == []
    assert port.command("ATI", 1.0) == ["Quectel", "EC25", "Revision: EC25EFAR06A06M4G"]
    wait_until(lambda: registered(emu), 5, what="registration")
    dbm = parse_csq(port.command("AT+CSQ", 1.0)[0])
    assert dbm == -85.0


def test_error_and_cme_and_cms_errors(emu: Emu, port: AtPort) -> None:
    with pytest.raises(AtError) as e:
        port.command("AT+NOSUCH", 1.0)
    assert e.value.kind == "ERROR" and e.value.code is None
    emu.control("no-sim")
    with pytest.raises(AtError) as e:
        port.command("AT+CPIN?", 1.0)
    assert e.value.kind == "+CME ERROR" and e.value.code == 10 and "SIM not inserted" in str(e.value)
    with pytest.raises(AtError) as e:
        port.command('AT+CMGS="+490000"', 1.0)
    assert e.value.kind == "+CMS ERROR" and e.value.code == 310


def test_echo_on_and_off(emu: Emu, port: AtPort) -> None:
    assert emu.status()["echo"] is True  # a module powers up echoing
    assert port.command("AT+CPIN?", 1.0) == ["+CPIN: READY"]  # the echoed command is not an answer line
    port.command("ATE0", 1.0)
    assert emu.status()["echo"] is False
    assert port.command("AT+CPIN?", 1.0) == ["+CPIN: READY"]
    port.command("ATE1", 1.0)
    assert port.command("AT+CFUN?", 1.0) == ["+CFUN: 1"]


def test_urc_interleaved_with_a_reply_is_queued_apart(emu: Emu, port: AtPort) -> None:
    emu.control("urc", '+QIND: "csq",20,99')
    emu.control("urc", "RING")
    assert port.command("AT+CFUN?", 1.0) == ["+CFUN: 1"]
    assert port.take_urcs() == ['+QIND: "csq",20,99', "RING"]
    assert port.take_urcs() == []


def test_registration_urcs_between_commands(emu: Emu, port: AtPort) -> None:
    wait_until(lambda: registered(emu), 5, what="registration")
    port.command("AT+CEREG=1", 1.0)
    # the read reply has the same prefix as the URC: during the command it is the answer, not a URC
    assert port.command("AT+CEREG?", 1.0) == ["+CEREG: 1,1"]
    assert port.take_urcs() == []
    emu.control("down")
    seen: list[str] = []

    def got() -> bool:
        port.drain(0.05)
        seen.extend(port.take_urcs())
        return any(u.startswith("+CEREG: 2") for u in seen)

    wait_until(got, 5, what="+CEREG URC")
    assert port.command("AT+CEREG?", 1.0) == ["+CEREG: 1,2"]


def test_hang_is_a_timeout(emu: Emu, port: AtPort) -> None:
    port.command("AT", 1.0)
    emu.control("hang")
    with pytest.raises(ModemTimeout):
        port.command("AT+CSQ", 0.3)
    emu.control("up")
    assert port.command("AT", 1.0) == []


def test_garbage_is_a_parse_error(emu: Emu, port: AtPort) -> None:
    emu.control("garbage")
    with pytest.raises(ParseError):
        port.command("AT+CSQ", 0.3)
    emu.control("up")
    assert port.command("AT+CFUN?", 1.0) == ["+CFUN: 1"]  # the noise left behind does not leak into replies


def test_unplug_mid_command_then_reopen(emu: Emu, port: AtPort) -> None:
    port.command("AT", 1.0)
    assert port.opened_count == 1
    emu.control("hang")  # the command below is in flight when the device goes away
    result: list[BaseException] = []

    def run() -> None:
        try:
            port.command("AT+CSQ", 10.0)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            result.append(exc)

    seen = emu.status()["bytes_in"]
    t = threading.Thread(target=run)
    t.start()
    wait_until(lambda: emu.status()["bytes_in"] > seen, 5, what="the command reaching the modem")  # type: ignore[operator]
    emu.control("unplug")
    t.join(10)
    assert not t.is_alive()
    assert len(result) == 1 and isinstance(result[0], ModemGone)
    with pytest.raises(ModemGone):
        port.command("AT", 0.5)  # still unplugged: absent, not a hang
    emu.control("up")
    wait_until(lambda: _answers(port), 5, what="re-open after replug")
    assert port.opened_count == 2


def _answers(port: AtPort) -> bool:
    try:
        port.command("AT", 0.5)
        return True
    except (ModemGone, ModemTimeout, ParseError):
        return False


def test_async_port_never_blocks_the_loop(emu: Emu) -> None:
    emu.control("hang")

    async def main() -> int:
        at = AsyncAtPort(AtPort(emu.path), grace_s=0.5)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)  # one turn of the loop: a blocked loop gets none while it waits

        t = asyncio.ensure_future(ticker())
        with pytest.raises(ModemTimeout):
            await at.command("AT", 0.3)
        t.cancel()
        await at.close()
        return ticks

    assert asyncio.run(main()) > 3


def test_driver_reads_a_healthy_modem_and_dials(emu: Emu) -> None:
    async def main() -> None:
        drv = ModemDriver(emu.path, load_profile("quectel-ec25"), command_timeout_s=1.0)
        wait_until(lambda: registered(emu), 5)
        r = await drv.read()
        assert (r.present, r.responsive, r.sim, r.registration) == (True, True, "ready", "home")
        assert (r.operator, r.technology, r.rssi_dbm) == ("Lab Telecom", "LTE", -85.0)
        assert r.rsrp_dbm == -110.0 and r.rsrq_db == -10.0 and r.sinr_db is not None
        assert r.iccid == "89490200001234567890" and r.data_connected is False
        await drv.dial("lab.apn")
        assert emu.status()["apn"] == "lab.apn"
        assert (await drv.read()).data_connected is True
        assert emu.status()["echo"] is False  # init turned echo off
        await drv.hangup()
        assert (await drv.read()).data_connected is False
        await drv.close()

    asyncio.run(main())


def test_driver_readings_under_faults(emu: Emu) -> None:
    async def main() -> None:
        drv = ModemDriver(emu.path, load_profile("quectel-ec25"), command_timeout_s=0.3)
        emu.control("no-sim")
        r = await drv.read()
        assert (r.present, r.responsive, r.sim, r.registration) == (True, True, "missing", None)
        emu.control("up")
        emu.control("signal", "none")
        r = await drv.read()
        assert r.rssi_dbm is None and r.registration == "searching"
        emu.control("signal", "-101")
        wait_until(lambda: registered(emu), 5)
        assert (await drv.read()).rssi_dbm == -101.0
        emu.control("hang")
        r = await drv.read()
        assert r.present and not r.responsive and "no answer" in r.error
        emu.control("garbage")
        r = await drv.read()
        assert r.present and not r.responsive
        emu.control("unplug")
        r = await drv.read()
        assert not r.present
        emu.control("up")
        r = await wait_for_reading(drv, lambda r: r.registration == "home")
        assert r.operator == "Lab Telecom"
        await drv.close()

    asyncio.run(main())


def test_reset_reenumerates_and_driver_reinitialises(emu: Emu) -> None:
    async def main() -> None:
        drv = ModemDriver(emu.path, load_profile("quectel-ec25"), command_timeout_s=0.5)
        await wait_for_reading(drv, lambda r: r.registration == "home")
        before = emu.status()["device"]
        await drv.reset()  # AT+CFUN=1,1: the module leaves the bus and comes back saying RDY
        r = await wait_for_reading(drv, lambda r: r.registration == "home")
        assert r.responsive and emu.status()["resets"] == 1
        assert emu.status()["echo"] is False  # re-initialised after the reboot
        assert emu.status()["device"] and before
        await drv.close()

    asyncio.run(main())


def test_simcom_profile_against_the_emulator(emu: Emu) -> None:
    async def main() -> None:
        drv = ModemDriver(emu.path, load_profile("simcom-sim7600"), command_timeout_s=0.5)
        await wait_for_reading(drv, lambda r: r.registration == "home")
        # read again: the read that first saw "home" may have asked AT+CPSI? just before the modem
        # registered (the answer was NO SERVICE then); this one runs wholly while registered
        r = await drv.read()
        assert r.registration == "home", r
        assert r.iccid == "89490200001234567890" and r.rsrp_dbm == -110.0 and r.rsrq_db == -10.0
        await drv.dial("internet")
        assert (await drv.read()).data_connected is True
        await drv.close()

    asyncio.run(main())


async def wait_for_reading(drv: ModemDriver, pred, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await drv.read()
        if pred(r):
            return r
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no matching reading within {timeout} s; last {r}")
        # no pause needed: each read is several AT round trips through the pty, the modem paces the loop
