"""The LTE modem over AT commands (pyserial), its reply parsers, its profile, byte counters and nftables.

Three layers, each usable alone:

* the **reply parsers** (``parse_csq`` …): pure functions on one reply line; they raise only
  :class:`ParseError`, whatever the input;
* :class:`AtPort`: one command at a time on a serial port, in a worker thread with per-command timeouts.
  It tells final result codes (``OK``, ``ERROR``, ``+CME ERROR: n``, ``+CMS ERROR: n``) from unsolicited
  result codes (``+CREG:``, ``RDY``, ``+QIND:`` …, queued apart), copes with echo on or off, and turns
  silence into :class:`ModemTimeout`, garbage and partial lines into :class:`ParseError`, and a device that
  went away (EIO, unplugged) into :class:`ModemGone`; it re-opens the device when it is back;
* :class:`ModemDriver`: a modem described by a profile (``hw/modems/*.toml``) read into one
  :class:`~gateway.core.modem.Reading`, plus dial, hang up and radio reset.

Library errors are translated here, once, into the gateway's own exceptions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import os
import re
import threading
import time
import tomllib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.core.errors import DeviceRefused, DeviceUnavailable, ParseError
from gateway.core.modem import Reading

log = logging.getLogger("gateway.modem")


class ModemGone(DeviceUnavailable):
    """The device node is missing or stopped working (unplugged, USB reset)."""


class ModemTimeout(DeviceUnavailable):
    """The modem did not finish its reply in time (hung, or far too slow)."""


class AtError(DeviceRefused):
    """The modem answered with a final error: ``ERROR``, ``+CME ERROR: n`` or ``+CMS ERROR: n``."""

    def __init__(self, command: str, kind: str, code: int | None = None, text: str = "") -> None:
        self.command, self.kind, self.code, self.text = command, kind, code, text
        what = kind if code is None else f"{kind} {code}"
        super().__init__(f"{command}: {what}{' (' + text + ')' if text else ''}")


# ------------------------------------------------------------------------------------------ parsers

CME_SIM_MISSING = (10, 13)  # SIM not inserted, SIM failure
CME_NAMES = {3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
             11: "SIM PIN required", 12: "SIM PUK required", 13: "SIM failure", 14: "SIM busy",
             15: "SIM wrong", 16: "incorrect password", 30: "no network service", 100: "unknown"}

REG_STATES = {0: "not_registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming",
              6: "home", 7: "roaming", 8: "searching", 9: "home", 10: "roaming"}

ACT_NAMES = {0: "GSM", 1: "GSM", 2: "UMTS", 3: "EDGE", 4: "HSDPA", 5: "HSUPA", 6: "HSPA", 7: "LTE",
             8: "EC-GSM", 9: "NB-IoT", 10: "LTE", 11: "5G", 12: "5G", 13: "5G-NSA"}


@dataclass(frozen=True)
class Registration:
    state: str  # home | roaming | searching | denied | not_registered | unknown
    lac: str | None = None
    cell_id: str | None = None
    technology: str | None = None


@dataclass(frozen=True)
class CellInfo:
    technology: str | None = None
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    rssi_dbm: float | None = None


def _body(line: Any, prefix: str) -> str:
    """The text after ``prefix`` (e.g. ``+CSQ:``), case-insensitively; ParseError when it is not there."""
    if not isinstance(line, str):
        raise ParseError(f"expected a reply line, got {type(line).__name__}")
    s = line.strip()
    if not s.upper().startswith(prefix.upper()):
        raise ParseError(f"expected {prefix} reply, got {s[:60]!r}")
    return s[len(prefix):].strip()


def _fields(body: str) -> list[str]:
    """Split a reply body on commas outside double quotes; quotes are kept to tell strings from numbers."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in body:
        if ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch == "," and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if quoted:
        raise ParseError(f"unterminated quote in {body[:60]!r}")
    out.append("".join(cur).strip())
    return out


def _int(s: str, what: str, lo: int | None = None, hi: int | None = None) -> int:
    t = s.strip()
    if not re.fullmatch(r"[+-]?\d{1,12}", t):
        raise ParseError(f"{what}: {s[:30]!r} is not a number")
    v = int(t)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ParseError(f"{what}: {v} is out of range")
    return v


def _unquote(s: str) -> str:
    t = s.strip()
    return t[1:-1] if len(t) >= 2 and t[0] == t[-1] == '"' else t


