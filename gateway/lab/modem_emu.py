"""The lab's LTE modem: an AT-command emulator on a pseudo-terminal that behaves like a Quectel EC25.

It runs as its own process.  The daemon opens ``<lab_dir>/modem``, a symlink to the current ``/dev/pts/N``
that is re-pointed whenever the "USB device" comes back (after an unplug, a ``AT+CFUN=1,1`` reset or a
power cycle), just like the udev rule's ``/dev/gateway-modem`` on the real box.

Faults and changes are asked for over a unix socket (``<lab_dir>/modem.ctl``), see :func:`control`:

``signal DBM`` (``none`` or below -113 dBm: no signal, so not registered), ``no-sim`` / ``sim`` (the SIM
pulled / put back), ``hang`` (reads but never answers), ``garbage`` (answers with noise and partial lines),
``unplug`` / ``plug`` (the pty is closed / the module is plugged in again: a new pty, a fresh boot, other
faults as they were),
``down`` / ``up`` (registration lost / everything healthy again, re-plugged if unplugged), ``power-cycle``
(what the board's USB power switch does: faults cleared, the device re-enumerates), ``urc TEXT`` (an
unsolicited line sent in the middle of the next reply), ``status`` (the emulator's state as JSON).

When started with a data interface (``netns``, ``iface``), the emulator sets that link up while a data
call is active and down otherwise, like a real modem's wwan interface carries nothing until it dials.

Run it alone with ``python -m gateway.lab.modem_emu --dir D`` (it prints the device path).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import time
import tty
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

COMMANDS = ("signal", "no-sim", "hang", "garbage", "unplug", "plug", "down", "up", "power-cycle", "urc", "status",
            "sim")
DEFAULT_DBM = -85.0
ICCID = "89490200001234567890"
OPERATOR = "Lab Telecom"


def _paths(lab_dir: Path) -> tuple[Path, Path, Path, Path]:
    return lab_dir / "modem", lab_dir / "modem.ctl", lab_dir / "modem.pid", lab_dir / "modem.log"


# --------------------------------------------------------------------------------------- the modem

@dataclass
class ModemState:
    echo: bool = True  # like a real module after power-on
    cfun: int = 1
    sim: bool = True
    signal_dbm: float | None = DEFAULT_DBM
    network_up: bool = True
    fault: str | None = None  # hang | garbage
    plugged: bool = True
    registered: bool = False
    reg_ready_at: float = 0.0
    reg_n: dict[str, int] = field(default_factory=lambda: {"CREG": 0, "CEREG": 0, "CGREG": 0})
    data_active: bool = False
    apn: str = ""
    device: str = ""
    commands_seen: int = 0
    bytes_in: int = 0
    resets: int = 0
    power_cycles: int = 0


class Emulator:
    """The modem's behaviour, separate from its I/O so it stays readable: ``handle(line) -> bytes``."""

    def __init__(self, reg_delay_s: float = 0.3, seed: int = 7) -> None:
        self.s = ModemState()
        self.reg_delay_s = reg_delay_s
        self.rng = random.Random(seed)
        self.inject: list[str] = []  # URCs to slip into the next reply
        self.urc_out: list[str] = []  # URCs to send now
        self.s.reg_ready_at = time.monotonic() + reg_delay_s

    # ------------------------------------------------------------------------------- registration
    def can_register(self) -> bool:
        s = self.s
        return s.cfun == 1 and s.sim and s.signal_dbm is not None and s.signal_dbm >= -113 and s.network_up

    def tick(self, now: float) -> bool:
        """Advance registration; return True when the data link state may have changed."""
        s = self.s
        want = self.can_register() and now >= s.reg_ready_at
        if want == s.registered:
            return False
        s.registered = want
        if not want:
            s.data_active = False
        for kind in ("CREG", "CEREG", "CGREG"):
            n = s.reg_n[kind]
            if n >= 1 and s.fault is None:
                stat = 1 if want else self._stat()
                extra = ',"1A2B","01A2B3C4",7' if n >= 2 and want else ""
                self.urc_out.append(f"+{kind}: {stat}{extra}")
        return True

    def restart_search(self) -> None:
        self.s.reg_ready_at = time.monotonic() + self.reg_delay_s

    def boot(self) -> None:
        """Fresh module state after a reset or power cycle; the caller re-creates the pty."""
        old = self.s
        self.s = ModemState(sim=old.sim, signal_dbm=old.signal_dbm, network_up=old.network_up,
                            resets=old.resets, power_cycles=old.power_cycles, apn=old.apn,
                            plugged=old.plugged, device=old.device)
        self.restart_search()
        self.urc_out += ["RDY", "+CFUN: 1", "+CPIN: READY" if self.s.sim else "+CPIN: NOT INSERTED",
                         "+QUSIM: 1", "+QIND: SMS DONE", "+QIND: PB DONE"]

    # ------------------------------------------------------------------------------------ replies
    def _rssi_code(self) -> int:
        s = self.s
        if not s.registered and (s.signal_dbm is None or s.signal_dbm < -113 or s.cfun != 1):
            return 99
        assert s.signal_dbm is not None
        return max(0, min(31, round((s.signal_dbm + 113) / 2)))

    def _rsrp(self) -> float | None:
        s = self.s
        if not s.registered or s.signal_dbm is None:
            return None
        return max(-140.0, min(-44.0, s.signal_dbm - 25.0))

    def _sinr(self) -> float:
        assert self.s.signal_dbm is not None
        return max(-10.0, min(30.0, (self.s.signal_dbm + 100.0) / 1.5))

    def _stat(self) -> int:
        s = self.s
        if s.registered:
            return 1
        return 2 if s.cfun == 1 and s.sim else 0  # searching, even without coverage

    def handle(self, line: str) -> tuple[list[str], str, list[str]]:
        """One command line → (information lines, final result code, actions for the I/O side)."""
        s = self.s
        s.commands_seen += 1
        cmd = line.strip()
        up = cmd.upper()
        need_sim = "+CME ERROR: 10"
        if up == "AT":
            return [], "OK", []
        if up in ("ATE0", "ATE1", "ATE"):
            s.echo = up == "ATE1"
            return [], "OK", []
        if up in ("ATI", "ATI0"):
            return ["Quectel", "EC25", "Revision: EC25EFAR06A06M4G"], "OK", []
        if up in ("AT+CGMI", "AT+GMI"):
            return ["Quectel"], "OK", []
        if up in ("AT+CGMM", "AT+GMM"):
            return ["EC25"], "OK", []
        if up in ("AT+CGMR", "AT+GMR"):
            return ["EC25EFAR06A06M4G"], "OK", []
        if up in ("AT+CGSN", "AT+GSN"):
            return ["866758040000001"], "OK", []
        if up.startswith("AT+CMGS") or up.startswith("AT+CMGR"):
            return [], "+CMS ERROR: 302" if s.sim else "+CMS ERROR: 310", []  # no SMS service in the lab
        if up.startswith("AT+CMEE=") or up.startswith("AT+QURCCFG") or up.startswith("AT+COPS="):
            return [], "OK", []
        if up == "AT+CFUN?":
            return [f"+CFUN: {s.cfun}"], "OK", []
        if up.startswith("AT+CFUN="):
            args = up.split("=", 1)[1].split(",")
            if args[0] not in ("0", "1", "4") or (len(args) > 1 and args[1] not in ("0", "1")):
                return [], "ERROR", []
            if len(args) > 1 and args[1] == "1":
                return [], "OK", ["reset"]
            s.cfun = int(args[0])
            if s.cfun != 1:
                s.registered = False
                s.data_active = False
                return [], "OK", ["link"]
            self.restart_search()
            return [], "OK", []
        if up in ("AT+CRESET",):
            return [], "OK", ["reset"]
        if up in ("AT+QPOWD", "AT+QPOWD=1", "AT+QPOWD=0", "AT+CPOF"):
            self.urc_out.append("POWERED DOWN")
            return [], "OK", ["power_down"]
        if up == "AT+CPIN?":
            return (["+CPIN: READY"], "OK", []) if s.sim else ([], need_sim, [])
        if up.startswith("AT+CPIN="):
            return ([], "+CME ERROR: 3", []) if s.sim else ([], need_sim, [])
        if up in ("AT+QCCID", "AT+ICCID", "AT+CICCID", "AT+CCID"):
            if not s.sim:
                return [], need_sim, []
            prefix = "+QCCID" if up == "AT+QCCID" else ("+CCID" if up == "AT+CCID" else "+ICCID")
            return [f"{prefix}: {ICCID}F" if up == "AT+QCCID" else f"{prefix}: {ICCID}"], "OK", []
        if up == "AT+CSQ":
            code = self._rssi_code()
            return [f"+CSQ: {code},99"], "OK", []
        if up == "AT+CESQ":
            rsrp = self._rsrp()
            if rsrp is None:
                return ["+CESQ: 99,99,255,255,255,255"], "OK", []
            return [f"+CESQ: 99,99,255,255,20,{int(rsrp + 141)}"], "OK", []
        for kind in ("CREG", "CEREG", "CGREG"):
            if up == f"AT+{kind}?":
                n = s.reg_n[kind]
                extra = ',"1A2B","01A2B3C4",7' if n >= 2 and s.registered else ""
                return [f"+{kind}: {n},{self._stat()}{extra}"], "OK", []
            if up.startswith(f"AT+{kind}="):
                v = up.split("=", 1)[1]
                if v not in ("0", "1", "2"):
                    return [], "ERROR", []
                s.reg_n[kind] = int(v)
                return [], "OK", []
        if up == "AT+COPS?":
            if not s.sim:
                return [], need_sim, []
            return ([f'+COPS: 0,0,"{OPERATOR}",7'] if s.registered else ["+COPS: 0"]), "OK", []
        if up.startswith("AT+CGDCONT="):
            parts = cmd.split("=", 1)[1].split(",")
            if len(parts) < 3 or parts[0].strip() != "1":
                return [], "ERROR", []
            s.apn = parts[2].strip().strip('"')
            return [], "OK", []
        if up == "AT+CGDCONT?":
            return [f'+CGDCONT: 1,"IP","{s.apn}","0.0.0.0",0,0'], "OK", []
        if up.startswith("AT+QNETDEVCTL="):
            op = up.split("=", 1)[1].split(",")[0]
            return self._data(op == "1")
        if up == "AT+QNETDEVCTL?":
            st = 1 if s.data_active else 0
            return [f"+QNETDEVCTL: {st},1,1,{st}"], "OK", []
        if up in ("AT+QIACT=1",):
            return self._data(True)
        if up in ("AT+QIDEACT=1",):
            return self._data(False)
        if up == "AT+QIACT?":
            return ([f'+QIACT: 1,1,1,"{_lte_addr()}"'] if s.data_active else []), "OK", []
        if up.startswith("AT$QCRMCALL="):
            return self._data(up.split("=", 1)[1].startswith("1"))
        if up == "AT$QCRMCALL?":
            return ([f"$QCRMCALL: {1 if s.data_active else 0},V4"]), "OK", []
        if up == 'AT+QENG="SERVINGCELL"':
            if not s.registered or s.signal_dbm is None:
                return ['+QENG: "servingcell","SEARCH"'], "OK", []
            rsrp = self._rsrp()
            assert rsrp is not None
            return [f'+QENG: "servingcell","NOCONN","LTE","FDD",262,01,1A2B3C4,123,1300,3,5,5,1A2B,'
                    f'{int(rsrp)},-10,{int(s.signal_dbm)},{int(self._sinr())},30'], "OK", []
        if up == "AT+CPSI?":
            if not s.registered or s.signal_dbm is None:
                return ["+CPSI: NO SERVICE,Online"], "OK", []
            rsrp = self._rsrp()
            assert rsrp is not None
            return [f"+CPSI: LTE,Online,262-01,0x1A2B,27024956,123,EUTRAN-BAND3,1300,5,5,-100,{int(rsrp * 10)},"
                    f"{int(s.signal_dbm * 10)},{int(self._sinr())}"], "OK", []
        return [], "ERROR", []

    def _data(self, start: bool) -> tuple[list[str], str, list[str]]:
        s = self.s
        if start:
            if not s.sim:
                return [], "+CME ERROR: 10", []
            if not s.registered:
                return [], "ERROR", []
            s.data_active = True
            return [], "OK", ["link"]
        s.data_active = False
        return [], "OK", ["link"]

    def garbage(self) -> bytes:
        """Noise as a confused module sends it: binary junk, broken lines, a line with no end."""
        r = self.rng
        parts = [bytes(r.randrange(256) for _ in range(r.randrange(3, 20))), b"\r\n+CS", b"Q: 1",
                 bytes(r.randrange(128, 256) for _ in range(5)), b"\r\nOK"]
        r.shuffle(parts)
        return b"".join(parts)


