"""Look-up hashes (HMAC-SHA256), keyed digests, envelope encryption (AES-GCM data keys wrapped by a master key),
and Ed25519 signatures of audit checkpoints."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from consent_svc.settings import Settings, SettingsError

log = logging.getLogger("consent_svc.crypto")

NONCE_BYTES = 12
KEY_BYTES = 32
KEY_NAMES = ("master_key", "lookup_secret")


class Keys:
    """The master key (wraps data keys) and the look-up secret (keys identifier hashes and derived digests)."""

    __slots__ = ("_master", "lookup_secret", "master_key", "master_key_id")

    def __init__(self, master_key: bytes, lookup_secret: bytes) -> None:
        self.master_key, self.lookup_secret = master_key, lookup_secret
        # Names the master key in rows it wrapped, so a rotation can find them.
        self.master_key_id = hashlib.sha256(b"consent-svc master key id\0" + master_key).hexdigest()[:16]
        self._master = AESGCM(master_key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keys) and (self.master_key, self.lookup_secret) == (
            other.master_key,
            other.lookup_secret,
        )

    def derive(self, purpose: str) -> bytes:
        """A separate key per use (fingerprints, idempotency digests), so no key serves two purposes."""
        return hmac.digest(self.lookup_secret, b"consent-svc derived key\0" + purpose.encode(), "sha256")

    def checks(self) -> dict[str, bytes]:
        """Digests that recognize these keys without revealing them (see key_checks in the schema)."""
        return {
            "master_key": hashlib.sha256(b"consent-svc key check\0" + self.master_key).digest(),
            "lookup_secret": hmac.digest(self.lookup_secret, b"consent-svc key check", "sha256"),
        }

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._master.encrypt(nonce, data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        return self._master.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)


def load_keys(settings: Settings) -> Keys:
    """Keys from settings, else from files in the data directory, else generated there (0600).

    Never generated for an embedded database that already exists: its data was written with keys that are
    now missing. For an external database, generated keys are announced, since they live only in this data
    directory; if they are lost, the key checks in the database refuse the next start (db.verify_keys)
    rather than let new keys write unreadable data beside the old.
    """
    return Keys(**{name: _secret(settings, name, data_bound=True) for name in KEY_NAMES})


def load_signing_key(settings: Settings) -> Signer:
    """The audit log's Ed25519 key, found like the other keys. A new one may be generated at any time: it
    reads no stored data, and checkpoints name the key that signed them."""
    return Signer(_secret(settings, "audit_signing_key", data_bound=False))


def configured_signer(settings: Settings) -> Signer | None:
    """The audit signing key if one is configured or was generated here; never generates one (a verifier
    must not invent the key it checks against)."""
    seed = _secret(settings, "audit_signing_key", data_bound=False, generate=False)
    return Signer(seed) if seed is not None else None


def _secret(settings: Settings, name: str, data_bound: bool, generate: bool = True) -> bytes | None:
    secrets_dir = Path(settings.data_dir) / "secrets"
    given = getattr(settings, name)
    path = secrets_dir / f"{name}.b64"
    source = f"CONSENT_SVC_{name.upper()}"
    if given is None and path.exists():
        given, source = path.read_text().strip(), str(path)
    if given is None and not generate:
        return None
    if given is None:
        if data_bound and (Path(settings.data_dir) / "pg" / "PG_VERSION").exists():
            raise SettingsError(
                f"{path} is missing but the embedded database under {settings.data_dir} exists: restore the "
                "file (or set the variable); new keys could not read the stored data"
            )
        given = base64.b64encode(os.urandom(KEY_BYTES)).decode()
        _write_secret(path, given)
        if not settings.embedded:
            log.warning("generated %s into %s: back it up, or set CONSENT_SVC_%s", name, path, name.upper())
    return _decode_key(source, given)


class Signer:
    """Signs audit checkpoints. `key_id` names the public key (its SHA-256, 16 hex digits) in each checkpoint,
    so a verifier holding several trusted keys (after a rotation) knows which one to use."""

    __slots__ = ("_private", "public_key", "key_id")

    def __init__(self, seed: bytes) -> None:
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._private.public_key().public_bytes_raw()
        self.key_id = public_key_id(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def public_pem(self) -> str:
        return (
            self._private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )


def public_key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def signature_valid(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _write_secret(path: Path, text: str) -> None:
    """Owner-only, and complete or absent: written to a temporary file, synced, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def _decode_key(source: str, text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != KEY_BYTES:
        raise SettingsError(f"invalid key in {source}: expected base64 of {KEY_BYTES} bytes")
    return raw


class LookupHasher:
    """HMAC-SHA256 of normalized identifiers: equal inputs meet in an index, the value stays unknown.

    The keyed state is computed once and copied per call: with OpenSSL's HMAC object itself (no Python
    wrapper) 1.2 us per call, against 2.1 us through hmac.HMAC.copy and 4.5 us for hmac.digest (this machine).
    """

    __slots__ = ("_keyed",)

    def __init__(self, secret: bytes) -> None:
        try:
            from _hashlib import hmac_new  # CPython built with OpenSSL, as every supported platform is

            self._keyed = hmac_new(secret, digestmod="sha256")
        except ImportError:
            self._keyed = hmac.new(secret, digestmod="sha256")

    def __call__(self, kind: str, value: str) -> bytes:
        mac = self._keyed.copy()
        mac.update(f"{kind}\0{value}".encode())
        return mac.digest()


def keyed_digest(key: bytes, data: bytes) -> bytes:
    """A keyed 128-bit digest (BLAKE2b) for internal fingerprints: one C call, about 3x cheaper than HMAC."""
    return hashlib.blake2b(data, key=key, digest_size=16).digest()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-GCM with a fresh random nonce leading the ciphertext; `aad` binds the blob to its row."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, blob: bytes, aad: bytes) -> bytes:
    return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)
