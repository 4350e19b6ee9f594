"""Look-up hashes (HMAC-SHA256) and envelope encryption (AES-GCM data keys wrapped by a master key)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from consent_svc.settings import Settings, SettingsError

NONCE_BYTES = 12
KEY_BYTES = 32


class Keys:
    """The master key (wraps data keys) and the look-up secret (keys identifier hashes)."""

    __slots__ = ("_master", "lookup_secret", "master_key", "master_key_id")

    def __init__(self, master_key: bytes, lookup_secret: bytes) -> None:
        self.master_key, self.lookup_secret = master_key, lookup_secret
        # Names the master key in rows it wrapped, so a rotation can find them.
        self.master_key_id = hashlib.sha256(b"consent-svc master key id\0" + master_key).hexdigest()[:16]
        self._master = AESGCM(master_key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keys) and (self.master_key, self.lookup_secret) == (other.master_key, other.lookup_secret)

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._master.encrypt(nonce, data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        return self._master.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)


def load_keys(settings: Settings) -> Keys:
    """Keys from settings, else from files in the data directory; created there only on the embedded default.

    With an external database the keys must be given: generating them next to a process whose data lives
    elsewhere would make the data unreadable the day that directory is lost.
    """
    secrets_dir = Path(settings.data_dir) / "secrets"
    values = {}
    for name in ("master_key", "lookup_secret"):
        given = getattr(settings, name)
        path = secrets_dir / f"{name}.b64"
        if given is None and path.exists():
            given = path.read_text().strip()
        if given is None:
            if not settings.embedded:
                raise SettingsError(f"missing setting CONSENT_SVC_{name.upper()}: required when DATABASE_URL is set")
            given = base64.b64encode(os.urandom(KEY_BYTES)).decode()
            secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(given + "\n")
                f.flush()
                os.fsync(f.fileno())
        values[name] = _decode_key(name, given)
    return Keys(**values)


def _decode_key(name: str, text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != KEY_BYTES:
        raise SettingsError(f"invalid setting CONSENT_SVC_{name.upper()}: expected base64 of {KEY_BYTES} bytes")
    return raw


class LookupHasher:
    """HMAC-SHA256 (RFC 2104) of normalized identifiers, with the keyed inner and outer states computed once:
    equal inputs meet in an index, the value stays unknown. Same output as hmac.digest, about 2x faster."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        key = secret.ljust(64, b"\0")  # secrets are 32 bytes, under SHA-256's 64-byte block
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __call__(self, kind: str, value: str) -> bytes:
        inner = self._inner.copy()
        inner.update(f"{kind}\0{value}".encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def keyed_digest(secret: bytes, data: bytes) -> bytes:
    """A keyed 128-bit digest (BLAKE2b) for internal fingerprints: one C call, about 3x cheaper than HMAC."""
    return hashlib.blake2b(data, key=secret, digest_size=16).digest()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-GCM; the nonce leads the ciphertext. `aad` binds the blob to its row (subject id, field)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, blob: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