def parse_csq(line: str) -> float | None:
    """``+CSQ: <rssi>,<ber>`` → RSSI in dBm (None: not known or not detectable, 99)."""
    f = _fields(_body(line, "+CSQ:"))
    if len(f) != 2:
        raise ParseError(f"+CSQ: expected 2 fields, got {len(f)}")
    rssi = _int(f[0], "+CSQ rssi", 0, 199)
    _int(f[1], "+CSQ ber", 0, 99)
    if rssi == 99:
        return None
    if rssi <= 31:
        return float(-113 + 2 * rssi)
    if 100 <= rssi <= 191:  # TD-SCDMA range: -116 dBm + 1 dB steps
        return float(-116 + (rssi - 100))
    raise ParseError(f"+CSQ rssi {rssi} is not defined")


def parse_cesq(line: str) -> tuple[float | None, float | None]:
    """``+CESQ: rxlev,ber,rscp,ecno,rsrq,rsrp`` → (RSRP dBm, RSRQ dB); 255 (unknown) → None."""
    f = _fields(_body(line, "+CESQ:"))
    if len(f) != 6:
        raise ParseError(f"+CESQ: expected 6 fields, got {len(f)}")
    for i, name in enumerate(("rxlev", "ber", "rscp", "ecno")):
        _int(f[i], f"+CESQ {name}", 0, 255)
    rsrq = _int(f[4], "+CESQ rsrq", 0, 255)
    rsrp = _int(f[5], "+CESQ rsrp", 0, 255)
    if (rsrq != 255 and rsrq > 34) or (rsrp != 255 and rsrp > 97):
        raise ParseError(f"+CESQ rsrq {rsrq} / rsrp {rsrp} out of range")
    rsrp_dbm = None if rsrp == 255 else float(rsrp - 141)
    rsrq_db = None if rsrq == 255 else rsrq / 2.0 - 20.0
    return rsrp_dbm, rsrq_db


def _parse_reg(line: str, prefix: str) -> Registration:
    f = _fields(_body(line, prefix))
    if not f or f[0] == "":
        raise ParseError(f"{prefix} has no fields")
    # read reply: <n>,<stat>[,<lac>,<ci>[,<AcT>]]; URC: <stat>[,<lac>,<ci>[,<AcT>]] (lac is quoted)
    if len(f) == 1 or f[1].startswith('"'):
        rest = f
    else:
        _int(f[0], f"{prefix} n", 0, 5)
        rest = f[1:]
    stat = _int(rest[0], f"{prefix} stat", 0, 11)
    if stat not in REG_STATES:
        raise ParseError(f"{prefix} stat {stat} is not defined")
    lac = _unquote(rest[1]) if len(rest) > 1 and rest[1] else None
    ci = _unquote(rest[2]) if len(rest) > 2 and rest[2] else None
    act = None
    if len(rest) > 3 and rest[3]:
        code = _int(rest[3], f"{prefix} AcT", 0, 13)
        act = ACT_NAMES.get(code)
    for v in (lac, ci):
        if v is not None and not re.fullmatch(r"[0-9A-Fa-f]{1,10}", v):
            raise ParseError(f"{prefix} location {v[:20]!r} is not hex")
    return Registration(REG_STATES[stat], lac, ci, act)


def parse_creg(line: str) -> Registration:
    """``+CREG:`` read reply or URC → registration state (circuit-switched)."""
    return _parse_reg(line, "+CREG:")


def parse_cereg(line: str) -> Registration:
    """``+CEREG:`` read reply or URC → registration state (EPS / LTE)."""
    return _parse_reg(line, "+CEREG:")


def parse_cgreg(line: str) -> Registration:
    """``+CGREG:`` read reply or URC → registration state (packet-switched)."""
    return _parse_reg(line, "+CGREG:")


def parse_registration(line: str) -> Registration:
    """Any of ``+CREG:``, ``+CEREG:``, ``+CGREG:``, ``+C5GREG:``."""
    s = line.strip().upper() if isinstance(line, str) else ""
    for prefix in ("+CEREG:", "+CGREG:", "+CREG:", "+C5GREG:"):
        if s.startswith(prefix):
            return _parse_reg(line, prefix)
    raise ParseError(f"not a registration reply: {str(line)[:60]!r}")


def parse_cops(line: str) -> tuple[str | None, str | None]:
    """``+COPS: <mode>[,<format>,<oper>[,<AcT>]]`` → (operator, technology)."""
    f = _fields(_body(line, "+COPS:"))
    _int(f[0], "+COPS mode", 0, 4)
    if len(f) == 1:
        return None, None
    if len(f) < 3:
        raise ParseError("+COPS: format without operator")
    _int(f[1], "+COPS format", 0, 2)
    if not (f[2].startswith('"') and f[2].endswith('"') and len(f[2]) >= 2):
        raise ParseError(f"+COPS operator {f[2][:30]!r} is not quoted")
    oper = _unquote(f[2]) or None
    if oper is not None and not oper.isprintable():
        raise ParseError("+COPS operator is not printable")
    tech = None
    if len(f) >= 4 and f[3]:
        tech = ACT_NAMES.get(_int(f[3], "+COPS AcT", 0, 13))
    if len(f) > 4:
        raise ParseError(f"+COPS: too many fields ({len(f)})")
    return oper, tech


