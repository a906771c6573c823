"""Routes, rules, links and connection tracking, through netlink (pyroute2).

- Each uplink gets its own routing table (``default via GW dev IF table T``) and a rule ``from SOURCE lookup
  T``, so probes bound to an uplink's address leave through that uplink whatever the main default is.
- The office's default route is the main table's ``default`` at one metric, *replaced* in one netlink
  request (``RTM_NEWROUTE`` with ``NLM_F_REPLACE``), so there is never a moment without one, nor two.
- Link events come from a plain ``NETLINK_ROUTE`` socket subscribed to link and route groups (the runtime
  adds it to its event loop): carrier loss is known within a millisecond, and a link going down (which
  deletes its routes in the kernel) or a route vanishing makes the runtime re-apply its desired state.
- Conntrack: only the entries whose reply goes to the dead uplink's address (that is, connections NATed
  out of it, or made from it) are deleted, through pyroute2's ``Conntrack`` (ctnetlink), no CLI.

Every call may name a network namespace (tests drive one from outside); the daemon itself runs inside its
namespace and passes None.  Errors are translated to :class:`DeviceUnavailable` at this boundary.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gateway.core.errors import DeviceUnavailable

RULE_PREF_BASE = 1000  # rule priority = base + table (far before main's 32766)
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
RTMGRP_LINK = 0x1
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV4_IFADDR = 0x10
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWROUTE, RTM_DELROUTE = 16, 17, 18, 24, 25
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
IFLA_IFNAME = 3


@contextlib.contextmanager
def entered(netns: str | None) -> Iterator[None]:
    """Run the block in ``netns`` (this thread only); sockets made inside stay in it."""
    if not netns:
        yield
        return
    from pyroute2 import netns as nsmod

    nsmod.pushns(netns)
    try:
        yield
    finally:
        nsmod.popns()


@dataclass(frozen=True)
class LinkEvent:
    ifindex: int
    ifname: str | None
    carrier: bool | None  # None for route events (something to re-check)
    kind: str  # link | route


class LinkWatcher:
    """A non-blocking netlink socket for link and route events; ``fileno()`` for the event loop,
    ``read()`` drains what arrived."""

    def __init__(self, netns: str | None = None) -> None:
        with entered(netns):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV4_IFADDR))
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[LinkEvent]:
        out: list[LinkEvent] = []
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # overrun: tell the runtime to re-check everything
                    out.append(LinkEvent(0, None, None, "route"))
                    continue
                raise DeviceUnavailable(f"netlink: {exc}") from None
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                if length < 16:
                    break
                if kind in (RTM_NEWLINK, RTM_DELLINK) and length >= 32:
                    _, _, _, index, flags, _ = struct.unpack_from("=BBHiII", data, off + 16)
                    name = _ifname_attr(data[off + 32:off + length])
                    up = kind == RTM_NEWLINK and bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
                    out.append(LinkEvent(index, name, up, "link"))
                elif kind in (RTM_NEWROUTE, RTM_DELROUTE):
                    out.append(LinkEvent(0, None, None, "route"))
                else:
                    out.append(LinkEvent(0, None, None, "addr"))
                off += (length + 3) & ~3

    def close(self) -> None:
        self.sock.close()


def _ifname_attr(attrs: bytes) -> str | None:
    off = 0
    while off + 4 <= len(attrs):
        alen, atype = struct.unpack_from("=HH", attrs, off)
        if alen < 4:
            return None
        if atype == 3:  # IFLA_IFNAME
            return attrs[off + 4:off + alen].split(b"\0", 1)[0].decode(errors="replace")
        off += (alen + 3) & ~3
    return None


class LinkQuery:
    """One blocking ``NETLINK_ROUTE`` socket asking the kernel for one link by name (``RTM_GETLINK`` with
    ``IFLA_IFNAME``): index and flags in one small round trip, in the calling thread.  The carrier safety
    net asks this every second per uplink; through pyroute2 the same answer cost a dump of every link and
    a hop to its worker thread and event loop, most of the daemon's idle CPU."""

    def __init__(self, netns: str | None = None, timeout_s: float = 1.0) -> None:
        self.netns, self.timeout_s = netns, timeout_s
        self._sock: socket.socket | None = None
        self._seq = 0
        self._lock = threading.Lock()

    def _socket(self) -> socket.socket:
        if self._sock is None:
            with entered(self.netns):
                s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            s.settimeout(self.timeout_s)
            s.bind((0, 0))
            self._sock = s
        return self._sock

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def link(self, ifname: str) -> tuple[int, int] | None:
        """(ifindex, flags) of ``ifname``, or None when there is no such interface."""
        name = ifname.encode() + b"\0"
        if len(name) > 16:
            return None  # longer than IFNAMSIZ: no interface can have that name
        with self._lock:
            try:
                return self._ask(name)
            except (OSError, struct.error) as exc:  # a timeout, a closed socket: start afresh next time
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
                raise DeviceUnavailable(f"netlink link {ifname}: {exc}") from None

    def _ask(self, name: bytes) -> tuple[int, int] | None:
        s = self._socket()
        self._seq = self._seq % 0x7FFFFFFF + 1
        attr = struct.pack("=HH", 4 + len(name), IFLA_IFNAME) + name
        attr += b"\0" * (-len(attr) % 4)
        body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0) + attr
        s.send(struct.pack("=IHHII", 16 + len(body), RTM_GETLINK, NLM_F_REQUEST, self._seq, 0) + body)
        while True:
            data = s.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, kind, _, seq, _ = struct.unpack_from("=IHHII", data, off)
                if length < 16:
                    break
                if seq == self._seq:  # anything else is the late answer to a query that timed out
                    if kind == NLMSG_ERROR:
                        err = -struct.unpack_from("=i", data, off + 16)[0]
                        if err in (errno.ENODEV, errno.ENOENT):
                            return None
                        raise OSError(err, os.strerror(err))
                    if kind == RTM_NEWLINK:
                        _, _, index, flags, _ = struct.unpack_from("=BxHiII", data, off + 16)
                        return int(index), int(flags)
                off += (length + 3) & ~3


