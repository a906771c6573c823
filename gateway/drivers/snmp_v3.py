"""A small SNMP v3 client (USM: RFC 3414; AES: RFC 3826; SHA-2: RFC 7860): GET and SET over one UDP socket.

Why not pysnmp's hlapi: its ``SnmpEngine`` loads the SMI/MIB machinery and builds a MIB-backed local
configuration to send what for one switch is a few datagrams.  Here the message is built from pysnmp's
protocol types (``rfc3412.SNMPv3Message``/``ScopedPDU``, ``rfc3414`` ``UsmSecurityParameters``) and
secured with pysnmp's own USM primitives: key localization (``rfc3414.localkey`` through the services),
HMAC authentication (``rfc3414.auth``, ``rfc7860.auth``) and privacy (``rfc3414.priv.des``,
``rfc3826.priv.aes``, and for aes192/aes256 the ``eso.priv`` variants pysnmp's hlapi uses for those names),
their block ciphers from the libcrypto Python has loaded (:mod:`gateway.drivers.snmp_cipher`, which spares
the `cryptography` package's ~7 MB).  No cryptography is written here.  The socket, retries, id matching and error translation are
:mod:`gateway.drivers.snmp_base`'s, shared with the v2c client.

Engine discovery (RFC 3414 4): the first request sends an empty, unauthenticated probe; the agent's
``usmStatsUnknownEngineIDs`` report carries its engine ID, boots and time, and the keys are localized to
that ID.  The engine's clock is then kept from every authentic message; a ``usmStatsNotInTimeWindows``
report (authenticated) resets it and the request is sent once more; an ``usmStatsUnknownEngineIDs`` report
(the agent got a new ID; pysnmp-based agents say ``usmStatsUnknownUserNames`` then) discovers again and
sends once more.

Failures are the driver errors the PoE driver promises (see snmp_base); v3's own: any other report
(wrong user, keys, protocols, security level or context) is a :class:`DeviceRefused` naming the report,
e.g. ``usmStatsWrongDigests (wrong auth key or auth protocol?)``; a reply that does not authenticate or
decrypt with our keys is a :class:`ParseError`.  A configuration this client cannot run (an unknown
protocol, a key shorter than RFC 3414's 8 characters, privacy without authentication) is refused when the
client is made, with :class:`DeviceRefused`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

# first: pysnmp's USM modules, imported with libcrypto's ciphers instead of `cryptography` (see snmp_cipher)
from gateway.drivers.snmp_cipher import BACKEND

# isort: split
from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pysnmp.proto.mpmod.rfc3412 import ScopedPDU, SNMPv3Message
from pysnmp.proto.secmod.eso.priv import aes192, aes256
from pysnmp.proto.secmod.rfc3414.auth import hmacmd5, hmacsha
from pysnmp.proto.secmod.rfc3414.priv import des
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters
from pysnmp.proto.secmod.rfc3826.priv import aes
from pysnmp.proto.secmod.rfc7860.auth import hmacsha2

from gateway.core.errors import DeviceRefused, ParseError
from gateway.drivers.snmp_base import V2C, SnmpClient, VarBinds

_SHA2 = hmacsha2.HmacSha2
# name (as the config says it) -> (the protocol's OID, pysnmp's service for it)
AUTH_PROTOCOLS: dict[str, tuple[tuple[int, ...], Any]] = {
    "md5": (hmacmd5.HmacMd5.SERVICE_ID, hmacmd5.HmacMd5()),
    "sha": (hmacsha.HmacSha.SERVICE_ID, hmacsha.HmacSha()),
    "sha224": (_SHA2.SHA224_SERVICE_ID, _SHA2(_SHA2.SHA224_SERVICE_ID)),
    "sha256": (_SHA2.SHA256_SERVICE_ID, _SHA2(_SHA2.SHA256_SERVICE_ID)),
    "sha384": (_SHA2.SAH384_SERVICE_ID, _SHA2(_SHA2.SAH384_SERVICE_ID)),
    "sha512": (_SHA2.SHA512_SERVICE_ID, _SHA2(_SHA2.SHA512_SERVICE_ID)),
}
PRIV_PROTOCOLS: dict[str, Any] = {"des": des.Des(), "aes": aes.Aes(), "aes192": aes192.Aes192(),
                                  "aes256": aes256.Aes256()}

_AUTH_FLAG, _PRIV_FLAG, _REPORTABLE = 0x01, 0x02, 0x04
_MAX_SIZE = 65507  # the largest UDP datagram, as the message's msgMaxSize
_MAX_INT = 2147483647
_RESPONSE_TAG, _REPORT_TAG = V2C.ResponsePDU.tagSet, V2C.ReportPDU.tagSet

_UNKNOWN_ENGINE_ID = "1.3.6.1.6.3.15.1.1.4.0"
_NOT_IN_TIME_WINDOW = "1.3.6.1.6.3.15.1.1.2.0"
_UNKNOWN_USER = "1.3.6.1.6.3.15.1.1.3.0"
# the counters an agent reports with, what each most likely means here
REPORTS = {
    "1.3.6.1.6.3.15.1.1.1.0": ("usmStatsUnsupportedSecLevels", "the user does not have this security level"),
    _NOT_IN_TIME_WINDOW: ("usmStatsNotInTimeWindows", "the agent's clock moved"),
    _UNKNOWN_USER: ("usmStatsUnknownUserNames", "no such user on the agent"),
    _UNKNOWN_ENGINE_ID: ("usmStatsUnknownEngineIDs", "the agent's engine ID changed"),
    "1.3.6.1.6.3.15.1.1.5.0": ("usmStatsWrongDigests", "wrong auth key or auth protocol?"),
    "1.3.6.1.6.3.15.1.1.6.0": ("usmStatsDecryptionErrors", "wrong privacy key or privacy protocol?"),
    "1.3.6.1.6.3.12.1.4.0": ("snmpUnavailableContexts", "the context is not available"),
    "1.3.6.1.6.3.12.1.5.0": ("snmpUnknownContexts", "no such context on the agent"),
    "1.3.6.1.6.3.11.2.1.1.0": ("snmpUnknownSecurityModels", "the agent does not speak USM"),
    "1.3.6.1.6.3.11.2.1.2.0": ("snmpInvalidMsgs", "the agent found our message invalid"),
    "1.3.6.1.6.3.11.2.1.3.0": ("snmpUnknownPDUHandlers", "the agent cannot handle this request"),
}


@dataclass(frozen=True)
class Engine:
    """The agent's authoritative engine as last heard: its ID, its clock and our keys localized to it."""

    id: bytes
    boots: int
    time: int
    at: float  # time.monotonic() when boots and time were heard
    auth_key: Any = None  # univ.OctetString, as pysnmp's services take it
    priv_key: Any = None

    def now(self) -> tuple[int, int]:
        return self.boots, min(_MAX_INT, self.time + int(time.monotonic() - self.at))