CPIN_STATES = {"READY": "ready", "SIM PIN": "pin_needed", "SIM PUK": "puk_needed", "SIM PIN2": "ready",
               "SIM PUK2": "ready", "PH-SIM PIN": "locked", "PH-NET PIN": "locked", "PH-NETSUB PIN": "locked",
               "PH-SP PIN": "locked", "PH-CORP PIN": "locked", "PH-FSIM PIN": "locked", "PH-FSIM PUK": "locked",
               "NOT INSERTED": "missing", "NOT READY": "missing"}


def parse_cpin(line: str) -> str:
    """``+CPIN: READY`` → ``ready``; ``SIM PIN`` → ``pin_needed``; ``SIM PUK`` → ``puk_needed`` …"""
    code = _unquote(_body(line, "+CPIN:")).upper()
    if code not in CPIN_STATES:
        raise ParseError(f"+CPIN: unknown state {code[:30]!r}")
    return CPIN_STATES[code]


def parse_iccid(line: str) -> str:
    """``+QCCID: 89…`` / ``+ICCID: 89…`` / ``+CCID: "89…"`` / bare digits → the ICCID."""
    if not isinstance(line, str):
        raise ParseError("expected a reply line")
    s = line.strip()
    m = re.fullmatch(r'(?:\+(?:QCCID|ICCID|CCID):\s*)?"?([0-9]{18,22}[Ff]?)"?', s, flags=re.IGNORECASE)
    if not m:
        raise ParseError(f"not an ICCID: {s[:40]!r}")
    return m.group(1).upper().rstrip("F")


def parse_qeng(line: str) -> CellInfo:
    """Quectel ``+QENG: "servingcell",<state>,"LTE",<is_tdd>,<mcc>,<mnc>,<cellid>,<pcid>,<earfcn>,<band>,
    <ul_bw>,<dl_bw>,<tac>,<rsrp>,<rsrq>,<rssi>,<sinr>,<srxlev>`` → RSRP/RSRQ/RSSI/SINR (other RATs: tech)."""
    f = _fields(_body(line, "+QENG:"))
    if len(f) < 2 or _unquote(f[0]).lower() != "servingcell":
        raise ParseError("+QENG: not a servingcell reply")
    state = _unquote(f[1]).upper()
    if state in ("SEARCH", "LIMSRV"):
        return CellInfo()
    if len(f) < 3:
        raise ParseError("+QENG: servingcell reply without a RAT")
    rat = _unquote(f[2]).upper()
    if rat != "LTE":
        return CellInfo(technology={"WCDMA": "UMTS", "GSM": "GSM", "NR5G-SA": "5G", "NR5G-NSA": "5G-NSA"}.get(rat))
    if len(f) < 17:
        raise ParseError(f"+QENG LTE: expected 17+ fields, got {len(f)}")

    def num(i: int, what: str, lo: int, hi: int) -> float | None:
        if f[i] in ("-", ""):
            return None
        return float(_int(f[i], f"+QENG {what}", lo, hi))

    return CellInfo(technology="LTE", rsrp_dbm=num(13, "rsrp", -160, -20), rsrq_db=num(14, "rsrq", -40, 20),
                    rssi_dbm=num(15, "rssi", -130, 0), sinr_db=num(16, "sinr", -30, 60))


def parse_cpsi(line: str) -> CellInfo:
    """SIMCom ``+CPSI: LTE,Online,<mcc>-<mnc>,<tac>,<cellid>,<pcid>,<band>,<earfcn>,<dlbw>,<ulbw>,<rsrq>,
    <rsrp>,<rssi>,<rssnr>`` (RSRQ/RSRP/RSSI in tenths) → CellInfo."""
    f = _fields(_body(line, "+CPSI:"))
    mode = f[0].strip().upper()
    if mode in ("NO SERVICE", ""):
        return CellInfo()
    if mode != "LTE":
        return CellInfo(technology={"WCDMA": "UMTS", "GSM": "GSM", "NR5G_SA": "5G"}.get(mode))
    if len(f) < 14:
        raise ParseError(f"+CPSI LTE: expected 14 fields, got {len(f)}")
    rsrq = _int(f[10], "+CPSI rsrq", -400, 200) / 10.0
    rsrp = _int(f[11], "+CPSI rsrp", -1600, -200) / 10.0
    rssi = _int(f[12], "+CPSI rssi", -1300, 0) / 10.0
    snr = float(_int(f[13], "+CPSI rssnr", -30, 60))
    return CellInfo(technology="LTE", rsrp_dbm=rsrp, rsrq_db=rsrq, rssi_dbm=rssi, sinr_db=snr)


