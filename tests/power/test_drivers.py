"""The UPS driver against a real upsd + dummy-ups, the PoE driver against a real snmpsim."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.core.errors import DeviceRefused, DeviceUnavailable, ParseError
from gateway.drivers.poe import PoeSwitch, load_profile, parse_profile, profiles
from gateway.drivers.snmp_v2c import V2cClient
from gateway.drivers.ups import UpsDriver, UpsStale
from tests.conftest import needs_root, until, wait_until
from tests.power.peers import RFC3621_ADMIN, TPLINK_ADMIN, NutPeer, SnmpSim, free_port

pytestmark = [pytest.mark.lab, needs_root]


def _ups(nut: NutPeer, **kw: object) -> UpsDriver:
    args: dict[str, object] = {"name": nut.name, "host": nut.host, "port": nut.port, "username": nut.user,
                               "password": nut.password, "timeout_s": 1.0}
    args.update(kw)
    return UpsDriver(**args)  # type: ignore[arg-type]


def test_reads_the_real_ups_and_follows_a_mains_cut(nut: NutPeer) -> None:
    async def main() -> None:
        ups = _ups(nut)
        r = await ups.read()
        assert r.status == ("OL", "DISCHRG")  # what this real unit's dump says
        assert (r.charge_pct, r.runtime_s, r.load_pct, r.input_voltage) == (100.0, 3618.0, 5.0, 232.0)
        assert r.input_transfer_low == 160.0 and "BK650M2" in r.model
        nut.cut()
        await asyncio.to_thread(wait_until, lambda: "OB" in nut.status(), 10)
        assert (await ups.read()).status == ("OB", "DISCHRG")
        await ups.close()

    asyncio.run(main())


def test_fsd_is_set_through_upsd(nut: NutPeer) -> None:
    async def main() -> None:
        ups = _ups(nut)
        await ups.set_fsd()
        assert "FSD" in (await ups.read()).status
        bad = _ups(nut, password="wrong")
        with pytest.raises(DeviceRefused):
            await bad.set_fsd()

    asyncio.run(main())


def test_stale_driver_is_upsstale_and_upsd_gone_is_unavailable(nut: NutPeer) -> None:
    async def main() -> None:
        ups = _ups(nut)
        await ups.read()
        nut.comm_lost()

        async def stale() -> bool:
            try:
                await ups.read()
            except UpsStale:
                return True
            except DeviceUnavailable:
                return False  # upsd may say WAIT for a moment once its driver's socket closes, then stale
            return False

        await until(stale, 20, "upsd to report the UPS stale", interval=0.1)
        with pytest.raises(DeviceRefused):
            await _ups(nut, name="nosuchups").read()
        nowhere = UpsDriver("ups", "127.0.0.1", free_port(), timeout_s=0.5)
        with pytest.raises(DeviceUnavailable) as exc:
            await nowhere.read()
        assert not isinstance(exc.value, UpsStale)

    asyncio.run(main())


# ------------------------------------------------------------------------------------------- PoE

def test_profiles_are_data() -> None:
    assert {"rfc3621", "tplink", "cisco"} <= set(profiles())
    p = load_profile("rfc3621")
    assert (p.on, p.off) == (1, 2) and p.oid(p.admin_oid, 5, 3) == "1.3.6.1.2.1.105.1.1.1.3.3.5"
    t = load_profile("tplink")
    assert (t.on, t.off) == (1, 0) and t.oid(t.admin_oid, 2, 1) == f"{TPLINK_ADMIN}.2"
    with pytest.raises(ParseError):
        parse_profile('admin_oid = "1.2.x.{port}"\non = 1\noff = 1\n', "bad")
    with pytest.raises(DeviceUnavailable):
        load_profile("no-such-switch")


def _sw(snmp: SnmpSim, profile: str = "rfc3621", **kw: object) -> PoeSwitch:
    args: dict[str, object] = {"port": snmp.port, "group": 3, "timeout_s": 2.0, "retries": 2}
    args.update(kw)
    return PoeSwitch("core", snmp.host, load_profile(profile), **args)  # type: ignore[arg-type]


def test_rfc3621_set_reads_back_and_is_seen_by_others(snmp: SnmpSim) -> None:
    async def main() -> None:
        sw = _sw(snmp)
        st = await sw.set_port(7, False)
        assert not st.on
        assert await asyncio.to_thread(snmp.admin, 7) == 2  # an independent GET sees the port off
        st = await sw.set_port(7, True)
        assert st.on and await asyncio.to_thread(snmp.admin, 7) == 1
        # port 3 on the front panel is MIB index 5 here, and it draws power
        cisco = _sw(snmp, "cisco")
        st = await cisco.get_port(5)
        assert st.on and st.delivering and st.power_w == 15.4
        assert await cisco.pse_power_w() == 30.0
        await sw.close()
        await cisco.close()

    asyncio.run(main())


def test_v3_and_tplink(snmp: SnmpSim) -> None:
    async def main() -> None:
        v3 = _sw(snmp, version="3", user=snmp.v3_user, auth_key=snmp.v3_auth, priv_key=snmp.v3_priv,
                 context="private")
        assert not (await v3.set_port(8, False)).on
        assert await asyncio.to_thread(snmp.admin, 8) == 2
        assert (await v3.set_port(8, True)).on
        tp = _sw(snmp, "tplink", community="tplink", group=1)
        st = await tp.set_port(3, False)
        assert not st.on and st.power_w == 4.3
        assert await asyncio.to_thread(snmp.get, f"{TPLINK_ADMIN}.3", "tplink") == 0
        assert (await tp.set_port(3, True)).on
        for s in (v3, tp):
            await s.close()

    asyncio.run(main())


def test_failures_are_translated_never_raised_raw(snmp: SnmpSim) -> None:
    async def main() -> None:
        with pytest.raises(DeviceRefused):  # noSuchInstance: port 1 does not exist on this switch
            await _sw(snmp).get_port(1)
        with pytest.raises(DeviceUnavailable):  # a wrong community is silently dropped: a timeout
            await _sw(snmp, community="wrong", retries=0, timeout_s=0.3).get_port(5)
        with pytest.raises(DeviceUnavailable):  # nobody listens there
            await PoeSwitch("gone", "127.0.0.1", load_profile("rfc3621"), port=free_port(), timeout_s=0.2,
                            retries=0, group=3).set_port(5, False)
        with pytest.raises(DeviceRefused):  # v3 with a wrong key
            await _sw(snmp, version="3", user=snmp.v3_user, auth_key="wrongwrongwrong", priv_key=snmp.v3_priv,
                      context="private", retries=0, timeout_s=0.3).get_port(5)

    asyncio.run(main())


def test_profile_from_a_path(tmp_path: Path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text('name = "x"\nadmin_oid = "1.3.6.1.4.1.1.{port}"\non = 1\noff = 0\n')
    assert load_profile(str(f)).key == "mine"


# the small v2c client the PoE driver uses (its broken-agent cases are in test_snmp_v2c.py)
TPLINK_POWER = "1.3.6.1.4.1.11863.6.56.1.1.2.1.1.7"


def test_v2c_client_get_set_and_concurrent_requests_against_snmpsim(snmp: SnmpSim) -> None:
    async def main() -> None:
        c = V2cClient(snmp.host, snmp.port, timeout_s=2.0, retries=2)
        try:
            (oid, value), = await c.get("public", [f"{RFC3621_ADMIN}.3.5"])
            assert oid == f"{RFC3621_ADMIN}.3.5" and int(value) == 1
            (_, value), = await c.set("private", [(f"{RFC3621_ADMIN}.3.9", 2)])
            assert int(value) == 2
            assert await asyncio.to_thread(snmp.admin, 9) == 2  # an independent GET sees the port off
            (_, value), = await c.set("private", [(f"{RFC3621_ADMIN}.3.9", 1)])
            assert int(value) == 1 and await asyncio.to_thread(snmp.admin, 9) == 1
            # eight requests in flight on one socket, each answer matched to its request by request-id
            got = await asyncio.gather(*(c.get("tplink", [f"{TPLINK_POWER}.{p}"]) for p in range(1, 9)))
            assert [int(v) for ((_, v),) in got] == [40 + p for p in range(1, 9)]
        finally:
            await c.close()

    asyncio.run(main())


def test_v2c_client_refusals_and_silence_from_snmpsim(snmp: SnmpSim) -> None:
    async def main() -> None:
        c = V2cClient(snmp.host, snmp.port, timeout_s=2.0, retries=1, where="switch core")
        try:
            with pytest.raises(DeviceRefused, match="NoSuchInstance"):  # no port 1 in group 3
                await c.get("public", [f"{RFC3621_ADMIN}.3.1"])
            with pytest.raises(DeviceRefused, match="switch core: set sysDescr: "):  # a read-only string
                await c.set("private", [("1.3.6.1.2.1.1.1.0", 1)], "set sysDescr")
            quick = V2cClient(snmp.host, snmp.port, timeout_s=0.3, retries=1)
            with pytest.raises(DeviceUnavailable, match="community"):  # dropped without a word
                await quick.get("wrong", [f"{RFC3621_ADMIN}.3.5"])
            await quick.close()
            (_, value), = await c.get("public", [f"{RFC3621_ADMIN}.3.5"])  # the client still works
            assert int(value) == 1
        finally:
            await c.close()

    asyncio.run(main())