@dataclass(frozen=True)
class Reply:
    """A response or report, with what its security parameters said."""

    pdu: Any
    engine_id: bytes
    boots: int
    time: int
    authentic: bool

    @property
    def report(self) -> str | None:
        """The OID a report names (None: a response)."""
        if self.pdu.tagSet != _REPORT_TAG:
            return None
        binds = V2C.apiPDU.get_varbinds(self.pdu)
        return binds[0][0].prettyPrint() if binds else ""


def report_reason(oid: str) -> str:
    name, meaning = REPORTS.get(oid, (oid or "an empty report", "the agent refuses the request"))
    return f"the agent reports {name} ({meaning})"


def security_flags(auth: bool, priv: bool, reportable: bool = True) -> int:
    return (_AUTH_FLAG if auth else 0) | (_PRIV_FLAG if priv else 0) | (_REPORTABLE if reportable else 0)


class V3Client(SnmpClient):
    """One agent (``host``:``port``), one USM ``user``.  No ``auth_key``: noAuthNoPriv; an ``auth_key``
    without ``priv_key``: authNoPriv; both: authPriv.  ``where`` names the agent in every error message."""

    kind = "SNMP v3"

    def __init__(self, host: str, port: int = 161, user: str = "", auth_key: str | None = None,
                 auth_protocol: str = "sha", priv_key: str | None = None, priv_protocol: str = "aes",
                 context: str = "", timeout_s: float = 1.0, retries: int = 2, where: str | None = None) -> None:
        super().__init__(host, port, timeout_s, retries, where)
        self.user, self.context = user.encode(), context.encode()
        self._auth: Any = None
        self._priv: Any = None
        self._auth_id: tuple[int, ...] = ()
        problems = []
        if not user:
            problems.append("SNMP v3 needs a user")
        if auth_key is not None:
            if auth_protocol not in AUTH_PROTOCOLS:
                problems.append(f"unknown auth protocol {auth_protocol!r} (have: {', '.join(AUTH_PROTOCOLS)})")
            else:
                self._auth_id, self._auth = AUTH_PROTOCOLS[auth_protocol]
        if priv_key is not None:
            if auth_key is None:
                problems.append("privacy needs authentication too (an auth_key)")
            if priv_protocol not in PRIV_PROTOCOLS:
                problems.append(f"unknown privacy protocol {priv_protocol!r} (have: {', '.join(PRIV_PROTOCOLS)})")
            elif aes.PysnmpCryptoError or des.PysnmpCryptoError:
                problems.append(f"no cipher for privacy here (pysnmp's privacy through {BACKEND})")
            else:
                self._priv = PRIV_PROTOCOLS[priv_protocol]
        for name, key in (("auth_key", auth_key), ("priv_key", priv_key)):
            if key is not None and len(key.encode()) < 8:
                problems.append(f"{name} must be at least 8 characters (RFC 3414)")
        if problems:
            raise DeviceRefused(f"{self.where}: " + "; ".join(problems))
        self._auth_key, self._priv_key = auth_key, priv_key
        self._hashed: tuple[Any, Any] | None = None  # the passphrases hashed (slow: a megabyte each), once
        self._engine: Engine | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    # ---------------------------------------------------------------------------------- requests
    async def get(self, oids: list[str], what: str = "get") -> VarBinds:
        """The values of ``oids``, in order, as pyasn1 values (``int()`` them)."""
        return await self._request(V2C.GetRequestPDU, [(o, V2C.Null("")) for o in oids], what)

    async def set(self, values: list[tuple[str, int]], what: str = "set") -> VarBinds:
        """Set integer ``values`` (``(oid, n)``); returns what the agent says it holds now."""
        return await self._request(V2C.SetRequestPDU, [(o, V2C.Integer(v)) for o, v in values], what)

    async def _request(self, pdu_type: Any, var_binds: VarBinds, what: str) -> VarBinds:
        reason = ""
        for _ in range(3):  # discovery, then once more after a clock reset or a new engine ID
            known = self._engine is not None  # discovered by an earlier request, maybe long ago
            engine = await self._discovered(what)
            request_id = self._new_id()
            pdu = pdu_type()
            oids = self._pdu(pdu, request_id, var_binds, what)
            datagram = self.message(engine, request_id, pdu)
            # the engine answered discovery: silence now is most likely a context it drops without a report
            reply: Reply = await self._exchange(request_id, None, datagram, what,
                                                f", or it has no context {self.context.decode()!r} for us")
            report = reply.report
            if report is None:
                self._heard(reply)
                return self._answer(reply.pdu, oids, what)
            reason = report_reason(report)
            if report == _NOT_IN_TIME_WINDOW and reply.authentic:
                self._heard(reply, reset=True)
            elif report == _UNKNOWN_ENGINE_ID or report == _UNKNOWN_USER and known:
                # a new engine ID (a replaced or reset switch); pysnmp's agents say unknown user for an ID
                # they do not have, so that, from an engine heard of before, is discovered anew once too
                if self._engine is engine:
                    self._engine = None
            else:
                raise DeviceRefused(f"{self.where}: {what}: {reason}")
        raise DeviceRefused(f"{self.where}: {what}: {reason}, again after discovering the engine anew")

    def _heard(self, reply: Reply, reset: bool = False) -> None:
        """Keep the engine's clock from an authentic message (RFC 3414 3.2 7b); ``reset``: as it says."""
        engine = self._engine
        if engine is None or not reply.authentic or reply.engine_id != engine.id:
            return
        boots, now = engine.now()
        if reset or reply.boots > boots or (reply.boots == boots and reply.time > now):
            self._engine = replace(engine, boots=reply.boots, time=reply.time, at=time.monotonic())

    async def _discovered(self, what: str) -> Engine:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:  # one discovery for the requests that wait for it
            if self._engine is None:
                self._engine = await self._discover(what)
            return self._engine

    async def _discover(self, what: str) -> Engine:
        request_id = self._new_id()
        pdu = V2C.GetRequestPDU()
        self._pdu(pdu, request_id, [], what)
        reply: Reply = await self._exchange(request_id, None, self.message(None, request_id, pdu),
                                            f"{what}: engine discovery")
        if reply.report != _UNKNOWN_ENGINE_ID or not reply.engine_id:
            raise ParseError(f"{self.where}: {what}: engine discovery: the agent did not say its engine ID "
                             f"({report_reason(reply.report) if reply.report else 'a response'})")
        return self.localized(reply.engine_id, reply.boots, reply.time)

    def localized(self, engine_id: bytes, boots: int = 0, engine_time: int = 0) -> Engine:
        """The engine ``engine_id``, with our keys localized to it (RFC 3414 2.6, A.2)."""
        if self._hashed is None and self._auth is not None:
            priv = self._priv.hash_passphrase(self._auth_id, self._priv_key) if self._priv is not None else None
            self._hashed = (self._auth.hash_passphrase(self._auth_key), priv)
        auth_key = priv_key = None
        if self._hashed is not None:
            eid = univ.OctetString(engine_id)
            auth_key = self._auth.localize_key(self._hashed[0], eid)
            if self._priv is not None:
                priv_key = self._priv.localize_key(self._auth_id, self._hashed[1], eid)
        return Engine(engine_id, boots, engine_time, time.monotonic(), auth_key, priv_key)

    # ----------------------------------------------------------------------------------- messages
    def message(self, engine: Engine | None, msg_id: int, pdu: Any) -> bytes:
        """The whole message for ``pdu``, secured at our level; without ``engine``: the discovery probe
        (noAuthNoPriv, no user, no engine ID)."""
        auth = self._auth if engine is not None else None
        priv = self._priv if engine is not None else None
        scoped = ScopedPDU()
        scoped["contextEngineId"] = engine.id if engine is not None else b""
        scoped["contextName"] = self.context if engine is not None else b""
        scoped["data"].setComponentByType(pdu.tagSet, pdu, verifyConstraints=False, matchTags=False,
                                          matchConstraints=False)
        boots, now = engine.now() if engine is not None else (0, 0)
        params = UsmSecurityParameters()
        params["msgAuthoritativeEngineId"] = engine.id if engine is not None else b""
        params["msgAuthoritativeEngineBoots"] = boots
        params["msgAuthoritativeEngineTime"] = now
        params["msgUserName"] = self.user if engine is not None else b""
        # the digest's place, zeros, found and filled by the auth service once the message is encoded
        params["msgAuthenticationParameters"] = b"\x00" * auth.digest_length if auth is not None else b""
        msg = SNMPv3Message()
        msg["msgVersion"] = 3
        head = msg["msgGlobalData"]
        head["msgID"] = msg_id
        head["msgMaxSize"] = _MAX_SIZE
        head["msgFlags"] = bytes([security_flags(auth is not None, priv is not None)])
        head["msgSecurityModel"] = 3
        if priv is not None and engine is not None:
            encrypted, salt = priv.encrypt_data(engine.priv_key, (boots, now, None), encoder.encode(scoped))
            params["msgPrivacyParameters"] = salt
            msg["msgData"]["encryptedPDU"] = encrypted
        else:
            params["msgPrivacyParameters"] = b""
            msg["msgData"]["plaintext"] = scoped
        msg["msgSecurityParameters"] = encoder.encode(params)
        whole = encoder.encode(msg)
        if auth is not None and engine is not None:
            whole = auth.authenticate_outgoing_message(engine.auth_key, whole)
        return bytes(whole)

    def _parse(self, data: bytes) -> tuple[int, object, Any] | None:
        msg, rest = decoder.decode(data, asn1Spec=SNMPv3Message())
        if rest:
            raise ParseError(f"{len(rest)} bytes after the message")
        if int(msg["msgVersion"]) != 3:
            raise ParseError("not an SNMP v3 message")
        head = msg["msgGlobalData"]
        msg_id = int(head["msgID"])
        if int(head["msgSecurityModel"]) != 3:
            raise ParseError(f"security model {int(head['msgSecurityModel'])}, not USM (3)")
        if msg_id not in self._pending:
            return None  # an answer to a request given up on, or not ours
        flags = head["msgFlags"].asNumbers()[0] if len(head["msgFlags"]) else 0
        params, _ = decoder.decode(bytes(msg["msgSecurityParameters"]), asn1Spec=UsmSecurityParameters())
        engine_id = bytes(params["msgAuthoritativeEngineId"])
        boots, now = int(params["msgAuthoritativeEngineBoots"]), int(params["msgAuthoritativeEngineTime"])
        try:
            scoped, authentic = self._unwrap(msg, params, flags, data, engine_id, boots, now)
        except ParseError as exc:  # the agent's, but not readable with our keys: that request fails
            return msg_id, None, exc
        pdu = scoped["data"].getComponent()
        if pdu.tagSet not in (_RESPONSE_TAG, _REPORT_TAG):
            raise ParseError("neither a response nor a report PDU")
        if pdu.tagSet == _RESPONSE_TAG:
            if int(V2C.apiPDU.get_request_id(pdu)) != msg_id:
                return None  # a stray
            if self._auth is not None and not authentic:
                return msg_id, None, ParseError("a response without authentication, where we ask for it")
        return msg_id, None, Reply(pdu, engine_id, boots, now, authentic)

    def _unwrap(self, msg: Any, params: Any, flags: int, data: bytes, engine_id: bytes, boots: int,
                now: int) -> tuple[Any, bool]:
        """The scoped PDU of an incoming message, authenticated and decrypted as its flags say."""
        engine, authentic = self._engine, False
        if flags & _AUTH_FLAG:
            if engine is None or self._auth is None or engine.id != engine_id \
                    or bytes(params["msgUserName"]) != self.user:
                raise ParseError("an authenticated reply for another engine or user")
            try:
                self._auth.authenticate_incoming_message(engine.auth_key, params["msgAuthenticationParameters"],
                                                         data)
            except PyAsn1Error:  # pysnmp's StatusInformation(authenticationFailure) and kin
                raise ParseError("a reply that does not authenticate with our auth key") from None
            authentic = True
        if not flags & _PRIV_FLAG:
            if msg["msgData"].getName() != "plaintext":
                raise ParseError("an encrypted scoped PDU in a message not flagged private")
            return msg["msgData"]["plaintext"], authentic
        if not authentic or engine is None or self._priv is None:
            raise ParseError("an encrypted reply we cannot decrypt (not authenticated, or no privacy key)")
        try:
            plain = self._priv.decrypt_data(engine.priv_key, (boots, now, params["msgPrivacyParameters"]),
                                            msg["msgData"]["encryptedPDU"])
            scoped, _ = decoder.decode(plain, asn1Spec=ScopedPDU())  # DES pads: the rest is padding
        except PyAsn1Error:
            raise ParseError("a reply that does not decrypt with our privacy key") from None
        return scoped, authentic
