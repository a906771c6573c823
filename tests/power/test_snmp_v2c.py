"""The small SNMP v2c client (gateway.drivers.snmp_v2c) against fake UDP peers on loopback, for what a healthy
agent never does (garbage, stray request-ids, wrong OIDs, silence); against the real snmpsim in test_drivers.py."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

from gateway.core.errors import DeviceRefused, DeviceUnavailable, ParseError
from gateway.drivers.snmp_v2c import V2cClient
from tests.power.peers import free_port

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]


# ---------------------------------------------------------------------------------- fake UDP peers
Reply = Callable[[Any, int], list[bytes]]  # (request message, how many requests seen) -> datagrams to send


class FakeAgent(asyncio.DatagramProtocol):
    def __init__(self, reply: Reply) -> None:
        self.reply, self.seen = reply, 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.seen += 1
        msg, _ = decoder.decode(data, asn1Spec=V2C.Message())
        for out in self.reply(msg, self.seen):
            self.transport.sendto(out, addr)


def response(msg: Any, value: Any = None, request_id: int | None = None, oid: str | None = None) -> bytes:
    rsp = V2C.apiMessage.get_response(msg)
    pdu = V2C.apiMessage.get_pdu(rsp)
    req = V2C.apiMessage.get_pdu(msg)
    binds = V2C.apiPDU.get_varbinds(req)
    V2C.apiPDU.set_varbinds(pdu, [(V2C.ObjectIdentifier(oid) if oid else o, value if value is not None else
                                   V2C.Integer(7)) for o, _ in binds])
    if request_id is not None:
        V2C.apiPDU.set_request_id(pdu, request_id)
    return bytes(encoder.encode(rsp))


def v1_response(msg: Any) -> bytes:
    """The same answer as SNMP v1 would say it (a v1 agent behind the switch's address)."""
    v1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]
    pdu = v1.GetResponsePDU()
    v1.apiPDU.set_defaults(pdu)
    v1.apiPDU.set_request_id(pdu, V2C.apiPDU.get_request_id(V2C.apiMessage.get_pdu(msg)))
    v1.apiPDU.set_varbinds(pdu, [(v1.ObjectIdentifier("1.3.6.1.2.1.1.3.0"), v1.Integer(7))])
    out = v1.Message()
    v1.apiMessage.set_defaults(out)
    v1.apiMessage.set_community(out, "public")
    v1.apiMessage.set_pdu(out, pdu)
    return bytes(encoder.encode(out))


async def with_agent(reply: Reply, timeout_s: float = 0.3, retries: int = 1) -> tuple[Any, FakeAgent]:
    loop = asyncio.get_running_loop()
    agent = FakeAgent(reply)
    transport, _ = await loop.create_datagram_endpoint(lambda: agent, local_addr=("127.0.0.1", 0))
    c = V2cClient("127.0.0.1", transport.get_extra_info("sockname")[1], timeout_s=timeout_s, retries=retries,
                  where="switch fake")
    try:
        return await c.get("public", ["1.3.6.1.2.1.1.3.0"], "read uptime"), agent
    finally:
        await c.close()
        transport.close()


def test_a_lost_request_is_sent_again_and_a_stray_answer_ignored() -> None:
    async def main() -> None:
        # the first request is "lost"; the retry gets a stray answer (another request-id) before the real one
        def reply(msg: Any, seen: int) -> list[bytes]:
            return [] if seen == 1 else [response(msg, V2C.Integer(99), request_id=12345), response(msg)]

        ((oid, value),), agent = await with_agent(reply, timeout_s=0.5)
        assert (oid, int(value), agent.seen) == ("1.3.6.1.2.1.1.3.0", 7, 2)

    asyncio.run(main())


@pytest.mark.parametrize("what, reply, error, match", [
    ("garbage", lambda m, n: [b"\x30\x03\x02\x01"], ParseError, "not SNMP v2c"),
    ("v1 message", lambda m, n: [v1_response(m)], ParseError, "not SNMP v2c"),
    ("trailing bytes", lambda m, n: [response(m) + b"\x00\x00"], ParseError, "not SNMP v2c"),
    ("other OID", lambda m, n: [response(m, oid="1.3.6.1.2.1.1.5.0")], ParseError, "other OIDs"),
    ("noSuchObject", lambda m, n: [response(m, V2C.NoSuchObject(""))], DeviceRefused, "is NoSuchObject"),
    ("endOfMibView", lambda m, n: [response(m, V2C.EndOfMibView(""))], DeviceRefused, "is EndOfMibView"),
    ("silence", lambda m, n: [], DeviceUnavailable, "no answer within 0.3 s \\(2 tries\\)"),
    ("only strays", lambda m, n: [response(m, request_id=1)], DeviceUnavailable, "no answer"),
])
def test_what_a_broken_agent_sends_is_one_clear_error(what: str, reply: Reply, error: type[Exception],
                                                      match: str) -> None:
    async def main() -> None:
        with pytest.raises(error, match=f"^switch fake: read uptime: .*{match}"):
            await with_agent(reply)

    asyncio.run(main())


def test_nobody_listening_is_unavailable() -> None:
    async def main() -> None:
        c = V2cClient("127.0.0.1", free_port(socket.SOCK_DGRAM), timeout_s=0.3, retries=1)
        with pytest.raises(DeviceUnavailable):
            await c.get("public", ["1.3.6.1.2.1.1.3.0"])
        with pytest.raises(ParseError, match="not an OID"):
            await c.get("public", ["1.3.x"])
        await c.close()

    asyncio.run(main())

