"""Taking a CMP's signed message: verify, decode, store its records as one batch, answer with their ids.

The signature is checked before the body is parsed. A `webhook-id` seen before from the same source gets the
first answer again and stores nothing (CMPs retry until they see a 2xx): the Idempotency-Key mechanism of
`POST /v1/consents`, keyed by source and message id.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from datetime import UTC, datetime

import asyncpg
import msgspec
from opentelemetry import metrics

from consent_svc import crypto, idempotency, signing
from consent_svc.audit import store as audit_store
from consent_svc.cmp import adapters, sources
from consent_svc.cmp.types import SOURCE_NAME, DidomiEvent, InboundEvent
from consent_svc.consents.ledger import RecordRules, prepare_batch, record_batch
from consent_svc.errors import Forbidden, SignatureRefused
from consent_svc.exceptions import FieldError, Invalid
from consent_svc.policies.types import Policies

log = logging.getLogger("consent_svc.cmp")

# Refused messages: counted by reason (never by content), and logged without their body.
REFUSED = metrics.get_meter("consent_svc").create_counter(
    "consent_svc.inbound.refused", description="Inbound webhook messages refused, by reason"
)
DECODE = msgspec.json.Decoder(InboundEvent)
# Checked against for an unknown source, so that its refusal takes as long as a bad signature's.
DECOY_KEY = os.urandom(signing.SECRET_BYTES)


def refused(reason: str, source: str | None) -> SignatureRefused:
    """`source`: a registered source's name, or None. The path's name is the caller's to choose until it
    matches a source: logged, it would let anyone write what they like (newlines, megabytes) into the log."""
    REFUSED.add(1, {"reason": reason})
    if source is None:
        log.warning("inbound message for an unknown source refused")
    else:
        log.warning("inbound message for source %s refused: %s", source, reason)
    return SignatureRefused(f"The message's signature was refused ({reason}).")


async def receive(
    pool: asyncpg.Pool,
    keys: crypto.Keys,
    rules: RecordRules,
    policies: Policies,
    source: str,
    headers: dict[str, str],
    body: bytes,
) -> tuple[int, bytes, bool]:
    """(status, body, replayed): 202 with the stored records' receipts."""
    found = None
    if SOURCE_NAME.fullmatch(source):  # else no source can have it (and PostgreSQL refuses a NUL)
        async with pool.acquire() as conn:
            found = await sources.verifiers(conn, keys, source)
    if found is None:  # the same answer, in the same time, as a bad signature: names are not to be probed
        try:
            signing.verify([DECOY_KEY], headers, body, time.time())
        except signing.SignatureError:
            pass
        raise refused("unknown_source", None)
    try:
        message_id = signing.verify(found.keys, headers, body, time.time())
    except signing.SignatureError as exc:
        raise refused(exc.code, source) from None
    if len(message_id) > 255:
        raise Invalid("webhook-id: at most 255 characters", errors=[FieldError("webhook-id", "too long")])
    if found.disabled:
        REFUSED.add(1, {"reason": "source_disabled"})
        raise Forbidden(f"Source `{source}` is disabled.", title="Source disabled")
    event = DECODE.decode(body)  # 400 (not JSON) or 422 naming the field, as for every body
    if isinstance(event, DidomiEvent) and found.kind != "didomi":
        raise Invalid(
            f"type: `{event.__struct_config__.tag}` is Didomi's format; this source is of kind `{found.kind}`",
            errors=[FieldError("type", "Didomi's format: register the source with kind `didomi`")],
        )
    batch = adapters.records_of(event, source, found.default_region, policies)
    records = prepare_batch(batch, rules, datetime.now(UTC))
    actor = f"source:{source}"
    claim = idempotency.Claim(
        actor,
        hashlib.sha256(message_id.encode()).digest(),
        hmac.digest(rules.idempotency_key, body, "sha256"),
        rules.idempotency_ttl_hours,
        kind="webhook-id",
    )
    received = audit_store.entry(
        "webhook.received",
        actor,
        {
            "records": len(records),
            "source": source,
            "type": event.__struct_config__.tag,
            "webhook_id": message_id,
        },
    )
    return await record_batch(pool, keys, records, actor, claim, status=202, entries=[received])
