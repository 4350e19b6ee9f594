"""The consent decision: pure, no I/O. One branch per reason code, its legal source beside it.

Inputs are the regime's rules (from `policies/`), the caller's context, and the subject's current consent
per purpose (the latest record by `collected_at`, whatever order records arrived in). The same function
answers live checks and replays; only where the state comes from differs.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal, NamedTuple
from uuid import UUID

import msgspec

from consent_svc.policies.types import Policies, PurposeRule, Regime

SENSITIVE_PURPOSE = "sensitive_data"
STRICTLY_NECESSARY = "strictly_necessary"

Reason = Literal[
    "consent_granted",
    "consent_denied",
    "consent_withdrawn",
    "consent_expired",
    "not_required",
    "no_consent_opt_in_required",
    "opt_out_default_allow",
    "soft_opt_in_existing_customer",
    "gpc_opt_out",
    "minor_opt_in_required",
    "parental_consent_required",
    "minor_prohibited",
    "sensitive_opt_in_required",
    "sensitive_use_limited",
    "sensitive_strictly_necessary_only",
    "sensitive_prohibited",
    "unknown_region_strict_default",
    "purpose_prohibited",
]
REASONS: tuple[str, ...] = Reason.__args__  # type: ignore[attr-defined]
# For people reading a decision months later (GET /v1/decisions/{id}, the console).
REASON_TEXT = {
    "consent_granted": "the subject consented to this purpose",
    "consent_denied": "the subject refused this purpose",
    "consent_withdrawn": "the subject withdrew consent to this purpose",
    "consent_expired": "the subject's consent has expired and the purpose needs consent",
    "not_required": "the purpose needs no consent (strictly necessary)",
    "no_consent_opt_in_required": "there is no consent and the regime requires opt-in",
    "opt_out_default_allow": "the regime allows this purpose until the subject opts out, and they have not",
    "soft_opt_in_existing_customer": "the subject is an existing customer and the regime allows a soft opt-in",
    "gpc_opt_out": "the request carried Global Privacy Control, which the regime treats as an opt-out",
    "minor_opt_in_required": "the subject is a known minor and the regime requires opt-in for minors",
    "parental_consent_required": "the subject is a known child and only a parent's consent counts",
    "minor_prohibited": "the regime prohibits this purpose for minors, consent or not",
    "sensitive_opt_in_required": "the use involves sensitive data, which needs explicit consent",
    "sensitive_use_limited": "the subject limited (or opted out of) the use of their sensitive data",
    "sensitive_strictly_necessary_only": "sensitive data may be used only where strictly necessary",
    "sensitive_prohibited": "the regime prohibits this purpose on sensitive data",
    "unknown_region_strict_default": "the region is unknown, so the strictest default (opt-in) applies",
    "purpose_prohibited": "the regime prohibits this purpose",
}


def explain(allowed: bool, reason: str, regime: str, purpose: str, region: str) -> str:
    verdict = "allowed" if allowed else "denied"
    return f"{purpose} in {region} {verdict} because {REASON_TEXT[reason]} (regime {regime})"


class Context(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    gpc: bool = False
    """The request carried Global Privacy Control (`Sec-GPC: 1`)."""
    age: Annotated[int, msgspec.Meta(ge=0, le=150)] | None = None
    """The subject's age as the caller actually knows it; null = unknown."""
    sensitive: bool = False
    """The use involves sensitive (special-category) data."""
    existing_customer: bool = False
    """The subject bought from us: enables the e-mail/SMS soft opt-in where the regime has one."""


