"""Didomi's webhook format (developers.didomi.io, "Webhooks"; Consents API v2 event schema): `event.created`
and `event.updated` become consent records, one per mapped purpose the user decided (policies/didomi.toml).

Didomi itself authenticates with OAuth or its fixed egress address, not an HMAC signature: a `didomi` source
still takes Standard Webhooks-signed messages, so Didomi's deliveries reach it through a signing relay.
"""

from __future__ import annotations

from consent_svc.cmp import records
from consent_svc.cmp.types import DidomiEventCreated, DidomiEventUpdated
from consent_svc.consents.types import ConsentBatch, Identifier, Source, Status, SubjectIdentifiers
from consent_svc.exceptions import FieldError, Invalid
from consent_svc.policies.load import canonical_region
from consent_svc.policies.types import Policies


def to_batch(
    event: DidomiEventCreated | DidomiEventUpdated,
    source: str,
    default_region: str | None,
    policies: Policies,
) -> ConsentBatch:
    mapping = policies.didomi
    if mapping is None:
        raise Invalid(
            "This policy set maps no Didomi purposes (policies/didomi.toml)", title="Didomi not configured"
        )
    entity = event.parameters.new_entity if isinstance(event, DidomiEventUpdated) else event.parameters.entity
    field = "parameters.new_entity" if isinstance(event, DidomiEventUpdated) else "parameters.entity"
    if entity is None:
        raise Invalid(f"{field}: required", errors=[FieldError(field, "required")])
    if entity.created_at is None:
        raise Invalid(
            f"{field}.created_at: required (when the choice was made)",
            errors=[FieldError(f"{field}.created_at", "required")],
        )
    user = entity.user
    identifiers = [
        Identifier(type=kind, value=value)
        for kind, value in (
            (mapping.organization_user_id_type, user.organization_user_id),
            (mapping.didomi_user_id_type, user.id),
        )
        if value
    ]
    if not identifiers:
        raise Invalid(
            f"{field}.user: neither id nor organization_user_id",
            errors=[FieldError(f"{field}.user", "no identifier")],
        )
    region = _region(user.country, user.region) or default_region
    if region is None:
        raise Invalid(
            f"{field}.user.country: required, since the source has no default_region",
            errors=[FieldError(f"{field}.user.country", "required")],
        )
    origin = Source(system=f"cmp:{source}", touchpoint="cmp", method="didomi_webhook", cmp="didomi")
    proof = {
        "didomi_event_id": entity.id,
        "regulation": event.regulation or entity.regulation,
        "tcfcs": entity.consents.tcfcs,
    }
    choices: dict[str, Status] = {
        mapping.purposes[p.id]: "granted" if p.enabled else "denied"
        for p in entity.consents.purposes
        if p.enabled is not None and p.id in mapping.purposes
    }
    if not choices:
        raise Invalid(
            f"{field}.consents.purposes: no choice for a purpose mapped in policies/didomi.toml",
            errors=[FieldError(f"{field}.consents.purposes", "no mapped choice")],
        )
    return records.batch(
        SubjectIdentifiers(identifiers=identifiers), choices, entity.created_at, region, origin, proof
    )


def _region(country: str | None, region: str | None) -> str | None:
    """Didomi's `region` is a subdivision of `country` (US + CA: California, not Canada): an ISO 3166-2 code
    once joined to it. A region that names no subdivision of that country leaves the country."""
    if country and region:
        code = region if "-" in region else f"{country}-{region}"
        if (joined := canonical_region(code)) is not None and joined.startswith(f"{country.upper()}-"):
            return joined
    return country
