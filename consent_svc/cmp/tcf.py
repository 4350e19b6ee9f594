"""IAB TCF v2.2 TC strings, decoded strictly (IAB Tech Lab, "TCF v2 - Consent string and vendor list formats").

`core[.segment]...`: the core segment, then optional segments each opened by a 3-bit type (1 DisclosedVendors,
3 PublisherTC) in any order. Field names follow the spec. After a structurally valid decode, the TCF 2.2
policy rules apply: policy version at least 4, service-specific, and no legitimate interest for purposes 3-6.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from consent_svc.cmp.bits import Bits, DecodeError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SEGMENTS = {1: "disclosedVendors", 3: "publisherTC"}
NO_LEGITIMATE_INTEREST = frozenset({3, 4, 5, 6})  # TCF 2.2 policy: these need consent
MAX_VENDOR_ID = (1 << 16) - 1  # vendor IDs are 16 bits
# Publisher restrictions have no MaxVendorId: together they may name at most as many vendors as the ID space
# holds (restricting every GVL vendor, about 1,400 IDs in 2025, for all 11 purposes takes about 15,000), else
# 20,000 characters could list hundreds of millions of IDs.
MAX_RESTRICTED = MAX_VENDOR_ID


class PublisherRestriction(msgspec.Struct, frozen=True):
    PurposeId: int
    RestrictionType: int
    VendorIds: list[int]


class PublisherTC(msgspec.Struct, frozen=True):
    PubPurposesConsent: list[int]
    PubPurposesLITransparency: list[int]
    NumCustomPurposes: int
    CustomPurposesConsent: list[int]
    CustomPurposesLITransparency: list[int]


class TCString(msgspec.Struct, frozen=True):
    Version: int
    Created: int
    """Deciseconds since the Unix epoch (UTC)."""
    LastUpdated: int
    CmpId: int
    CmpVersion: int
    ConsentScreen: int
    ConsentLanguage: str
    VendorListVersion: int
    TcfPolicyVersion: int
    IsServiceSpecific: bool
    UseNonStandardTexts: bool
    SpecialFeatureOptIns: list[int]
    PurposesConsent: list[int]
    PurposesLITransparency: list[int]
    PurposeOneTreatment: bool
    PublisherCC: str
    VendorConsents: list[int]
    VendorLegitimateInterests: list[int]
    PublisherRestrictions: list[PublisherRestriction]
    DisclosedVendors: list[int] | None
    PublisherTC: PublisherTC | None
    Segments: list[str]

    @property
    def last_updated(self) -> datetime:
        return EPOCH + timedelta(milliseconds=self.LastUpdated * 100)


def _spans(bits: Bits, max_id: int) -> list[tuple[int, int]]:
    """A range section's entries as sorted, merged (start, end) spans, each within 1..max_id. Entries may
    overlap (the spec does not forbid it), so they are merged before any ID is listed: a section lists at
    most max_id IDs however many entries it repeats."""
    spans = []
    for _ in range(bits.int(12)):
        is_range = bits.bool()
        start = bits.int(16)
        end = bits.int(16) if is_range else start
        if not 1 <= start <= end <= max_id:
            raise DecodeError(
                "invalid_vendor_range", f"vendors {start}-{end}: not an ascending range in 1-{max_id}"
            )
        spans.append((start, end))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _ids(spans: list[tuple[int, int]]) -> list[int]:
    return [v for start, end in spans for v in range(start, end + 1)]


def _vendors(bits: Bits) -> list[int]:
    max_vendor = bits.int(16)  # "the maximum Vendor ID represented": a range past it is invalid
    if bits.bool():
        return _ids(_spans(bits, max_vendor))
    return bits.bitfield(max_vendor)


def _restrictions(bits: Bits) -> list[PublisherRestriction]:
    out, listed = [], 0
    for _ in range(bits.int(12)):
        purpose, kind = bits.int(6), bits.int(2)
        spans = _spans(bits, MAX_VENDOR_ID)
        listed += sum(end - start + 1 for start, end in spans)
        if listed > MAX_RESTRICTED:  # counted before listing, so the work stays bounded
            raise DecodeError(
                "too_many_restrictions", f"publisher restrictions name more than {MAX_RESTRICTED} vendors"
            )
        out.append(PublisherRestriction(purpose, kind, _ids(spans)))
    return sorted(out, key=lambda r: (r.PurposeId, r.RestrictionType))


def decode(text: str) -> TCString:
    """The TC string's fields, or DecodeError with the first problem's code."""
    if not isinstance(text, str) or not text:
        raise DecodeError("malformed_base64", "empty TC string")
    core, *others = text.split(".")
    bits = Bits(core)
    version = bits.int(6)
    if version != 2:
        raise DecodeError("unsupported_version", f"version {version}, only 2 is supported")
    fields = {
        "Version": version,
        "Created": bits.int(36),
        "LastUpdated": bits.int(36),
        "CmpId": bits.int(12),
        "CmpVersion": bits.int(12),
        "ConsentScreen": bits.int(6),
        "ConsentLanguage": bits.letters(),
        "VendorListVersion": bits.int(12),
        "TcfPolicyVersion": bits.int(6),
        "IsServiceSpecific": bits.bool(),
        "UseNonStandardTexts": bits.bool(),
        "SpecialFeatureOptIns": bits.bitfield(12),
        "PurposesConsent": bits.bitfield(24),
        "PurposesLITransparency": bits.bitfield(24),
        "PurposeOneTreatment": bits.bool(),
        "PublisherCC": bits.letters(),
        "VendorConsents": _vendors(bits),
        "VendorLegitimateInterests": _vendors(bits),
        "PublisherRestrictions": _restrictions(bits),
        "DisclosedVendors": None,
        "PublisherTC": None,
        "Segments": ["core"],
    }
    for segment in others:
        bits = Bits(segment)
        kind = bits.int(3)
        name = SEGMENTS.get(kind)
        if name is None:
            raise DecodeError("invalid_segment_type", f"segment type {kind}")
        if name in fields["Segments"]:
            raise DecodeError("invalid_segment_type", f"segment {name} twice")
        fields["Segments"].append(name)
        if kind == 1:
            fields["DisclosedVendors"] = _vendors(bits)
        else:
            consent, legitimate, custom = bits.bitfield(24), bits.bitfield(24), bits.int(6)
            fields["PublisherTC"] = PublisherTC(
                consent, legitimate, custom, bits.bitfield(custom), bits.bitfield(custom)
            )
    decoded = TCString(**fields)
    if decoded.TcfPolicyVersion < 4:
        raise DecodeError(
            "unsupported_policy_version", f"policy version {decoded.TcfPolicyVersion} is before TCF 2.2"
        )
    if not decoded.IsServiceSpecific:
        raise DecodeError("not_service_specific", "global consent strings are no longer allowed")
    if NO_LEGITIMATE_INTEREST & set(decoded.PurposesLITransparency):
        purposes = sorted(NO_LEGITIMATE_INTEREST & set(decoded.PurposesLITransparency))
        raise DecodeError("purpose_li_not_allowed", f"legitimate interest for purposes {purposes}")
    return decoded
