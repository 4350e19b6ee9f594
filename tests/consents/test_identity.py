"""Identifier normalization and subject grouping: pure functions, tables of cases and properties."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent_svc.consents.identity import IdentifierError, SubjectConflict, group_records, mask, normalize


@pytest.mark.parametrize(
    ("kind", "value", "region", "expected"),
    [
        ("email", "  Ann@Example.COM ", None, "ann@example.com"),
        ("phone", "+1 (415) 555-0132", None, "+14155550132"),
        ("phone", "415-555-0132", "US", "+14155550132"),
        ("phone", "030 1234567", "de", "+49301234567"),
        ("phone", "+33 6 12 34 56 78", None, "+33612345678"),
        ("customer_id", "  C-42 ", None, "C-42"),
        ("x-crm", "AbC", None, "AbC"),
    ],
)
def test_normalize(kind, value, region, expected):
    assert normalize(kind, value, region) == expected


@pytest.mark.parametrize(
    ("kind", "value", "region"),
    [
        ("email", "no-at-sign", None),
        ("email", "a@b", None),
        ("email", "a b@c.de", None),
        ("phone", "hello", "US"),
        ("phone", "12", "US"),
        ("phone", "415-555-0132", None),
        ("customer_id", "   ", None),
    ],
)
def test_normalize_refuses_without_echoing_the_value(kind, value, region):
    with pytest.raises(IdentifierError) as caught:
        normalize(kind, value, region)
    assert value.strip() == "" or value not in str(caught.value)


emails = st.from_regex(r"[A-Za-z0-9._%+-]{1,20}@[A-Za-z0-9-]{1,10}\.[A-Za-z]{2,6}", fullmatch=True)


@given(emails, st.text(" \t", max_size=3), st.text(" \t", max_size=3))
def test_email_normalization_is_idempotent_and_ignores_case_and_padding(email, left, right):
    once = normalize("email", left + email + right)
    assert normalize("email", once) == once == normalize("email", email.upper())


@given(st.integers(min_value=2012000000, max_value=9899999999))
def test_phone_normalization_is_idempotent(national):
    try:
        once = normalize("phone", str(national), "US")
    except IdentifierError:
        return
    assert normalize("phone", once) == once and once.startswith("+1")


def test_mask_hides_most_of_the_value():
    assert mask("email", "ann.smith@example.com") == "a***@e***.com"
    assert mask("phone", "+14155550132") == "+14*******32"
    assert mask("customer_id", "C-1") == "***"


A, B, C, D = (bytes([i]) * 32 for i in range(4))
S1, S2 = uuid.uuid4(), uuid.uuid4()


def test_records_sharing_an_identifier_form_one_group():
    groups, subjects = group_records([[A], [A, B], [C, B], [D]], {})
    assert groups == [0, 0, 0, 1]
    assert subjects == [None, None]


def test_group_takes_the_existing_subject_of_any_member():
    groups, subjects = group_records([[A], [A, B]], {B: S1})
    assert subjects[groups[0]] == S1


def test_group_touching_two_subjects_is_a_conflict_naming_the_records():
    with pytest.raises(SubjectConflict) as caught:
        group_records([[A, C], [B, C]], {A: S1, B: S2})
    assert caught.value.indexes == [0, 1]


def test_one_identifier_per_record_groups_by_identifier():
    groups, subjects = group_records([[A], [B], [A]], {B: S1})
    assert groups == [0, 1, 0]
    assert subjects == [None, S1]
