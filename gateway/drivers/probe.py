"""Probes bound to one uplink: ICMP echo, TCP connect, HTTP and DNS checks.

Every probe socket is bound to the uplink's interface (``SO_BINDTODEVICE``) *and* its source address, so
the per-uplink ``ip rule from SOURCE lookup TABLE`` (see ``gateway.drivers.net``) routes it through that
uplink even while the other one holds the default route.

ICMP: unprivileged ICMP datagram sockets (``SOCK_DGRAM``/``IPPROTO_ICMP``, allowed by
``net.ipv4.ping_group_range``, which systemd opens for everyone) are preferred: the kernel fills in the
identifier and checksum and hands each socket only its own replies, so three uplinks x three targets at
5/s cost no filtering in Python.  Raw sockets (``CAP_NET_RAW``) are the fallback; every raw ICMP socket
sees every ICMP packet of the host, which we then filter by identifier.  ``tests/bench/bench_failover.py``
measures both (``probe_icmp_*``).

A prober's ``send(target)`` returns a token (or raises :class:`DeviceUnavailable` when the packet cannot
even leave: no route, link down); replies are delivered to ``on_reply(target, token, rtt_ms)`` from the
event loop.  Deadlines and verdicts are the caller's business (the runtime's scheduler).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import socket
import struct
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

from gateway.core.errors import DeviceUnavailable

OnReply = Callable[[str, int, float], None]
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
ICMP_ECHO, ICMP_ECHOREPLY = 8, 0


@contextlib.contextmanager
def _entered(netns: str | None) -> Iterator[None]:
    if not netns:
        yield
        return
    from pyroute2 import netns as nsmod

    nsmod.pushns(netns)
    try:
        yield
    finally:
        nsmod.popns()


def bound_socket(family: int, kind: int, proto: int, source: str | None, iface: str | None,
                 netns: str | None = None) -> socket.socket:
    """A non-blocking socket made in ``netns``, bound to ``iface`` and ``source``."""
    with _entered(netns):
        s = socket.socket(family, kind, proto)
    try:
        if iface:
            s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, iface.encode())
        if source:
            s.bind((source, 0))
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


class Prober(Protocol):
    kind: str

    def send(self, target: str) -> int: ...

    def close(self) -> None: ...


class IcmpProber:
    """ICMP echo through one uplink; ``mode`` dgram, raw or auto (dgram if allowed, else raw)."""

    kind = "icmp"

    def __init__(self, source: str | None, iface: str | None, on_reply: OnReply, netns: str | None = None,
                 mode: str = "auto", payload_bytes: int = 16, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.on_reply = on_reply
        self.loop = loop or asyncio.get_running_loop()
        self.payload = os.urandom(payload_bytes)
        self.mode = mode
        self.sock: socket.socket | None = None
        self.ident = random.randrange(1, 0xFFFF)
        self.seq = random.randrange(0, 0xFFFF)
        self.sent: dict[int, tuple[str, float]] = {}
        self.sent_count = 0
        self.recv_count = 0
        errors: list[str] = []
        for m in (("dgram", "raw") if mode == "auto" else (mode,)):
            try:
                kind = socket.SOCK_DGRAM if m == "dgram" else socket.SOCK_RAW
                self.sock = bound_socket(socket.AF_INET, kind, socket.IPPROTO_ICMP, source, iface, netns)
                self.mode = m
                break
            except OSError as exc:
                errors.append(f"{m}: {exc.strerror or exc}")
        if self.sock is None:
            raise DeviceUnavailable(f"ICMP probe socket via {iface or source}: {'; '.join(errors)}")
        self.loop.add_reader(self.sock.fileno(), self._readable)

    def send(self, target: str) -> int:
        assert self.sock is not None
        self.seq = (self.seq + 1) & 0xFFFF
        header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, self.ident, self.seq)
        if self.mode == "raw":
            csum = _checksum(header + self.payload)
            header = struct.pack("!BBHHH", ICMP_ECHO, 0, csum, self.ident, self.seq)
        try:
            self.sock.sendto(header + self.payload, (target, 0))
        except OSError as exc:
            raise DeviceUnavailable(f"icmp {target}: {exc.strerror or exc}") from None
        self.sent[self.seq] = (target, time.perf_counter())
        self.sent_count += 1
        if len(self.sent) > 4096:  # replies that never came
            for k in list(self.sent)[:1024]:
                del self.sent[k]
        return self.seq

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data, addr = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    continue  # ICMP errors queued on the socket: the deadline judges the probe
                return
            now = time.perf_counter()
            if self.mode == "raw":
                ihl = (data[0] & 0x0F) * 4 if data else 0
                data = data[ihl:]
            if len(data) < 8:
                continue
            kind, _, _, ident, seq = struct.unpack_from("!BBHHH", data)
            if kind != ICMP_ECHOREPLY or (self.mode == "raw" and ident != self.ident):
                continue
            sent = self.sent.pop(seq, None)
            if sent is None or sent[0] != addr[0]:
                continue
            self.recv_count += 1
            self.on_reply(sent[0], seq, (now - sent[1]) * 1000.0)

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None


# ------------------------------------------------------------------------------- TCP, HTTP, DNS

async def tcp_connect(host: str, port: int, source: str | None, iface: str | None, timeout_s: float,
                      netns: str | None = None) -> float:
    """Connect through the uplink; return the connect time in ms."""
    s = bound_socket(socket.AF_INET, socket.SOCK_STREAM, 0, source, iface, netns)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.get_running_loop().sock_connect(s, (host, port))
        return (time.perf_counter() - started) * 1000.0
    except (TimeoutError, OSError) as exc:
        raise DeviceUnavailable(f"tcp {host}:{port}: {getattr(exc, 'strerror', None) or 'timeout'}") from None
    finally:
        s.close()


async def http_check(url: str, source: str | None, iface: str | None, timeout_s: float,
                     netns: str | None = None) -> float:
    """GET ``url`` (plain HTTP) through the uplink; any 2xx/3xx status is healthy.  Returns ms."""
    parts = urlsplit(url if "//" in url else f"http://{url}/")
    host, port = parts.hostname or "", parts.port or 80
    loop = asyncio.get_running_loop()
    s = bound_socket(socket.AF_INET, socket.SOCK_STREAM, 0, source, iface, netns)
    started = time.perf_counter()
    try:
        async def go() -> bytes:
            await loop.sock_connect(s, (host, port))
            req = f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {parts.netloc}\r\nUser-Agent: office-gateway-probe\r\n\r\n"
            await loop.sock_sendall(s, req.encode())
            return await loop.sock_recv(s, 64)

        async with asyncio.timeout(timeout_s):
            head = await go()
    except (TimeoutError, OSError) as exc:
        raise DeviceUnavailable(f"http {url}: {getattr(exc, 'strerror', None) or 'timeout'}") from None
    finally:
        s.close()
    status = head.split(b" ", 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/") or status[1][:1] not in (b"2", b"3"):
        raise DeviceUnavailable(f"http {url}: {head[:40]!r}")
    return (time.perf_counter() - started) * 1000.0


def dns_query_packet(name: str, qid: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split(".") if p)
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", 1, 1)


async def dns_check(server: str, name: str, source: str | None, iface: str | None, timeout_s: float,
                    netns: str | None = None) -> float:
    """Ask ``server`` for ``name``'s A record through the uplink; an answer without error is healthy."""
    loop = asyncio.get_running_loop()
    s = bound_socket(socket.AF_INET, socket.SOCK_DGRAM, 0, source, iface, netns)
    qid = random.randrange(0, 0xFFFF)
    started = time.perf_counter()
    try:
        await loop.sock_connect(s, (server, 53))
        await loop.sock_sendall(s, dns_query_packet(name, qid))

        async def answer() -> bytes:
            while True:
                data = await loop.sock_recv(s, 1500)
                if len(data) >= 12 and struct.unpack_from("!H", data)[0] == qid:
                    return data

        async with asyncio.timeout(timeout_s):
            data = await answer()
    except (TimeoutError, OSError) as exc:
        raise DeviceUnavailable(f"dns {server}: {getattr(exc, 'strerror', None) or 'timeout'}") from None
    finally:
        s.close()
    flags = struct.unpack_from("!H", data, 2)[0]
    if flags & 0x000F:
        raise DeviceUnavailable(f"dns {server}: rcode {flags & 0x000F}")
    return (time.perf_counter() - started) * 1000.0