def _lte_addr() -> str:
    return "10.64.0.2"


# ------------------------------------------------------------------------------------------ the I/O

class Server:
    def __init__(self, lab_dir: Path, netns: str | None, iface: str | None, reg_delay_s: float,
                 reset_delay_s: float) -> None:
        self.lab_dir = lab_dir
        self.link, self.ctl_path, self.pid_path, _ = _paths(lab_dir)
        self.netns, self.iface = netns, iface
        self.reset_delay_s = reset_delay_s
        self.emu = Emulator(reg_delay_s)
        self.sel = selectors.DefaultSelector()
        self.master: int | None = None
        self.slave: int | None = None
        self.inbuf = bytearray()
        self.replug_at: float | None = None
        self.reset_at: float | None = None
        self.running = True
        self.link_state: bool | None = None

    # ------------------------------------------------------------------------------------- pty
    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no line discipline: bytes pass as they are, like a USB serial function
        os.set_blocking(master, False)
        self.master, self.slave = master, slave
        name = os.ttyname(slave)
        os.chmod(name, 0o660)
        tmp = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(name)
        tmp.replace(self.link)
        self.emu.s.plugged = True
        self.emu.s.device = name
        self.sel.register(master, selectors.EVENT_READ, "pty")
        self.inbuf.clear()
        log(f"plugged in at {name}")

    def unplug(self, replug_after_s: float | None = None) -> None:
        if self.master is not None:
            self.sel.unregister(self.master)
            for fd in (self.master, self.slave):
                with contextlib.suppress(OSError):
                    os.close(fd)  # type: ignore[arg-type]
            self.master = self.slave = None
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        s = self.emu.s
        s.plugged = False
        s.registered = False
        s.data_active = False
        self.emu.urc_out.clear()
        self.emu.inject.clear()
        self.replug_at = None if replug_after_s is None else time.monotonic() + replug_after_s
        self.sync_link()
        log("unplugged" + (f", back in {replug_after_s:g} s" if replug_after_s is not None else ""))

    def write(self, data: bytes) -> None:
        if self.master is None:
            return
        try:
            os.write(self.master, data)
        except BlockingIOError:
            pass  # nobody reads: the pty buffer is full, drop like a UART FIFO overrun
        except OSError as exc:
            log(f"write failed: {exc}")

    # ---------------------------------------------------------------------------------- data link
    def sync_link(self) -> None:
        want = self.emu.s.data_active and self.emu.s.registered
        if want == self.link_state or not self.iface:
            self.link_state = want
            return
        self.link_state = want
        argv = ["ip", "link", "set", self.iface, "up" if want else "down"]
        if self.netns:
            argv[1:1] = ["-n", self.netns]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=5)
            if r.returncode:
                log(f"{' '.join(argv)}: {r.stderr.strip()}")
            else:
                log(f"data link {self.iface} {'up' if want else 'down'}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            log(f"{' '.join(argv)}: {exc}")

    # ------------------------------------------------------------------------------------ serial
    def on_pty(self) -> None:
        assert self.master is not None
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            return
        self.emu.s.bytes_in += len(data)
        fault = self.emu.s.fault
        if fault == "hang":
            return  # reads, never answers
        self.inbuf += data
        while True:
            idx = next((i for i, b in enumerate(self.inbuf) if b in (13, 10)), -1)
            if idx < 0:
                break
            raw = bytes(self.inbuf[:idx])
            del self.inbuf[:idx + 1]
            self.on_line(raw)
        if len(self.inbuf) > 4096:
            self.inbuf.clear()

    def on_line(self, raw: bytes) -> None:
        text = raw.decode("ascii", errors="replace").strip()
        if not text:
            return
        emu = self.emu
        if emu.s.echo:
            self.write(raw + b"\r")
        if not text.upper().startswith("AT"):
            return  # modems ignore what does not start with AT
        if emu.s.fault == "garbage":
            self.write(emu.garbage())
            return
        info, final, actions = emu.handle(text)
        if "link" in actions:
            self.sync_link()  # before the OK: whoever saw the OK finds the data link as it answered
        out = b"".join(b"\r\n" + line.encode() + b"\r\n" for line in info)
        if emu.inject:
            out += b"".join(b"\r\n" + u.encode() + b"\r\n" for u in emu.inject)
            emu.inject.clear()
        out += b"\r\n" + final.encode() + b"\r\n"
        self.write(out)
        for act in actions:
            if act == "reset":
                emu.s.resets += 1
                self.reset_at = time.monotonic() + 0.1  # the OK gets out before the module leaves the bus
            elif act == "power_down":
                self.flush_urcs()
                self.unplug(None)

    def reset(self, delay_s: float) -> None:
        """The module reboots: it leaves the USB bus and comes back with a fresh state (and says RDY)."""
        self.reset_at = None
        self.unplug(delay_s)
        self.emu.boot()

    def flush_urcs(self) -> None:
        if self.emu.urc_out and self.master is not None and self.emu.s.fault is None:
            self.write(b"".join(b"\r\n" + u.encode() + b"\r\n" for u in self.emu.urc_out))
        if self.master is not None:
            self.emu.urc_out.clear()

    # ----------------------------------------------------------------------------------- control
    def on_control(self, conn: socket.socket) -> None:
        conn.settimeout(2.0)
        try:
            data = b""
            while not data.endswith(b"\n") and len(data) < 4096:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            cmd, _, value = data.decode().strip().partition(" ")
            try:
                reply = self.apply(cmd, value or None)
                conn.sendall(("ok " + reply + "\n").encode())
            except ValueError as exc:
                conn.sendall(f"error {exc}\n".encode())
        except OSError:
            pass
        finally:
            conn.close()

    def apply(self, cmd: str, value: str | None) -> str:
        emu, s = self.emu, self.emu.s
        if cmd not in COMMANDS:
            raise ValueError(f"unknown command {cmd!r} (known: {', '.join(COMMANDS)})")
        if cmd != "status":
            log(f"control: {cmd}{' ' + value if value else ''}")
        if cmd == "status":
            d = asdict(s)
            d["path"] = str(self.link)
            d["link_up"] = self.link_state
            return json.dumps(d)
        if cmd == "signal":
            if value is None:
                raise ValueError("signal needs a value in dBm (e.g. -85) or 'none'")
            if value.lower() in ("none", "off"):
                s.signal_dbm = None
            else:
                try:
                    s.signal_dbm = float(value)
                except ValueError:
                    raise ValueError(f"signal: {value!r} is not a number of dBm") from None
            if self.emu.can_register() and not s.registered:
                emu.restart_search()
        elif cmd == "no-sim":
            s.sim = False
        elif cmd == "sim":
            s.sim = True
            emu.restart_search()
        elif cmd in ("hang", "garbage"):
            s.fault = cmd
        elif cmd == "unplug":
            self.unplug(None)
        elif cmd == "plug":
            if not s.plugged:
                self.replug_at = None
                emu.boot()
                self.plug()
        elif cmd == "down":
            s.network_up = False
        elif cmd == "up":
            s.fault = None
            s.network_up = True
            s.sim = True
            if s.signal_dbm is None or s.signal_dbm < -113:
                s.signal_dbm = DEFAULT_DBM
            if not s.plugged:
                self.replug_at = None
                emu.boot()
                self.plug()
            elif not s.registered:
                emu.restart_search()
        elif cmd == "power-cycle":
            s.power_cycles += 1
            s.fault = None
            self.reset(float(value) if value else self.reset_delay_s)
        elif cmd == "urc":
            if not value:
                raise ValueError("urc needs the line to send")
            emu.inject.append(value)
        self.step()
        return ""

    # -------------------------------------------------------------------------------------- loop
    def step(self) -> None:
        now = time.monotonic()
        if self.reset_at is not None and now >= self.reset_at:
            self.reset_at = None
            self.reset(self.reset_delay_s)
        if self.replug_at is not None and now >= self.replug_at:
            self.replug_at = None
            self.plug()
        if self.emu.s.plugged and self.emu.tick(now):
            self.sync_link()
        self.flush_urcs()

    def serve(self) -> None:
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.ctl_path.unlink()
        ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ctl.bind(str(self.ctl_path))
        ctl.listen(8)
        ctl.setblocking(False)
        self.sel.register(ctl, selectors.EVENT_READ, "ctl")
        self.plug()
        self.sync_link()
        self.pid_path.write_text(f"{os.getpid()}\n")
        print(self.link, flush=True)
        try:
            while self.running:
                for key, _ in self.sel.select(timeout=0.05):
                    if key.data == "ctl":
                        try:
                            conn, _ = ctl.accept()
                        except BlockingIOError:
                            continue
                        conn.setblocking(True)
                        self.on_control(conn)
                    elif key.data == "pty" and self.master is not None:
                        self.on_pty()
                self.step()
        finally:
            self.unplug(None)
            ctl.close()
            for p in (self.ctl_path, self.pid_path):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} modem_emu: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------- public API

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pid(lab_dir: Path) -> int | None:
    try:
        return int(_paths(lab_dir)[2].read_text().strip())
    except (OSError, ValueError):
        return None


