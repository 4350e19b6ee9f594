"""The one shape every CMP event ends in: a batch of consent records in the ledger's own format."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from consent_svc.consents.types import ConsentBatch, ConsentRecordIn, Source, Status, SubjectIdentifiers


def batch(
    subject: SubjectIdentifiers,
    choices: dict[str, Status],
    collected_at: datetime,
    region: str,
    origin: Source,
    proof: dict[str, Any],
) -> ConsentBatch:
    """One record per purpose the CMP decided; what it sent kept with each, encrypted, as proof."""
    return ConsentBatch(
        records=[
            ConsentRecordIn(
                subject=subject,
                purpose=purpose,
                status=status,
                collected_at=collected_at,
                region=region,
                source=origin,
                proof=proof,
            )
            for purpose, status in choices.items()
        ]
    )
