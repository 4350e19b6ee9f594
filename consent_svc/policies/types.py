"""Policy files decoded into Structs: validation is the type."""

from __future__ import annotations

from typing import Annotated

import msgspec

PurposeId = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{1,63}$")]


class Purpose(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: PurposeId
    title: str
    description: str = ""


class PurposeCatalogue(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: str
    purposes: list[Purpose]


class Policies(msgspec.Struct, frozen=True):
    """Everything loaded from `policies/`, immutable once the service starts."""

    purposes: PurposeCatalogue

    @property
    def purpose_ids(self) -> frozenset[str]:
        return frozenset(p.id for p in self.purposes.purposes)
