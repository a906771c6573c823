"""A lab switch's management front: a small UDP relay between the gateway and snmpsim, with fault knobs.

The daemon reaches a lab switch on the management address; there this relay listens and passes every
datagram on to snmpsim (which then listens on 127.0.0.1 only, the lab's own back door for checks).  The
relay is where the switch-side faults live, so they touch nothing but this one switch of this one lab:

- ``delay_ms``: every request is passed on that much later (a slow or overloaded switch);
- ``community``: the switch now answers only this SNMP v1/v2c community (an admin changed it).  Like a
  real agent it silently drops a request with any other community; a request with the right one is passed
  on under the community snmpsim serves.  SNMP v3 is passed through untouched.

Settings live in ``control.json`` next to it; the relay looks at the file's stamp on every datagram, so a
change written before the next request applies to it (no signal, no race).  ``python -m
gateway.lab.snmp_front --listen HOST:PORT --to HOST:PORT --control PATH``; it prints ``ready`` once bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

from gateway.lab.net import socket_in_netns
from gateway.lab.ups import alive, kill_pid

SERVED_COMMUNITY = b"private"  # what snmpsim serves (and writes) under
IDLE_S = 60.0  # an upstream socket of a client gone quiet is closed after this


def _read_len(data: bytes, pos: int) -> tuple[int, int]:
    """BER length at ``pos``: (length, position after it)."""
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    if n == 0 or n > 4 or pos + 1 + n > len(data):
        raise ValueError("bad BER length")
    return int.from_bytes(data[pos + 1:pos + 1 + n], "big"), pos + 1 + n


def _enc_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def split_community(data: bytes) -> tuple[int, bytes, bytes] | None:
    """An SNMP v1/v2c message as (version, community, the PDU bytes after it); None for v3 or not SNMP."""
    try:
        if not data or data[0] != 0x30:
            return None
        _, pos = _read_len(data, 1)
        if data[pos] != 0x02:
            return None
        vlen, pos = _read_len(data, pos + 1)
        version = int.from_bytes(data[pos:pos + vlen], "big")
        pos += vlen
        if version not in (0, 1) or data[pos] != 0x04:
            return None
        clen, pos = _read_len(data, pos + 1)
        community = data[pos:pos + clen]
        if len(community) != clen:
            return None
        return version, community, data[pos + clen:]
    except (IndexError, ValueError):
        return None


def with_community(version: int, community: bytes, rest: bytes) -> bytes:
    body = bytes([0x02, 0x01, version]) + bytes([0x04]) + _enc_len(len(community)) + community + rest
    return bytes([0x30]) + _enc_len(len(body)) + body


class Settings:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.stamp: tuple[int, int, int] | None = None
        self.generation = 0
        self.delay_s = 0.0
        self.community: bytes | None = None

    def refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            stamp = None
        else:
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # a replaced file is a new inode
        if stamp == self.stamp:
            return
        self.stamp = stamp
        self.generation += 1
        raw: dict[str, Any] = {}
        if stamp is not None:
            with contextlib.suppress(OSError, ValueError):
                raw = json.loads(self.path.read_text())
        self.delay_s = max(0.0, float(raw.get("delay_ms") or 0)) / 1000.0
        c = raw.get("community")
        self.community = str(c).encode() if c else None


class _Upstream(asyncio.DatagramProtocol):
    """One client's conversation with snmpsim; replies go back out of the front's own socket."""

    def __init__(self, front: Front, client: tuple[str, int]) -> None:
        self.front, self.client = front, client
        self.transport: asyncio.DatagramTransport | None = None
        self.used_at = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.used_at = time.monotonic()
        if self.front.transport is not None:
            self.front.transport.sendto(data, self.client)

    def error_received(self, exc: Exception) -> None:
        pass  # snmpsim not there (port unreachable): the client times out, as with a dead switch


class Front(asyncio.DatagramProtocol):
    def __init__(self, target: tuple[str, int], settings: Settings) -> None:
        self.target, self.settings = target, settings
        self.transport: asyncio.DatagramTransport | None = None
        self.upstreams: dict[tuple[str, int], _Upstream] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.settings.refresh()
        want = self.settings.community
        if want is not None:
            parts = split_community(data)
            if parts is not None:
                version, community, rest = parts
                if community != want:
                    return  # a real agent drops it (and counts snmpInBadCommunityNames)
                data = with_community(version, SERVED_COMMUNITY, rest)
        delay = self.settings.delay_s
        loop = asyncio.get_running_loop()
        if delay > 0:
            loop.call_later(delay, self._late, data, addr, self.settings.generation)
        else:
            loop.create_task(self._forward(data, addr))

    def _late(self, data: bytes, addr: tuple[str, int], generation: int) -> None:
        self.settings.refresh()
        if self.settings.generation != generation:
            return  # the knobs changed meanwhile: what the slow switch had queued is lost, not replayed late
        asyncio.get_running_loop().create_task(self._forward(data, addr))

    async def _forward(self, data: bytes, addr: tuple[str, int]) -> None:
        up = self.upstreams.get(addr)
        if up is None or up.transport is None or up.transport.is_closing():
            loop = asyncio.get_running_loop()
            _, up = await loop.create_datagram_endpoint(lambda: _Upstream(self, addr), remote_addr=self.target)
            self.upstreams[addr] = up
        up.used_at = time.monotonic()
        assert up.transport is not None
        up.transport.sendto(data)

    def reap(self) -> None:
        now = time.monotonic()
        for addr, up in list(self.upstreams.items()):
            if now - up.used_at > IDLE_S and up.transport is not None:
                up.transport.close()
                del self.upstreams[addr]


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def serve(listen: list[tuple[str, int]], target: tuple[str, int], control: Path,
                netns: str | None = None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    settings = Settings(control)
    fronts = []
    for addr in listen:
        if netns:  # the listening side inside the gateway's namespace (a rootless lab: gateway.lab.userns)
            sock = socket_in_netns(netns, *addr, kind=socket.SOCK_DGRAM)
            transport, front = await loop.create_datagram_endpoint(lambda: Front(target, settings), sock=sock)
        else:
            transport, front = await loop.create_datagram_endpoint(lambda: Front(target, settings), local_addr=addr)
        fronts.append((transport, front))
    print("ready", flush=True)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), IDLE_S / 2)
        for _, front in fronts:
            front.reap()
    for transport, _ in fronts:
        transport.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.lab.snmp_front")
    ap.add_argument("--listen", action="append", required=True, help="HOST:PORT (repeatable)")
    ap.add_argument("--to", required=True, help="snmpsim's HOST:PORT")
    ap.add_argument("--control", required=True, type=Path)
    ap.add_argument("--netns", help="listen inside this network namespace (--to stays in the relay's own)")
    args = ap.parse_args(argv)
    try:
        asyncio.run(serve([_hostport(x) for x in args.listen], _hostport(args.to), args.control, args.netns))
    except OSError as exc:
        print(f"snmp_front: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


class FrontPeer:
    """The relay process for one switch, in ``workdir`` (``peer.json``, ``control.json``, ``front.log``)."""

    def __init__(self, workdir: Path | str, listen: list[str], target: str, netns: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.listen, self.target, self.netns = list(listen), target, netns
        self.pid: int | None = None

    @property
    def control(self) -> Path:
        return self.workdir / "control.json"

    @classmethod
    def attach(cls, workdir: Path | str) -> FrontPeer:
        info = json.loads((Path(workdir) / "peer.json").read_text())
        peer = cls(workdir, info["listen"], info["target"], info.get("netns"))
        peer.pid = info.get("pid")
        return peer

    def running(self) -> bool:
        return alive(self.pid)

    def start(self) -> FrontPeer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_control(self.control)  # a (re)started front starts without faults
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        argv = [sys.executable, "-m", "gateway.lab.snmp_front", "--to", self.target, "--control", str(self.control)]
        for addr in self.listen:
            argv += ["--listen", addr]
        if self.netns:
            argv += ["--netns", self.netns]
        with open(self.workdir / "front.log", "ab") as log:
            proc = subprocess.Popen(argv, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=log, start_new_session=True, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready" once bound, EOF if it could not bind
        proc.stdout.close()
        self.pid = proc.pid
        if line.strip() != "ready":
            kill_pid(proc.pid)
            self.pid = None
            tail = (self.workdir / "front.log").read_text(errors="replace")[-300:].strip()
            raise RuntimeError(f"the switch front on {', '.join(self.listen)} did not start: {tail}")
        (self.workdir / "peer.json").write_text(json.dumps({"listen": self.listen, "target": self.target,
                                                            "netns": self.netns, "pid": self.pid}, indent=1))
        return self

    def stop(self) -> None:
        kill_pid(self.pid)
        self.pid = None
        for f in ("peer.json", "control.json", "control.tmp", "front.log"):
            with contextlib.suppress(FileNotFoundError):
                (self.workdir / f).unlink()
        with contextlib.suppress(OSError):
            self.workdir.rmdir()

    def set(self, delay_ms: float | None = None, community: str | None | bool = False) -> dict[str, Any]:
        """Change a knob (``community=None`` restores the usual ones; ``False`` leaves it)."""
        cur = read_control(self.control)
        if delay_ms is not None:
            cur["delay_ms"] = delay_ms
        if community is not False:
            cur["community"] = community or None
        write_control(self.control, cur["delay_ms"], cur["community"])
        return cur

    def settings(self) -> dict[str, Any]:
        return read_control(self.control)


def write_control(path: Path, delay_ms: float = 0.0, community: str | None = None) -> None:
    """Set the knobs (atomically; the next datagram sees them)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"delay_ms": delay_ms, "community": community}))
    os.replace(tmp, path)


def read_control(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        raw = {}
    return {"delay_ms": float(raw.get("delay_ms") or 0), "community": raw.get("community") or None}


if __name__ == "__main__":
    sys.exit(main())
