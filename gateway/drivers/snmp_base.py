"""What the small SNMP clients (``snmp_v2c``, ``snmp_v3``) share: one connected UDP socket to one agent, on
pysnmp's low-level protocol API, never its hlapi engine.

A request is a PDU built with ``pysnmp.proto.api`` (v3 carries the same v2c PDUs) under an id; replies are
matched to requests by that id, so several requests may be in flight on the socket at once.  A request is
sent again after ``timeout_s`` up to ``retries`` times with the same id, so a late answer to an earlier
send still counts.

Failures are translated here, once, to the driver errors the PoE driver promises:

- no answer, ICMP port unreachable, a name that does not resolve: :class:`DeviceUnavailable`;
- an error-status (``notWritable``, ``wrongValue``...), ``noSuchObject``/``noSuchInstance``/
  ``endOfMibView``: :class:`DeviceRefused`;
- a datagram from the agent that is not a message of the client's version, or a response that does not
  answer what was asked: :class:`ParseError`.

A subclass builds the datagram and says, in :meth:`SnmpClient._parse`, which request a datagram answers.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import random
from typing import Any

from pyasn1.error import PyAsn1Error
from pysnmp.proto import api

from gateway.core.errors import DeviceRefused, DeviceUnavailable, GatewayError, ParseError

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
_MISSING = (V2C.NoSuchObject, V2C.NoSuchInstance, V2C.EndOfMibView)

VarBinds = list[tuple[str, Any]]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: SnmpClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client._received(data)

    def error_received(self, exc: Exception) -> None:
        self.client._fail_all(DeviceUnavailable(f"no answer ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost()


class SnmpClient(abc.ABC):
    """One agent (``host``:``port``).  ``where`` names it in every error message."""

    kind = "SNMP"  # the protocol version, as errors name it

    def __init__(self, host: str, port: int = 161, timeout_s: float = 1.0, retries: int = 2,
                 where: str | None = None) -> None:
        self.host, self.port = host, port
        self.timeout_s, self.retries = timeout_s, retries
        self.where = where or f"{host}:{port}"
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # id -> (what else the answer must carry: the community, the user; the future of its answer)
        self._pending: dict[int, tuple[object, asyncio.Future[Any]]] = {}
        self._next_id = random.randrange(1, 1 << 30)

    # ------------------------------------------------------------------------------------- socket
    async def _open(self) -> asyncio.DatagramTransport:
        loop = asyncio.get_running_loop()
        if self._transport is not None and self._loop is loop and not self._transport.is_closing():
            return self._transport
        self._close_transport()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self),
                                                               remote_addr=(self.host, self.port))
        except OSError as exc:  # a name that does not resolve, no route
            raise DeviceUnavailable(f"{self.where}: {exc.strerror or exc}") from None
        self._transport, self._loop = transport, loop
        return transport

    def _close_transport(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = self._loop = None

    async def close(self) -> None:
        self._fail_all(DeviceUnavailable("client closed"))
        self._close_transport()

    # ---------------------------------------------------------------------------------- requests
    def _new_id(self) -> int:
        request_id = self._next_id
        self._next_id = self._next_id + 1 if self._next_id < (1 << 31) - 1 else 1
        return request_id

    def _pdu(self, pdu: Any, request_id: int, var_binds: VarBinds, what: str) -> list[Any]:
        """Fill ``pdu`` (a v2c PDU) with ``request_id`` and ``var_binds``; the OIDs asked, as pyasn1 values."""
        try:
            oids = [V2C.ObjectIdentifier(o) for o, _ in var_binds]
        except PyAsn1Error as exc:
            raise ParseError(f"{self.where}: {what}: not an OID: {exc}") from None
        V2C.apiPDU.set_defaults(pdu)
        V2C.apiPDU.set_request_id(pdu, request_id)
        V2C.apiPDU.set_varbinds(pdu, [(oid, v) for oid, (_, v) in zip(oids, var_binds, strict=True)])
        return oids

    async def _exchange(self, key: int, tag: object, datagram: bytes, what: str, silence: str = "") -> Any:
        """Send ``datagram`` until what :meth:`_parse` says answers ``key`` (carrying ``tag``) comes back;
        ``silence`` says what no answer at all may mean."""
        transport = await self._open()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = (tag, fut)
        try:
            for _ in range(self.retries + 1):
                transport.sendto(datagram)
                done, _ = await asyncio.wait([fut], timeout=self.timeout_s)
                if done:
                    break
            else:
                raise DeviceUnavailable(f"{self.where}: {what}: no answer within {self.timeout_s:g} s "
                                        f"({self.retries + 1} tries); down, unreachable{silence}")
        finally:
            self._pending.pop(key, None)
        try:
            return fut.result()
        except GatewayError as exc:  # set by _fail_all or _parse: the reason, without where and what
            raise type(exc)(f"{self.where}: {what}: {exc}") from None

    def _answer(self, pdu: Any, oids: list[Any], what: str) -> VarBinds:
        status = V2C.apiPDU.get_error_status(pdu)
        if status:
            index = int(V2C.apiPDU.get_error_index(pdu))
            at = f" at {oids[index - 1].prettyPrint()}" if 0 < index <= len(oids) else ""
            raise DeviceRefused(f"{self.where}: {what}: {status.prettyPrint()}{at}")
        try:
            got = V2C.apiPDU.get_varbinds(pdu)
        except PyAsn1Error as exc:
            raise ParseError(f"{self.where}: {what}: unreadable var-binds: {exc}") from None
        if [o for o, _ in got] != oids:
            raise ParseError(f"{self.where}: {what}: the answer names other OIDs than asked "
                             f"({', '.join(o.prettyPrint() for o, _ in got) or 'none'})")
        out: VarBinds = []
        for oid, value in got:
            if isinstance(value, _MISSING):
                raise DeviceRefused(f"{self.where}: {what}: {oid.prettyPrint()} is {type(value).__name__} "
                                    f"(wrong profile, group or port?)")
            out.append((oid.prettyPrint(), value))
        return out

    # ----------------------------------------------------------------------------------- replies
    @abc.abstractmethod
    def _parse(self, data: bytes) -> tuple[int, object, Any] | None:
        """``(id, tag, answer)`` of a datagram from the agent (``answer`` a GatewayError fails that request),
        None for one to ignore; raises ParseError (or pyasn1's errors) for what is not understood.  Each
        protocol version (v2c, v3) reads its own messages."""

    def _received(self, data: bytes) -> None:
        if not self._pending:
            return  # a late answer to a request already given up on
        try:
            parsed = self._parse(data)
        except (PyAsn1Error, ParseError, ValueError, TypeError) as exc:
            # the socket is connected to the agent, so this came from it: what it says cannot be understood
            self._fail_all(ParseError(f"a reply that is not {self.kind} ({exc})"))
            return
        if parsed is None:
            return
        key, tag, answer = parsed
        waiting = self._pending.get(key)
        if waiting is None or waiting[0] != tag or waiting[1].done():
            return  # an answer to an earlier request, or to another community or user: not ours
        if isinstance(answer, GatewayError):
            waiting[1].set_exception(answer)
        else:
            waiting[1].set_result(answer)

    def _fail_all(self, exc: GatewayError) -> None:
        """Every request in flight fails with ``exc`` (its message: the reason only)."""
        for _, fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)

    def _lost(self) -> None:
        with contextlib.suppress(Exception):
            self._fail_all(DeviceUnavailable("socket closed"))
