"""The small SNMP v3 client (gateway.drivers.snmp_v3): its messages against RFC 3414's key vectors and the
USM constructions checked independently, then against the real snmpsim with a user for every auth and
privacy protocol the PoE driver names, and every refusal as one clear error."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from pyasn1.codec.ber import decoder
from pysnmp.proto.mpmod.rfc3412 import ScopedPDU, SNMPv3Message
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

from gateway.core.errors import DeviceRefused, DeviceUnavailable, ParseError
from gateway.drivers.snmp_base import V2C
from gateway.drivers.snmp_v3 import AUTH_PROTOCOLS, PRIV_PROTOCOLS, V3Client
from tests.power.peers import RFC3621_ADMIN, TPLINK_ADMIN, SnmpSim, snmpsim_available

RFC_ENGINE = bytes.fromhex("000000000000000000000002")  # RFC 3414 A.3's engine ID


# ------------------------------------------------------------------------------------- known vectors
@pytest.mark.parametrize("proto, ku, kul", [
    # RFC 3414 A.3.1 (MD5) and A.3.2 (SHA), password "maplesyrup"
    ("md5", "9faf3283884e92834ebc9847d8edd963", "526f5eed9fcce26f8964c2930787d82b"),
    ("sha", "9fb5cc0381497b3793528939ff788d5d79145211", "6695febc9288e36282235fc7151f128497b38f3f"),
])
def test_key_localization_is_rfc3414_a3(proto: str, ku: str, kul: str) -> None:
    c = V3Client("127.0.0.1", user="u", auth_key="maplesyrup", auth_protocol=proto, priv_key="maplesyrup",
                 priv_protocol="des")
    engine = c.localized(RFC_ENGINE)
    assert c._hashed is not None and bytes(c._hashed[0]).hex() == ku
    assert bytes(engine.auth_key).hex() == kul
    # DES takes the first 16 octets of the same localized key (RFC 3414 8.1.1.1)
    assert bytes(engine.priv_key).hex() == kul[:32]


def _decode(whole: bytes) -> tuple[Any, Any]:
    msg, rest = decoder.decode(whole, asn1Spec=SNMPv3Message())
    assert rest == b""
    params, _ = decoder.decode(bytes(msg["msgSecurityParameters"]), asn1Spec=UsmSecurityParameters())
    return msg, params


def test_the_discovery_probe_is_empty_unauthenticated_and_reportable() -> None:
    c = V3Client("127.0.0.1", user="gateway", auth_key="gatewayauth", priv_key="gatewaypriv", context="private")
    pdu = V2C.GetRequestPDU()
    c._pdu(pdu, 77, [], "probe")
    msg, params = _decode(c.message(None, 77, pdu))
    head = msg["msgGlobalData"]
    assert (int(msg["msgVersion"]), int(head["msgID"]), bytes(head["msgFlags"]), int(head["msgSecurityModel"])) \
        == (3, 77, b"\x04", 3)
    assert [bytes(params[k]) for k in ("msgAuthoritativeEngineId", "msgUserName", "msgAuthenticationParameters",
                                       "msgPrivacyParameters")] == [b"", b"", b"", b""]
    scoped = msg["msgData"]["plaintext"]
    assert bytes(scoped["contextEngineId"]) == b"" and V2C.apiPDU.get_varbinds(scoped["data"].getComponent()) == []


@pytest.mark.parametrize("auth, priv", [("sha", "aes"), ("md5", "des"), ("sha256", "aes256"), ("sha512", None)])
def test_a_request_is_signed_and_encrypted_as_usm_says(auth: str, priv: str | None) -> None:
    c = V3Client("127.0.0.1", user="gateway", auth_key="gatewayauth", auth_protocol=auth,
                 priv_key="gatewaypriv" if priv else None, priv_protocol=priv or "aes", context="private")
    engine = replace(c.localized(b"\x80\x00\x4f\xb8\x05engine"), boots=3, time=1000)
    pdu = V2C.SetRequestPDU()
    c._pdu(pdu, 4242, [(f"{RFC3621_ADMIN}.3.9", V2C.Integer(2))], "set")
    whole = c.message(engine, 4242, pdu)
    msg, params = _decode(whole)
    assert bytes(msg["msgGlobalData"]["msgFlags"]) == bytes([0x07 if priv else 0x05])
    assert bytes(params["msgAuthoritativeEngineId"]) == engine.id and bytes(params["msgUserName"]) == b"gateway"
    assert int(params["msgAuthoritativeEngineBoots"]) == 3 and 1000 <= int(params["msgAuthoritativeEngineTime"]) < 1010
    # HMAC (RFC 3414 6.3.1 for md5/sha-96, RFC 7860 4.2.1 for sha-2) over the message with the digest zeroed,
    # computed here with the standard library from the localized key
    digest = bytes(params["msgAuthenticationParameters"])
    size = {"md5": 12, "sha": 12, "sha256": 24, "sha512": 48}[auth]
    zeroed = whole.replace(digest, b"\x00" * size, 1)
    algo = {"md5": hashlib.md5, "sha": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}[auth]
    assert len(digest) == size and hmac.new(bytes(engine.auth_key), zeroed, algo).digest()[:size] == digest
    if priv:
        assert len(bytes(params["msgPrivacyParameters"])) == 8  # the salt
        plain = PRIV_PROTOCOLS[priv].decrypt_data(engine.priv_key, (3, int(params["msgAuthoritativeEngineTime"]),
                                                                    params["msgPrivacyParameters"]),
                                                  msg["msgData"]["encryptedPDU"])
        scoped, _ = decoder.decode(plain, asn1Spec=ScopedPDU())
    else:
        scoped = msg["msgData"]["plaintext"]
    assert bytes(scoped["contextEngineId"]) == engine.id and bytes(scoped["contextName"]) == b"private"
    sent = scoped["data"].getComponent()
    assert int(V2C.apiPDU.get_request_id(sent)) == 4242
    assert [(o.prettyPrint(), int(v)) for o, v in V2C.apiPDU.get_varbinds(sent)] == [(f"{RFC3621_ADMIN}.3.9", 2)]


@pytest.mark.parametrize("kwargs, match", [
    (dict(user=""), "needs a user"),
    (dict(auth_protocol="sha3"), "unknown auth protocol 'sha3'"),
    (dict(priv_protocol="3des"), "unknown privacy protocol '3des'"),
    (dict(auth_key="short"), "auth_key must be at least 8"),
    (dict(priv_key="short"), "priv_key must be at least 8"),
    (dict(auth_key=None), "privacy needs authentication"),
])
def test_a_configuration_it_cannot_run_is_refused_when_made(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = dict(user="gateway", auth_key="gatewayauth", priv_key="gatewaypriv", where="switch x")
    with pytest.raises(DeviceRefused, match=f"^switch x: .*{match}"):
        V3Client("127.0.0.1", **{**args, **kwargs})


@pytest.mark.parametrize("make, heavy", [
    # a v2c switch: not even the SMI (pysnmp.smi.builder), which the v3 client's USM types import
    ("from gateway.drivers.poe import PoeSwitch, load_profile\nPoeSwitch('s', '127.0.0.1', load_profile('rfc3621'))",
     ("pysnmp.hlapi", "pysnmp.entity", "pysnmp.carrier", "pysmi", "pysnmp.smi.builder")),
    ("from gateway.drivers.snmp_v3 import V3Client\nV3Client('127.0.0.1', user='u', auth_key='x' * 8, priv_key='y' * 8)",
     ("pysnmp.hlapi", "pysnmp.entity", "pysnmp.carrier", "pysmi", "pysnmp.smi.compiler", "pysnmp.smi.mibs")),
])
def test_the_small_clients_do_not_load_the_hlapi_engine(make: str, heavy: tuple[str, ...]) -> None:
    code = f"import sys\n{make}\nprint(sorted(m for m in sys.modules if m.startswith({heavy!r})))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"}, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------- a broken agent
class _Garbage(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(b"\x30\x03\x02\x01", addr)


def test_garbage_from_the_agent_is_a_parse_error() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(_Garbage, local_addr=("127.0.0.1", 0))
        c = V3Client("127.0.0.1", transport.get_extra_info("sockname")[1], user="gateway",
                     auth_key="gatewayauth", timeout_s=0.5, retries=0, where="switch fake")
        try:
            with pytest.raises(ParseError, match="^switch fake: read: engine discovery: .*not SNMP v3"):
                await c.get(["1.3.6.1.2.1.1.3.0"], "read")
        finally:
            await c.close()
            transport.close()

    asyncio.run(main())


# ------------------------------------------------------------------------------ the real snmpsim
# one USM user a protocol pair, so every auth and privacy protocol the PoE driver names meets a real agent
USERS = [("u-md5-des", "md5", "des"), ("u-sha224-aes192", "sha224", "aes192"),
         ("u-sha256-aes256", "sha256", "aes256"), ("u-sha384-aes", "sha384", "aes"),
         ("u-sha512-des", "sha512", "des"), ("u-sha-auth", "sha", None), ("u-md5-aes256", "md5", "aes256")]


def _argv() -> tuple[str, ...]:
    out: list[str] = []
    for user, auth, priv in USERS:
        out += [f"--v3-user={user}", f"--v3-auth-key={user}-auth", f"--v3-auth-proto={auth.upper()}"]
        if priv:
            out += [f"--v3-priv-key={user}-priv", f"--v3-priv-proto={priv.upper()}"]
    return tuple(out)


@pytest.fixture(scope="module")
def sim() -> Iterator[SnmpSim]:
    if not snmpsim_available():
        pytest.skip("snmpsim not installed")
    peer = SnmpSim(more_argv=_argv())
    try:
        peer.start()
        yield peer
    finally:
        peer.stop()


def _client(sim: SnmpSim, **kw: Any) -> V3Client:
    args: dict[str, Any] = dict(user=sim.v3_user, auth_key=sim.v3_auth, auth_protocol="sha", priv_key=sim.v3_priv,
                                priv_protocol="aes", context="private", timeout_s=5.0, retries=1,
                                where="switch tplink")
    return V3Client(sim.host, sim.port, **{**args, **kw})


def _with_client(sim: SnmpSim, body: Callable[[V3Client], Awaitable[None]], **kw: Any) -> None:
    """Run ``body`` with a client of ``kw`` (the lab user's otherwise), closed after, in a loop of its own."""
    async def main() -> None:
        c = _client(sim, **kw)
        try:
            await body(c)
        finally:
            await c.close()

    asyncio.run(main())


def test_get_and_set_with_auth_priv(sim: SnmpSim) -> None:
    async def body(c: V3Client) -> None:
        (oid, value), = await c.get([f"{RFC3621_ADMIN}.3.5"])
        assert oid == f"{RFC3621_ADMIN}.3.5" and int(value) == 1
        (_, value), = await c.set([(f"{RFC3621_ADMIN}.3.9", 2)])
        assert int(value) == 2
        assert await asyncio.to_thread(sim.admin, 9) == 2  # an independent v2c GET sees the port off
        (_, value), = await c.set([(f"{RFC3621_ADMIN}.3.9", 1)])
        assert int(value) == 1 and await asyncio.to_thread(sim.admin, 9) == 1

    _with_client(sim, body)


def test_the_tplink_context_and_requests_in_flight_together(sim: SnmpSim) -> None:
    async def body(c: V3Client) -> None:
        (_, value), = await c.set([(f"{TPLINK_ADMIN}.4", 0)])
        assert int(value) == 0 and await asyncio.to_thread(sim.get, f"{TPLINK_ADMIN}.4", "tplink") == 0
        await c.set([(f"{TPLINK_ADMIN}.4", 1)])
        # eight requests in flight on one socket (and one discovery for them), each answer matched to its request
        c._engine = None
        got = await asyncio.gather(*(c.get([f"1.3.6.1.4.1.11863.6.56.1.1.2.1.1.7.{p}"]) for p in range(1, 9)))
        assert [int(v) for ((_, v),) in got] == [40 + p for p in range(1, 9)]

    _with_client(sim, body, context="tplink")


@pytest.mark.parametrize("user, auth, priv", USERS)
def test_every_protocol_against_snmpsim(sim: SnmpSim, user: str, auth: str, priv: str | None) -> None:
    assert auth in AUTH_PROTOCOLS and (priv is None or priv in PRIV_PROTOCOLS)

    async def body(c: V3Client) -> None:
        (_, value), = await c.set([(f"{RFC3621_ADMIN}.3.11", 2)])
        assert int(value) == 2
        (_, value), = await c.set([(f"{RFC3621_ADMIN}.3.11", 1)])
        (_, again), = await c.get([f"{RFC3621_ADMIN}.3.11"])
        assert int(value) == int(again) == 1

    _with_client(sim, body, user=user, auth_key=f"{user}-auth", auth_protocol=auth,
                 priv_key=f"{user}-priv" if priv else None, priv_protocol=priv or "aes")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(auth_key="wrongwrongwrong"), DeviceRefused, "usmStatsWrongDigests \\(wrong auth key"),
    (dict(auth_protocol="md5"), DeviceRefused, "usmStatsWrongDigests"),
    (dict(priv_key="wrongwrongwrong"), DeviceRefused, "usmStatsDecryptionErrors \\(wrong privacy key"),
    (dict(user="nobody"), DeviceRefused, "usmStatsUnknownUserNames \\(no such user"),
    (dict(priv_key=None), DeviceRefused, "usmStatsUnsupportedSecLevels"),
    (dict(context="nope"), DeviceUnavailable, "no answer .* or it has no context 'nope' for us"),
])
def test_refusals_are_one_clear_error(sim: SnmpSim, kwargs: dict[str, Any], error: type[Exception],
                                      match: str) -> None:
    async def refused(c: V3Client) -> None:
        with pytest.raises(error, match=f"^switch tplink: read port 5: .*{match}"):
            await c.get([f"{RFC3621_ADMIN}.3.5"], "read port 5")

    async def still_good(c: V3Client) -> None:  # the agent is none the worse for it
        (_, value), = await c.get([f"{RFC3621_ADMIN}.3.5"])
        assert int(value) == 1

    # generous for a report (snmpsim's first answer in a context can take over a second on a loaded machine),
    # short where silence is the answer (an unknown context)
    _with_client(sim, refused, timeout_s=0.3 if error is DeviceUnavailable else 5.0, retries=0, **kwargs)
    _with_client(sim, still_good)


