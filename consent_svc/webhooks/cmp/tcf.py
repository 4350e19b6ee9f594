"""IAB TCF v2.2 TC strings, decoded strictly (IAB Tech Lab, "TCF v2 - Consent string and vendor list formats").

`core[.segment]...`: the core segment, then optional segments each opened by a 3-bit type (1 DisclosedVendors,
3 PublisherTC) in any order. Field names follow the spec. After a structurally valid decode, the TCF 2.2
policy rules apply: policy version at least 4, service-specific, and no legitimate interest for purposes 3-6.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from consent_svc.webhooks.cmp.bits import Bits, DecodeError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SEGMENTS = {1: "disclosedVendors", 3: "publisherTC"}
NO_LEGITIMATE_INTEREST = frozenset({3, 4, 5, 6})  # TCF 2.2 policy: these need consent


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


def _ranges(bits: Bits) -> list[int]:
    ids: set[int] = set()
    for _ in range(bits.int(12)):
        is_range = bits.bool()
        start = bits.int(16)
        end = bits.int(16) if is_range else start
        ids.update(range(start, end + 1))
    return sorted(ids)


def _vendors(bits: Bits) -> list[int]:
    max_vendor = bits.int(16)
    if bits.bool():
        return [v for v in _ranges(bits) if v <= max_vendor] if max_vendor else _ranges(bits)
    return bits.bitfield(max_vendor)


def _restrictions(bits: Bits) -> list[PublisherRestriction]:
    out = []
    for _ in range(bits.int(12)):
        purpose, kind = bits.int(6), bits.int(2)
        out.append(PublisherRestriction(purpose, kind, _ranges(bits)))
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
