"""Identifier normalization, masking, and how a batch's identifiers map onto subjects (pure, no I/O)."""

from __future__ import annotations

import re
from uuid import UUID

import phonenumbers

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class IdentifierError(ValueError):
    """The message names what is wrong, never the value."""


def normalize(kind: str, value: str, default_region: str | None = None) -> str:
    """The form an identifier is hashed and stored in: equal identifiers normalize equal."""
    value = value.strip()
    if kind == "email":
        value = value.lower()
        if len(value) > 254 or not EMAIL.match(value):
            raise IdentifierError("not an e-mail address")
        return value
    if kind == "phone":
        try:
            number = phonenumbers.parse(value, default_region.upper() if default_region else None)
        except phonenumbers.NumberParseException:
            raise IdentifierError(
                "not a phone number (give it in international form, or a default_region for a national number)"
            ) from None
        if not phonenumbers.is_valid_number(number):
            raise IdentifierError("not a valid phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if not value:
        raise IdentifierError("empty identifier")
    return value


def mask(kind: str, value: str) -> str:
    """Enough to recognize an identifier on screen, not enough to learn it."""
    if kind == "email":
        local, _, domain = value.partition("@")
        name, _, tld = domain.rpartition(".")
        return f"{local[:1]}***@{name[:1]}***.{tld}"
    if kind == "phone":
        return value[:3] + "*" * max(len(value) - 5, 0) + value[-2:]
    return value[:2] + "***" if len(value) > 6 else "***"


class SubjectConflict(Exception):
    """Records (by index in the batch) whose identifiers belong to two existing subjects."""

    def __init__(self, indexes: list[int], subjects: list[UUID]):
        self.indexes, self.subjects = indexes, subjects
        super().__init__(indexes, subjects)


def group_records(
    identifier_sets: list[list[bytes]], known: dict[bytes, UUID]
) -> tuple[list[int], list[UUID | None]]:
    """Which records of a batch belong to one subject, and which existing subject (if any) each group is.

    Records sharing an identifier are one subject; a group touching two existing subjects is a conflict
    (SubjectConflict with the indexes of the records involved): subjects are never merged silently.
    Returns (group of each record, existing subject of each group or None for a new one).
    """
    if all(len(hashes) == 1 for hashes in identifier_sets):
        return _group_single(identifier_sets, known)
    parent: dict[bytes, bytes] = {}

    def find(h: bytes) -> bytes:
        root = h
        while parent[root] != root:
            root = parent[root]
        while parent[h] != root:  # path compression
            parent[h], h = root, parent[h]
        return root

    for hashes in identifier_sets:
        for h in hashes:
            parent.setdefault(h, h)
        first = find(hashes[0])
        for h in hashes[1:]:
            other = find(h)
            if other != first:
                parent[other] = first

    group_of_root: dict[bytes, int] = {}
    groups: list[int] = []
    for hashes in identifier_sets:
        groups.append(group_of_root.setdefault(find(hashes[0]), len(group_of_root)))

    subjects: list[UUID | None] = [None] * len(group_of_root)
    first_index: list[int] = [-1] * len(group_of_root)
    for index, hashes in enumerate(identifier_sets):
        group = groups[index]
        for h in hashes:
            subject = known.get(h)
            if subject is None:
                continue
            if subjects[group] is None:
                subjects[group], first_index[group] = subject, index
            elif subjects[group] != subject:
                raise SubjectConflict(sorted({first_index[group], index}), [subjects[group], subject])
    return groups, subjects


def _group_single(
    identifier_sets: list[list[bytes]], known: dict[bytes, UUID]
) -> tuple[list[int], list[UUID | None]]:
    """The common case, one identifier per record: a group is an identifier, and no conflict can arise."""
    group_of: dict[bytes, int] = {}
    groups = [group_of.setdefault(hashes[0], len(group_of)) for hashes in identifier_sets]
    return groups, [known.get(h) for h in group_of]