def _ask(lab_dir: Path, line: str, timeout_s: float = 5.0) -> str:
    ctl = _paths(lab_dir)[1]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(str(ctl))
            s.sendall(line.encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise RuntimeError(f"modem emulator in {lab_dir} is not answering: {exc}") from None
    reply = data.decode().strip()
    if reply.startswith("error"):
        raise ValueError(reply.removeprefix("error").strip())
    return reply.removeprefix("ok").strip()


def start(lab_dir: Path, data_iface_netns: str | None = None, data_iface: str | None = None,
          reg_delay_s: float = 0.3, reset_delay_s: float = 0.5, timeout_s: float = 10.0) -> tuple[int, str]:
    """Start the emulator in the background (idempotent); return (pid, the device path the daemon opens)."""
    lab_dir = Path(lab_dir)
    lab_dir.mkdir(parents=True, exist_ok=True)
    link, _, _, log_path = _paths(lab_dir)
    pid = _pid(lab_dir)
    if pid is not None and _alive(pid):
        with contextlib.suppress(RuntimeError):
            _ask(lab_dir, "status")
            return pid, str(link)
    argv = [sys.executable, "-m", "gateway.lab.modem_emu", "--dir", str(lab_dir),
            "--reg-delay", str(reg_delay_s), "--reset-delay", str(reset_delay_s)]
    if data_iface:
        argv += ["--iface", data_iface]
    if data_iface_netns:
        argv += ["--netns", data_iface_netns]
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env,
                                start_new_session=True, cwd=root)
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"modem emulator exited with {proc.returncode}; see {log_path}")
        if _pid(lab_dir) == proc.pid:
            try:
                _ask(lab_dir, "status", 1.0)
                return proc.pid, str(link)
            except RuntimeError:
                pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"modem emulator did not start within {timeout_s:g} s; see {log_path}")
        time.sleep(0.02)  # poll interval while the child starts


