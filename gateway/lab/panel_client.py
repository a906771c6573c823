"""Press the panel's button and read its LEDs and buzzer in the lab, through the daemon's mock-pin socket.

The panel service serves ``{state_dir}/panel.sock`` when its GPIO pins are gpiozero's mock pins: one JSON
object per line (``{"op": "press"}``, ``{"op": "hold", "s": N}``, ``{"op": "state"}``), one JSON line back.
A press or hold moves the real gpiozero Button's pin, so the daemon judges it exactly like a finger's; the
reply comes once the daemon has decided and carried it out (the ack, or the failover action).

Used by ``gateway lab button press|hold`` and ``gateway lab panel --json``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from gateway.core.errors import DeviceRefused, DeviceUnavailable

SOCKET = "panel.sock"
TIMEOUT_S = 15.0  # on top of the time the button is held


def socket_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / SOCKET


def request(state_dir: str | Path, req: dict[str, Any], timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """Send one request, return the reply; DeviceUnavailable if nobody serves the socket."""
    path = socket_path(state_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DeviceUnavailable(f"no panel at {path} ({exc.strerror}): is the daemon running, on mock pins?") \
                from None
        except OSError as exc:
            raise DeviceUnavailable(f"panel socket {path}: {exc}") from None
        try:
            s.sendall(json.dumps(req).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except TimeoutError:
            raise DeviceUnavailable(f"panel socket {path}: no answer within {timeout_s:.0f} s") from None
        except OSError as exc:
            raise DeviceUnavailable(f"panel socket {path}: {exc}") from None
    try:
        reply = json.loads(buf)
    except ValueError:
        raise DeviceRefused(f"panel socket {path}: garbled answer {buf[:80]!r}") from None
    if not isinstance(reply, dict):
        raise DeviceRefused(f"panel socket {path}: garbled answer {buf[:80]!r}")
    if not reply.get("ok", False):
        raise DeviceRefused(f"panel: {reply.get('error', 'request refused')}")
    return reply


def press(state_dir: str | Path) -> dict[str, Any]:
    """A short press (acknowledge); the reply says what the panel decided (``decided``) and its new state."""
    return request(state_dir, {"op": "press"})


def hold(state_dir: str | Path, s: float | None = None) -> dict[str, Any]:
    """Hold the button ``s`` seconds (default: the configured hold time and a half second more)."""
    req: dict[str, Any] = {"op": "hold"}
    if s is not None:
        req["s"] = s
    return request(state_dir, req, TIMEOUT_S + (s or 30.0))


def state(state_dir: str | Path) -> dict[str, Any]:
    """``{"leds": {NAME: {"value": 0..1, "pattern": ..}}, "buzzer": {...}}`` as the pins hold them now."""
    reply = request(state_dir, {"op": "state"})
    return {"leds": reply.get("leds", {}), "buzzer": reply.get("buzzer", {})}


def full_state(state_dir: str | Path) -> dict[str, Any]:
    """Everything the panel reports: LEDs, buzzer, button, modem power, override, severity and causes."""
    reply = request(state_dir, {"op": "state"})
    reply.pop("ok", None)
    return reply
