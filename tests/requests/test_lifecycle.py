"""The request lifecycle as declared (desk.LIFECYCLE): what a legal team relies on without reading the code."""

from __future__ import annotations

from consent_svc.requests.desk import CLOSED, LIFECYCLE, OPEN
from consent_svc.webhooks.types import EVENT_TYPES


def test_a_closed_request_never_changes_status_again():
    moving_from_closed = [
        name
        for name, step in LIFECYCLE.items()
        if step.to is not None and set(step.from_states) & set(CLOSED)
    ]
    assert moving_from_closed == []


def test_only_verified_requests_are_worked_on_and_completed_but_opt_outs():
    """An access or deletion request is carried out only once the requester is verified; an opt-out needs no
    verification (CCPA regs 7026(d)) and is the one step that completes from receipt."""
    assert set(LIFECYCLE["start"].from_states) == {"verified"}
    assert set(LIFECYCLE["complete"].from_states) == {"verified", "in_progress"}
    unverified = {"received", "verifying"}
    completing_unverified = [
        name
        for name, step in LIFECYCLE.items()
        if step.to == "completed" and set(step.from_states) & unverified
    ]
    assert completing_unverified == ["complete_opt_out"]


def test_every_status_is_reached_and_every_event_is_one_a_subscriber_can_ask_for():
    reached = {"received", "verifying"} | {step.to for step in LIFECYCLE.values() if step.to is not None}
    assert reached == set(OPEN) | set(CLOSED)
    assert {step.event for step in LIFECYCLE.values() if step.event} <= set(EVENT_TYPES)
