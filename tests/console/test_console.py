"""The legal console and the privacy center as a browser without JavaScript sees them: forms, CSRF, sessions,
lockout, and no identifier in URLs."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import msgspec
import pytest

from consent_svc import crypto, outbox
from consent_svc.console import users
from consent_svc.console.session import COOKIE
from tests.requests.helpers import code_for

PASSWORD = "correct horse battery staple"
EMAIL = "lee@legal.example"


@pytest.fixture
def settings(settings):
    # Over plain http, as the test client speaks: Secure cookies would not come back (production sets them).
    return msgspec.structs.replace(settings, mode="local")


def csrf_of(html: str) -> str:
    return re.search(r'name="_csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
async def person(conn, settings):
    async def make(role: str = "privacy_ops", email: str = EMAIL) -> str:
        await users.create_user(conn, crypto.load_keys(settings), email, role, PASSWORD)
        return email

    return make


async def sign_in(client, email: str = EMAIL, password: str = PASSWORD):
    page = await client.get("/console/login")
    return await client.post(
        "/console/login",
        data={"email": email, "password": password, "_csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )


async def test_the_console_needs_a_session(client):
    response = await client.get("/console", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/login"
    page = await client.get("/console/login")
    assert page.status_code == 200 and 'type="password"' in page.text and "_csrf_token" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


SIGNED_OUT_PAGES = {"/console/login", "/console/logout"}
PATH_VALUES = {"uuid": "0190b7e4-3f2a-7c1b-9d4e-000000000001", "str": "verify"}


def console_pages(app) -> list[tuple[str, str]]:
    """(method, path) of every console page, path parameters filled in."""
    pages = []
    for route in app.routes:
        if not route.path.startswith("/console"):
            continue
        path = route.path
        for parameter in route.path_parameters.values():
            path = path.replace(f"{{{parameter.full}}}", PATH_VALUES[parameter.full.split(":")[1]])
        pages += [(method, path) for method in sorted(route.methods) if method in ("GET", "POST")]
    return pages


async def test_every_console_page_but_signing_in_and_out_needs_a_live_session(client):
    """What someone without a session would try: every page, with no cookie and with a made-up one."""
    pages = console_pages(client.app)
    assert len(pages) >= 15  # the walk found the pages
    signin = await client.get("/console/login")
    token = csrf_of(signin.text)
    for cookie in (None, "x" * 43):
        client.cookies.delete(COOKIE)
        if cookie:
            client.cookies.set(COOKIE, cookie, path="/console")
        for method, path in pages:
            if path in SIGNED_OUT_PAGES:
                continue
            response = await client.request(
                method,
                path,
                data={"_csrf_token": token} if method == "POST" else None,
                follow_redirects=False,
            )
            assert (response.status_code, response.headers.get("location")) == (303, "/console/login"), (
                method,
                path,
                cookie,
            )


async def test_sign_in_sets_a_strict_http_only_cookie_and_opens_the_dashboard(client, person, conn):
    await person()
    response = await sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/console"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/console" in cookie
    dashboard = await client.get("/console")
    assert dashboard.status_code == 200 and "Dashboard" in dashboard.text
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'console.signed_in'") == 1
    out = await client.post(
        "/console/logout", data={"_csrf_token": csrf_of(dashboard.text)}, follow_redirects=False
    )
    assert (
        out.status_code == 303 and (await client.get("/console", follow_redirects=False)).status_code == 303
    )
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'console.signed_out'") == 1


async def test_a_form_without_its_csrf_token_is_refused(client, person):
    await person()
    await client.get("/console/login")
    response = await client.post("/console/login", data={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 403


async def test_repeated_failures_lock_the_account_even_for_the_right_password(client, person, conn):
    await person()
    answers = [
        (await sign_in(client, password="wrong password!")).status_code for _ in range(users.MAX_FAILURES)
    ]
    assert answers == [401] * users.MAX_FAILURES
    locked = await sign_in(client)
    assert locked.status_code == 401 and "locked" in locked.text
    unknown = await sign_in(client, email="nobody@legal.example")
    assert unknown.status_code == 401 and "Wrong e-mail or password" in unknown.text  # says nothing more
    refused = await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'console.sign_in_refused'")
    assert refused == users.MAX_FAILURES + 2


async def test_idle_and_absolute_expiry_end_a_session(client, person, conn):
    await person()
    await sign_in(client)
    assert (await client.get("/console", follow_redirects=False)).status_code == 200
    await conn.execute(
        "UPDATE console_sessions SET last_seen_at = now() - $1::interval", users.IDLE + timedelta(minutes=1)
    )
    assert (await client.get("/console", follow_redirects=False)).status_code == 303
    await sign_in(client)
    await conn.execute("UPDATE console_sessions SET expires_at = now() - interval '1 second'")
    assert (await client.get("/console", follow_redirects=False)).status_code == 303


async def test_staff_work_a_request_from_the_queue(client, person, keys):
    await person()
    staff = await keys.of("requests:manage")
    body = {
        "type": "deletion",
        "subject": {"identifiers": [{"type": "email", "value": "queue@example.com"}]},
        "region": "US-CA",
        "channel": "mail",
        "received_at": (datetime.now(UTC) - timedelta(days=50)).isoformat(),
    }
    made = (await client.post("/v1/requests", json=body, headers=staff)).json()
    await sign_in(client)
    queue = await client.get("/console/requests")
    assert made["id"] in queue.text and "overdue" in queue.text
    page = await client.get(f"/console/requests/{made['id']}")
    assert "queue@example.com" not in page.text
    done = await client.post(
        f"/console/requests/{made['id']}/verify",
        data={"reason": "called back", "_csrf_token": csrf_of(page.text)},
        follow_redirects=True,
    )
    assert done.status_code == 200 and "completed" in done.text and "called back" in done.text
    # Who did what, in words: the staff member's e-mail and the API key's name, not the ids the log keeps.
    assert EMAIL in done.text and "API key " in done.text
    receipt = await client.get(f"/console/requests/{made['id']}/receipt")
    assert receipt.status_code == 200 and receipt.json()["receipt"]["request_id"] == made["id"]


async def test_a_legal_role_sees_requests_but_cannot_act(client, person, keys):
    await person("legal")
    staff = await keys.of("requests:manage")
    body = {
        "type": "access",
        "subject": {"identifiers": [{"type": "email", "value": "r@example.com"}]},
        "region": "DE",
        "channel": "web",
    }
    made = (await client.post("/v1/requests", json=body, headers=staff)).json()
    await sign_in(client)
    page = await client.get(f"/console/requests/{made['id']}")
    assert "Mark verified" not in page.text
    refused = await client.post(
        f"/console/requests/{made['id']}/verify", data={"reason": "x", "_csrf_token": csrf_of(page.text)}
    )
    assert refused.status_code == 403


async def test_the_privacy_center_takes_a_request_without_identifiers_in_urls(client, conn, settings):
    page = await client.get("/privacy", headers={"Sec-GPC": "1"})
    assert page.status_code == 200 and "Global Privacy Control" in page.text
    assert settings.brand_name in page.text and settings.brand_contact in page.text
    response = await client.post(
        "/privacy/requests",
        data={
            "type": "deletion",
            "kind": "email",
            "value": "pat@example.com",
            "region": "DE",
            "_csrf_token": csrf_of(page.text),
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    location = response.headers["location"]
    assert "pat" not in location and location.startswith("/privacy/requests/")
    status = await client.get(location)
    assert "Waiting for your code" in status.text
    wrong = await client.post(
        f"{location}/verify", data={"code": "1", "_csrf_token": csrf_of(status.text)}, follow_redirects=False
    )
    assert wrong.status_code == 422 and "tries left" in wrong.text


async def test_do_not_sell_needs_no_code(client, admin):
    page = await client.get("/privacy/do-not-sell")
    done = await client.post(
        "/privacy/requests",
        data={
            "type": "opt_out_of_sale",
            "kind": "email",
            "value": "sam@example.com",
            "region": "US-CA",
            "_csrf_token": csrf_of(page.text),
        },
    )
    assert done.status_code == 200 and "Done" in done.text
    check = {
        "subject": {"identifiers": [{"type": "email", "value": "sam@example.com"}]},
        "purpose": "sale",
        "region": "US-CA",
    }
    assert (await client.post("/v1/decisions", json=check, headers=admin)).json()["allowed"] is False


async def test_legal_find_a_subject_by_identifier_open_a_decision_and_export(client, person, admin):
    await person("legal")
    records = {
        "records": [
            {
                "subject": {"identifiers": [{"type": "email", "value": "kim@example.com"}]},
                "purpose": "analytics",
                "status": "withdrawn",
                "collected_at": "2026-11-01T10:00:00Z",
                "region": "DE",
                "source": {"system": "shop-web", "notice": {"id": "n", "version": "7"}},
            }
        ]
    }
    assert (await client.post("/v1/consents", json=records, headers=admin)).status_code == 201
    check = {
        "subject": {"identifiers": [{"type": "email", "value": "kim@example.com"}]},
        "purpose": "analytics",
        "region": "DE",
    }
    decision = (await client.post("/v1/decisions", json=check, headers=admin)).json()
    await sign_in(client)
    search = await client.get("/console/audit")
    found = await client.post(
        "/console/subjects/find",
        data={"kind": "email", "value": "kim@example.com", "_csrf_token": csrf_of(search.text)},
        follow_redirects=False,
    )
    assert found.status_code == 303 and "kim" not in found.headers["location"]
    timeline = await client.get(found.headers["location"])
    assert "k***@e***.com" in timeline.text and "kim@example.com" not in timeline.text
    assert decision["decision_id"] in timeline.text and "withdrawn" in timeline.text
    page = await client.get(f"/console/decisions/{decision['decision_id']}")
    assert "Denied because" in page.text and decision["policy"]["version"] in page.text
    assert "<td>API key " in page.text  # who asked, by the key's name
    subject_id = found.headers["location"].rsplit("/", 1)[1]
    export = await client.get(f"/console/audit/export?format=csv&subject={subject_id}")
    assert export.status_code == 200 and export.text.count("\n") >= 3  # header, two entries, checkpoint
    assert "console.subject_found" in export.text  # the look-up itself was audited, before the export
    missing = await client.post(
        "/console/subjects/find",
        data={"kind": "email", "value": "nobody@example.com", "_csrf_token": csrf_of(search.text)},
    )
    assert missing.status_code == 404
    verified = await client.post("/console/audit/verify", data={"_csrf_token": csrf_of(search.text)})
    assert verified.status_code == 200 and "Verifies" in verified.text


async def test_the_policies_page_shows_the_version_in_force_and_each_model(client, person):
    await person("legal")
    await sign_in(client)
    page = await client.get("/console/policies")
    assert page.status_code == 200
    version = re.search(r'id="policy-version">([^<]+)<', page.text).group(1)
    shown = await client.get("/v1/policies", headers={})  # the API needs a key; the page needs only a session
    assert shown.status_code == 401
    assert version.startswith("2026-") and "California CCPA/CPRA" in page.text and "opt out" in page.text


async def preference_code(conn, settings) -> str:
    keys = crypto.load_keys(settings)
    rows = await conn.fetch("SELECT event_id, data FROM outbox WHERE type = 'request.verification_requested'")
    bodies = [msgspec.json.decode(outbox.opened(keys, r["event_id"], r["data"], True)) for r in rows]
    return [b for b in bodies if b["type"] == "preferences"][-1]["code"]


async def test_the_preference_center_shows_and_changes_choices_after_a_code(client, conn, settings, admin):
    write = {
        "records": [
            {
                "subject": {"identifiers": [{"type": "email", "value": "ivy@example.com"}]},
                "purpose": "email_marketing",
                "status": "granted",
                "collected_at": "2026-11-01T10:00:00Z",
                "region": "DE",
                "source": {"system": "shop-web"},
            }
        ]
    }
    assert (await client.post("/v1/consents", json=write, headers=admin)).status_code == 201
    assert (await client.get("/privacy/preferences/choices", follow_redirects=False)).status_code == 303
    start = await client.get("/privacy/preferences")
    sent = await client.post(
        "/privacy/preferences",
        data={
            "kind": "email",
            "value": "ivy@example.com",
            "region": "DE",
            "_csrf_token": csrf_of(start.text),
        },
        follow_redirects=False,
    )
    assert sent.status_code == 303 and "ivy" not in sent.headers["location"]
    code_page = await client.get("/privacy/preferences/code")
    wrong = await client.post(
        "/privacy/preferences/code", data={"code": "x", "_csrf_token": csrf_of(code_page.text)}
    )
    assert wrong.status_code == 422 and "4 tries left" in wrong.text
    right = await client.post(
        "/privacy/preferences/code",
        data={"code": await preference_code(conn, settings), "_csrf_token": csrf_of(code_page.text)},
    )
    assert right.status_code == 200 and 'id="state-email_marketing">(now: allowed)' in right.text
    saved = await client.post(
        "/privacy/preferences/choices",
        data={
            "purpose-email_marketing": "withdrawn",
            "purpose-analytics": "granted",
            "_csrf_token": csrf_of(right.text),
        },
    )
    assert (
        "2 changes recorded" in saved.text and 'id="state-email_marketing">(now: not allowed)' in saved.text
    )
    rows = await conn.fetch(
        "SELECT r.purpose, r.status, s.source FROM consent_records r JOIN consent_sources s USING (source_id) "
        "WHERE s.source->>'touchpoint' = 'preference_center' ORDER BY r.purpose"
    )
    assert [(r["purpose"], r["status"]) for r in rows] == [
        ("analytics", "granted"),
        ("email_marketing", "withdrawn"),
    ]
    assert all(r["source"]["notice"]["version"] == settings.brand_notice_version for r in rows)


async def test_the_dashboard_charts_checks_by_outcome_and_lists_denial_reasons(client, person, admin):
    await person("legal")
    check = {
        "subject": {"identifiers": [{"type": "email", "value": "zed@example.com"}]},
        "purpose": "analytics",
        "region": "DE",
    }
    for _ in range(3):
        assert (await client.post("/v1/decisions", json=check, headers=admin)).status_code == 200
    now = datetime.now(UTC).isoformat()
    records = [
        {
            "subject": {"identifiers": [{"type": "email", "value": email}]},
            "purpose": purpose,
            "status": status,
            "collected_at": now,
            "region": "DE",
            "source": {"system": "shop-web"},
        }
        for email, purpose, status in [
            ("yan@example.com", "analytics", "granted"),
            ("amy@example.com", "analytics", "granted"),
            ("yan@example.com", "email_marketing", "withdrawn"),
        ]
    ]
    assert (await client.post("/v1/consents", json={"records": records}, headers=admin)).status_code == 201
    await sign_in(client)
    page = await client.get("/console")
    assert page.status_code == 200
    assert 'role="img"' in page.text
    assert "allowed 0, denied 3" in page.text  # the current hour's bar, in its tooltip
    # Consents per purpose: one small chart each, the busiest first; today's bar tells its figures.
    charts = re.findall(r'aria-label="(\w+): consent records per day', page.text)
    assert charts == ["analytics", "email_marketing"]
    today = datetime.now(UTC).strftime("%d %b")
    assert f"{today}: granted 2, refused or withdrawn 0" in page.text
    assert f"{today}: granted 0, refused or withdrawn 1" in page.text
    assert re.search(r"<td>no consent[^<]*</td><td>3</td>", page.text), "denials by reason"


async def test_an_erased_person_cannot_be_brought_back_through_the_preference_center(
    client, conn, settings, keys
):
    staff = await keys.of("requests:manage")
    ident = {"identifiers": [{"type": "email", "value": "ash@example.com"}]}
    made = (
        await client.post(
            "/v1/requests",
            json={"type": "deletion", "subject": ident, "region": "DE", "channel": "web"},
            headers=staff,
        )
    ).json()
    await client.post(f"/v1/requests/{made['id']}/verify", json={"reason": "checked"}, headers=staff)
    start = await client.get("/privacy/preferences")
    await client.post(
        "/privacy/preferences",
        data={
            "kind": "email",
            "value": "ash@example.com",
            "region": "DE",
            "_csrf_token": csrf_of(start.text),
        },
    )
    code_page = await client.get("/privacy/preferences/code")
    choices = await client.post(
        "/privacy/preferences/code",
        data={"code": await preference_code(conn, settings), "_csrf_token": csrf_of(code_page.text)},
    )
    refused = await client.post(
        "/privacy/preferences/choices",
        data={"purpose-analytics": "granted", "_csrf_token": csrf_of(choices.text)},
    )
    assert refused.status_code == 409 and "deleted the data" in refused.text
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 0


async def test_an_access_request_made_in_the_privacy_center_is_downloaded_once_in_that_browser(
    client, conn, settings, admin
):
    write = {
        "records": [
            {
                "subject": {"identifiers": [{"type": "email", "value": "ann@example.com"}]},
                "purpose": "analytics",
                "status": "granted",
                "collected_at": "2026-11-01T10:00:00Z",
                "region": "DE",
                "source": {"system": "shop-web"},
            }
        ]
    }
    assert (await client.post("/v1/consents", json=write, headers=admin)).status_code == 201
    page = await client.get("/privacy")
    asked = await client.post(
        "/privacy/requests",
        data={"type": "access", "kind": "email", "value": "ann@example.com", "region": "DE"}
        | {"_csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    location = asked.headers["location"]
    request_id = location.rsplit("/", 1)[1]
    waiting = await client.get(location)
    assert 'id="download"' not in waiting.text and "every 5s" not in waiting.text
    verified = await client.post(
        f"{location}/verify",
        data={"code": await code_for(conn, settings, request_id), "_csrf_token": csrf_of(waiting.text)},
    )
    assert verified.status_code == 200 and "Confirmed: we are working on it" in verified.text
    # While staff work on it, the status refreshes itself; an htmx poll gets only the part that changes.
    assert 'hx-trigger="every 5s"' in verified.text
    poll = await client.get(location, headers={"HX-Request": "true"})
    assert "<html" not in poll.text and 'id="request-status"' in poll.text
    link = re.search(r'id="download" href="(/public/exports/[^"]+)"', verified.text).group(1)
    # Only this browser holds the link: the request's address alone shows no download.
    kept = dict(client.cookies)
    client.cookies.clear()
    assert 'id="download"' not in (await client.get(location)).text
    client.cookies.update(kept)
    download = await client.get(link)
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    exported = download.json()
    assert {"type": "email", "value": "ann@example.com"} in exported["identifiers"]
    assert [c["purpose"] for c in exported["subjects"][0]["current_consents"]] == ["analytics"]
    assert (await client.get(link)).status_code == 410
    assert "You downloaded your data" in (await client.get(location)).text
    audited = await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'request.exported'")
    assert audited == 1


async def test_htmx_swaps_get_fragments_and_everything_else_gets_whole_pages(client, person, admin):
    await person()
    await sign_in(client)
    swap = {"HX-Request": "true"}
    results = await client.get("/console/audit?action=console.signed_in", headers=swap)
    assert results.status_code == 200 and "<html" not in results.text
    assert "console.signed_in" in results.text and "format=csv&amp;action=console.signed_in" in results.text
    assert f"<td>{EMAIL}</td>" in results.text
    # htmx keeps no page snapshots (they hold personal data), so going back reloads the whole page.
    restored = await client.get("/console/audit", headers=swap | {"HX-History-Restore-Request": "true"})
    assert "<html" in restored.text
    assert "<html" in (await client.get("/console/audit")).text
    queue = await client.get("/console/requests?status=completed", headers=swap)
    assert "<html" not in queue.text and "Nothing here" in queue.text
    whole = await client.get("/console/requests?status=completed")
    assert whole.status_code == 200 and '<option value="completed" selected>' in whole.text
    assert (await client.get(f"/console/requests/{uuid4()}")).status_code == 404
    audit = await client.get("/console/audit")
    verified = await client.post(
        "/console/audit/verify", data={"_csrf_token": csrf_of(audit.text)}, headers=swap
    )
    assert verified.status_code == 200 and "<html" not in verified.text and "Verifies" in verified.text
    page = await client.get("/console/audit")
    assert '<script src="/static/htmx.min.js" defer></script>' in page.text
    assert '"historyCacheSize": 0' in page.text
    script = await client.get("/static/htmx.min.js")
    assert script.status_code == 200 and "htmx" in script.text[:200]


async def test_a_gpc_signal_in_the_preference_center_is_the_californian_s_own_opt_out(
    client, conn, settings, admin
):
    gpc = {"Sec-GPC": "1"}
    start = await client.get("/privacy/preferences", headers=gpc)
    await client.post(
        "/privacy/preferences",
        data={"kind": "email", "value": "cal@example.com", "region": "US-CA"}
        | {"_csrf_token": csrf_of(start.text)},
        headers=gpc,
    )
    code_page = await client.get("/privacy/preferences/code", headers=gpc)
    choices = await client.post(
        "/privacy/preferences/code",
        data={"code": await preference_code(conn, settings), "_csrf_token": csrf_of(code_page.text)},
        headers=gpc,
    )
    assert choices.status_code == 200 and 'id="gpc-honoured"' in choices.text
    for purpose in ("sale", "share", "targeted_advertising"):
        assert f'id="state-{purpose}">(now: not allowed)' in choices.text
    rows = await conn.fetch(
        """SELECT r.purpose, r.status, s.source FROM consent_records r
           JOIN consent_sources s USING (source_id) ORDER BY r.purpose"""
    )
    assert [(r["purpose"], r["status"]) for r in rows] == [
        ("sale", "denied"),
        ("share", "denied"),
        ("targeted_advertising", "denied"),
    ]
    source = (
        msgspec.json.decode(rows[0]["source"]) if isinstance(rows[0]["source"], str) else rows[0]["source"]
    )
    assert (source["touchpoint"], source["method"]) == ("preference_center", "gpc_signal")
    ask = {
        "subject": {"identifiers": [{"type": "email", "value": "cal@example.com"}]},
        "purpose": "sale",
        "region": "US-CA",
    }
    # The signal is now the consumer's own opt-out: a later check without it is still denied (regs 7025(c)(5)).
    assert (await client.post("/v1/decisions", json=ask, headers=admin)).json()["allowed"] is False
    # Choosing "Allow" afterwards, on the same browser, is consent given after the conflict, and stands.
    await client.post(
        "/privacy/preferences/choices",
        data={"purpose-sale": "granted", "_csrf_token": csrf_of(choices.text)},
        headers=gpc,
    )
    again = ask | {"context": {"gpc": True}}
    assert (await client.post("/v1/decisions", json=again, headers=admin)).json()["allowed"] is True
    # The signal was recorded once, at sign-in: using the page afterwards does not refuse the grant again.
    assert (await client.get("/privacy/preferences/choices", headers=gpc)).status_code == 200
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 4
