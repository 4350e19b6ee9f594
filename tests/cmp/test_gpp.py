"""GPP decoding against the shared vectors (copied into tests/vectors), and fuzzed for crashes; what a GPP
string's known-child consents mean for the records made."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent_svc.cmp import adapters, gpp
from consent_svc.cmp.bits import ALPHABET, Bits, DecodeError
from consent_svc.cmp.types import GppStringEvent
from consent_svc.policies.load import load_policies
from tests.cmp.helpers import gpp_event, post, statuses_of

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "gpp.json").read_text())["vectors"]
CODES = set(json.loads((Path(__file__).parent.parent / "vectors" / "gpp.json").read_text())["error_codes"])
TCF_CODES = {
    "not_service_specific",
    "purpose_li_not_allowed",
    "invalid_segment_type",
    "invalid_vendor_range",
    "too_many_restrictions",
}
POLICIES = load_policies(Path(__file__).parents[2] / "policies")


def text(bits: str) -> str:
    """Bits as base64url characters, zero-filled to a whole character."""
    bits += "0" * (-len(bits) % 6)
    return "".join(ALPHABET[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


def fibonacci(value: int) -> str:
    weights = [1, 2]
    while weights[-1] <= value:
        weights.append(weights[-1] + weights[-2])
    bits = ["0"] * len(weights)
    for i in reversed(range(len(weights))):
        if weights[i] <= value:
            bits[i], value = "1", value - weights[i]
    return "".join(bits).rstrip("0") + "1"


def header(*entries: int | tuple[int, int]) -> str:
    """A GPP header listing section IDs, each alone or as a (first, last) group."""
    bits, previous = f"{3:06b}{1:06b}{len(entries):012b}", 0
    for entry in entries:
        first, last = entry if isinstance(entry, tuple) else (entry, entry)
        if last > first:
            bits += "1" + fibonacci(first - previous) + fibonacci(last - first)
        else:
            bits += "0" + fibonacci(first - previous)
        previous = last
    return text(bits)


def us_section(*fields: int, version: int = 1) -> str:
    """A usnat or usca core subsection: Version, then every 2-bit field in the spec's order."""
    return text(f"{version:06b}" + "".join(f"{v:02b}" for v in fields))


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
    assert Bits(text(bits)).fibonacci(100) == value
    assert fibonacci(value) == bits


def test_a_fibonacci_integer_above_the_bound_comes_back_as_bound_plus_one():
    # 12,000 alternating bits before the `11`: a number of thousands of digits, never built
    assert Bits("V" * 2000 + "w").fibonacci(27) == 28
    assert Bits(text(fibonacci(27))).fibonacci(27) == 27


@pytest.mark.parametrize(
    "header_text",
    [
        "DBABshVBQqVg",  # a group of about 10^8 IDs: 13 s to list them
        "DBABsgkRJEBCFVEAm~x",  # a group large enough for a MemoryError
        header((20, 10**9)),
        header(28),
        header(2, (26, 28)),
    ],
)
def test_a_section_id_above_the_registry_is_refused_before_any_is_listed(header_text):
    with pytest.raises(DecodeError) as refused:
        gpp.decode(header_text)
    assert refused.value.code == "unknown_section" and "above 27" in str(refused.value)


def test_the_registrys_last_section_id_is_read():
    decoded = gpp.decode(header((26, 27)) + "~a~b")
    assert decoded.header.SectionIds == [26, 27]
    assert decoded.sections == {"us_state_26": "a", "us_state_27": "b"}


def test_a_truncated_header_is_truncated_even_past_the_registry():
    one = header(99)
    with pytest.raises(DecodeError) as refused:
        gpp.decode("DBAC" + one.removeprefix("DBAB"))  # the count says two entries; one follows
    assert refused.value.code == "truncated"


@given(st.integers(0, 8), st.text(alphabet="01", max_size=120))
def test_a_header_lists_each_section_id_once_in_ascending_order(count, entries):
    # Every offset is >= 1, so no header can list an ID twice (no body can silently replace another).
    try:
        ids = gpp._header(text(f"{3:06b}{1:06b}{count:012b}" + entries)).SectionIds
    except DecodeError:
        return
    assert ids == sorted(set(ids)) and all(1 <= i <= gpp.MAX_SECTION_ID for i in ids)


@given(st.text(alphabet=ALPHABET + "~.+/= ", max_size=200))
def test_any_text_decodes_or_raises_the_decoders_own_error(text):
    try:
        gpp.decode(text)
    except DecodeError as exc:
        assert exc.code in CODES | TCF_CODES


# usca: SaleOptOutNotice, SharingOptOutNotice, SensitiveDataLimitUseNotice, SaleOptOut, SharingOptOut,
# 9 sensitive categories, 2 known-child consents (to sell, to share), then the MSPA fields.
USCA_HEAD = (1, 1, 0, 2, 2)  # notices given, sale and sharing "did not opt out"
MSPA = (0, 1, 0, 0)


def usca(known_child: tuple[int, int]) -> str:
    return header(8) + "~" + us_section(*USCA_HEAD, *[0] * 9, *known_child, *MSPA)


def choices(gpp_string: str) -> dict[str, str]:
    event = msgspec.convert(gpp_event(gpp_string), GppStringEvent)
    batch = adapters.records_of(event, "web-cmp", "US-CA", POLICIES)
    return {record.purpose: record.status for record in batch.records}


@pytest.mark.parametrize(
    ("known_child", "expected"),
    [
        ((0, 0), {"sale": "granted", "share": "granted"}),
        ((2, 2), {"sale": "granted", "share": "granted"}),
        ((1, 1), {"sale": "denied", "share": "denied"}),
        ((1, 0), {"sale": "denied", "share": "granted"}),  # no consent to sell an under-16's data
        ((2, 1), {"sale": "granted", "share": "denied"}),  # consent to sell, none to share
    ],
)
def test_a_known_childs_refusal_in_usca_beats_did_not_opt_out(known_child, expected):
    assert choices(usca(known_child)) == expected


@pytest.mark.parametrize(
    ("version", "known_child"), [(1, (0, 1)), (1, (1, 0)), (2, (0, 0, 1)), (2, (2, 1, 2))]
)
def test_a_known_childs_refusal_in_usnat_denies_sale_sharing_and_targeting(version, known_child):
    # usnat: 6 notices, then SaleOptOut, SharingOptOut, TargetedAdvertisingOptOut "did not opt out"
    sensitive = [0] * (12 if version == 1 else 16)
    body = us_section(1, 1, 1, 1, 0, 0, 2, 2, 2, *sensitive, *known_child, *MSPA, version=version)
    assert choices(header(7) + "~" + body) == dict.fromkeys(
        ["sale", "share", "targeted_advertising"], "denied"
    )


@pytest.fixture
async def us_cmp(client, manager):
    made = await client.post(
        "/v1/sources", json={"name": "us-cmp", "default_region": "US-CA"}, headers=manager
    )
    assert made.status_code == 201, made.text
    return made.json()["secret"]


async def test_a_california_string_refusing_a_known_childs_sale_records_sale_denied(client, us_cmp, admin):
    response = await post(client, "us-cmp", us_cmp, gpp_event(usca((1, 0))))
    assert await statuses_of(client, admin, response) == {"sale": "denied", "share": "granted"}


async def test_a_header_past_the_registry_is_a_422_naming_it(client, us_cmp, conn):
    response = await post(client, "us-cmp", us_cmp, gpp_event("DBABsgkRJEBCFVEAm~x"))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"][0]["field"] == "data.gpp_string" and "unknown_section" in problem["detail"]
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 0