def test_no_such_instance_is_refused(sim: SnmpSim) -> None:
    async def body(c: V3Client) -> None:
        with pytest.raises(DeviceRefused, match="NoSuchInstance"):  # no port 1 in group 3
            await c.get([f"{RFC3621_ADMIN}.3.1"], "read port 1")

    _with_client(sim, body)


def test_a_stale_clock_and_a_new_engine_id_are_recovered_from(sim: SnmpSim) -> None:
    async def body(c: V3Client) -> None:
        await c.get([f"{RFC3621_ADMIN}.3.5"])
        engine = c._engine
        assert engine is not None
        # our idea of the agent's clock is 1000 s behind: usmStatsNotInTimeWindows, resynced, sent again
        c._engine = replace(engine, time=max(0, engine.time - 1000))
        (_, value), = await c.get([f"{RFC3621_ADMIN}.3.5"])
        assert int(value) == 1 and c._engine is not None and c._engine.now()[1] >= engine.time
        # an engine ID the agent does not have (as after a replacement): discovered anew, sent again
        # (snmpsim, on pysnmp, reports usmStatsUnknownUserNames for it; RFC 3414 says UnknownEngineIDs)
        c._engine = c.localized(b"\x80\x00\x00\x00\x04gone", engine.boots, engine.time)
        (_, value), = await c.get([f"{RFC3621_ADMIN}.3.5"])
        assert int(value) == 1 and c._engine is not None and c._engine.id == engine.id

    _with_client(sim, body)


