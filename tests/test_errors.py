"""What a caller sees when things go wrong inside: a problem body with no stack trace and no SQL; and the
headers every HTML page carries."""

from __future__ import annotations

import pytest

from tests.consents.helpers import batch, record


async def test_an_unexpected_database_error_is_a_bare_500_problem_and_the_detail_stays_in_the_log(
    client, admin, conn, caplog
):
    assert (
        await client.post("/v1/consents", json=batch(record("err@example.com")), headers=admin)
    ).status_code == 201
    subject = (
        await client.post(
            "/v1/subjects/lookup",
            json={"identifiers": [{"type": "email", "value": "err@example.com"}]},
            headers=admin,
        )
    ).json()["subject_id"]
    await conn.execute("ALTER TABLE consent_state RENAME TO consent_state_moved")
    try:
        response = await client.get(f"/v1/subjects/{subject}", headers=admin)
    finally:
        await conn.execute("ALTER TABLE consent_state_moved RENAME TO consent_state")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json() == {
        "type": "/problems/internal",
        "title": "Internal error",
        "status": 500,
        "detail": "An unexpected error",
    }
    for leak in ("consent_state", "relation", "Traceback", "SELECT", "asyncpg", ".py"):
        assert leak not in response.text
    assert "consent_state" in caplog.text and "Traceback" in caplog.text  # for the operator, in the log


@pytest.mark.parametrize(
    "path", ["/console/login", "/privacy", "/privacy/do-not-sell", "/privacy/preferences"]
)
async def test_html_pages_carry_the_headers_a_browser_needs_and_flag_their_cookies(client, path):
    response = await client.get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    # Production settings (the default with a DATABASE_URL): the CSRF cookie is Secure, HttpOnly, SameSite=Strict.
    cookie = response.headers["set-cookie"]
    assert "consent_csrf=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
