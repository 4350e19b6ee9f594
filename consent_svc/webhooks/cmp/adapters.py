"""What a CMP's event means for the ledger: each event type becomes a batch of consent records in the ledger's
own format (so one validation and one write path serve every CMP). A new CMP is a new event type here and a
decoder beside this module."""

from __future__ import annotations

from consent_svc.consents.types import ConsentBatch, ConsentRecordIn, Notice, Source
from consent_svc.errors import FieldError, InvalidInput
from consent_svc.policies.types import Policies
from consent_svc.webhooks.cmp import tcf
from consent_svc.webhooks.cmp.bits import DecodeError
from consent_svc.webhooks.types import ConsentRecordsEvent, InboundEvent, TcfStringEvent


def records_of(event: InboundEvent, source: str, policies: Policies) -> ConsentBatch:
    if isinstance(event, ConsentRecordsEvent):
        return event.data
    if isinstance(event, TcfStringEvent):
        return _tcf(event, source, policies)
    raise AssertionError(f"no adapter for {type(event).__name__}")


def _tcf(event: TcfStringEvent, source: str, policies: Policies) -> ConsentBatch:
    data = event.data
    try:
        decoded = tcf.decode(data.tc_string)
    except DecodeError as exc:
        raise InvalidInput(
            f"data.tc_string: {exc}",
            errors=[FieldError("data.tc_string", str(exc))],
            title="Invalid TC string",
        ) from None
    if policies.tcf is None:
        raise InvalidInput(
            "This policy set maps no TCF purposes (policies/tcf.toml)", title="TCF not configured"
        )
    consented = set(decoded.PurposesConsent) | ({1} if decoded.PurposeOneTreatment else set())
    origin = Source(
        system=f"cmp:{source}",
        touchpoint="cmp",
        method="tcf_v2",
        notice=Notice(id="iab-tcf-gvl", version=str(decoded.VendorListVersion)),
        cmp=f"iab-cmp-{decoded.CmpId}",
    )
    collected_at = data.collected_at or decoded.last_updated
    # The raw string is kept with each record, encrypted, as the proof of what the CMP said.
    proof = {"tc_string": data.tc_string, "tcf_policy_version": decoded.TcfPolicyVersion}
    return ConsentBatch(
        records=[
            ConsentRecordIn(
                subject=data.subject,
                purpose=entry.purpose,
                status="granted" if set(entry.tcf_purposes) <= consented else "denied",
                collected_at=collected_at,
                region=data.region,
                source=origin,
                proof=proof,
            )
            for entry in policies.tcf.map
        ]
    )
