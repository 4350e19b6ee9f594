"""Writing to the ledger: validate a batch against the policies, then store it all-or-nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from consent_svc import crypto, idempotency
from consent_svc.audit import store as audit_store
from consent_svc.consents.identity import IdentifierError, SubjectConflict, normalize
from consent_svc.consents.store import PreparedRecord, SubjectErased, insert_records, source_id
from consent_svc.consents.types import BatchReceipt, ConsentBatch, ConsentRecordIn, Identifier, Source, Status
from consent_svc.errors import each_valid
from consent_svc.exceptions import Conflicting, FieldError, Invalid, Unrecorded, out_of_range
from consent_svc.policies.load import UNKNOWN_REGION, canonical_region
from consent_svc.policies.types import Policies
from consent_svc.settings import Settings

RACE_RETRIES = 5


class RecordRules(msgspec.Struct, frozen=True):
    """What a record is checked against beyond its type."""

    purposes: frozenset[str]
    lookup_hash: crypto.LookupHasher
    fingerprint_key: bytes
    idempotency_key: bytes
    clock_skew: timedelta
    idempotency_ttl_hours: int

    @classmethod
    def of(cls, policies: Policies, keys: crypto.Keys, settings: Settings) -> RecordRules:
        return cls(
            policies.purpose_ids,
            crypto.LookupHasher(keys.lookup_secret),
            keys.derive("record fingerprint"),
            keys.derive("idempotency request"),
            timedelta(seconds=settings.clock_skew_seconds),
            settings.idempotency_ttl_hours,
        )


def default_country(region: str | None) -> str | None:
    """The country a phone number without its own is read in: the record's or check's region's."""
    return region[:2] if region and region != UNKNOWN_REGION else None


def hash_identifiers(
    identifiers: list[Identifier],
    lookup_hash: crypto.LookupHasher,
    where: str,
    default_region: str | None = None,
) -> tuple[list[tuple[str, str, bytes]], list[FieldError]]:
    out, errors = [], []
    for j, ident in enumerate(identifiers):
        try:
            value = normalize(ident.type, ident.value, ident.default_region or default_region)
        except IdentifierError as exc:
            errors.append(FieldError(f"{where}[{j}].value", str(exc)))
            continue
        out.append((ident.type, value, lookup_hash(ident.type, value)))
    return out, errors


def hash_typed(kind: str, value: str, lookup_hash: crypto.LookupHasher) -> tuple[str, str, bytes] | None:
    """One identifier typed into a form: (kind, normalized value, look-up hash), or None if it is not valid."""
    try:
        identifier = msgspec.convert({"type": kind, "value": value.strip()[:320] or "-"}, Identifier)
    except msgspec.ValidationError:
        return None
    hashed, errors = hash_identifiers([identifier], lookup_hash, "value")
    return None if errors else hashed[0]


def prepare_record(
    record: ConsentRecordIn, rules: RecordRules, now: datetime, where: str = ""
) -> PreparedRecord:
    """Normalize and check one record; Invalid naming every bad field (prefixed by `where`)."""
    errors: list[FieldError] = []
    instants = [(f"{where}collected_at", record.collected_at), (f"{where}expires_at", record.expires_at)]
    if out := out_of_range(instants):
        raise Invalid(f"{out[0].field}: out of range", errors=out[:1])
    if record.purpose not in rules.purposes:
        errors.append(
            FieldError(f"{where}purpose", f"unknown purpose `{record.purpose}` (see GET /v1/purposes)")
        )
    region = canonical_region(record.region)
    if region is None:
        errors.append(FieldError(f"{where}region", "not an ISO 3166-1 alpha-2 or ISO 3166-2 code"))
    if record.collected_at > now + rules.clock_skew:
        errors.append(FieldError(f"{where}collected_at", "is in the future"))
    if record.expires_at is not None and record.expires_at <= record.collected_at:
        errors.append(FieldError(f"{where}expires_at", "must be after collected_at"))
    identifiers, id_errors = hash_identifiers(
        record.subject.identifiers, rules.lookup_hash, f"{where}subject.identifiers", default_country(region)
    )
    errors.extend(id_errors)
    if errors:
        raise Invalid(errors=errors)
    return prepared(
        identifiers,
        record.purpose,
        record.status,
        record.collected_at.astimezone(UTC),
        region,
        record.source,
        rules,
        record.expires_at.astimezone(UTC) if record.expires_at else None,
        record.proof,
    )