def parse_qnetdevctl(line: str) -> bool:
    """``+QNETDEVCTL: <op>,<cid>,<urc_en>,<state>`` → whether the data call is up."""
    f = _fields(_body(line, "+QNETDEVCTL:"))
    if len(f) != 4:
        raise ParseError(f"+QNETDEVCTL: expected 4 fields, got {len(f)}")
    vals = [_int(x, "+QNETDEVCTL", 0, 255) for x in f]
    return vals[0] == 1 and vals[3] == 1


def parse_qiact(line: str) -> bool:
    """``+QIACT: <cid>,<state>,<type>[,"<ip>"]`` → whether the context is active."""
    f = _fields(_body(line, "+QIACT:"))
    if len(f) < 3:
        raise ParseError("+QIACT: too few fields")
    _int(f[0], "+QIACT cid", 1, 16)
    return _int(f[1], "+QIACT state", 0, 1) == 1


def parse_qcrmcall(line: str) -> bool:
    """SIMCom ``$QCRMCALL: <state>,<V4|V6>`` → whether the data call is up."""
    f = _fields(_body(line, "$QCRMCALL:"))
    if len(f) != 2 or f[1].upper() not in ("V4", "V6"):
        raise ParseError("$QCRMCALL: expected <state>,V4|V6")
    return _int(f[0], "$QCRMCALL state", 0, 1) == 1


PARSERS: dict[str, Callable[[str], Any]] = {
    "csq": parse_csq, "cesq": parse_cesq, "creg": parse_creg, "cereg": parse_cereg, "cgreg": parse_cgreg,
    "cops": parse_cops, "cpin": parse_cpin, "iccid": parse_iccid, "qeng": parse_qeng, "cpsi": parse_cpsi,
    "qnetdevctl": parse_qnetdevctl, "qiact": parse_qiact, "qcrmcall": parse_qcrmcall,
}


# ---------------------------------------------------------------------------------------- profiles

@dataclass(frozen=True)
class Profile:
    """A modem model, read from ``hw/modems/<name>.toml``."""

    key: str
    name: str
    commands: dict[str, Any]
    parsers: dict[str, str] = field(default_factory=dict)
    timeouts_s: dict[str, float] = field(default_factory=dict)
    init: tuple[str, ...] = ()
    reset_settle_s: float = 20.0

    def command(self, key: str, **values: str) -> str:
        cmd = self.commands.get(key)
        if not isinstance(cmd, str):
            raise KeyError(f"profile {self.key} has no single command {key!r}")
        return cmd.format(**values)

    def sequence(self, key: str, **values: str) -> list[str]:
        cmd = self.commands.get(key, [])
        cmds = [cmd] if isinstance(cmd, str) else list(cmd)
        return [c.format(**values) for c in cmds]

    def timeout(self, key: str, default: float) -> float:
        return float(self.timeouts_s.get(key, default))


REQUIRED_COMMANDS = ("probe", "sim", "signal", "registration", "operator", "context", "data_start", "data_stop",
                     "radio_off", "radio_on", "reset")


def parse_profile(text: str, key: str, source: str = "<profile>") -> Profile:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParseError(f"{source}: {exc}") from None
    cmds = raw.get("commands")
    if not isinstance(cmds, dict):
        raise ParseError(f"{source}: no [commands] table")
    missing = [k for k in REQUIRED_COMMANDS if k not in cmds]
    if missing:
        raise ParseError(f"{source}: [commands] lacks {', '.join(missing)}")
    for k, v in cmds.items():
        if not (isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))):
            raise ParseError(f"{source}: commands.{k} must be a string or a list of strings")
    parsers = raw.get("parsers", {})
    for k, v in parsers.items():
        if v not in PARSERS:
            raise ParseError(f"{source}: parsers.{k}: unknown parser {v!r} (known: {', '.join(sorted(PARSERS))})")
    timeouts = raw.get("timeouts", {})
    if not all(isinstance(v, (int, float)) and v > 0 for v in timeouts.values()):
        raise ParseError(f"{source}: [timeouts] values must be positive numbers")
    return Profile(key=key, name=str(raw.get("name", key)), commands=dict(cmds), parsers=dict(parsers),
                   timeouts_s={k: float(v) for k, v in timeouts.items()}, init=tuple(raw.get("init", ())),
                   reset_settle_s=float(raw.get("reset_settle_s", 20.0)))


def load_profile(name: str) -> Profile:
    """A profile by name (``quectel-ec25``) from hw/modems, or by path to a .toml file."""
    if name.endswith(".toml") or "/" in name:
        p = Path(name)
        try:
            return parse_profile(p.read_text(encoding="utf-8"), p.stem, str(p))
        except OSError as exc:
            raise DeviceUnavailable(f"modem profile {p}: {exc.strerror}") from None
    res = resources.files("hw.modems").joinpath(f"{name}.toml")
    if not res.is_file():
        known = sorted(x.name.removesuffix(".toml") for x in resources.files("hw.modems").iterdir()
                       if x.name.endswith(".toml"))
        raise DeviceUnavailable(f"no modem profile {name!r} in hw/modems (have: {', '.join(known)})")
    return parse_profile(res.read_text(encoding="utf-8"), name, f"hw/modems/{name}.toml")


