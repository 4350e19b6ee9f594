"""What a privacy lead looks at first, and the small server-rendered SVG charts that show it.

The figures come from the audit log's last 24 hours (checks) and 14 days (consents), read by its primary key
range on `at`: a dashboard load scans that window once, so at very high volumes it costs a second or so.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape
from typing import NamedTuple

import asyncpg

CHECKS_PER_HOUR = """
SELECT date_trunc('hour', at) AS hour, outcome, payload->>'reason' AS reason, count(*) AS n
FROM audit_log
WHERE at >= $1 AND action = 'decision.made'
GROUP BY 1, 2, 3
"""
CONSENTS_PER_DAY = """
SELECT date_trunc('day', at) AS day, payload->>'purpose' AS purpose, outcome, count(*) AS n
FROM audit_log
WHERE at >= $1 AND action = 'consent.recorded'
GROUP BY 1, 2, 3
"""
FAILING_DELIVERIES = """
SELECT w.url, count(*) FILTER (WHERE d.status = 'dead') AS dead,
       count(*) FILTER (WHERE d.status = 'pending' AND d.attempts > 0) AS retrying,
       max(d.last_error) AS last_error
FROM webhook_deliveries d JOIN webhook_subscriptions w ON w.id = d.subscription_id
WHERE d.status = 'dead' OR (d.status = 'pending' AND d.attempts > 0)
GROUP BY w.url
ORDER BY dead DESC, retrying DESC
LIMIT 20
"""


class Bar(NamedTuple):
    label: str
    parts: list[tuple[str, int]]  # (series, value), stacked in this order


class Figures(NamedTuple):
    checks: list[Bar]
    denial_reasons: list[tuple[str, int]]
    consents: list[tuple[str, list[Bar]]]  # (purpose, its bars per day), the busiest purposes first
    failing: list[asyncpg.Record]


PURPOSES_SHOWN = 8
SERIES = ("granted", "refused or withdrawn")


async def figures(conn: asyncpg.Connection, now: datetime) -> Figures:
    since = (now - timedelta(hours=23)).replace(minute=0, second=0, microsecond=0)
    per_hour: dict[datetime, dict[str, int]] = {since + timedelta(hours=h): {} for h in range(24)}
    reasons: dict[str, int] = {}
    for row in await conn.fetch(CHECKS_PER_HOUR, since):
        slot = per_hour.setdefault(row["hour"], {})
        slot[row["outcome"]] = slot.get(row["outcome"], 0) + row["n"]
        if row["outcome"] == "denied":
            reasons[row["reason"]] = reasons.get(row["reason"], 0) + row["n"]
    checks = [
        Bar(hour.strftime("%H"), [("allowed", c.get("allowed", 0)), ("denied", c.get("denied", 0))])
        for hour, c in sorted(per_hour.items())
    ]
    start = (now - timedelta(days=13)).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [start + timedelta(days=d) for d in range(14)]
    per_purpose: dict[str, dict[tuple[datetime, str], int]] = {}
    for row in await conn.fetch(CONSENTS_PER_DAY, start):
        counts = per_purpose.setdefault(row["purpose"] or "unknown", {})
        key = (row["day"], SERIES[0] if row["outcome"] == "granted" else SERIES[1])
        counts[key] = counts.get(key, 0) + row["n"]
    busiest = sorted(per_purpose.items(), key=lambda p: (-sum(p[1].values()), p[0]))[:PURPOSES_SHOWN]
    consents = [
        (
            purpose,
            [Bar(day.strftime("%d %b"), [(s, counts.get((day, s), 0)) for s in SERIES]) for day in days],
        )
        for purpose, counts in busiest
    ]
    return Figures(
        checks, sorted(reasons.items(), key=lambda r: -r[1]), consents, await conn.fetch(FAILING_DELIVERIES)
    )


COLOURS = ("#1d4f91", "#b3541e")  # dark blue and dark orange: distinct for the common colour blindnesses
PAD = 28


def stacked_bars(bars: list[Bar], title: str, height: int = 200, width: int = 720) -> str:
    """An accessible SVG bar chart (role img, a title, each bar's figures in its tooltip)."""
    top = max((sum(v for _, v in b.parts) for b in bars), default=0) or 1
    step = (width - PAD) / max(len(bars), 1)
    out = [
        f'<svg viewBox="0 0 {width} {height + 40}" role="img" aria-label="{escape(title)}" width="100%">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="12" font-size="11">{top}</text>',
        f'<line x1="{PAD}" y1="{height}" x2="{width}" y2="{height}" stroke="#767676"/>',
    ]
    for i, bar in enumerate(bars):
        x, y = PAD + i * step, height
        detail = ", ".join(f"{name} {value}" for name, value in bar.parts)
        for (_, value), colour in zip(bar.parts, COLOURS, strict=False):
            h = value / top * (height - 16)
            y -= h
            out.append(
                f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{step - 4:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(bar.label)}: {escape(detail)}</title></rect>"
            )
        if step >= 36 or i % 2 == 0:  # narrow bars: every other label, so that they do not overlap
            out.append(
                f'<text x="{x + step / 2:.1f}" y="{height + 14}" font-size="10" text-anchor="middle">'
                f"{escape(bar.label)}</text>"
            )
    series = [name for name, _ in bars[0].parts] if bars else []
    for j, (name, colour) in enumerate(zip(series, COLOURS, strict=False)):
        out.append(f'<rect x="{PAD + j * 160}" y="{height + 24}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{PAD + j * 160 + 18}" y="{height + 34}" font-size="12">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)
