"""Legal due dates of data-subject requests (pure, no I/O): periods from a regime's `[dsar]` rules, counted the
way the law counts them (`../shared/domain/regions.md` section 0).

- Day periods exclude the day of receipt and include the last: due = receipt + N (TX 541.052(b) "45th day after
  the date of receipt"; CCPA regs 7021(b)). Not rolled past weekends unless the regime says so.
- Business days: Monday to Friday except the region's public holidays, counted from the day after receipt
  (CCPA regs 7021(a), 7026(f)).
- Month periods (GDPR, UK GDPR; Regulation 1182/71 Art 3): the same date N months on, or the last day of that
  month when it has no such date (31 Jan -> 28/29 Feb); ending on a Saturday, Sunday or public holiday, the
  period runs to the next working day (Art 3(4)).
Dates are calendar dates of receipt in UTC: a request's `received_at` is an instant, the law counts days.
"""

from __future__ import annotations

import calendar
import functools
from datetime import date, timedelta
from typing import Literal, NamedTuple

import holidays

from consent_svc.policies.types import DsarRules

Unit = Literal["days", "business_days", "months"]
RequestType = Literal[
    "access", "deletion", "correction", "portability", "opt_out_of_sale", "limit_sensitive", "appeal"
]
OPT_OUT_TYPES = frozenset({"opt_out_of_sale", "limit_sensitive"})


class Period(NamedTuple):
    count: int
    unit: Unit

    @classmethod
    def parse(cls, text: str) -> Period:
        """`"45 days"`, `"10 business_days"`, `"1 months"` (the policy type validates the form)."""
        count, unit = text.split(" ")
        return cls(int(count), unit)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.count} {self.unit}"


@functools.lru_cache(maxsize=256)
def _public_holidays(region: str) -> holidays.HolidayBase | None:
    """The public holidays of a region's country, with its subdivision's when the `holidays` package knows it
    (`US-CA`: Cesar Chavez Day). None for a country it does not cover: weekends only."""
    country, _, subdivision = region.partition("-")
    try:
        known = holidays.country_holidays(country)
    except NotImplementedError:
        return None
    if subdivision and subdivision in known.subdivisions:
        return holidays.country_holidays(country, subdiv=subdivision)
    return known


def is_working_day(region: str, day: date) -> bool:
    if day.weekday() >= 5:
        return False
    public = _public_holidays(region)
    return public is None or day not in public


def next_working_day(region: str, day: date) -> date:
    """`day` itself when it is a working day."""
    while not is_working_day(region, day):
        day += timedelta(days=1)
    return day


def add_months(day: date, months: int) -> date:
    """Reg. 1182/71 Art 3(2)(c): the same date `months` on, or the month's last day if it has no such date."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def add_business_days(region: str, day: date, count: int) -> date:
    """The `count`-th working day after `day`."""
    while count:
        day += timedelta(days=1)
        if is_working_day(region, day):
            count -= 1
    return day


def period_end(period: Period, start: date, region: str, rollover: bool) -> date:
    """The last day of a period that starts running the day after `start` (the day of receipt)."""
    if period.unit == "business_days":
        return add_business_days(region, start, period.count)
    end = add_months(start, period.count) if period.unit == "months" else start + timedelta(days=period.count)
    return next_working_day(region, end) if rollover else end


class Schedule(NamedTuple):
    clock_start: date
    due: date
    acknowledge_by: date | None
    period: Period
    extension: Period | None


def response_period(rules: DsarRules, request_type: str) -> Period:
    """Opt-outs have their own, shorter period where the law sets one (CCPA regs 7026(f), 7027(g)); an appeal
    has its region's appeal period, or the response period where the law names none."""
    if request_type in OPT_OUT_TYPES and rules.opt_out_response:
        return Period.parse(rules.opt_out_response)
    if request_type == "appeal" and rules.appeal:
        return Period.parse(rules.appeal)
    return Period.parse(rules.response)


def clock_start(rules: DsarRules, received: date, identity: date | None) -> date:
    """UK GDPR Art 12A: the latest of receipt and the identity information; elsewhere receipt, verified or not
    (CCPA regs 7021(b))."""
    if rules.clock_start == "latest_of_receipt_and_identity" and identity is not None:
        return max(received, identity)
    return received


def schedule(
    rules: DsarRules, request_type: str, region: str, received: date, identity: date | None
) -> Schedule:
    period = response_period(rules, request_type)
    start = clock_start(rules, received, identity)
    due = period_end(period, start, region, rules.weekend_rollover)
    # The acknowledgement runs from receipt, not from identity (CCPA regs 7021(a)); opt-outs take effect at once.
    acknowledge_by = (
        period_end(Period.parse(rules.acknowledge), received, region, False)
        if rules.acknowledge and request_type not in OPT_OUT_TYPES
        else None
    )
    extension = Period.parse(rules.extension) if rules.extension and request_type != "appeal" else None
    return Schedule(start, due, acknowledge_by, period, extension)


def extended_due(plan: Schedule, region: str, rollover: bool) -> date:
    """The due date after the one extension the law allows (the caller checks that it does).

    Months (GDPR 12(3) "+2 further months"): the earlier of receipt + 3 months and first due date + 2 months,
    which differ only at month ends (regions.md: which one regulators use is unverified; the earlier is safe).
    Days: the first due date + N (CCPA: 45 + 45 = "a maximum total of 90 calendar days", regs 7021(b)).
    """
    extension = plan.extension
    assert extension is not None
    if extension.unit == "months" and plan.period.unit == "months":
        unrolled_due = add_months(plan.clock_start, plan.period.count)
        end = min(
            add_months(plan.clock_start, plan.period.count + extension.count),
            add_months(unrolled_due, extension.count),
        )
        return next_working_day(region, end) if rollover else end
    unrolled_due = period_end(plan.period, plan.clock_start, region, False)
    return period_end(extension, unrolled_due, region, rollover)
