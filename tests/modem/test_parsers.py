"""Reply parsers: known replies give the right values; anything else raises ParseError and nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.errors import ParseError
from gateway.drivers.modem import (
    PARSERS,
    load_profile,
    parse_cereg,
    parse_cesq,
    parse_cops,
    parse_cpin,
    parse_cpsi,
    parse_creg,
    parse_csq,
    parse_iccid,
    parse_profile,
    parse_qcrmcall,
    parse_qeng,
    parse_qnetdevctl,
    parse_registration,
)


def test_csq() -> None:
    assert parse_csq("+CSQ: 14,99") == -85.0
    assert parse_csq("+CSQ: 0,0") == -113.0
    assert parse_csq("+CSQ: 31,99") == -51.0
    assert parse_csq("+CSQ: 99,99") is None
    for bad in ("+CSQ: 50,99", "+CSQ: 1", "+CSQ:", "+CESQ: 1,2", "+CSQ: a,b"):
        with pytest.raises(ParseError):
            parse_csq(bad)


def test_cesq() -> None:
    assert parse_cesq("+CESQ: 99,99,255,255,20,31") == (-110.0, -10.0)
    assert parse_cesq("+CESQ: 99,99,255,255,255,255") == (None, None)
    with pytest.raises(ParseError):
        parse_cesq("+CESQ: 99,99,255,255,40,200")


def test_registration_read_replies_and_urcs() -> None:
    assert parse_creg("+CREG: 0,1").state == "home"
    assert parse_creg("+CREG: 2,5,\"1A2B\",\"01A2B3C4\",7") == \
        parse_creg('+CREG: 5,"1A2B","01A2B3C4",7')  # read reply with n=2 and the URC agree
    r = parse_cereg('+CEREG: 2,1,"1A2B","01A2B3C4",7')
    assert (r.state, r.lac, r.cell_id, r.technology) == ("home", "1A2B", "01A2B3C4", "LTE")
    assert parse_cereg("+CEREG: 2").state == "searching"  # URC, n=1
    assert parse_cereg("+CEREG: 0,3").state == "denied"
    assert parse_registration("+CGREG: 0,0").state == "not_registered"
    for bad in ("+CREG: 0,12", "+CREG: x", "+CREG:", '+CREG: 1,"zz"', "+CEREG: 1,1"):
        with pytest.raises(ParseError):
            parse_creg(bad)


def test_cops_technologies() -> None:
    assert parse_cops('+COPS: 0,0,"Telekom.de",7') == ("Telekom.de", "LTE")
    assert parse_cops('+COPS: 0,0,"Vodafone",2') == ("Vodafone", "UMTS")
    assert parse_cops('+COPS: 0,0,"O2 - DE",0') == ("O2 - DE", "GSM")
    assert parse_cops('+COPS: 0,2,"26201",13') == ("26201", "5G-NSA")
    assert parse_cops("+COPS: 0") == (None, None)
    assert parse_cops('+COPS: 1,0,"A,B",7') == ("A,B", "LTE")  # commas inside quotes
    for bad in ('+COPS: 0,0,Telekom,7', '+COPS: 0,0', "+COPS: 9", '+COPS: 0,0,"x",99'):
        with pytest.raises(ParseError):
            parse_cops(bad)


def test_cpin_and_iccid() -> None:
    assert parse_cpin("+CPIN: READY") == "ready"
    assert parse_cpin("+CPIN: SIM PIN") == "pin_needed"
    assert parse_cpin("+CPIN: SIM PUK") == "puk_needed"
    assert parse_cpin("+CPIN: NOT INSERTED") == "missing"
    with pytest.raises(ParseError):
        parse_cpin("+CPIN: MAYBE")
    assert parse_iccid("+QCCID: 89490200001234567890F") == "89490200001234567890"
    assert parse_iccid("+ICCID: 89490200001234567890") == "89490200001234567890"
    assert parse_iccid("89490200001234567890") == "89490200001234567890"
    with pytest.raises(ParseError):
        parse_iccid("+QCCID: 1234")


def test_cell_info() -> None:
    c = parse_qeng('+QENG: "servingcell","NOCONN","LTE","FDD",262,01,1A2B3C4,123,1300,3,5,5,1A2B,-102,-11,-74,14,30')
    assert (c.technology, c.rsrp_dbm, c.rsrq_db, c.rssi_dbm, c.sinr_db) == ("LTE", -102.0, -11.0, -74.0, 14.0)
    assert parse_qeng('+QENG: "servingcell","SEARCH"').rsrp_dbm is None
    c = parse_cpsi("+CPSI: LTE,Online,262-01,0x1A2B,27024956,123,EUTRAN-BAND3,1300,5,5,-94,-1020,-720,15")
    assert (c.rsrq_db, c.rsrp_dbm, c.rssi_dbm, c.sinr_db) == (-9.4, -102.0, -72.0, 15.0)
    assert parse_cpsi("+CPSI: NO SERVICE,Online").technology is None


def test_data_status() -> None:
    assert parse_qnetdevctl("+QNETDEVCTL: 1,1,1,1") is True
    assert parse_qnetdevctl("+QNETDEVCTL: 0,1,0,0") is False
    assert parse_qcrmcall("$QCRMCALL: 1,V4") is True
    with pytest.raises(ParseError):
        parse_qcrmcall("$QCRMCALL: 1")


def test_profiles_are_valid_data() -> None:
    for name in ("quectel-ec25", "simcom-sim7600"):
        p = load_profile(name)
        assert p.command("signal") == "AT+CSQ"
        assert p.sequence("data_start")
        assert p.timeout("data_start", 2.0) > p.timeout("signal", 2.0)
    assert load_profile("simcom-sim7600").command("reset") == "AT+CRESET"
    assert load_profile("quectel-ec25").command("reset") == "AT+CFUN=1,1"
    with pytest.raises(ParseError):
        parse_profile("[commands]\nprobe = 'AT'\n", "broken")
    with pytest.raises(ParseError):
        parse_profile(load_profile_text().replace('cell = "qeng"', 'cell = "nope"'), "x")


def load_profile_text() -> str:
    from importlib import resources

    return resources.files("hw.modems").joinpath("quectel-ec25.toml").read_text()


# ------------------------------------------------------------------------------------------ fuzzing

PREFIXES = ["+CSQ: ", "+CESQ: ", "+CREG: ", "+CEREG: ", "+CGREG: ", "+COPS: ", "+CPIN: ", "+QCCID: ",
            '+QENG: "servingcell",', "+CPSI: ", "+QNETDEVCTL: ", "+QIACT: ", "$QCRMCALL: ", ""]
field = st.one_of(st.integers(-2000, 300).map(str), st.text(max_size=8), st.sampled_from(
    ['"LTE"', '"1A2B"', "LTE", "V4", '"', "", "255", "99", "READY", "SIM PIN", "-", '"servingcell"']))
lines = st.one_of(
    st.text(max_size=80),
    st.builds(lambda p, fs: p + ",".join(fs), st.sampled_from(PREFIXES), st.lists(field, max_size=20)),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(PARSERS)), line=lines)
def test_parsers_raise_only_parse_error(name: str, line: str) -> None:
    try:
        PARSERS[name](line)
    except ParseError:
        pass


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(sorted(PARSERS)), value=st.one_of(st.none(), st.integers(), st.binary(max_size=5)))
def test_parsers_reject_non_text(name: str, value: object) -> None:
    with pytest.raises(ParseError):
        PARSERS[name](value)  # type: ignore[arg-type]