# ---------------------------------------------------------------------------------------- AT port

FINAL_OK = ("OK",)
FINAL_ERROR = ("ERROR", "NO CARRIER", "NO DIALTONE", "BUSY", "NO ANSWER")
URC_PREFIXES = ("+CREG:", "+CEREG:", "+CGREG:", "+C5GREG:", "RING", "+CRING:", "RDY", "+QIND:", "+CPIN:",
                "+CFUN:", "+QUSIM:", "POWERED DOWN", "NORMAL POWER DOWN", "+CMTI:", "+CMT:", "+CDS:",
                "+CGEV:", "+QNETDEVSTATUS:", "+CUSD:", "+CLIP:", "+QIURC:", "+QSTAT:", "SMS DONE", "PB DONE",
                "+CGREG", "+PSUTTZ:", "+CTZV:", "+CTZE:", "DST:", "+QGPSURC:", "START", "+CLCC:")
_CME = re.compile(r"^\+(CME|CMS) ERROR:\s*(.*)$", re.IGNORECASE)


def is_urc(line: str) -> bool:
    u = line.upper()
    return any(u.startswith(p) for p in URC_PREFIXES)


def info_prefix(command: str) -> str | None:
    """The prefix of a command's information lines: ``AT+CSQ`` → ``+CSQ:``, ``AT$QCRMCALL?`` → ``$QCRMCALL:``."""
    m = re.match(r"^AT([+$][A-Z0-9]+)", command.strip().upper())
    return f"{m.group(1)}:" if m else None


def _printable(line: bytes) -> bool:
    return all(32 <= b < 127 or b == 9 for b in line)


def _open_serial(path: str, baudrate: int) -> Any:
    import serial

    return serial.Serial(path, baudrate=baudrate, timeout=0.05, write_timeout=1.0, exclusive=True)


