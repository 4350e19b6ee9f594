"""IAB GPP strings, decoded strictly (IAB Tech Lab, GPP Consent String Specification v1.0, US National and
California technical specifications): the header, `tcfeuv2`, `uspv1`, `usnat` (v1 and v2) and `usca`, each
with its optional GPC subsection. Sections the registry lists but this service does not read are kept as
their raw text; an ID outside the registry is an error (the IAB library drops it silently; we must not).
"""

from __future__ import annotations

from typing import Any

import msgspec

from consent_svc.cmp import tcf
from consent_svc.cmp.bits import Bits, DecodeError

SECTION_NAMES = {
    1: "tcfeuv1",
    2: "tcfeuv2",
    3: "header",
    4: "signal_integrity",
    5: "tcfcav1",
    6: "uspv1",
    7: "usnat",
    8: "usca",
    9: "usva",
    10: "usco",
    11: "usut",
    12: "usct",
    **{n: f"us_state_{n}" for n in range(13, 28)},
}
# The registry's last ID (wire-formats §3.2: 13-27 are the further states). Offsets are read against it, so a
# header cannot make the decoder count or list IDs beyond it (a 12-character header once asked for 10^8).
MAX_SECTION_ID = max(SECTION_NAMES)


class Header(msgspec.Struct, frozen=True):
    Type: int
    Version: int
    SectionIds: list[int]


class GppString(msgspec.Struct, frozen=True):
    header: Header
    sections: dict[str, Any]
    """API prefix -> the decoded section (a dict of the spec's field names), or its raw text."""


def _header(text: str) -> Header:
    bits = Bits(text)
    kind = bits.int(6)
    if kind != 3:
        raise DecodeError("invalid_header", f"header type {kind}, expected 3")
    version = bits.int(6)
    if version != 1:
        raise DecodeError("unsupported_version", f"GPP version {version}")
    ids: list[int] = []
    previous = 0  # IDs only ascend (every offset is >= 1), so none can repeat
    for _ in range(bits.int(12)):
        group = bits.bool()
        start = previous + bits.fibonacci(MAX_SECTION_ID)
        previous = start + bits.fibonacci(MAX_SECTION_ID) if group else start
        ids.extend(range(start, min(previous, MAX_SECTION_ID) + 1))
    if previous > MAX_SECTION_ID:  # after the loop, so that a truncated header is still `truncated`
        raise DecodeError(
            "unknown_section", f"the header lists a section id above {MAX_SECTION_ID}, the registry's last"
        )
    return Header(kind, version, ids)


def _gpc(parts: list[str]) -> dict[str, Any]:
    if not parts:
        return {"GpcSegmentIncluded": False, "Gpc": None}
    if len(parts) > 1:
        raise DecodeError("invalid_subsection", "more than one subsection after the core")
    bits = Bits(parts[0])
    kind = bits.int(2)
    if kind != 1:
        raise DecodeError("invalid_subsection", f"subsection type {kind}, only 1 (GPC) is defined")
    return {"GpcSegmentIncluded": True, "Gpc": bits.bool()}


MSPA_TAIL = (
    "PersonalDataConsents",
    "MspaCoveredTransaction",
    "MspaOptOutOptionMode",
    "MspaServiceProviderMode",
)
USNAT_HEAD = (
    "SharingNotice",
    "SaleOptOutNotice",
    "SharingOptOutNotice",
    "TargetedAdvertisingOptOutNotice",
    "SensitiveDataProcessingOptOutNotice",
    "SensitiveDataLimitUseNotice",
    "SaleOptOut",
    "SharingOptOut",
    "TargetedAdvertisingOptOut",
)
USCA_HEAD = (
    "SaleOptOutNotice",
    "SharingOptOutNotice",
    "SensitiveDataLimitUseNotice",
    "SaleOptOut",
    "SharingOptOut",
)
# section -> version -> (fields before the lists, SensitiveDataProcessing count, KnownChild count)
US_LAYOUTS = {
    "usnat": {1: (USNAT_HEAD, 12, 2), 2: (USNAT_HEAD, 16, 3)},  # the layout follows Version, never the length
    "usca": {1: (USCA_HEAD, 9, 2)},
}


def _us_section(name: str, body: str) -> dict[str, Any]:
    """usnat or usca: a core subsection of 2-bit fields, then the optional GPC subsection."""
    core, *rest = body.split(".")
    bits = Bits(core)
    version = bits.int(6)
    layout = US_LAYOUTS[name].get(version)
    if layout is None:
        raise DecodeError("unsupported_section_version", f"{name} version {version}")
    head, sensitive, children = layout
    out: dict[str, Any] = {"Version": version, **{field: bits.int(2) for field in head}}
    out["SensitiveDataProcessing"] = [bits.int(2) for _ in range(sensitive)]
    out["KnownChildSensitiveDataConsents"] = [bits.int(2) for _ in range(children)]
    out.update({field: bits.int(2) for field in MSPA_TAIL})
    return {**out, **_gpc(rest)}


def _uspv1(body: str) -> dict[str, Any]:
    if len(body) != 4:
        raise DecodeError("truncated", f"uspv1 has 4 characters, not {len(body)}")
    if body[0] != "1":
        raise DecodeError("unsupported_section_version", f"uspv1 version {body[0]!r}")
    if any(c not in "YN-" for c in body[1:]):
        raise DecodeError("invalid_subsection", "uspv1 values are Y, N or -")
    return {"Version": 1, "Notice": body[1], "OptOutSale": body[2], "LspaCovered": body[3]}


def _tcfeuv2(body: str) -> dict[str, Any]:
    return msgspec.to_builtins(tcf.decode(body))


DECODERS = {
    2: _tcfeuv2,
    6: _uspv1,
    7: lambda body: _us_section("usnat", body),
    8: lambda body: _us_section("usca", body),
}


def decode(text: str) -> GppString:
    """The header and every section, or DecodeError with the first problem's code."""
    if not isinstance(text, str) or not text:
        raise DecodeError("malformed_base64", "empty GPP string")
    header_text, *bodies = text.split("~")
    header = _header(header_text)
    if len(bodies) != len(header.SectionIds):
        raise DecodeError(
            "section_count_mismatch",
            f"the header lists {len(header.SectionIds)} sections, {len(bodies)} follow",
        )
    sections: dict[str, Any] = {}
    for section_id, body in zip(header.SectionIds, bodies, strict=True):
        name = SECTION_NAMES.get(section_id)
        if name is None:
            raise DecodeError("unknown_section", f"section id {section_id} is not in the GPP registry")
        if not body:
            raise DecodeError("truncated", f"section {name} is empty")
        decoder = DECODERS.get(section_id)
        sections[name] = decoder(body) if decoder else body
    return GppString(header, sections)
