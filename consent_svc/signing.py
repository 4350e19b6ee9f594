"""Standard Webhooks (v1, symmetric) signatures, pure: secrets, signing, verification.

content = `<webhook-id>.<webhook-timestamp>.<raw body>`; signature = `v1,` + base64(HMAC-SHA256(key, content));
the header may carry several space-separated signatures (a sender rotating its secret); any v1 match is valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping

PREFIX = "whsec_"
SECRET_BYTES = 32
TOLERANCE_SECONDS = 300
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class SignatureError(Exception):
    """Why a message is refused: one of the codes of the shared vectors."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def new_secret() -> str:
    return PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret (the bare base64 is accepted too, as the reference libraries do)."""
    text = secret.removeprefix(PREFIX)
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("not a whsec_ secret: base64 expected") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a whsec_ secret holds 24 to 64 bytes")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.digest(key, content, hashlib.sha256)).decode()


def verify(
    keys: Iterable[bytes],
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """The message id if a v1 signature by any of `keys` matches, the timestamp within `tolerance`; else
    SignatureError. `headers` is looked up by lower-case name."""
    msg_id, stamp, signatures = (headers.get(name) for name in HEADERS)
    if not msg_id or not stamp or not signatures:
        raise SignatureError("missing_headers")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError("invalid_timestamp") from None
    if now - timestamp > tolerance:
        raise SignatureError("timestamp_too_old")
    if timestamp - now > tolerance:
        raise SignatureError("timestamp_too_new")
    given = [
        value.encode()
        for version, _, value in (entry.partition(",") for entry in signatures.split(" "))
        if version == "v1" and value
    ]
    for key in keys:
        expected = signature(key, msg_id, timestamp, body)[3:].encode()
        if any(hmac.compare_digest(expected, candidate) for candidate in given):
            return msg_id
    raise SignatureError("no_matching_signature")