class AtPort:
    """Blocking AT command/response on one serial port.  Use from one thread (see :class:`AsyncAtPort`)."""

    def __init__(self, path: str, baudrate: int = 115200,
                 opener: Callable[[str, int], Any] = _open_serial, urc_limit: int = 200) -> None:
        self.path = path
        self.baudrate = baudrate
        self._opener = opener
        self._port: Any = None
        self._buf = bytearray()
        self.urcs: deque[str] = deque(maxlen=urc_limit)
        self._urc_lock = threading.Lock()
        self.opened_count = 0  # how often the port was (re-)opened
        self.garbage_lines = 0

    # ------------------------------------------------------------------------------------ open/close
    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        if self._port is not None:
            return
        if not os.path.exists(self.path):
            raise ModemGone(f"{self.path} does not exist")
        try:
            self._port = self._opener(self.path, self.baudrate)
        except Exception as exc:  # serial.SerialException, OSError, ValueError: all mean "not usable now"
            raise ModemGone(f"cannot open {self.path}: {_why(exc)}") from None
        self._buf.clear()
        self.opened_count += 1

    def close(self) -> None:
        port, self._port = self._port, None
        self._buf.clear()
        if port is not None:
            try:
                port.close()
            except Exception:  # closing a port whose device vanished may fail; it is closed either way
                pass

    def _gone(self, exc: BaseException) -> ModemGone:
        self.close()
        return ModemGone(f"{self.path}: {_why(exc)}")

    # ----------------------------------------------------------------------------------------- I/O
    def _read_some(self, wait_s: float) -> bytes:
        port = self._port
        assert port is not None
        try:
            port.timeout = max(0.0, wait_s)
            n = port.in_waiting
            data: bytes = port.read(n if n > 0 else 1)
            if data and port.in_waiting:
                data += port.read(port.in_waiting)
        except Exception as exc:  # EIO after unplug, "device reports readiness to read but returned no data"
            raise self._gone(exc) from None
        return data

    def _pop_line(self) -> bytes | None:
        for i, b in enumerate(self._buf):
            if b in (10, 13):
                line = bytes(self._buf[:i])
                del self._buf[:i + 1]
                return line
        return None

    def _queue_urc(self, line: str) -> None:
        with self._urc_lock:
            self.urcs.append(line)

    def take_urcs(self) -> list[str]:
        """The unsolicited result codes received so far (oldest first), removing them from the queue."""
        with self._urc_lock:
            out = list(self.urcs)
            self.urcs.clear()
        return out

    def drain(self, wait_s: float = 0.0) -> None:
        """Read what is pending; keep URCs, drop stale replies and partial lines (a late answer to a command
        that already timed out, noise)."""
        if self._port is None:
            return
        deadline = time.monotonic() + wait_s
        while True:
            data = self._read_some(0.0 if wait_s <= 0 else max(0.0, min(0.02, deadline - time.monotonic())))
            self._buf += data
            while (raw := self._pop_line()) is not None:
                if raw and _printable(raw):
                    text = raw.decode("ascii").strip()
                    if text and is_urc(text):
                        self._queue_urc(text)
                elif raw:
                    self.garbage_lines += 1
            if not data and time.monotonic() >= deadline:
                break
        self._buf.clear()

    def command(self, command: str, timeout_s: float) -> list[str]:
        """Send one command; return its information lines (echo and URCs removed).

        Raises :class:`AtError` on a final error, :class:`ModemTimeout` on silence, :class:`ParseError` on
        garbage or a partial reply, :class:`ModemGone` when the device goes away.
        """
        self.open()
        self.drain()
        port = self._port
        try:
            port.write(command.encode("ascii") + b"\r")
            port.flush()
        except UnicodeEncodeError:
            raise ParseError(f"command {command!r} is not ASCII") from None
        except Exception as exc:
            if type(exc).__name__ == "SerialTimeoutException":
                raise ModemTimeout(f"{command}: the modem does not take input") from None
            raise self._gone(exc) from None
        deadline = time.monotonic() + timeout_s
        prefix = info_prefix(command)
        echo = command.strip().upper()
        info: list[str] = []
        garbage: list[bytes] = []
        while True:
            raw = self._pop_line()
            if raw is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._buf += self._read_some(min(0.1, remaining))
                continue
            if not raw.strip():
                continue
            if not _printable(raw):
                garbage.append(raw)
                self.garbage_lines += 1
                continue
            text = raw.decode("ascii").strip()
            upper = text.upper()
            if upper == echo:
                continue
            if upper in FINAL_OK:
                if garbage:
                    raise ParseError(f"{command}: garbled reply {garbage[0][:40]!r}")
                return info
            if upper in FINAL_ERROR:
                raise AtError(command, upper)
            m = _CME.match(text)
            if m:
                kind = f"+{m.group(1).upper()} ERROR"
                code_s = m.group(2).strip()
                if code_s.isdigit():
                    code = int(code_s)
                    raise AtError(command, kind, code, CME_NAMES.get(code, "") if kind == "+CME ERROR" else "")
                raise AtError(command, kind, None, code_s[:60])
            if prefix is not None and upper.startswith(prefix):
                info.append(text)
            elif is_urc(text):
                self._queue_urc(text)
            else:
                info.append(text)
        if garbage or self._buf or info:
            partial = bytes(garbage[0] if garbage else self._buf)[:40] or info[-1][:40].encode()
            self._buf.clear()
            raise ParseError(f"{command}: no final result code within {timeout_s:g} s (got {partial!r})")
        raise ModemTimeout(f"{command}: no answer within {timeout_s:g} s")


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno) if exc.errno != errno.EIO else "device disconnected (I/O error)"
    return str(exc) or type(exc).__name__


class AsyncAtPort:
    """The asyncio face of :class:`AtPort`: commands run one at a time in a worker thread, and an await
    never outlives the command's own timeout by more than ``grace_s`` (so a stuck device cannot hang the
    daemon's loop)."""

    def __init__(self, port: AtPort, grace_s: float = 2.0) -> None:
        self.port = port
        self.grace_s = grace_s
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="modem-at")
        self._lock = asyncio.Lock()

    async def command(self, command: str, timeout_s: float) -> list[str]:
        async with self._lock:
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._pool, self.port.command, command, timeout_s)
            try:
                async with asyncio.timeout(timeout_s + self.grace_s):
                    return await asyncio.shield(fut)
            except TimeoutError:
                raise ModemTimeout(f"{command}: the serial worker is stuck") from None

    async def run(self, fn: Callable[[], Any]) -> Any:
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def take_urcs(self) -> list[str]:
        return self.port.take_urcs()

    async def close(self) -> None:
        await self.run(self.port.close)
        self._pool.shutdown(wait=False, cancel_futures=True)


# ------------------------------------------------------------------------------------------ driver

