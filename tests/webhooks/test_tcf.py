"""TCF v2.2 decoding against the shared vectors (copied into tests/vectors), and fuzzed for crashes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent_svc.webhooks.cmp import tcf
from consent_svc.webhooks.cmp.bits import ALPHABET, DecodeError

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "tcf.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_vectors(vector):
    if not vector["valid"]:
        with pytest.raises(DecodeError) as refused:
            tcf.decode(vector["tc_string"])
        assert refused.value.code == vector["error"]
        return
    decoded = msgspec.to_builtins(tcf.decode(vector["tc_string"]))
    expected = {k: v for k, v in vector["decoded"].items() if not k.endswith("Utc")}
    assert decoded == expected
    utc = datetime.fromisoformat(vector["decoded"]["LastUpdatedUtc"].replace("Z", "+00:00"))
    assert tcf.decode(vector["tc_string"]).last_updated == utc.astimezone(UTC)


@given(st.text(alphabet=ALPHABET + ".+/=~ ", max_size=300))
def test_any_text_decodes_or_raises_the_decoders_own_error(text):
    try:
        tcf.decode(text)
    except DecodeError as exc:
        assert exc.code in {
            "malformed_base64",
            "truncated",
            "unsupported_version",
            "invalid_segment_type",
            "unsupported_policy_version",
            "not_service_specific",
            "purpose_li_not_allowed",
        }


@given(
    st.sampled_from([v["tc_string"] for v in VECTORS if v["valid"]]),
    st.integers(0, 400),
    st.sampled_from(ALPHABET),
)
def test_a_valid_string_with_one_character_changed_never_crashes(text, position, char):
    position %= len(text)
    try:
        tcf.decode(text[:position] + char + text[position + 1 :])
    except DecodeError:
        pass
