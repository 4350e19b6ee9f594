"""TCF v2.2 decoding against the shared vectors (copied into tests/vectors), and fuzzed for crashes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent_svc.cmp import tcf
from consent_svc.cmp.bits import ALPHABET, DecodeError

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "tcf.json").read_text())["vectors"]
NONE = f"{0:016b}0"  # a vendor section: MaxVendorId 0, as a bitfield


def text(bits: str) -> str:
    bits += "0" * (-len(bits) % 6)
    return "".join(ALPHABET[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


def ranges(*entries: tuple[int, int]) -> str:
    """Range entries (NumEntries, then each entry), a single ID when first == last."""
    bits = f"{len(entries):012b}"
    for first, last in entries:
        bits += f"1{first:016b}{last:016b}" if first != last else f"0{first:016b}"
    return bits


def vendors(max_vendor: int, *entries: tuple[int, int]) -> str:
    """A range-encoded vendor section."""
    return f"{max_vendor:016b}1" + ranges(*entries)


def restrictions(*entries: tuple[int, int, list[tuple[int, int]]]) -> str:
    return f"{len(entries):012b}" + "".join(f"{p:06b}{k:02b}" + ranges(*r) for p, k, r in entries)


def tc_string(
    consents: str = NONE, li: str = NONE, restricted: str = restrictions(), disclosed: str = ""
) -> str:
    """A TC string that passes the TCF 2.2 policy checks, with the vendor sections given."""
    core = (
        f"{2:06b}"
        + f"{0:036b}" * 2
        + f"{1:012b}" * 2
        + f"{0:06b}"
        + f"{4:06b}{13:06b}"
        + f"{1:012b}"
        + f"{4:06b}"
        + "10"
        + "0" * 12
        + "1"
        + "0" * 23
        + "0" * 24
        + "0"
        + f"{0:012b}"
    )
    return text(core + consents + li + restricted) + ("." + text("001" + disclosed) if disclosed else "")


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
            "invalid_vendor_range",
            "too_many_restrictions",
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


def test_the_builder_makes_a_valid_string():
    decoded = tcf.decode(tc_string(vendors(10, (2, 4), (9, 9)), disclosed=vendors(10, (1, 10))))
    assert decoded.PurposesConsent == [1] and decoded.VendorConsents == [2, 3, 4, 9]
    assert decoded.DisclosedVendors == list(range(1, 11))


SECTIONS = {
    "VendorConsents": lambda section: tc_string(consents=section),
    "VendorLegitimateInterests": lambda section: tc_string(li=section),
    "DisclosedVendors": lambda section: tc_string(disclosed=section),
}


@pytest.mark.parametrize("field", SECTIONS)
@pytest.mark.parametrize(
    "section",
    [
        vendors(100, (1, 65535)),  # past MaxVendorId: once dropped silently
        vendors(0, (1, 65535)),  # MaxVendorId 0: once taken as no bound at all
        vendors(100, (50, 10)),  # descending
        vendors(100, (0, 0)),  # vendor IDs start at 1
    ],
    ids=["past_max", "max_0", "descending", "vendor_0"],
)
def test_a_range_outside_its_sections_max_vendor_id_is_refused(field, section):
    with pytest.raises(DecodeError) as refused:
        tcf.decode(SECTIONS[field](section))
    assert refused.value.code == "invalid_vendor_range"


@pytest.mark.parametrize("field", SECTIONS)
def test_repeated_overlapping_ranges_list_each_vendor_once(field):
    # 3,500 full ranges in 19,000 characters: once 229 million IDs to collect (6.8 s); overlaps are legal
    decoded = tcf.decode(SECTIONS[field](vendors(65535, *[(1, 65535)] * 3500)))
    assert getattr(decoded, field) == list(range(1, 65536))
    decoded = tcf.decode(SECTIONS[field](vendors(20, (5, 9), (1, 3), (8, 12), (4, 4), (20, 20))))
    assert getattr(decoded, field) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 20]


def test_publisher_restrictions_are_taken_literally_up_to_the_bound():
    # 65,535 vendors in all, the most restrictions may name; overlapping ranges count once
    restricted = restrictions((7, 0, [(9, 12), (10, 11)]), (2, 1, [(1, 65531)]))
    decoded = tcf.decode(tc_string(restricted=restricted))
    assert [(r.PurposeId, r.RestrictionType) for r in decoded.PublisherRestrictions] == [(2, 1), (7, 0)]
    assert decoded.PublisherRestrictions[0].VendorIds == list(range(1, 65532))
    assert decoded.PublisherRestrictions[1].VendorIds == [9, 10, 11, 12]


@pytest.mark.parametrize(
    ("restricted", "code"),
    [
        # 300 restrictions of every vendor: once 20 million IDs listed
        (restrictions(*[(p % 24 + 1, p % 3, [(1, 65535)]) for p in range(300)]), "too_many_restrictions"),
        (restrictions((2, 1, [(1, 65535)]), (3, 0, [(1, 1)])), "too_many_restrictions"),
        (restrictions((2, 1, [(12, 6)])), "invalid_vendor_range"),
        (restrictions((2, 1, [(0, 6)])), "invalid_vendor_range"),
    ],
    ids=["300_full", "one_past", "descending", "vendor_0"],
)
def test_publisher_restrictions_are_bounded(restricted, code):
    with pytest.raises(DecodeError) as refused:
        tcf.decode(tc_string(restricted=restricted))
    assert refused.value.code == code