class ModemDriver:
    """One modem, described by a profile: read it into a :class:`Reading`, dial, hang up, reset.

    ``read()`` never raises: a modem that is gone, silent or talking nonsense is a reading that says so.
    """

    def __init__(self, device: str, profile: Profile, baudrate: int = 115200, command_timeout_s: float = 2.0,
                 pin: str | None = None, opener: Callable[[str, int], Any] = _open_serial) -> None:
        self.device = device
        self.profile = profile
        self.timeout_s = command_timeout_s
        self.pin = pin
        self.at = AsyncAtPort(AtPort(device, baudrate, opener))
        self._initialised_open = -1  # AtPort.opened_count when init last ran
        self._need_init = True
        self.iccid: str | None = None
        self.info: str | None = None
        self._pin_tried_for: str | None = None
        self.last_urcs: list[str] = []

    async def _cmd(self, key: str) -> list[str]:
        return await self.at.command(self.profile.command(key), self.profile.timeout(key, self.timeout_s))

    async def _cmd_raw(self, cmd: str, key: str) -> list[str]:
        return await self.at.command(cmd, self.profile.timeout(key, self.timeout_s))

    async def _init(self) -> None:
        for cmd in self.profile.init:
            try:
                await self._cmd_raw(cmd, "init")
            except AtError as exc:
                log.debug("modem init %s refused: %s", cmd, exc)
        self._need_init = False
        self._initialised_open = self.at.port.opened_count
        self.iccid = None
        self.info = None

    def _note_urcs(self) -> None:
        urcs = self.at.take_urcs()
        if any(u.upper().startswith(("RDY", "+CFUN:", "POWERED DOWN")) for u in urcs):
            self._need_init = True  # the module rebooted: echo and URC settings are back to defaults
        if urcs:
            self.last_urcs = (self.last_urcs + urcs)[-20:]

    async def read(self) -> Reading:
        try:
            return await self._read()
        except ModemGone as exc:
            return Reading(present=False, responsive=False, error=str(exc))
        except (ModemTimeout, ParseError) as exc:
            return Reading(present=True, responsive=False, error=str(exc))
        except DeviceRefused as exc:  # the probe itself was refused: a confused modem
            return Reading(present=True, responsive=False, error=str(exc))

    async def _read(self) -> Reading:
        await self._cmd("probe")
        self._note_urcs()
        if self._need_init or self._initialised_open != self.at.port.opened_count:
            await self._init()
        errors: list[str] = []
        sim = await self._read_sim(errors)
        if sim == "pin_needed" and self.pin and self._pin_tried_for != self.iccid:
            # one PIN attempt per SIM: a wrong PIN tried on every poll would lock the SIM (PUK)
            self._pin_tried_for = self.iccid
            try:
                await self._cmd_raw(self.profile.command("pin", pin=self.pin), "pin")
                sim = await self._read_sim(errors)
            except AtError as exc:
                errors.append(f"PIN refused: {exc}")
        if sim == "ready" and self.iccid is None and "iccid" in self.profile.commands:
            self.iccid = await self._optional("iccid", errors)
        rssi = await self._optional("signal", errors, parser="csq")
        rsrp = rsrq = sinr = None
        tech: str | None = None
        if "signal_ext" in self.profile.commands:
            pair = await self._optional("signal_ext", errors, parser="cesq")
            if pair is not None:
                rsrp, rsrq = pair
        if "cell" in self.profile.commands:
            cell = await self._optional("cell", errors)
            if isinstance(cell, CellInfo):
                rsrp = cell.rsrp_dbm if cell.rsrp_dbm is not None else rsrp
                rsrq = cell.rsrq_db if cell.rsrq_db is not None else rsrq
                sinr = cell.sinr_db
                tech = cell.technology
                if rssi is None and cell.rssi_dbm is not None:
                    rssi = cell.rssi_dbm
        registration = operator = None
        data = None
        if sim == "ready":
            registration, reg_tech = await self._read_registration(errors)
            tech = tech or reg_tech
            ops = await self._optional("operator", errors, parser="cops")
            if ops is not None:
                operator, cops_tech = ops
                tech = cops_tech or tech
            if registration in ("home", "roaming") and "data_status" in self.profile.commands:
                data = await self._optional("data_status", errors)
                data = bool(data) if data is not None else None
        self._note_urcs()
        return Reading(present=True, responsive=True, sim=sim, registration=registration, operator=operator,
                       technology=tech if registration in ("home", "roaming") else None, rssi_dbm=rssi,
                       rsrp_dbm=rsrp, rsrq_db=rsrq, sinr_db=sinr, data_connected=data, iccid=self.iccid,
                       error="; ".join(errors))

    async def _read_sim(self, errors: list[str]) -> str | None:
        try:
            lines = await self._cmd("sim")
        except AtError as exc:
            if exc.code in CME_SIM_MISSING:
                return "missing"
            if exc.code == 11:
                return "pin_needed"
            if exc.code == 12:
                return "puk_needed"
            errors.append(str(exc))
            return None
        state: str | None = _first(lines, parse_cpin, errors)
        return state

    async def _optional(self, key: str, errors: list[str], parser: str | None = None) -> Any:
        """A command whose failure (ERROR, unparsable reply) leaves its value unknown, not the modem."""
        name = self.profile.parsers.get(key, parser or key)
        fn = PARSERS.get(name)
        if fn is None:
            errors.append(f"no parser {name!r} for {key}")
            return None
        try:
            lines = await self._cmd(key)
        except AtError as exc:
            errors.append(str(exc))
            return None
        return _first(lines, fn, errors)

    async def _read_registration(self, errors: list[str]) -> tuple[str | None, str | None]:
        states: list[Registration] = []
        for cmd in self.profile.sequence("registration"):
            try:
                lines = await self._cmd_raw(cmd, "registration")
            except AtError as exc:
                errors.append(str(exc))
                continue
            reg = _first(lines, parse_registration, errors)
            if reg is not None:
                states.append(reg)
                if reg.state in ("home", "roaming"):
                    return reg.state, reg.technology
        if not states:
            return None, None
        order = ("denied", "searching", "not_registered", "unknown")
        return min((s.state for s in states), key=lambda s: order.index(s) if s in order else 9), None

    # ------------------------------------------------------------------------------------- actions
    async def _ready(self) -> None:
        """A quick AT first: a hung modem fails in ``command_timeout_s``, not in the long timeout of the
        action (40 s for a Quectel data_stop)."""
        await self._cmd("probe")

    async def dial(self, apn: str) -> None:
        """Define the context with the APN and start the data call (raises on failure)."""
        await self._ready()
        await self._cmd_raw(self.profile.command("context", apn=apn), "context")
        for cmd in self.profile.sequence("data_start", apn=apn):
            await self._cmd_raw(cmd, "data_start")

    async def hangup(self) -> None:
        await self._ready()
        for cmd in self.profile.sequence("data_stop"):
            await self._cmd_raw(cmd, "data_stop")

    async def reset_radio(self) -> None:
        """Radio off and on (AT+CFUN=0/1); if the modem refuses, the profile's full reset."""
        await self._ready()
        try:
            await self._cmd("radio_off")
            await self._cmd("radio_on")
        except AtError:
            await self.reset()

    async def reset(self) -> None:
        """The profile's full reset; the module drops off the bus while it reboots, which is no error."""
        self._need_init = True
        await self._ready()
        try:
            await self._cmd("reset")
        except ModemGone:
            pass

    async def close(self) -> None:
        await self.at.close()


