"""Legal due dates, pure: every region's `[dsar]` rules from `policies/` at fixed dates.

Expectations are worked out by hand from `shared/domain/regions.md` (section 0 and tables B1-B2), each case
one line: `region type received [identity=DAY] -> due [ack=DAY] [ext=DAY|none]` (ext: the due date after the
one extension, or none where the law allows none).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent_svc.policies.load import load_policies
from consent_svc.requests import deadlines

POLICIES = load_policies(Path(__file__).parents[2] / "policies")

CASES = """
# GDPR: one month, Reg. 1182/71 (same date, else the month's last day; a weekend or holiday rolls on)
DE access 2024-01-31 -> 2024-02-29                  # leap year: 31 Jan -> 29 Feb, a Thursday
DE access 2023-01-31 -> 2023-02-28                  # not a leap year
FR access 2026-03-31 -> 2026-04-30                  # April has no 31st
DE access 2026-02-28 -> 2026-03-30                  # 28 Mar 2026 is a Saturday -> Monday
FR access 2026-04-01 -> 2026-05-04                  # 1 May 2026 (Friday) is Labour Day in France -> Monday
DE access 2024-02-29 -> 2024-04-02                  # 29 Mar 2024 Good Friday, then the weekend, Easter Monday
DE access 2026-12-06 -> 2027-01-06                  # into the next year (6 Jan is a holiday only in some Länder)
DE deletion 2026-01-31 -> 2026-03-02 ext=2026-04-28 # due 28 Feb is a Saturday; +2 months: the earlier of 30 Apr and 28 Apr
IE portability 2026-08-31 -> 2026-09-30 ext=2026-11-30
# UK: the clock starts at the latest of receipt and identity information (Art 12A, from 2026-02-05)
GB access 2026-03-02 -> 2026-04-02
GB access 2026-03-02 identity=2026-03-10 -> 2026-04-10
GB access 2026-11-25 -> 2026-12-29                  # 25 Dec Friday, weekend, Boxing Day observed on Monday 28
# CCPA: 45 calendar days from receipt, not rolled; acknowledge in 10 business days; +45 (90 in all)
US-CA access 2026-01-10 -> 2026-02-24 ack=2026-01-26 ext=2026-04-10
US-CA deletion 2026-01-07 -> 2026-02-21 ack=2026-01-22 ext=2026-04-07   # a Saturday: not rolled
US-CA access 2026-03-20 -> 2026-05-04 ack=2026-04-06 # 31 Mar is Cesar Chavez Day in California
US-CA access 2026-01-10 identity=2026-02-01 -> 2026-02-24 ack=2026-01-26 # verification does not move it
US-CA opt_out_of_sale 2026-03-20 -> 2026-04-13      # 15 business days (regs 7026(f))
US-CA limit_sensitive 2026-12-18 -> 2027-01-12      # 15 business days over Christmas and New Year
US-CA appeal 2026-01-10 -> 2026-02-24 ack=2026-01-26 # no statutory appeal: the response period
# other states
US-VA appeal 2026-01-10 -> 2026-03-11               # 60 days
US-VA access 2026-01-10 -> 2026-02-24 ext=2026-04-10
US-IA access 2026-01-10 -> 2026-04-10 ext=2026-05-25 # 90 days, +45
US-FL access 2026-01-10 -> 2026-02-24 ext=2026-03-11 # +15 only
US-CO appeal 2026-01-10 -> 2026-02-24
US-TX access 2024-12-31 -> 2025-02-14               # across a year end
# elsewhere
BR access 2026-01-10 -> 2026-01-25 ext=none                  # LGPD Art 19 II: 15 days, no extension
CA-QC access 2026-01-10 -> 2026-02-09 ext=none               # 30 days, no extension
CA access 2026-01-10 -> 2026-02-09 ext=2026-03-11   # PIPEDA: 30 days, +30
# an unknown region, or one whose regime sets no deadline: the strictest default (15 days, no extension)
ZZ access 2026-01-10 -> 2026-01-25 ack=2026-01-23 ext=none   # no holidays known for ZZ: weekends only
US-AL deletion 2026-01-10 -> 2026-01-25 ack=2026-01-26 ext=none
US-IN access 2025-12-01 -> 2025-12-16 ack=2025-12-15 # Indiana's law is in force from 2026-01-01 only
US-IN access 2026-01-10 -> 2026-02-24 ext=2026-04-10
"""


def _cases():
    for line in CASES.strip().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        given_part, expected = line.split("->")
        region, request_type, received, *extra = given_part.split()
        identity = date.fromisoformat(extra[0].split("=")[1]) if extra else None
        due, *marks = expected.split()
        want = {"due": date.fromisoformat(due), "ack": None}
        for mark in marks:
            name, value = mark.split("=")
            want[name] = None if value == "none" else date.fromisoformat(value)
        yield pytest.param(
            region,
            request_type,
            date.fromisoformat(received),
            identity,
            want,
            id=f"{region}-{request_type}-{received}",
        )


@pytest.mark.parametrize(("region", "request_type", "received", "identity", "want"), list(_cases()))
def test_due_dates_follow_each_law(region, request_type, received, identity, want):
    regime, rules = POLICIES.dsar_on(region, received)
    plan = deadlines.schedule(rules, request_type, region, received, identity)
    assert plan.due == want["due"], regime.id
    assert plan.acknowledge_by == want["ack"]
    if "ext" in want and want["ext"] is None:
        assert plan.extension is None
    elif "ext" in want:
        assert deadlines.extended_due(plan, region, rules.weekend_rollover) == want["ext"]


@given(st.dates(date(1990, 1, 1), date(2100, 12, 31)), st.integers(1, 36))
def test_a_month_period_ends_on_the_same_date_or_the_months_last_day(start, months):
    end = deadlines.add_months(start, months)
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == months
    assert end.day == start.day or (end.day < start.day and (end + timedelta(days=1)).day == 1)


@given(
    st.sampled_from(["DE", "FR", "GB", "US-CA", "US-TX", "BR", "ZZ", "IE"]),
    st.sampled_from(["access", "deletion", "opt_out_of_sale", "appeal"]),
    st.dates(date(2020, 1, 1), date(2030, 12, 31)),
)
def test_a_due_date_is_after_receipt_and_never_on_a_day_off_where_the_rule_rolls(
    region, request_type, received
):
    _, rules = POLICIES.dsar_on(region, received)
    plan = deadlines.schedule(rules, request_type, region, received, None)
    assert plan.due > received
    if rules.weekend_rollover or plan.period.unit == "business_days":
        assert deadlines.is_working_day(region, plan.due)
    if plan.extension is not None:
        assert deadlines.extended_due(plan, region, rules.weekend_rollover) > plan.due
