"""Standard Webhooks signatures against the shared vectors (copied into tests/vectors) and the reference
library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent_svc import signing

VECTORS = json.loads((Path(__file__).parent / "vectors" / "webhooks.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_vectors(vector):
    headers = {k.lower(): v for k, v in vector["headers"].items()}
    key = signing.secret_key(vector["secret"])
    body = vector["payload"].encode()
    if vector["expected"]["valid"]:
        assert signing.verify([key], headers, body, vector["now"], vector["tolerance_seconds"])
    else:
        with pytest.raises(signing.SignatureError) as refused:
            signing.verify([key], headers, body, vector["now"], vector["tolerance_seconds"])
        assert refused.value.code == vector["expected"]["error"]


def test_any_of_several_keys_verifies_as_during_a_rotation_grace_period():
    old, new = signing.secret_key(signing.new_secret()), signing.secret_key(signing.new_secret())
    headers = {
        "webhook-id": "m1",
        "webhook-timestamp": "1000",
        "webhook-signature": signing.signature(old, "m1", 1000, b"{}"),
    }
    assert signing.verify([new, old], headers, b"{}", 1000) == "m1"
    with pytest.raises(signing.SignatureError):
        signing.verify([new], headers, b"{}", 1000)


def test_signatures_agree_with_the_reference_library():
    from standardwebhooks.webhooks import Webhook

    secret = signing.new_secret()
    body = b'{"type":"consent.records","data":{"records":[]}}'
    header = signing.signature(signing.secret_key(secret), "msg_1", 1767225600, body)
    assert (
        Webhook(secret).sign(
            "msg_1", __import__("datetime").datetime.fromtimestamp(1767225600), body.decode()
        )
        == header
    )


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_!!!", "whsec_" + "A" * 8, "whsec_" + "QUFB" * 40])
def test_a_malformed_secret_is_refused(secret):
    with pytest.raises(ValueError):
        signing.secret_key(secret)


@given(
    st.dictionaries(st.sampled_from(signing.HEADERS), st.text(max_size=200)),
    st.binary(max_size=200),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
)
def test_verify_refuses_anything_with_its_own_error(headers, body, now):
    try:
        signing.verify([b"k" * 32], headers, body, now)
    except signing.SignatureError:
        pass