class TaskProber:
    """TCP/HTTP/DNS checks as probes: each ``send`` starts one check; success calls ``on_reply``."""

    def __init__(self, kind: str, source: str | None, iface: str | None, on_reply: OnReply, timeout_s: float,
                 netns: str | None = None, port: int = 443, dns_name: str = "example.com") -> None:
        if kind not in ("tcp", "http", "dns"):
            raise ValueError(f"unknown probe kind {kind!r}")
        self.kind = kind
        self.source, self.iface, self.netns = source, iface, netns
        self.on_reply, self.timeout_s, self.port, self.dns_name = on_reply, timeout_s, port, dns_name
        self.tasks: set[asyncio.Task[None]] = set()
        self.token = 0
        self.sent_count = 0

    def _check(self, target: str) -> Coroutine[Any, Any, float]:
        if self.kind == "tcp":
            host, _, port = target.partition(":")
            return tcp_connect(host, int(port or self.port), self.source, self.iface, self.timeout_s, self.netns)
        if self.kind == "http":
            return http_check(target, self.source, self.iface, self.timeout_s, self.netns)
        return dns_check(target, self.dns_name, self.source, self.iface, self.timeout_s, self.netns)

    def send(self, target: str) -> int:
        self.token += 1
        token = self.token
        self.sent_count += 1

        async def run() -> None:
            with contextlib.suppress(DeviceUnavailable):
                rtt = await self._check(target)
                self.on_reply(target, token, rtt)

        task = asyncio.ensure_future(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return token

    def close(self) -> None:
        for t in list(self.tasks):
            t.cancel()


def make_prober(kind: str, source: str | None, iface: str | None, on_reply: OnReply, timeout_s: float,
                netns: str | None = None, port: int = 443, icmp_mode: str = "auto") -> Prober:
    if kind == "icmp":
        return IcmpProber(source, iface, on_reply, netns, icmp_mode)
    return TaskProber(kind, source, iface, on_reply, timeout_s, netns, port)
