"""The block ciphers under pysnmp's USM privacy services, from the OpenSSL libcrypto Python already has loaded.

pysnmp's privacy services (``rfc3414.priv.des``, ``rfc3826.priv.aes`` and the ``eso.priv`` AES variants)
do the USM part themselves: key localization and extension, the salt, the IV from boots and time, DES's
padding.  For the cipher itself each module calls its ``_cryptography_cipher(key, iv)``, a `cryptography`
``Cipher`` (AES-CFB128; DES-CBC as TripleDES with the key thrice).  Importing `cryptography` costs the
daemon about 7 MB of resident memory (its Rust extension and cffi) for two block ciphers; the same ciphers
are in the libcrypto that Python's ``ssl`` and ``hashlib`` have already mapped.  :func:`install` gives
those modules a ``_cryptography_cipher`` with the same contract on that libcrypto's EVP interface, so
nothing cryptographic is written here: OpenSSL enciphers, pysnmp does USM.

:func:`load_pysnmp_privacy` imports pysnmp's USM modules without letting them import `cryptography` (it
stays importable for anyone else afterwards) and installs the ciphers; when libcrypto cannot be reached
it imports them as they are, with `cryptography`.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

_EVP_BY_KEY = {  # key length -> the EVP cipher pysnmp's modules mean by it
    16: "EVP_aes_128_cfb128", 24: "EVP_aes_192_cfb128", 32: "EVP_aes_256_cfb128",
}
_DES_EDE3_CBC = "EVP_des_ede3_cbc"  # pysnmp's DES: TripleDES-CBC with the DES key thrice (= single DES)


class CipherError(ValueError):
    """libcrypto refused (a wrong key or IV length)."""


def _libcrypto() -> Any:
    """libcrypto through ``_hashlib``'s handle (dlsym searches its dependencies), else by name."""
    import _hashlib

    candidates = [getattr(_hashlib, "__file__", None)]
    try:
        import ctypes.util

        candidates.append(ctypes.util.find_library("crypto"))
    except Exception:  # no ldconfig or compiler to ask: only the first candidate
        pass
    for path in candidates:
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
            lib.EVP_CIPHER_CTX_new  # noqa: B018  (present, or AttributeError)
        except (OSError, AttributeError):
            continue
        p, i, buf = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
        lib.EVP_CIPHER_CTX_new.restype = p
        lib.EVP_CIPHER_CTX_new.argtypes = []
        lib.EVP_CIPHER_CTX_free.restype = None
        lib.EVP_CIPHER_CTX_free.argtypes = [p]
        lib.EVP_CipherInit_ex.argtypes = [p, p, p, buf, buf, i]
        lib.EVP_CIPHER_CTX_set_padding.argtypes = [p, i]
        lib.EVP_CipherUpdate.argtypes = [p, ctypes.c_void_p, ctypes.POINTER(i), buf, i]
        lib.EVP_CipherFinal_ex.argtypes = [p, ctypes.c_void_p, ctypes.POINTER(i)]
        for name in (*_EVP_BY_KEY.values(), _DES_EDE3_CBC):
            getattr(lib, name).restype = p
            getattr(lib, name).argtypes = []
        return lib
    return None


class _Context:
    """One encryption or decryption, as `cryptography`'s CipherContext: ``update(data)``, ``finalize()``."""

    def __init__(self, lib: Any, evp: int, key: bytes, iv: bytes, encrypt: bool) -> None:
        self.lib = lib
        self.ctx = lib.EVP_CIPHER_CTX_new()
        if not self.ctx:
            raise CipherError("EVP_CIPHER_CTX_new failed")
        if lib.EVP_CipherInit_ex(self.ctx, evp, None, key, iv, 1 if encrypt else 0) != 1:
            self._free()
            raise CipherError("EVP_CipherInit_ex refused the key or IV")
        lib.EVP_CIPHER_CTX_set_padding(self.ctx, 0)  # as `cryptography`'s: no padding (DES's is pysnmp's)

    def update(self, data: bytes) -> bytes:
        data = bytes(data)
        out = ctypes.create_string_buffer(len(data) + 32)
        n = ctypes.c_int(0)
        if not self.ctx or self.lib.EVP_CipherUpdate(self.ctx, out, ctypes.byref(n), data, len(data)) != 1:
            raise CipherError("EVP_CipherUpdate failed")
        return out.raw[:n.value]

    def finalize(self) -> bytes:
        out = ctypes.create_string_buffer(64)
        n = ctypes.c_int(0)
        try:
            if not self.ctx or self.lib.EVP_CipherFinal_ex(self.ctx, out, ctypes.byref(n)) != 1:
                raise CipherError("EVP_CipherFinal_ex failed (a partial block?)")
            return out.raw[:n.value]
        finally:
            self._free()

    def _free(self) -> None:
        if self.ctx:
            self.lib.EVP_CIPHER_CTX_free(self.ctx)
            self.ctx = None

    def __del__(self) -> None:
        self._free()


class _Cipher:
    def __init__(self, lib: Any, evp: int, key: bytes, iv: bytes) -> None:
        self.lib, self.evp, self.key, self.iv = lib, evp, bytes(key), bytes(iv)

    def encryptor(self) -> _Context:
        return _Context(self.lib, self.evp, self.key, self.iv, True)

    def decryptor(self) -> _Context:
        return _Context(self.lib, self.evp, self.key, self.iv, False)


def aes_cfb128(lib: Any) -> Any:
    def cipher(key: bytes, iv: bytes) -> _Cipher:
        name = _EVP_BY_KEY.get(len(key))
        if name is None:
            raise CipherError(f"no AES for a {len(key)}-byte key")
        return _Cipher(lib, getattr(lib, name)(), key, iv)

    return cipher


def des_cbc(lib: Any) -> Any:
    def cipher(key: bytes, iv: bytes) -> _Cipher:
        return _Cipher(lib, getattr(lib, _DES_EDE3_CBC)(), bytes(key) * 3, iv)

    return cipher


def install(lib: Any) -> None:
    """Give pysnmp's DES and AES privacy modules libcrypto's ciphers (see the module's docstring)."""
    from pysnmp.proto.secmod.rfc3414.priv import des
    from pysnmp.proto.secmod.rfc3826.priv import aes

    for module, make in ((aes, aes_cfb128), (des, des_cbc)):
        if not hasattr(module, "_cryptography_cipher"):
            raise ImportError(f"{module.__name__} has no _cryptography_cipher: another pysnmp than 7.1")
        module._cryptography_cipher = make(lib)  # type: ignore[attr-defined]
        module.PysnmpCryptoError = False  # type: ignore[attr-defined]


def load_pysnmp_privacy() -> str:
    """Import pysnmp's USM modules with libcrypto's ciphers; which backend they got ("libcrypto" or
    "cryptography")."""
    lib = _libcrypto()
    if lib is None:
        import pysnmp.proto.secmod.rfc3414.service  # noqa: F401  (with `cryptography`, as pysnmp does it)

        return "cryptography"
    blocked = "cryptography" not in sys.modules
    if blocked:
        sys.modules["cryptography"] = None  # type: ignore[assignment]
    try:
        import pysnmp.proto.secmod.rfc3414.service  # noqa: F401
    finally:
        if blocked:
            del sys.modules["cryptography"]
    install(lib)
    return "libcrypto"


BACKEND = load_pysnmp_privacy()  # pysnmp's USM modules are imported through here, so: once, first