# ---------------------------------------------------------------------- the ciphers under pysnmp's privacy
def test_the_libcrypto_ciphers_are_the_ones_pysnmp_asks_cryptography_for() -> None:
    from gateway.drivers import snmp_cipher

    lib = snmp_cipher._libcrypto()
    assert lib is not None and snmp_cipher.BACKEND == "libcrypto"
    aes_cfb, des_cbc = snmp_cipher.aes_cfb128(lib), snmp_cipher.des_cbc(lib)
    # NIST SP 800-38A F.3.13, CFB128-AES128.Encrypt, first block
    key, iv = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"), bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    enc = aes_cfb(key, iv).encryptor()
    assert (enc.update(bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")) + enc.finalize()).hex() \
        == "3b3fd92eb72dad20333449f8e83cfb4a"
    # and what `cryptography` (pysnmp's own choice) makes of the same keys, IVs and data, for every size
    from cryptography.hazmat.decrepit.ciphers import algorithms as old
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    data = bytes(range(256)) * 3 + b"odd tail"  # CFB takes any length
    for size in (16, 24, 32):
        k = hashlib.sha512(bytes([size])).digest()[:size]
        ours = aes_cfb(k, iv).encryptor()
        theirs = Cipher(algorithms.AES(k), CFB(iv)).encryptor()
        sealed = ours.update(data) + ours.finalize()
        assert sealed == theirs.update(data) + theirs.finalize()
        back = aes_cfb(k, iv).decryptor()
        assert back.update(sealed) + back.finalize() == data
    k8, iv8, blocks = bytes.fromhex("0123456789abcdef"), bytes.fromhex("1234567890abcdef"), data[:768]
    ours = des_cbc(k8, iv8).encryptor()
    theirs = Cipher(old.TripleDES(k8 * 3), modes.CBC(iv8)).encryptor()
    assert ours.update(blocks) + ours.finalize() == theirs.update(blocks) + theirs.finalize()
    with pytest.raises(snmp_cipher.CipherError):  # a partial DES block: refused, not padded behind our back
        partial = des_cbc(k8, iv8).encryptor()
        partial.update(b"seven b")
        partial.finalize()


def test_the_v3_client_leaves_cryptography_unloaded_and_importable() -> None:
    code = ("import sys\nfrom gateway.drivers.snmp_v3 import BACKEND\nprint(BACKEND, 'cryptography' in sys.modules)\n"
            "import cryptography.hazmat.primitives.ciphers\nprint('importable')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"}, check=True)
    assert out.stdout.split() == ["libcrypto", "False", "importable"]