def _first(lines: Sequence[str], fn: Callable[[str], Any], errors: list[str]) -> Any:
    if not lines:
        errors.append("empty reply")
        return None
    try:
        return fn(lines[0])
    except ParseError as exc:
        errors.append(str(exc))
        return None


# ---------------------------------------------------------------------------- counters and nftables

class SysfsCounters:
    """rx+tx bytes of one interface from ``/sys/class/net/<iface>/statistics`` (the caller's namespace).

    ``root`` is injectable so tests can point it at files they write.  Returns (ifindex, total) or
    (None, None) while the interface does not exist.
    """

    def __init__(self, interface: str, root: str | Path = "/sys/class/net") -> None:
        self.interface = interface
        self.root = Path(root)

    def __call__(self) -> tuple[int | None, int | None]:
        base = self.root / self.interface
        try:
            rx = int((base / "statistics" / "rx_bytes").read_text().strip())
            tx = int((base / "statistics" / "tx_bytes").read_text().strip())
        except (OSError, ValueError):
            return None, None
        try:
            ifindex: int | None = int((base / "ifindex").read_text().strip())
        except (OSError, ValueError):
            ifindex = None
        return ifindex, rx + tx


class Nft:
    """Runs ``nft -f -`` (optionally inside a named network namespace); errors become DeviceRefused."""

    def __init__(self, netns: str | None = None, nft: str = "nft") -> None:
        self.netns = netns
        self.nft = nft

    def _argv(self, *args: str) -> list[str]:
        base = [self.nft, *args]
        return ["ip", "netns", "exec", self.netns, *base] if self.netns else base

    async def apply(self, script: str, timeout_s: float = 10.0) -> None:
        await self._run(self._argv("-f", "-"), script, timeout_s)

    async def list_table(self, family: str, table: str, timeout_s: float = 10.0) -> str | None:
        try:
            return await self._run(self._argv("list", "table", family, table), "", timeout_s)
        except DeviceRefused:
            return None

    async def _run(self, argv: list[str], stdin: str, timeout_s: float) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise DeviceUnavailable(f"cannot run {argv[0]}: {exc.strerror}") from None
        try:
            async with asyncio.timeout(timeout_s):
                out, err = await proc.communicate(stdin.encode())
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise DeviceUnavailable(f"{' '.join(argv)} did not finish within {timeout_s:g} s") from None
        if proc.returncode != 0:
            raise DeviceRefused(f"nft: {err.decode(errors='replace').strip().splitlines()[0] if err else proc.returncode}")
        return out.decode(errors="replace")