class ConsentState(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """The record a purpose's consent currently rests on."""

    record_id: UUID
    status: str
    collected_at: datetime
    expires_at: datetime | None
    actor: str
    regranted_after_gpc: bool = False
    """A grant given after a Global Privacy Control signal had been recorded as this subject's refusal of the
    purpose (CCPA regs 7025(c)(3)). Read for checks that carry the signal; false otherwise."""


class Outcome(msgspec.Struct, frozen=True, gc=False):
    allowed: bool
    reason: str
    regime: str
    regime_version: str
    record_id: UUID | None


_STRICTNESS = {"opt_in": 1, "parent_consent": 2, "prohibited": 3}


class _Plan(NamedTuple):
    regime: Regime
    mapped: bool
    rule: PurposeRule
    max_age: timedelta | None
    minor: str | None


class Rulebook:
    """Policies indexed for the hot path: per regime and purpose, its rules newest first."""

    def __init__(self, policies: Policies):
        self.policies = policies
        self.version = policies.version
        self._rules: dict[tuple[str, str], list[PurposeRule]] = {}
        for regime in policies.regimes.values():
            for rule in regime.rules:
                for purpose in rule.purposes:
                    self._rules.setdefault((regime.id, purpose), []).append(rule)
        for rules in self._rules.values():
            rules.sort(key=lambda r: r.valid_from or date.min, reverse=True)
        self._plans: dict[tuple, _Plan] = {}

    def regime_at(self, region: str, day: date) -> tuple[Regime, bool]:
        """The regime in force for a region on a day, and whether the region is mapped at all."""
        return self.policies.regime_on(region, day)

    def rule(self, regime: Regime, purpose: str, day: date) -> PurposeRule:
        for rule in self._rules[(regime.id, purpose)]:
            if (rule.valid_from is None or rule.valid_from <= day) and (
                rule.valid_to is None or day < rule.valid_to
            ):
                return rule
        raise LookupError(f"{regime.id} has no rule for {purpose} on {day}")  # load_policies prevents this

    def purposes_needed(self, purpose: str, context: Context) -> tuple[str, ...]:
        """Which purposes' state a check reads: its own, and the sensitive-data choice if it is involved."""
        return (
            (purpose, SENSITIVE_PURPOSE) if context.sensitive and purpose != SENSITIVE_PURPOSE else (purpose,)
        )

    def _plan(self, region: str, purpose: str, day: date, age: int | None) -> _Plan:
        """What the rules say before looking at the subject's records; the same for most checks of a day."""
        key = (region, purpose, day, age)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 100_000:
                self._plans.clear()
            regime, mapped = self.regime_at(region, day)
            minor = _minor_rule(regime, region, purpose, age, day)
            plan = self._plans[key] = _Plan(
                regime, mapped, self.rule(regime, purpose, day), _max_age(regime, region), minor
            )
        return plan

    def decide(
        self, region: str, purpose: str, context: Context, states: dict[str, ConsentState], at: datetime
    ) -> Outcome:
        day = at.date()
        regime, mapped, rule, max_age, minor = self._plan(region, purpose, day, context.age)

        def out(allowed: bool, reason: str, state: ConsentState | None = None) -> Outcome:
            return Outcome(allowed, reason, regime.id, regime.version, state.record_id if state else None)

        state = _live(states.get(purpose), at, max_age) if states else None
        expired = state is None and purpose in states
        if rule.model == "prohibited":
            return out(False, "purpose_prohibited")
        if rule.model == "not_required":  # strictly necessary: no consent basis needed anywhere
            return out(True, "not_required")

        model = rule.model
        missing_reason = "no_consent_opt_in_required" if mapped else "unknown_region_strict_default"
        if minor == "prohibited":  # e.g. MD 14-4607(a)(4)-(5), OR HB 2008, CT SB 1295, DSA 28(2)
            return out(False, "minor_prohibited")
        if minor is not None:  # e.g. CCPA 1798.120(c), GDPR Art 8, COPPA: the minor's use becomes opt-in
            model, missing_reason = "opt_in", "minor_opt_in_required"

        if context.sensitive or purpose == SENSITIVE_PURPOSE:
            sensitive_minor = _minor_rule(regime, region, SENSITIVE_PURPOSE, context.age, day)
            refused = _sensitive(regime, purpose, states, at, max_age, sensitive_minor)
            if refused is not None:
                return out(False, refused)

        if state is not None and state.status == "denied":
            return out(False, "consent_denied", state)
        if state is not None and state.status == "withdrawn":  # GDPR 7(3): withdrawal stops use at once
            return out(False, "consent_withdrawn", state)

        gpc = regime.gpc
        if context.gpc and gpc is not None and gpc.honour_from <= day and purpose in gpc.purposes:
            # CCPA regs 7025(c)(3): the signal beats an earlier business-specific allow, but the business may
            # then ask for consent, and a grant given after the signal was recorded as the consumer's refusal
            # (binds_consumer) stands while the browser still sends it. Elsewhere a consent the person gave
            # prevails over the browser-wide signal.
            asked_after_conflict = gpc.binds_consumer and state is not None and state.regranted_after_gpc
            if state is None or (gpc.overrides_grant and not asked_after_conflict):
                return out(False, "gpc_opt_out", state)

        if state is not None:  # granted and live
            if minor == "parent_consent" and state.actor != "parent":
                return out(False, "parental_consent_required", state)
            return out(True, "consent_granted", state)
        if minor == "parent_consent":
            return out(False, "parental_consent_required")
        if model == "opt_out":
            return out(True, "opt_out_default_allow")
        if rule.soft_opt_in and context.existing_customer:  # ePD 13(2), PECR 22(3), POPIA 69(3)
            return out(True, "soft_opt_in_existing_customer")
        if expired and missing_reason == "no_consent_opt_in_required":
            return out(False, "consent_expired", states.get(purpose))
        return out(False, missing_reason)


def _live(state: ConsentState | None, at: datetime, max_age: timedelta | None) -> ConsentState | None:
    """A grant past its own expiry or the regime's refresh period counts as no record (regions.md C5)."""
    if state is None or state.status != "granted":
        return state
    if state.expires_at is not None and state.expires_at <= at:
        return None
    if max_age is not None and state.collected_at + max_age <= at:
        return None
    return state


def _max_age(regime: Regime, region: str) -> timedelta | None:
    days = regime.max_age_days_by_region.get(region) or regime.max_age_days_by_region.get(region[:2])
    days = days or regime.consent_max_age_days
    return timedelta(days=days) if days else None


def _minor_rule(regime: Regime, region: str, purpose: str, age: int | None, day: date) -> str | None:
    """The strictest minors rule binding this age, or None. Only an age the caller knows triggers one."""
    if age is None:
        return None
    strictest = None
    for rule in regime.minors:
        if purpose not in rule.purposes:
            continue
        if (rule.valid_from and day < rule.valid_from) or (rule.valid_to and day >= rule.valid_to):
            continue
        below = rule.below_by_region.get(region) or rule.below_by_region.get(region[:2]) or rule.below
        if age < below and (strictest is None or _STRICTNESS[rule.rule] > _STRICTNESS[strictest]):
            strictest = rule.rule
    return strictest


def _sensitive(
    regime: Regime,
    purpose: str,
    states: dict[str, ConsentState],
    at: datetime,
    max_age: timedelta | None,
    minor: str | None,
) -> str | None:
    """The reason sensitive data may not be used for this purpose, or None."""
    rule = regime.sensitive
    if rule is None:
        return None
    if purpose in rule.prohibited_for:  # DSA 26(3): no ads profiled on special-category data
        return "sensitive_prohibited"
    if rule.model == "strictly_necessary_only":  # MD 14-4607(a)(1): only where strictly necessary
        return None if purpose == STRICTLY_NECESSARY else "sensitive_strictly_necessary_only"
    if purpose == SENSITIVE_PURPOSE:
        return None  # the purpose's own record decides below
    choice = _live(states.get(SENSITIVE_PURPOSE), at, max_age)
    if rule.model == "opt_in":  # GDPR 9(2)(a), VA 59.1-578 and most states: explicit prior consent
        if choice is None or choice.status != "granted":
            return "sensitive_opt_in_required"
        if minor == "prohibited":
            return "minor_prohibited"
        if minor == "parent_consent" and choice.actor != "parent":  # a child's own consent does not count
            return "parental_consent_required"
        return None
    # limit_right (CCPA 1798.121) and opt_out (UT 13-61-302, IA 715D.4): allowed until the person objects
    if choice is not None and choice.status in ("denied", "withdrawn"):
        return "sensitive_use_limited"
    return None
