"""Policy files decoded into Structs: validation is the type.

`policies/purposes.toml` is the purpose catalogue, `policies/regions.toml` maps regions to regimes, and
`policies/regimes/*.toml` holds one regime each. `policies/README.md` explains every field.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

import msgspec

PurposeId = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{1,63}$")]
RegimeId = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{1,63}$")]
Version = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
# "45 days", "10 business_days", "1 months": the units the statutes use.
Period = Annotated[str, msgspec.Meta(pattern=r"^[1-9][0-9]{0,3} (days|business_days|months)$")]
Model = Literal["opt_in", "opt_out", "not_required", "prohibited"]
MinorRule = Literal["opt_in", "parent_consent", "prohibited"]
SensitiveModel = Literal["opt_in", "opt_out", "limit_right", "strictly_necessary_only"]
Age = Annotated[int, msgspec.Meta(ge=1, le=25)]
Text = Annotated[str, msgspec.Meta(max_length=500)]


class Purpose(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: PurposeId
    title: str
    description: str = ""


class PurposeCatalogue(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: Version
    purposes: list[Purpose]


class RegionMap(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: Version
    default: RegimeId
    """The regime for an unknown (`ZZ`) or unmapped region: the strictest."""
    regimes: dict[RegimeId, list[str]]
    """Regime id -> the ISO 3166-1 / 3166-2 codes it governs. A subdivision (`US-CA`) wins over its
    country (`US`)."""


class PurposeRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    purposes: list[PurposeId]
    model: Model
    soft_opt_in: bool = False
    """E-mail/SMS to an existing customer about own similar products without prior consent (ePD 13(2))."""
    valid_from: date | None = None
    valid_to: date | None = None
    source: Text = ""


class GpcRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    purposes: list[PurposeId]
    honour_from: date
    overrides_grant: bool = False
    """The signal beats an earlier business-specific "allow" (CCPA regs 7025(c)(3))."""
    binds_consumer: bool = False
    """The signal is the known consumer's opt-out, not only this request's (CCPA regs 7025(c)(1)), and its later
    absence is no opt-in (7025(c)(5)): the service records it in the ledger as a refusal of these purposes."""
    source: Text = ""


class MinorsRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    below: Age
    purposes: list[PurposeId]
    rule: MinorRule
    below_by_region: dict[str, Age] = {}
    """National ages that replace `below` (GDPR Art 8(1) lets member states set 13 to 16)."""
    valid_from: date | None = None
    valid_to: date | None = None
    source: Text = ""


class SensitiveRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: SensitiveModel
    prohibited_for: list[PurposeId] = []
    """Purposes sensitive data may never feed, consent or not (DSA 26(3): ads profiled on it)."""
    source: Text = ""


class DsarRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Deadlines of data-subject requests (the requests domain computes dates from these)."""

    response: Period
    counting: Literal["day_after_receipt", "same_date_next_months"] = "day_after_receipt"
    clock_start: Literal["receipt", "latest_of_receipt_and_identity"] = "receipt"
    weekend_rollover: bool = False
    extension: Period | None = None
    acknowledge: Period | None = None
    opt_out_response: Period | None = None
    appeal: Period | None = None
    rights: list[str] = []
    source: Text = ""


class Regime(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: RegimeId
    name: Text
    version: Version
    extends: RegimeId | None = None
    """Rules not given here come from this regime (US states extend the federal overlay)."""
    in_force_from: date | None = None
    """Before this date the parent regime applies (or, with none, the default regime)."""
    consent_max_age_days: Annotated[int, msgspec.Meta(ge=1, le=36500)] | None = None
    max_age_days_by_region: dict[str, Annotated[int, msgspec.Meta(ge=1, le=36500)]] = {}
    rules: list[PurposeRule] = []
    gpc: GpcRule | None = None
    minors: list[MinorsRule] = []
    sensitive: SensitiveRule | None = None
    dsar: DsarRules | None = None
    sources: list[Text] = []


class TcfPurposeMap(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    purpose: str
    """One of this service's purposes."""
    tcf_purposes: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=24)]], msgspec.Meta(min_length=1)]
    """IAB TCF purposes that must all have consent in a TC string for this purpose to be granted."""


class TcfMapping(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`tcf.toml`: how a TC string's purpose consents become this service's consent records."""

    version: str
    map: list[TcfPurposeMap]


GppOptOut = Literal["SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"]


class GppMapping(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`gpp.toml`: how a GPP string's US sections become this service's consent records."""

    version: str
    opt_outs: dict[GppOptOut, str]
    # Per section, in entry order: the opt-outs whose purposes a known child's refused consent denies.
    known_child: dict[Literal["usnat", "usca"], list[list[GppOptOut]]] = {}
    sensitive: str | None = None
    gpc: list[str] = []
    uspv1_opt_out_sale: str | None = None

    def purposes(self) -> list[str]:
        named = [*self.opt_outs.values(), self.sensitive, *self.gpc, self.uspv1_opt_out_sale]
        return [p for p in named if p is not None]


class DidomiMapping(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`didomi.toml`: Didomi's organization-defined purpose ids and user ids -> this service's."""

    version: str
    purposes: dict[str, str]
    organization_user_id_type: str = "customer_id"
    didomi_user_id_type: str = "x-didomi-user"


class Policies(msgspec.Struct, frozen=True):
    """Everything loaded from `policies/`, immutable once the service starts."""

    purposes: PurposeCatalogue
    regions: RegionMap
    regimes: dict[str, Regime]
    """Each regime with its `extends` chain already merged in."""
    version: str
    """Content hash of every file, e.g. `p-3f2a9c1b7d4e`; stored with the files in `policy_versions`."""
    files: dict[str, str]
    """Relative path -> text, exactly as loaded: what the database keeps to show and re-apply."""
    region_regime: dict[str, str]
    tcf: TcfMapping | None = None
    """None for a policy version kept from before `tcf.toml` existed."""
    gpp: GppMapping | None = None
    didomi: DidomiMapping | None = None

    @property
    def purpose_ids(self) -> frozenset[str]:
        return frozenset(p.id for p in self.purposes.purposes)

    def regime_on(self, region: str, day: date) -> tuple[Regime, bool]:
        """The regime in force for a region on a day (before a regime's `in_force_from`, its parent's or the
        default), and whether the region is mapped at all."""
        regime, mapped = self.regime_for(region)
        while regime.in_force_from is not None and day < regime.in_force_from:
            regime = self.regimes[regime.extends or self.regions.default]
        return regime, mapped

    def dsar_on(self, region: str, day: date) -> tuple[Regime, DsarRules]:
        """The request deadlines for a region on a day: its regime's, or the default regime's where it sets none
        (load_policies makes sure the default does)."""
        regime, _ = self.regime_on(region, day)
        if regime.dsar is not None:
            return regime, regime.dsar
        default = self.regimes[self.regions.default]
        assert default.dsar is not None
        return default, default.dsar

    def regime_for(self, region: str) -> tuple[Regime, bool]:
        """The regime governing a canonical region code, and whether it came from the map (False: default)."""
        regime_id = self.region_regime.get(region)
        if regime_id is None and "-" in region:
            regime_id = self.region_regime.get(region.split("-", 1)[0])
        if regime_id is None:
            return self.regimes[self.regions.default], False
        return self.regimes[regime_id], True
