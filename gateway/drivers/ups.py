"""The UPS through NUT's upsd (nut2), translated at this one boundary into gateway errors.

nut2 is blocking (telnetlib), so every call runs in a worker thread (``asyncio.to_thread``) with a
timeout on the socket and an overall deadline; one connection is kept and rebuilt after any error.
upsd's ``ERR DATA-STALE`` / ``ERR DRIVER-NOT-CONNECTED`` become :class:`UpsStale` (the power machine's
``comm_lost``, never "on battery").

The poll itself (``LIST VAR``, every second or faster) is read on a plain kept socket with a buffered line
reader: nut2 reads through telnetlib, which handles every byte of the ~2 KB answer in Python, and that was
the largest share of the idle daemon's CPU.  Commands, their list and logins stay with nut2.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import nut2

from gateway.core.errors import DeviceRefused, DeviceUnavailable, ParseError
from gateway.core.power import UpsReading, reading_from_vars

_STALE = ("DATA-STALE", "DRIVER-NOT-CONNECTED")
_REFUSED = ("ACCESS-DENIED", "UNKNOWN-UPS", "USERNAME-REQUIRED", "PASSWORD-REQUIRED", "INVALID-PASSWORD",
            "INVALID-USERNAME", "CMD-NOT-SUPPORTED", "FEATURE-NOT-CONFIGURED")


# The UPS's own battery self-test, as NUT names it, in order of preference: the standard test, else the quick
# one (a deep test drains the battery to the end and is never started from here).
BATTERY_TESTS = ("test.battery.start", "test.battery.start.quick")


class UpsStale(DeviceUnavailable):
    """upsd answers, but its driver has no fresh data (or is not connected to the UPS)."""


def pick_battery_test(commands: dict[str, str] | list[str] | tuple[str, ...], address: str) -> str:
    """The battery-test instant command this UPS offers, or :class:`DeviceRefused` saying what it offers."""
    for cmd in BATTERY_TESTS:
        if cmd in commands:
            return cmd
    offered = ", ".join(sorted(commands)) or "none"
    raise DeviceRefused(f"UPS {address} offers no battery test ({' or '.join(BATTERY_TESTS)}); "
                        f"its instant commands: {offered}")


def _translate(exc: BaseException, where: str) -> Exception:
    text = " ".join(str(a) for a in getattr(exc, "args", ()) if a) or type(exc).__name__
    if any(code in text for code in _STALE):
        return UpsStale(f"{where}: {text.strip()}")
    if any(code in text for code in _REFUSED):
        return DeviceRefused(f"{where}: {text.strip()}")
    if isinstance(exc, (OSError, EOFError)) or "Socket error" in text:
        return DeviceUnavailable(f"{where}: {text.strip()}")
    if isinstance(exc, (ValueError, IndexError, UnicodeDecodeError)):
        return ParseError(f"{where}: garbled reply ({text.strip()})")
    return DeviceUnavailable(f"{where}: {text.strip()}")


class UpsDriver:
    """One UPS on one upsd: ``await read()`` -> :class:`UpsReading`; ``await set_fsd()``."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 3493, username: str | None = None,
                 password: str | None = None, timeout_s: float = 2.0) -> None:
        self.name, self.host, self.port = name, host, port
        self.username, self.password, self.timeout_s = username, password, timeout_s
        self._client: Any = None
        self._poll_sock: socket.socket | None = None
        self._poll_file: Any = None
        self._lock = threading.Lock()  # one conversation with upsd at a time
        self.last_vars: dict[str, str] = {}

    @property
    def address(self) -> str:
        return f"{self.name}@{self.host}:{self.port}"

    # ----------------------------------------------------------------------------- blocking side
    def _connect(self) -> Any:
        if self._client is None:
            self._client = nut2.PyNUTClient(self.host, self.port, self.username, self.password,
                                            timeout=self.timeout_s)
        return self._client

    def _drop(self) -> None:
        if self._poll_sock is not None:
            self._poll_file.close()
            self._poll_sock.close()
            self._poll_sock = self._poll_file = None
        client, self._client = self._client, None
        handler = getattr(client, "_srv_handler", None)
        if handler is not None:
            try:
                handler.close()  # no LOGOUT round trip: the link may be what failed
            except OSError:
                pass

    def _list_vars_blocking(self) -> dict[str, str]:
        with self._lock:
            try:
                values = self._list_vars_plain()
            except Exception as exc:
                self._drop()
                raise _translate(exc, f"upsd {self.address}") from None
            if not isinstance(values, dict) or not values:
                self._drop()
                raise ParseError(f"upsd {self.address}: empty variable list")
            return {str(k): str(v) for k, v in values.items()}

    def _list_vars_plain(self) -> dict[str, str]:
        """``LIST VAR`` (no login needed to read) on the kept poll socket; an ``ERR ...`` line is raised as is."""
        if self._poll_sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            self._poll_sock, self._poll_file = sock, sock.makefile("rb")
        self._poll_sock.sendall(f"LIST VAR {self.name}\n".encode())
        begin, end, prefix = f"BEGIN LIST VAR {self.name}", f"END LIST VAR {self.name}", f"VAR {self.name} "
        first = self._read_line()
        if first != begin:
            raise RuntimeError(first)  # "ERR DATA-STALE", "ERR UNKNOWN-UPS"...: _translate knows them
        values: dict[str, str] = {}
        while (line := self._read_line()) != end:
            name, _, quoted = line.removeprefix(prefix).partition(" ")
            if not line.startswith(prefix) or len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
                raise ValueError(f"unexpected line {line[:80]!r}")
            values[name] = quoted[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return values

    def _read_line(self) -> str:
        raw = self._poll_file.readline(4096)
        if not raw.endswith(b"\n"):
            raise EOFError("upsd closed the connection" if not raw else "line too long or cut short")
        return str(raw.decode("utf-8").rstrip("\r\n"))

    def _commands_blocking(self) -> dict[str, str]:
        with self._lock:
            try:
                commands = self._connect().list_commands(self.name)
            except Exception as exc:
                self._drop()
                raise _translate(exc, f"upsd {self.address}: LIST CMD") from None
            return {str(k): str(v) for k, v in (commands or {}).items()}

    def _run_command_blocking(self, command: str) -> None:
        with self._lock:
            try:
                self._connect().run_command(self.name, command)
            except Exception as exc:
                self._drop()
                raise _translate(exc, f"upsd {self.address}: INSTCMD {command}") from None

    def _fsd_blocking(self) -> None:
        # nut2's fsd() needs MASTER (upsmon primary) rights; upsd grants FSD to an account with
        # "actions = FSD", so the command is sent as-is on a fresh authenticated connection.
        with socket.create_connection((self.host, self.port), timeout=self.timeout_s) as sock:
            f = sock.makefile("rw", encoding="utf-8", newline="\n")
            lines = []
            if self.username:
                lines.append(f"USERNAME {self.username}")
            if self.password:
                lines.append(f"PASSWORD {self.password}")
            lines.append(f"FSD {self.name}")
            for line in lines:
                f.write(line + "\n")
                f.flush()
                reply = f.readline().strip()
                if not reply.startswith("OK"):
                    raise _translate(RuntimeError(reply or "no reply"), f"upsd {self.address}: {line.split()[0]}")
            try:
                f.write("LOGOUT\n")
                f.flush()
            except OSError:
                pass

    # -------------------------------------------------------------------------------- async side
    async def read_vars(self) -> dict[str, str]:
        try:
            async with asyncio.timeout(self.timeout_s * 2 + 1):
                values = await asyncio.to_thread(self._list_vars_blocking)
        except TimeoutError:
            self._drop()
            raise DeviceUnavailable(f"upsd {self.address}: no answer within {self.timeout_s * 2 + 1:.0f} s") \
                from None
        self.last_vars = values
        return values

    async def read(self) -> UpsReading:
        values = await self.read_vars()
        if values.get("ups.status", "").strip().upper() == "WAIT":
            # upsd has not had data from its driver yet (just started): not a reading, not stale either
            raise DeviceUnavailable(f"upsd {self.address}: waiting for the UPS driver's first data")
        return reading_from_vars(values)

    async def set_fsd(self) -> None:
        try:
            async with asyncio.timeout(self.timeout_s * 2 + 1):
                await asyncio.to_thread(self._fsd_blocking)
        except TimeoutError:
            raise DeviceUnavailable(f"upsd {self.address}: FSD not answered") from None
        except OSError as exc:
            raise _translate(exc, f"upsd {self.address}: FSD") from None

    async def commands(self) -> dict[str, str]:
        """The instant commands upsd lists for this UPS: ``{name: description}``."""
        try:
            async with asyncio.timeout(self.timeout_s * 4 + 1):  # one round trip per command's description
                return await asyncio.to_thread(self._commands_blocking)
        except TimeoutError:
            self._drop()
            raise DeviceUnavailable(f"upsd {self.address}: LIST CMD not answered") from None

    async def run_command(self, command: str) -> None:
        """Send an instant command (needs an upsd account with ``instcmds``); DeviceRefused if upsd says no."""
        try:
            async with asyncio.timeout(self.timeout_s * 2 + 1):
                await asyncio.to_thread(self._run_command_blocking, command)
        except TimeoutError:
            self._drop()
            raise DeviceUnavailable(f"upsd {self.address}: INSTCMD {command} not answered") from None

    async def battery_test(self) -> dict[str, str]:
        """Start the UPS's own battery self-test with the instant command it lists for that."""
        command = pick_battery_test(await self.commands(), self.address)
        await self.run_command(command)
        return {"command": command, "message": f"{command} accepted by {self.address}"}

    async def close(self) -> None:
        await asyncio.to_thread(self._close_blocking)

    def _close_blocking(self) -> None:
        with self._lock:
            self._drop()
