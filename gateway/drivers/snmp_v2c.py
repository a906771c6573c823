"""A small SNMP v2c client: GET and SET over one UDP socket, on pysnmp's low-level protocol API.

Why not pysnmp's hlapi: its ``SnmpEngine`` loads the whole SMI/MIB machinery (~500 modules, ~30 MB of
RSS on the box) to send what for v2c is a single BER datagram.  Here a request is a v2c PDU built with
``pysnmp.proto.api`` and encoded with pyasn1's BER codec; replies are matched to requests by request-id,
so several requests may be in flight on the socket at once.  A request is sent again after ``timeout_s``
up to ``retries`` times with the same request-id, so a late answer to an earlier send still counts.

Failures are translated here, once, to the driver errors the PoE driver promises:

- no answer (also a wrong community: agents drop those silently), ICMP port unreachable, a name that
  does not resolve: :class:`DeviceUnavailable`;
- an error-status (``notWritable``, ``wrongValue``...), ``noSuchObject``/``noSuchInstance``/
  ``endOfMibView``: :class:`DeviceRefused`;
- a datagram from the agent that is not a v2c message, or a response that does not answer what was asked:
  :class:`ParseError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pysnmp.proto import api

from gateway.core.errors import DeviceRefused, DeviceUnavailable, GatewayError, ParseError

_V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
_MISSING = (_V2C.NoSuchObject, _V2C.NoSuchInstance, _V2C.EndOfMibView)
_RESPONSE_TAG = _V2C.ResponsePDU.tagSet


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: V2cClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client._received(data)

    def error_received(self, exc: Exception) -> None:
        self.client._fail_all(DeviceUnavailable(f"no answer ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost()


class V2cClient:
    """One agent (``host``:``port``).  ``where`` names it in every error message."""

    def __init__(self, host: str, port: int = 161, timeout_s: float = 1.0, retries: int = 2,
                 where: str | None = None) -> None:
        self.host, self.port = host, port
        self.timeout_s, self.retries = timeout_s, retries
        self.where = where or f"{host}:{port}"
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, tuple[str, asyncio.Future[Any]]] = {}
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
    async def get(self, community: str, oids: list[str], what: str = "get") -> list[tuple[str, Any]]:
        """The values of ``oids``, in order, as pyasn1 values (``int()`` them)."""
        return await self._request(_V2C.GetRequestPDU(), community, [(o, _V2C.Null("")) for o in oids], what)

    async def set(self, community: str, values: list[tuple[str, int]], what: str = "set") -> list[tuple[str, Any]]:
        """Set integer ``values`` (``(oid, n)``); returns what the agent says it holds now."""
        return await self._request(_V2C.SetRequestPDU(), community,
                                   [(o, _V2C.Integer(v)) for o, v in values], what)

    async def _request(self, pdu: Any, community: str, var_binds: list[tuple[str, Any]],
                       what: str) -> list[tuple[str, Any]]:
        try:
            oids = [_V2C.ObjectIdentifier(o) for o, _ in var_binds]
        except PyAsn1Error as exc:
            raise ParseError(f"{self.where}: {what}: not an OID: {exc}") from None
        request_id = self._next_id
        self._next_id = self._next_id + 1 if self._next_id < (1 << 31) - 1 else 1
        _V2C.apiPDU.set_defaults(pdu)
        _V2C.apiPDU.set_request_id(pdu, request_id)
        _V2C.apiPDU.set_varbinds(pdu, [(oid, v) for oid, (_, v) in zip(oids, var_binds, strict=True)])
        msg = _V2C.Message()
        _V2C.apiMessage.set_defaults(msg)
        _V2C.apiMessage.set_community(msg, community)
        _V2C.apiMessage.set_pdu(msg, pdu)
        datagram = encoder.encode(msg)

        transport = await self._open()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (community, fut)
        try:
            for _ in range(self.retries + 1):
                transport.sendto(datagram)
                done, _ = await asyncio.wait([fut], timeout=self.timeout_s)
                if done:
                    break
            else:
                # a v2c agent drops a wrong community without a word: say so, it is a common cause
                raise DeviceUnavailable(f"{self.where}: {what}: no answer within {self.timeout_s:g} s "
                                        f"({self.retries + 1} tries); down, unreachable, or it does not "
                                        f"accept our community")
        finally:
            self._pending.pop(request_id, None)
        try:
            reply_pdu = fut.result()
        except GatewayError as exc:  # set by _fail_all: the reason, without where and what
            raise type(exc)(f"{self.where}: {what}: {exc}") from None
        return self._answer(reply_pdu, oids, what)

    def _answer(self, pdu: Any, oids: list[Any], what: str) -> list[tuple[str, Any]]:
        status = _V2C.apiPDU.get_error_status(pdu)
        if status:
            index = int(_V2C.apiPDU.get_error_index(pdu))
            at = f" at {oids[index - 1].prettyPrint()}" if 0 < index <= len(oids) else ""
            raise DeviceRefused(f"{self.where}: {what}: {status.prettyPrint()}{at}")
        try:
            got = _V2C.apiPDU.get_varbinds(pdu)
        except PyAsn1Error as exc:
            raise ParseError(f"{self.where}: {what}: unreadable var-binds: {exc}") from None
        if [o for o, _ in got] != oids:
            raise ParseError(f"{self.where}: {what}: the answer names other OIDs than asked "
                             f"({', '.join(o.prettyPrint() for o, _ in got) or 'none'})")
        out: list[tuple[str, Any]] = []
        for oid, value in got:
            if isinstance(value, _MISSING):
                raise DeviceRefused(f"{self.where}: {what}: {oid.prettyPrint()} is {type(value).__name__} "
                                    f"(wrong profile, group or port?)")
            out.append((oid.prettyPrint(), value))
        return out

    # ----------------------------------------------------------------------------------- replies
    def _received(self, data: bytes) -> None:
        if not self._pending:
            return  # a late answer to a request already given up on
        try:
            if api.decodeMessageVersion(data) != api.SNMP_VERSION_2C:
                raise ParseError("not an SNMP v2c message")
            msg, rest = decoder.decode(data, asn1Spec=_V2C.Message())
            if rest:
                raise ParseError(f"{len(rest)} bytes after the message")
            pdu = _V2C.apiMessage.get_pdu(msg)
            if pdu.tagSet != _RESPONSE_TAG:
                raise ParseError("not a response PDU")
            request_id = int(_V2C.apiPDU.get_request_id(pdu))
            community = str(_V2C.apiMessage.get_community(msg))
        except (PyAsn1Error, ParseError, ValueError, TypeError) as exc:
            # the socket is connected to the agent, so this came from it: what it says cannot be understood
            self._fail_all(ParseError(f"a reply that is not SNMP v2c ({exc})"))
            return
        waiting = self._pending.get(request_id)
        if waiting is None or waiting[0] != community or waiting[1].done():
            return  # an answer to an earlier request, or to another community: not ours
        waiting[1].set_result(pdu)

    def _fail_all(self, exc: GatewayError) -> None:
        """Every request in flight fails with ``exc`` (its message: the reason only)."""
        for _, fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)

    def _lost(self) -> None:
        with contextlib.suppress(Exception):
            self._fail_all(DeviceUnavailable("socket closed"))
