"""The console and the privacy center driven in Debian's Chromium, as people use them, against the service
running as a real process. Screenshots of the main pages go to test-artifacts/screenshots/.

No browser is downloaded: Playwright drives /usr/bin/chromium (`.ci/run` installs it when missing). Without it
these tests fail rather than skip, so CI cannot pass without having run them. Each page screenshotted is also
audited with axe-core (WCAG 2.1 A and AA rules; `make test` fetches it from the npm registry on first use).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.process.service import CLI, running
from tests.receiver import Receiver

pytestmark = pytest.mark.process

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).parents[2] / "test-artifacts" / "screenshots"
AXE = Path(__file__).parents[2] / ".cache" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
AXE_RUN = """async () => (await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}))
  .violations.map(v => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)"""
PASSWORD = "a long browser test password"


@pytest.fixture
def service(db_url, tmp_path):
    with running(
        db_url,
        tmp_path,
        CONSENT_SVC_MODE="local",  # plain http on 127.0.0.1: cookies cannot be Secure here
        CONSENT_SVC_WEBHOOK_ALLOW_PRIVATE_NETWORKS="1",
        CONSENT_SVC_BRAND_NAME="Acme Outdoor",
        CONSENT_SVC_LOG_LEVEL="DEBUG",  # the most the service ever logs: still no one's e-mail in it
    ) as started:
        yield started


@pytest.fixture
def page():
    assert Path(CHROMIUM).exists(), "Chromium is missing: apt-get install -y chromium (.ci/run does)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser.new_page(viewport={"width": 1200, "height": 900})
        browser.close()


def shot(page: Page, name: str) -> None:
    """Keep a screenshot, and hold the page to WCAG 2.1 AA as far as a machine can check it."""
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert AXE.exists(), "axe-core is missing: `make test` installs it"
    page.evaluate(
        AXE.read_text()
    )  # through the DevTools protocol: the page's CSP still holds for its own code
    assert page.evaluate(AXE_RUN) == [], f"accessibility violations on {name}"


def code_from(receiver: Receiver, request_id: str, timeout: float = 20) -> str:
    """The code as the business's messaging system receives it: in the signed request.verification_requested."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in receiver.events():
            if (
                event["type"] == "request.verification_requested"
                and event["data"].get("request_id") == request_id
            ):
                return event["data"]["code"]
        time.sleep(0.1)
    raise AssertionError("no verification code was delivered")


def preference_code_from(receiver: Receiver, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in receiver.events():
            if event["data"].get("type") == "preferences":
                return event["data"]["code"]
        time.sleep(0.1)
    raise AssertionError("no preference center code was delivered")


def test_a_customer_deletes_their_data_with_the_code_they_were_sent(service, page):
    manager = service.key("webhooks:manage", "requests:manage")
    receiver, crm = Receiver(), Receiver()
    try:
        status, _ = service.call(
            "POST",
            "/v1/webhooks/subscriptions",
            {"url": receiver.url, "events": ["request.verification_requested"]},
            key=manager,
        )
        assert status == 201
        # A downstream system that must confirm each deletion: the request stays open until it does.
        status, system = service.call(
            "POST", "/v1/systems", {"name": "crm", "url": crm.url, "request_types": ["deletion"]}, key=manager
        )
        assert status == 201
        base = f"http://127.0.0.1:{service.port}"
        page.goto(f"{base}/privacy")
        expect(page.get_by_role("heading", name="Ask about your data")).to_be_visible()
        assert "Acme Outdoor" in page.content()  # the business's name comes from settings
        shot(page, "privacy-center")
        page.get_by_label("Delete my data").check()
        page.get_by_label("Your e-mail address or phone number").fill("river@example.com")
        page.get_by_label("Where do you live?").select_option("DE")
        page.get_by_role("button", name="Send my request").click()
        expect(page.locator("#status")).to_have_text("Waiting for your code")
        assert "river" not in page.url
        shot(page, "privacy-enter-code")
        request_id = page.url.rsplit("/", 1)[1]
        page.get_by_label("One-time code").fill(code_from(receiver, request_id))
        page.get_by_role("button", name="Confirm").click()
        expect(page.locator("#status")).to_have_text("In progress")
        status, _ = service.call(
            "POST", f"/v1/requests/{request_id}/systems/{system['id']}/confirm", key=system["key"]
        )
        assert status == 200
        # Nobody reloads: the status part of the page refreshes itself (htmx) and shows the request done.
        expect(page.locator("#status")).to_have_text("Done", timeout=15_000)
        shot(page, "privacy-request-done")

        # The preference center: a code, then each purpose in plain words, changed as consent records.
        page.get_by_role("link", name="Your choices").click()
        page.get_by_label("Your e-mail address or phone number").fill("brook@example.com")
        page.get_by_label("Where do you live?").select_option("FR")
        page.get_by_role("button", name="Send me a code").click()
        page.get_by_label("One-time code").fill(preference_code_from(receiver))
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("heading", name="Your choices")).to_be_visible()
        page.locator('input[name="purpose-analytics"][value="granted"]').check()
        page.get_by_role("button", name="Save my choices").click()
        expect(page.locator("#saved")).to_contain_text("1 change recorded")
        expect(page.locator("#state-analytics")).to_have_text("(now: allowed)")
        shot(page, "privacy-preferences")

        # A copy of their data: once the code is entered, this browser gets a one-time download.
        page.get_by_role("link", name="Your data").click()
        page.get_by_label("Give me a copy of my data").check()
        page.get_by_label("Your e-mail address or phone number").fill("brook@example.com")
        page.get_by_label("Where do you live?").select_option("FR")
        page.get_by_role("button", name="Send my request").click()
        request_id = page.url.rsplit("/", 1)[1]
        page.get_by_label("One-time code").fill(code_from(receiver, request_id))
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("link", name="Download a copy of your data")).to_be_visible()
        shot(page, "privacy-download")
        with page.expect_download() as download:
            page.get_by_role("link", name="Download a copy of your data").click()
        exported = json.loads(Path(download.value.path()).read_text())
        assert {"type": "email", "value": "brook@example.com"} in exported["identifiers"]
        assert "analytics" in [c["purpose"] for c in exported["subjects"][0]["current_consents"]]
        page.reload()
        expect(page.get_by_text("You downloaded your data")).to_be_visible()
        logged = service.log_tail(all_of_it=True)
        for person in ("river", "brook"):
            assert person not in logged, f"{person}'s e-mail reached the service's log"
    finally:
        receiver.close()
        crm.close()


