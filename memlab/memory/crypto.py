"""Optional encryption at rest for the journal and JSON memory files (Fernet).

The key comes from ``MEM_ENCRYPTION_KEY`` (a Fernet key: 32 url-safe base64 bytes, as
``memlab memory keygen`` writes). It is never printed, logged or stored in memory.
"""

from __future__ import annotations

import os

from cryptography.fernet import Fernet, InvalidToken

from memlab.config import ENCRYPTION_KEY_ENV
from memlab.memory.errors import EncryptionKeyError

#: Every Fernet token starts with these bytes (version 0x80, base64-encoded).
TOKEN_PREFIX = b"gAAAAA"


class MemoryCipher:
    """Encrypts and decrypts memory records with one Fernet key.

    >>> cipher = MemoryCipher(Fernet.generate_key())
    >>> cipher.decrypt(cipher.encrypt(b"secret plan"), where="demo")
    b'secret plan'
    """

    __slots__ = ("_fernet", "_key")

    def __init__(self, key: bytes | str) -> None:
        try:
            self._fernet = Fernet(key)
            self._key = key.encode() if isinstance(key, str) else bytes(key)
        except (ValueError, TypeError):
            # The key's value must never reach the message.
            raise EncryptionKeyError(
                f"{ENCRYPTION_KEY_ENV} is not a valid Fernet key (32 url-safe base64-encoded "
                "bytes); create one with `memlab memory keygen`"
            ) from None

    def __repr__(self) -> str:
        return "MemoryCipher(key=****)"

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("MemoryCipher holds a secret key and cannot be pickled")

    @classmethod
    def from_env(cls) -> MemoryCipher | None:
        """The cipher for ``$MEM_ENCRYPTION_KEY``, or None when encryption is off."""
        key = os.environ.get(ENCRYPTION_KEY_ENV, "").strip()
        return cls(key) if key else None

    def mac_material(self) -> bytes:
        """Bytes from which other keys (the audit seals) are derived; never stored."""
        return self._key

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes, *, where: str) -> bytes:
        """Decrypt ``token``; ``where`` (file and line) names the place in the error."""
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise EncryptionKeyError(
                f"{where}: cannot decrypt with {ENCRYPTION_KEY_ENV}: wrong key, or the "
                "data was altered. Nothing was changed."
            ) from None


def is_token(data: bytes) -> bool:
    """Whether ``data`` looks like a Fernet token rather than plain text."""
    return data.startswith(TOKEN_PREFIX)


def require_cipher(cipher: MemoryCipher | None, *, where: str) -> MemoryCipher:
    """The cipher, or a clear error that an encrypted file needs ``MEM_ENCRYPTION_KEY``."""
    if cipher is None:
        raise EncryptionKeyError(
            f"{where} is encrypted; set {ENCRYPTION_KEY_ENV} to the key it was written with"
        )
    return cipher
