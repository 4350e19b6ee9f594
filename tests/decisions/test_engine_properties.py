"""Properties of the decision engine over every regime, purpose and context (pure, no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from consent_svc.decisions.engine import ConsentState, Context, Rulebook
from consent_svc.policies.load import load_policies

POLICIES = load_policies(Path(__file__).parents[2] / "policies")
BOOK = Rulebook(POLICIES)
REGIONS = sorted(POLICIES.region_regime) + ["ZZ", "AQ", "US-WA"]
PURPOSES = sorted(POLICIES.purpose_ids)
AT = datetime(2026, 11, 23, 12, tzinfo=UTC)

moments = st.datetimes(
    min_value=datetime(2019, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
contexts = st.builds(
    Context,
    gpc=st.booleans(),
    age=st.none() | st.integers(min_value=0, max_value=30),
    sensitive=st.booleans(),
    existing_customer=st.booleans(),
)


def state(status: str, actor: str = "subject", at: datetime = AT) -> ConsentState:
    return ConsentState(uuid.uuid4(), status, at - timedelta(days=1), None, actor)


@settings(max_examples=1000)
@given(region=st.sampled_from(REGIONS), purpose=st.sampled_from(PURPOSES), context=contexts, at=moments)
def test_a_withdrawal_or_refusal_always_denies_a_purpose_that_needs_a_basis(region, purpose, context, at):
    for status in ("withdrawn", "denied"):
        outcome = BOOK.decide(region, purpose, context, {purpose: state(status, at=at)}, at)
        if outcome.reason != "not_required":
            assert not outcome.allowed, (region, purpose, context, status, outcome)


@settings(max_examples=1000)
@given(
    region=st.sampled_from(REGIONS),
    purpose=st.sampled_from(PURPOSES),
    context=contexts,
    status=st.sampled_from([None, "granted", "denied", "withdrawn"]),
    actor=st.sampled_from(["subject", "parent"]),
    at=moments,
)
def test_gpc_never_turns_a_denial_into_an_allow(region, purpose, context, status, actor, at):
    states = {} if status is None else {purpose: state(status, actor, at)}
    without = BOOK.decide(
        region, purpose, Context(False, context.age, context.sensitive, context.existing_customer), states, at
    )
    with_gpc = BOOK.decide(
        region, purpose, Context(True, context.age, context.sensitive, context.existing_customer), states, at
    )
    assert with_gpc.allowed <= without.allowed, (region, purpose, context, status, without, with_gpc)


@settings(max_examples=1000)
@given(
    region=st.sampled_from(REGIONS),
    purpose=st.sampled_from(PURPOSES),
    context=contexts,
    age=st.integers(min_value=0, max_value=17),
    status=st.sampled_from([None, "granted"]),
    actor=st.sampled_from(["subject", "parent"]),
    at=moments,
)
def test_a_known_minor_is_never_allowed_what_an_adult_is_denied(
    region, purpose, context, age, status, actor, at
):
    states = (
        {}
        if status is None
        else {purpose: state(status, actor, at), "sensitive_data": state(status, actor, at)}
    )
    adult = BOOK.decide(
        region, purpose, Context(context.gpc, 30, context.sensitive, context.existing_customer), states, at
    )
    minor = BOOK.decide(
        region, purpose, Context(context.gpc, age, context.sensitive, context.existing_customer), states, at
    )
    assert minor.allowed <= adult.allowed, (region, purpose, age, status, actor, adult, minor)
