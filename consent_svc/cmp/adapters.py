"""What a CMP's event means for the ledger: each event type becomes a batch of consent records in the ledger's
own format (so one validation and one write path serve every CMP). A new CMP is a new event type here and a
decoder beside this module."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from consent_svc.cmp import didomi, gpp, records, tcf
from consent_svc.cmp.bits import DecodeError
from consent_svc.cmp.types import (
    ConsentRecordsEvent,
    DidomiEventCreated,
    DidomiEventUpdated,
    DidomiNoChoice,
    GppStringEvent,
    InboundEvent,
    TcfStringEvent,
)
from consent_svc.consents.types import ConsentBatch, Notice, Source, Status
from consent_svc.exceptions import FieldError, Invalid
from consent_svc.policies.types import Policies

# GPP opt-out fields: 1 opted out, 2 did not opt out (a choice to allow), 0 not applicable.
OPT_OUT: dict[int, Status] = {1: "denied", 2: "granted"}


def records_of(
    event: InboundEvent, source: str, default_region: str | None, policies: Policies
) -> ConsentBatch:
    if isinstance(event, ConsentRecordsEvent):
        return event.data
    if isinstance(event, TcfStringEvent):
        return _tcf(event, source, policies)
    if isinstance(event, GppStringEvent):
        return _gpp(event, source, default_region, policies)
    if isinstance(event, DidomiEventCreated | DidomiEventUpdated):
        return didomi.to_batch(event, source, default_region, policies)
    if isinstance(event, DidomiNoChoice):
        return ConsentBatch(records=[])
    raise AssertionError(f"no adapter for {type(event).__name__}")


def _invalid(field: str, exc: DecodeError, title: str) -> Invalid:
    return Invalid(f"{field}: {exc}", errors=[FieldError(field, str(exc))], title=title)


def _tcf(event: TcfStringEvent, source: str, policies: Policies) -> ConsentBatch:
    data = event.data
    try:
        decoded = tcf.decode(data.tc_string)
    except DecodeError as exc:
        raise _invalid("data.tc_string", exc, "Invalid TC string") from None
    origin = Source(
        system=f"cmp:{source}",
        touchpoint="cmp",
        method="tcf_v2",
        notice=Notice(id="iab-tcf-gvl", version=str(decoded.VendorListVersion)),
        cmp=f"iab-cmp-{decoded.CmpId}",
    )
    collected_at = data.collected_at or decoded.last_updated
    proof = {"tc_string": data.tc_string, "tcf_policy_version": decoded.TcfPolicyVersion}
    return records.batch(
        data.subject, _tcf_choices(decoded, policies), collected_at, data.region, origin, proof
    )


def _tcf_choices(decoded: tcf.TCString, policies: Policies) -> dict[str, Status]:
    if policies.tcf is None:
        raise Invalid("This policy set maps no TCF purposes (policies/tcf.toml)", title="TCF not configured")
    consented = set(decoded.PurposesConsent) | ({1} if decoded.PurposeOneTreatment else set())
    return {
        entry.purpose: "granted" if set(entry.tcf_purposes) <= consented else "denied"
        for entry in policies.tcf.map
    }


def _gpp(event: GppStringEvent, source: str, default_region: str | None, policies: Policies) -> ConsentBatch:
    data = event.data
    try:
        decoded = gpp.decode(data.gpp_string)
    except DecodeError as exc:
        raise _invalid("data.gpp_string", exc, "Invalid GPP string") from None
    region = data.region or default_region
    if region is None:
        raise Invalid(
            "data.region: required, since the source has no default_region",
            errors=[FieldError("data.region", "required: the source has no default_region")],
        )
    mapping = policies.gpp
    if mapping is None:
        raise Invalid("This policy set maps no GPP sections (policies/gpp.toml)", title="GPP not configured")
    sections = decoded.sections
    choices: dict[str, Status] = {}
    if "tcfeuv2" in sections:
        choices.update(_tcf_choices(msgspec.convert(sections["tcfeuv2"], tcf.TCString), policies))
    usp = sections.get("uspv1")
    if usp and mapping.uspv1_opt_out_sale and usp["OptOutSale"] in "YN":
        choices[mapping.uspv1_opt_out_sale] = "denied" if usp["OptOutSale"] == "Y" else "granted"
    for name in ("usnat", "usca"):  # the state's own section last: it wins
        section = sections.get(name)
        if section is None:
            continue
        for field, purpose in mapping.opt_outs.items():
            if section.get(field) in OPT_OUT:
                choices[purpose] = OPT_OUT[section[field]]
        # A known child's refused consent (1) beats "did not opt out": those purposes are the opt-outs' own.
        refusals = mapping.known_child.get(name, [])
        for value, fields in zip(section["KnownChildSensitiveDataConsents"], refusals, strict=False):
            if value == 1:
                choices.update({mapping.opt_outs[f]: "denied" for f in fields if f in mapping.opt_outs})
        sensitive = section["SensitiveDataProcessing"]
        if mapping.sensitive and any(v in (1, 2) for v in sensitive):
            choices[mapping.sensitive] = "denied" if 1 in sensitive else "granted"
        if section["Gpc"]:
            choices.update(dict.fromkeys(mapping.gpc, "denied"))
    # A valid string may state nothing that applies (every field 0): accepted, and no record made.
    origin = Source(system=f"cmp:{source}", touchpoint="cmp", method="gpp")
    collected_at = data.collected_at or datetime.now(UTC)
    return records.batch(data.subject, choices, collected_at, region, origin, {"gpp_string": data.gpp_string})
