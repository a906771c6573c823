"""Routes and links without a kernel, with the same interface as :class:`gateway.drivers.net.NetDriver`.

Tests set ``links`` (interface → carrier) and ``addrs``; they read ``default`` (the main default route),
``tables`` and ``flushed`` (the addresses whose conntrack entries were flushed) and ``calls``.
"""

from __future__ import annotations

from gateway.core.errors import DeviceUnavailable


class FakeNet:
    def __init__(self, links: dict[str, bool] | None = None, addrs: dict[str, str] | None = None,
                 default: tuple[str | None, str | None, int] | None = None) -> None:
        self.links = dict(links or {})
        self.addrs = dict(addrs or {})
        self.default = default
        self.tables: dict[int, tuple[str, str | None, str]] = {}
        self.flushed: list[str] = []
        self.calls: list[str] = []
        self.fail = False  # every call raises DeviceUnavailable (netlink trouble)

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.fail:
            raise DeviceUnavailable(f"fake netlink: {what} failed")

    def close(self) -> None:
        pass

    def ifindex(self, ifname: str) -> int | None:
        return (list(self.links).index(ifname) + 2) if ifname in self.links else None

    def carrier(self, ifname: str) -> bool | None:
        self._check(f"carrier {ifname}")
        return self.links.get(ifname)

    def addresses(self, ifname: str) -> list[str]:
        return [self.addrs[ifname]] if ifname in self.addrs else []

    def link_counters(self, ifname: str) -> tuple[int, int] | None:
        return (0, 0) if ifname in self.links else None

    def ensure_uplink(self, ifname: str, gateway: str | None, source: str | None, table: int) -> str | None:
        self._check(f"ensure_uplink {ifname}")
        if ifname not in self.links:
            return None
        src = source or self.addrs.get(ifname)
        if src is None:
            return None
        self.tables[table] = (ifname, gateway, src)
        return src

    def remove_uplink(self, table: int) -> None:
        self.tables.pop(table, None)

    def default_route(self) -> tuple[str | None, str | None, int] | None:
        return self.default

    def set_default(self, ifname: str, gateway: str | None, metric: int, managed: tuple[str, ...] = ()) -> bool:
        self._check(f"set_default {ifname}")
        if ifname not in self.links:
            raise DeviceUnavailable(f"{ifname}: no such interface")
        new = (ifname, gateway, metric)
        changed = new != self.default
        self.default = new
        return changed

    def flush_conntrack(self, address: str) -> int:
        self._check(f"flush_conntrack {address}")
        self.flushed.append(address)
        return 0
