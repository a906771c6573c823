"""A small SNMP v2c client: GET and SET over one UDP socket, on pysnmp's low-level protocol API.

Why not pysnmp's hlapi: its ``SnmpEngine`` loads the whole SMI/MIB machinery (~500 modules, ~30 MB of
RSS on the box) to send what for v2c is a single BER datagram.  Here a request is a v2c PDU built with
``pysnmp.proto.api`` and encoded with pyasn1's BER codec; replies are matched to requests by request-id
and community (the socket, the retries and the error translation: :mod:`gateway.drivers.snmp_base`).

Failures are the driver errors the PoE driver promises (see snmp_base); v2c's own: an agent drops a wrong
community silently, so that is a :class:`DeviceUnavailable` that says so.
"""

from __future__ import annotations

from typing import Any

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

from gateway.core.errors import ParseError
from gateway.drivers.snmp_base import V2C, SnmpClient, VarBinds

_RESPONSE_TAG = V2C.ResponsePDU.tagSet


class V2cClient(SnmpClient):
    """One agent (``host``:``port``).  ``where`` names it in every error message."""

    kind = "SNMP v2c"

    async def get(self, community: str, oids: list[str], what: str = "get") -> VarBinds:
        """The values of ``oids``, in order, as pyasn1 values (``int()`` them)."""
        return await self._request(V2C.GetRequestPDU(), community, [(o, V2C.Null("")) for o in oids], what)

    async def set(self, community: str, values: list[tuple[str, int]], what: str = "set") -> VarBinds:
        """Set integer ``values`` (``(oid, n)``); returns what the agent says it holds now."""
        return await self._request(V2C.SetRequestPDU(), community,
                                   [(o, V2C.Integer(v)) for o, v in values], what)

    async def _request(self, pdu: Any, community: str, var_binds: VarBinds, what: str) -> VarBinds:
        request_id = self._new_id()
        oids = self._pdu(pdu, request_id, var_binds, what)
        msg = V2C.Message()
        V2C.apiMessage.set_defaults(msg)
        V2C.apiMessage.set_community(msg, community)
        V2C.apiMessage.set_pdu(msg, pdu)
        # a v2c agent drops a wrong community without a word: say so, it is a common cause
        reply = await self._exchange(request_id, community, encoder.encode(msg), what,
                                     ", or it does not accept our community")
        return self._answer(reply, oids, what)

    def _parse(self, data: bytes) -> tuple[int, object, Any]:
        if api.decodeMessageVersion(data) != api.SNMP_VERSION_2C:
            raise ParseError("not an SNMP v2c message")
        msg, rest = decoder.decode(data, asn1Spec=V2C.Message())
        if rest:
            raise ParseError(f"{len(rest)} bytes after the message")
        pdu = V2C.apiMessage.get_pdu(msg)
        if pdu.tagSet != _RESPONSE_TAG:
            raise ParseError("not a response PDU")
        return int(V2C.apiPDU.get_request_id(pdu)), str(V2C.apiMessage.get_community(msg)), pdu