class NetDriver:
    """Desired-state route/rule operations on one namespace (``None``: the current one)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: Any = None
        # pyroute2's synchronous API runs its own asyncio loop, so it cannot be called from the daemon's
        # loop thread: every netlink call goes to this one worker thread (calls take a millisecond or so)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="netlink")
        self._query = LinkQuery(netns)

    def _run(self, fn: Any, *args: Any, **kw: Any) -> Any:
        return self._pool.submit(fn, *args, **kw).result()

    def _ip(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute

            try:
                self._ipr = IPRoute(netns=self.netns) if self.netns else IPRoute()
            except Exception as exc:
                raise DeviceUnavailable(f"netlink: {exc}") from None
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            with contextlib.suppress(Exception):
                self._run(self._ipr.close)
            self._ipr = None
        self._query.close()
        self._pool.shutdown(wait=False)

    def _call(self, what: str, *args: Any, **kw: Any) -> Any:
        def call() -> Any:
            out = getattr(self._ip(), what)(*args, **kw)
            return list(out) if what.startswith("get") or what == "link_lookup" else out

        try:
            return self._run(call)
        except DeviceUnavailable:
            raise
        except Exception as exc:
            raise DeviceUnavailable(f"netlink {what} {args[:1]}: {exc}") from None

    # -------------------------------------------------------------------------------------- links
    def ifindex(self, ifname: str) -> int | None:
        found = self._query.link(ifname)
        return found[0] if found else None

    def carrier(self, ifname: str) -> bool | None:
        """Up and with carrier (None: no such interface)."""
        found = self._query.link(ifname)
        if found is None:
            return None
        return bool(found[1] & IFF_UP) and bool(found[1] & IFF_LOWER_UP)

    def addresses(self, ifname: str) -> list[str]:
        idx = self.ifindex(ifname)
        if idx is None:
            return []
        return [a.get_attr("IFA_ADDRESS") for a in self._call("get_addr", family=socket.AF_INET, index=idx)]

    def link_counters(self, ifname: str) -> tuple[int, int] | None:
        """(rx_bytes, tx_bytes) of the interface."""
        idx = self.ifindex(ifname)
        if idx is None:
            return None
        links = list(self._call("get_links", idx))
        stats = links[0].get_attr("IFLA_STATS64") if links else None
        if not stats:
            return None
        return int(stats["rx_bytes"]), int(stats["tx_bytes"])

    # ---------------------------------------------------------------------------- per-uplink table
    def ensure_uplink(self, ifname: str, gateway: str | None, source: str | None, table: int) -> str | None:
        """Table ``table`` routes through the uplink; a rule sends traffic from its address there.
        Returns the source address used (the interface's first IPv4 address if not given), or None when
        the interface is missing or has no address yet (nothing changed)."""
        idx = self.ifindex(ifname)
        if idx is None:
            return None
        src = source or next(iter(self.addresses(ifname)), None)
        if src is None:
            return None
        pref = RULE_PREF_BASE + table % 30000
        rules = [r for r in self._call("get_rules", family=socket.AF_INET)
                 if r.get_attr("FRA_PRIORITY") == pref]
        ok = any(r.get_attr("FRA_SRC") == src and r["src_len"] == 32 and r.get_attr("FRA_TABLE") == table
                 for r in rules)
        if not ok:
            for r in rules:
                with contextlib.suppress(DeviceUnavailable):
                    self._call("rule", "del", family=socket.AF_INET, priority=pref,
                               src=r.get_attr("FRA_SRC"), src_len=r["src_len"], table=r.get_attr("FRA_TABLE"))
            self._call("rule", "add", family=socket.AF_INET, priority=pref, src=src, src_len=32, table=table)
        if self.carrier(ifname):
            route: dict[str, Any] = {"dst": "0.0.0.0/0", "oif": idx, "table": table}
            if gateway:
                route["gateway"] = gateway
            self._call("route", "replace", **route)
        return src

    def remove_uplink(self, table: int) -> None:
        """Undo :meth:`ensure_uplink` (rule and table)."""
        pref = RULE_PREF_BASE + table % 30000
        for r in self._call("get_rules", family=socket.AF_INET):
            if r.get_attr("FRA_PRIORITY") == pref:
                with contextlib.suppress(DeviceUnavailable):
                    self._call("rule", "del", family=socket.AF_INET, priority=pref, src=r.get_attr("FRA_SRC"),
                               src_len=r["src_len"], table=r.get_attr("FRA_TABLE"))
        with contextlib.suppress(DeviceUnavailable):
            self._call("flush_routes", table=table)

    # ------------------------------------------------------------------------------ main default
    def _main_defaults(self) -> list[Any]:
        return [r for r in self._call("get_default_routes", family=socket.AF_INET, table=254)
                if (r.get_attr("RTA_TABLE") or r["table"]) == 254]

    def default_route(self) -> tuple[str | None, str | None, int] | None:
        """(interface, gateway, metric) of the main table's best default route, or None."""
        best: tuple[int, Any] | None = None
        for r in self._main_defaults():
            metric = r.get_attr("RTA_PRIORITY") or 0
            if best is None or metric < best[0]:
                best = (metric, r)
        if best is None:
            return None
        r = best[1]
        oif = r.get_attr("RTA_OIF")
        name = None
        if oif is not None:
            links = list(self._call("get_links", oif))
            name = links[0].get_attr("IFLA_IFNAME") if links else None
        return name, r.get_attr("RTA_GATEWAY"), int(best[0])

    def set_default(self, ifname: str, gateway: str | None, metric: int, managed: tuple[str, ...] = ()) -> bool:
        """Make the main default route ``via gateway dev ifname metric M`` (one replace).  Other default
        routes through the ``managed`` interfaces are removed.  Returns True when something changed."""
        idx = self.ifindex(ifname)
        if idx is None:
            raise DeviceUnavailable(f"{ifname}: no such interface")
        changed = False
        cur = self._main_defaults()
        same = [r for r in cur if (r.get_attr("RTA_PRIORITY") or 0) == metric]
        if not (len(same) == 1 and same[0].get_attr("RTA_OIF") == idx
                and same[0].get_attr("RTA_GATEWAY") == gateway):
            route: dict[str, Any] = {"dst": "0.0.0.0/0", "oif": idx, "priority": metric, "table": 254}
            if gateway:
                route["gateway"] = gateway
            self._call("route", "replace", **route)
            changed = True
        managed_idx = {self.ifindex(n) for n in managed} - {None}
        for r in cur:
            m = r.get_attr("RTA_PRIORITY") or 0
            if m != metric and r.get_attr("RTA_OIF") in managed_idx:
                kw: dict[str, Any] = {"dst": "0.0.0.0/0", "oif": r.get_attr("RTA_OIF"), "table": 254}
                if m:
                    kw["priority"] = m
                with contextlib.suppress(DeviceUnavailable):
                    self._call("route", "del", **kw)
                    changed = True
        return changed

    # --------------------------------------------------------------------------------- conntrack
    def flush_conntrack(self, address: str) -> int:
        return int(self._run(self._flush_conntrack, address))

    def _flush_conntrack(self, address: str) -> int:
        """Delete the tracked connections whose replies go to ``address`` (NATed out of, or made from,
        that uplink); the rest of the table is untouched.  Returns how many were deleted."""
        ipaddress.IPv4Address(address)
        from pyroute2 import Conntrack
        from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

        n = 0
        try:
            ct = Conntrack(netns=self.netns) if self.netns else Conntrack()
            try:
                victims = list(ct.dump_entries(tuple_reply=NFCTAttrTuple(daddr=address)))
                for entry in victims:
                    with contextlib.suppress(Exception):  # it may have gone meanwhile
                        ct.delete(entry)
                        n += 1
            finally:
                ct.close()
        except Exception as exc:
            raise DeviceUnavailable(f"conntrack: {exc}") from None
        return n

    def conntrack_entries(self) -> list[tuple[str, str, str, str]]:
        return list(self._run(self._conntrack_entries))

    def _conntrack_entries(self) -> list[tuple[str, str, str, str]]:
        """(orig src, orig dst, reply src, reply dst) of every tracked IPv4 connection (tests, status)."""
        from pyroute2 import Conntrack

        ct = Conntrack(netns=self.netns) if self.netns else Conntrack()
        try:
            return [(e.tuple_orig.saddr, e.tuple_orig.daddr, e.tuple_reply.saddr, e.tuple_reply.daddr)
                    for e in ct.dump_entries()]
        finally:
            ct.close()