def test_legal_staff_sign_in_and_work_the_queue(service, page):
    staff = service.key("requests:manage")
    body = {
        "type": "access",
        "subject": {"identifiers": [{"type": "email", "value": "moss@example.com"}]},
        "region": "US-CA",
        "channel": "phone",
    }
    status, made = service.call("POST", "/v1/requests", body, key=staff)
    assert status == 201
    created = subprocess.run(
        [CLI, "users", "create", "--email", "ops@acme.example", "--role", "privacy_ops", "--password-stdin"],
        input=PASSWORD + "\n",
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    assert "password" not in json.loads(created.stdout)  # given on stdin, never echoed

    base = f"http://127.0.0.1:{service.port}"
    page.goto(f"{base}/console")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "console-sign-in")
    page.get_by_label("E-mail").fill("ops@acme.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    page.get_by_role("link", name="Requests").click()
    expect(page.get_by_role("cell", name="access")).to_be_visible()
    shot(page, "console-queue")
    page.get_by_role("link", name="Open").first.click()
    expect(page.get_by_role("heading", name="Access request")).to_be_visible()
    page.get_by_label("Reason (mark verified)").fill("called the customer back")
    page.get_by_role("button", name="Mark verified").click()
    expect(page.get_by_role("cell", name="called the customer back")).to_be_visible()
    shot(page, "console-request")
    assert "moss" not in page.content()

    # The audit trail: find a subject by an identifier typed into a form, open a decision, export.
    writer = service.key("consents:write", "decisions:check")
    ident = {"identifiers": [{"type": "email", "value": "fern@example.com"}]}
    record = {
        "subject": ident,
        "purpose": "analytics",
        "status": "withdrawn",
        "collected_at": "2026-11-01T10:00:00Z",
        "region": "FR",
        "source": {"system": "shop-web", "notice": {"id": "cookies", "version": "3"}},
    }
    assert service.call("POST", "/v1/consents", {"records": [record]}, key=writer)[0] == 201
    assert (
        service.call(
            "POST", "/v1/decisions", {"subject": ident, "purpose": "analytics", "region": "FR"}, key=writer
        )[0]
        == 200
    )
    page.get_by_role("link", name="Audit trail").click()
    page.get_by_label("Identifier", exact=True).fill("fern@example.com")
    page.get_by_role("button", name="Open their timeline").click()
    expect(page.get_by_role("heading", name="Timeline (oldest first)")).to_be_visible()
    assert "fern" not in page.url
    shot(page, "console-subject-timeline")
    page.get_by_role("link", name="decision.made").click()
    expect(page.locator("#explanation")).to_contain_text("Denied because")
    shot(page, "console-decision")
    page.get_by_role("link", name="Audit trail").click()
    page.get_by_label("Action (exact, or a family such as request.*)").fill("decision.made")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="decision.made")).to_have_count(1)
    # The filter goes into the address, so that it can be shared and reloaded.
    expect(page).to_have_url(re.compile(r"action=decision\.made"))
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    assert download.value.suggested_filename == "audit.csv"
    page.get_by_role("button", name="Verify the chain").click()
    expect(page.locator("#result")).to_contain_text("Verifies")
    assert "/verify" not in page.url  # swapped into the audit page in place (htmx), the filter kept
    shot(page, "console-chain-verified")
    page.get_by_role("link", name="Policies").click()
    expect(page.locator("#policy-version")).not_to_be_empty()
    shot(page, "console-policies")

    # The dashboard once there is something to see: a few consents and checks of each outcome.
    for n, (purpose, status) in enumerate(
        [("analytics", "granted"), ("email_marketing", "granted"), ("personalization", "denied")] * 4
    ):
        who = {"identifiers": [{"type": "email", "value": f"guest{n}@example.com"}]}
        assert (
            service.call(
                "POST",
                "/v1/consents",
                {"records": [record | {"subject": who, "purpose": purpose, "status": status}]},
                key=writer,
            )[0]
            == 201
        )
        assert (
            service.call(
                "POST", "/v1/decisions", {"subject": who, "purpose": purpose, "region": "FR"}, key=writer
            )[0]
            == 200
        )
    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("figure").filter(has_text="analytics")).to_be_visible()
    shot(page, "console-dashboard")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    logged = service.log_tail(all_of_it=True)
    for person in ("moss", "fern", "guest", "ops@acme"):
        assert person not in logged, f"{person} reached the service's log"