def control(lab_dir: Path, command: str, value: str | None = None) -> None:
    """Change the emulated modem: signal DBM, no-sim, hang, garbage, unplug, down, up, power-cycle, urc."""
    _ask(Path(lab_dir), f"{command} {value}" if value is not None else command)


def status(lab_dir: Path) -> dict[str, Any]:
    """The emulator's state (echo, registration, data call, faults, current /dev/pts path)."""
    out: dict[str, Any] = json.loads(_ask(Path(lab_dir), "status"))
    return out


def stop(lab_dir: Path, timeout_s: float = 5.0) -> None:
    """Stop the emulator started in ``lab_dir`` (by its pid) and remove its files."""
    lab_dir = Path(lab_dir)
    pid = _pid(lab_dir)
    if pid is not None and _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)  # poll interval while it exits
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        if pid is not None:
            os.waitpid(pid, os.WNOHANG)
    link, ctl, pid_path, _ = _paths(lab_dir)
    for p in (link, ctl, pid_path):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.lab.modem_emu", description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, type=Path, help="lab directory (device symlink, control socket)")
    ap.add_argument("--netns", help="network namespace of the data interface")
    ap.add_argument("--iface", help="data interface to set up/down with the data call")
    ap.add_argument("--reg-delay", type=float, default=2.0, help="seconds from power-on to registration")
    ap.add_argument("--reset-delay", type=float, default=1.0, help="seconds a reset keeps the device away")
    args = ap.parse_args(argv)
    server = Server(args.dir, args.netns, args.iface, args.reg_delay, args.reset_delay)

    def _term(signum: int, frame: Any) -> None:
        server.running = False

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
