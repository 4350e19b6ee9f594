"""GPP decoding against the shared vectors (copied into tests/vectors), and fuzzed for crashes."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent_svc.webhooks.cmp import gpp
from consent_svc.webhooks.cmp.bits import ALPHABET, DecodeError

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "gpp.json").read_text())["vectors"]
CODES = set(json.loads((Path(__file__).parent.parent / "vectors" / "gpp.json").read_text())["error_codes"])


def without_utc(value):
    if isinstance(value, dict):
        return {k: without_utc(v) for k, v in value.items() if not k.endswith("Utc")}
    return value


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_vectors(vector):
    if not vector["valid"]:
        with pytest.raises(DecodeError) as refused:
            gpp.decode(vector["gpp_string"])
        assert refused.value.code == vector["error"]
        return
    decoded = msgspec.to_builtins(gpp.decode(vector["gpp_string"]))
    assert without_utc(decoded) == without_utc(vector["decoded"])


@pytest.mark.parametrize(
    ("value", "bits"),
    [(1, "11"), (2, "011"), (3, "0011"), (4, "1011"), (5, "00011"), (7, "01011"), (12, "101011")],
)
def test_fibonacci_integers(value, bits):
    from consent_svc.webhooks.cmp.bits import Bits

    padded = bits + "0" * (-len(bits) % 6)
    text = "".join(ALPHABET[int(padded[i : i + 6], 2)] for i in range(0, len(padded), 6))
    assert Bits(text).fibonacci() == value


@given(st.text(alphabet=ALPHABET + "~.+/= ", max_size=200))
def test_any_text_decodes_or_raises_the_decoders_own_error(text):
    try:
        gpp.decode(text)
    except DecodeError as exc:
        assert exc.code in CODES | {"not_service_specific", "purpose_li_not_allowed", "invalid_segment_type"}
