"""Validating a check: its purpose and region known, its identifiers reduced to look-up hashes."""

from __future__ import annotations

from consent_svc.consents.ledger import RecordRules, default_country, hash_identifiers
from consent_svc.decisions.types import CheckRequest, CheckRow, ReplayRequest
from consent_svc.errors import each_valid
from consent_svc.exceptions import FieldError, Invalid
from consent_svc.policies.load import UNKNOWN_REGION, canonical_region


def prepare(
    request: CheckRequest | ReplayRequest, rules: RecordRules, api_key_id: str, item: int | None = None
) -> CheckRow:
    """Invalid (422) naming each bad field (under `items[i].` for a batch item); an unknown subject is
    not an error."""
    region = canonical_region(request.region) if request.region is not None else UNKNOWN_REGION
    hashes: list[bytes] = []
    errors: list[FieldError] = []
    if request.subject.identifiers is not None:
        hashed, errors = hash_identifiers(
            request.subject.identifiers, rules.lookup_hash, "subject.identifiers", default_country(region)
        )
        hashes = [h for (_, _, h) in hashed]
    if request.purpose not in rules.purposes:
        errors.append(FieldError("purpose", f"unknown purpose `{request.purpose}` (see GET /v1/purposes)"))
    if region is None:
        errors.append(FieldError("region", "not an ISO 3166-1 alpha-2 or ISO 3166-2 code (ZZ: unknown)"))
    if errors:
        where = "" if item is None else f"items[{item}]."
        errors = [FieldError(where + e.field, e.message) for e in errors]
        raise Invalid(f"{errors[0].field}: {errors[0].message}", errors=errors)
    return CheckRow(hashes, request.subject.id, request.purpose, region, request.context, api_key_id)


def prepare_batch(items: list[CheckRequest], rules: RecordRules, api_key_id: str) -> list[CheckRow]:
    return each_valid(items, lambda i, item: prepare(item, rules, api_key_id, i), "nothing was decided")