def prepared(
    identifiers: list[tuple[str, str, bytes]],
    purpose: str,
    status: Status,
    collected_at: datetime,
    region: str,
    source: Source,
    rules: RecordRules,
    expires_at: datetime | None = None,
    proof: dict[str, Any] | None = None,
) -> PreparedRecord:
    """A validated record ready for insert_records. The service's own records (a GPC signal taken as an
    opt-out) come here directly, naming their subject by a look-up hash it already has."""
    encoded_proof = msgspec.json.encode(proof, order="sorted") if proof is not None else None
    source_key = source_id(source)
    content = msgspec.json.encode(
        [purpose, status, collected_at, region, source_key, expires_at, encoded_proof]
    )
    return PreparedRecord(
        identifiers=identifiers,
        purpose=purpose,
        status=status,
        collected_at=collected_at,
        region=region,
        source=source,
        source_id=source_key,
        expires_at=expires_at,
        proof=encoded_proof,
        fingerprint=crypto.keyed_digest(rules.fingerprint_key, content),
    )


def prepare_batch(batch: ConsentBatch, rules: RecordRules, now: datetime) -> list[PreparedRecord]:
    return each_valid(
        batch.records,
        lambda i, record: prepare_record(record, rules, now, where=f"records[{i}]."),
        "nothing was stored",
    )


async def record_batch(
    pool: asyncpg.Pool,
    keys: crypto.Keys,
    records: list[PreparedRecord],
    actor: str,
    claim: idempotency.Claim | None = None,
    status: int = 201,
    entries: Sequence[tuple] = (),
) -> tuple[int, bytes, bool]:
    """Store every record or none; returns the status, the encoded BatchReceipt and whether it is a replay.
    `entries`: audit entries of the action that brought the records (an inbound webhook), in the same commit.

    Committed before it returns: an answer given is an answer kept.
    """
    for attempt in range(RACE_RETRIES):
        try:
            async with pool.acquire() as conn, conn.transaction():
                if claim is not None and (replay := await idempotency.claim(conn, claim)) is not None:
                    return replay.status_code, replay.body, True
                receipts = await insert_records(conn, keys, records, actor)
                if entries:
                    await audit_store.append(conn, entries)
                body = msgspec.json.encode(BatchReceipt(records=receipts))
                if claim is not None:
                    await idempotency.store(conn, claim, status, body)
            return status, body, False
        except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
            # A concurrent batch linked the same new identifier or stored the same record first: the
            # retry sees its work and builds on it.
            if attempt == RACE_RETRIES - 1:
                raise Unrecorded("Concurrent writes for the same subjects kept colliding; retry") from None
        except SubjectConflict as exc:
            where = " and ".join(f"records[{i}]" for i in exc.indexes)
            raise Conflicting(
                f"{where}: identifiers belong to two different subjects ({', '.join(map(str, exc.subjects))}); "
                "subjects are not merged",
                title="Identifiers belong to different subjects",
                errors=[
                    FieldError(
                        f"records[{i}].subject.identifiers",
                        "names identifiers of subjects " + " and ".join(map(str, exc.subjects)),
                    )
                    for i in exc.indexes
                ],
            ) from None
        except SubjectErased:
            raise Conflicting("A record names an erased subject", title="Subject erased") from None
    raise AssertionError("unreachable")
