"""Managing outbound subscriptions: the contract of /v1/webhooks/subscriptions, and where URLs may point."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from standardwebhooks.webhooks import Webhook

from consent_svc.app import create_app
from tests.consents.helpers import record
from tests.receiver import Receiver
from tests.webhooks.helpers import settle, subscribe, write

PATH = "/v1/webhooks/subscriptions"


@pytest.fixture
def local(settings):
    return msgspec.structs.replace(
        settings, webhook_allow_private_networks=True, webhook_retry_base_seconds=0.05, mode="local"
    )


@pytest.fixture
async def open_client(local):
    """A service that may call 127.0.0.1 (as tests need)."""
    async with AsyncTestClient(create_app(local)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://172.16.5.4/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[fd00:ec2::254]/hook",
        "https://0.0.0.0/hook",
        "https://localhost/hook",
        # IPv6 forms that lead to an IPv4 address: NAT64 (on IPv6-only networks), 6to4, IPv4-compatible
        "https://[64:ff9b::a9fe:a9fe]/hook",  # 169.254.169.254
        "https://[64:ff9b::10.0.0.1]/hook",
        "https://[64:ff9b:1::a00:1]/hook",  # local-use NAT64
        "https://[2002:7f00:1::1]/hook",  # 127.0.0.1
        "https://[2002:c0a8:1::1]/hook",  # 192.168.0.1
        "https://[::7f00:1]/hook",
    ],
)
async def test_private_loopback_link_local_and_metadata_urls_are_refused(client, manager, url):
    response = await client.post(PATH, json={"url": url, "events": ["consent.changed"]}, headers=manager)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"][0]["field"] == "url"
    assert "refused" in problem["errors"][0]["message"] or "https" in problem["errors"][0]["message"]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://93.184.216.34/hook", "https"),  # production mode (the test settings name a DATABASE_URL)
        ("ftp://93.184.216.34/hook", "scheme"),
        ("https://user:pw@93.184.216.34/hook", "credentials"),
        ("https:///hook", "no host"),
        ("https://93.184.216.34:99999/hook", "not a URL"),
        ("https://no-such-host.invalid/hook", "does not resolve"),
        ("https://93.184.216.34/hook#x", "fragment"),
    ],
)
async def test_malformed_or_plain_http_urls_are_refused(client, manager, url, why):
    response = await client.post(PATH, json={"url": url, "events": ["consent.changed"]}, headers=manager)
    assert response.status_code == 422, response.text
    assert why in response.json()["detail"]


async def test_metadata_addresses_stay_refused_where_private_networks_are_allowed(open_client, manager):
    for url in (
        "http://169.254.169.254/latest",
        "http://[fd00:ec2::254]/x",
        "http://0.0.0.0/x",
        "http://[64:ff9b::a9fe:a9fe]/latest",
        "http://[2002:a9fe:a9fe::1]/latest",
    ):
        response = await open_client.post(
            PATH, json={"url": url, "events": ["consent.changed"]}, headers=manager
        )
        assert response.status_code == 422, url


@pytest.mark.parametrize("host", ["[2606:2800:220:1::1]", "[64:ff9b::5db8:d822]", "[2002:5db8:d822::1]"])
async def test_public_ipv6_addresses_are_taken_including_those_leading_to_a_public_ipv4(
    client, manager, host
):
    response = await client.post(
        PATH, json={"url": f"https://{host}/hook", "events": ["consent.changed"]}, headers=manager
    )
    assert response.status_code == 201, response.text


async def test_a_public_https_url_is_taken_and_the_secret_shown_once(client, manager):
    response = await client.post(
        PATH,
        json={"url": "https://93.184.216.34/hook", "events": ["consent.changed", "request.*"]},
        headers=manager,
    )
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["secret"].startswith("whsec_") and made["status"] == "active"
    assert made["events"] == ["consent.changed", "request.*"] and made["filter"] is None
    listed = (await client.get(PATH, headers=manager)).json()
    assert [s["id"] for s in listed] == [made["id"]]
    assert "secret" not in listed[0] and made["secret"] not in str(listed)
    one = (await client.get(f"{PATH}/{made['id']}", headers=manager)).json()
    assert one == listed[0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://93.184.216.34/", "events": ["consent.nope"]}, "events[0]"),
        ({"url": "https://93.184.216.34/", "events": ["*"]}, "events[0]"),
        ({"url": "https://93.184.216.34/", "events": []}, "events"),
        (
            {"url": "https://93.184.216.34/", "events": ["consent.changed"], "filter": {"purposes": ["x"]}},
            "filter.purposes[0]",
        ),
        (
            {"url": "https://93.184.216.34/", "events": ["consent.changed"], "filter": {"purposes": []}},
            "filter.purposes",
        ),
        ({"url": "https://93.184.216.34/", "events": ["consent.changed"], "extra": 1}, "extra"),
        ({"events": ["consent.changed"]}, "url"),
        ({"url": "https://93.184.216.34/" + "a" * 3000, "events": ["consent.changed"]}, "url"),
    ],
)
async def test_bad_subscriptions_are_422_naming_the_field(client, manager, body, field):
    response = await client.post(PATH, json=body, headers=manager)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in response.text


async def test_malformed_json_is_a_400_problem(client, manager):
    response = await client.post(
        PATH, content=b'{"url": ', headers={**manager, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_managing_subscriptions_needs_the_webhooks_scope(client, keys):
    reader = await keys.of("consents:read")
    body = {"url": "https://93.184.216.34/", "events": ["consent.changed"]}
    assert (await client.post(PATH, json=body, headers=reader)).status_code == 403
    assert (await client.get(PATH)).status_code == 401
    admin = await keys.of("admin")
    assert (await client.post(PATH, json=body, headers=admin)).status_code == 201


async def test_unknown_subscriptions_are_404(client, manager):
    missing = "0190a0a0-0000-7000-8000-000000000000"
    for method, path in [
        ("GET", ""),
        ("DELETE", ""),
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("POST", "/rotate"),
        ("GET", "/deliveries"),
        ("POST", "/deliveries/1/replay"),
    ]:
        response = await client.request(method, f"{PATH}/{missing}{path}", headers=manager)
        assert response.status_code == 404, (method, path, response.text)
    response = await client.patch(f"{PATH}/{missing}", json={"events": ["consent.changed"]}, headers=manager)
    assert response.status_code == 404
    assert (await client.get(f"{PATH}/not-a-uuid", headers=manager)).status_code in (400, 404)


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "status"),
    [
        ("GET", "/deliveries", {"cursor": str(2**63)}, None, 422),  # past a bigint
        ("GET", "/deliveries", {"cursor": "0"}, None, 422),
        ("GET", "/deliveries", {"cursor": "x"}, None, 422),
        ("POST", "/deliveries/99999999999999999999/replay", None, None, 404),
        (
            "POST",
            "/replay",
            None,
            {"since": "0001-01-01T00:00:00-05:00", "until": "2026-01-01T00:00:00Z"},
            422,
        ),
        (
            "POST",
            "/replay",
            None,
            {"since": "2026-01-01T00:00:00Z", "until": "9999-12-31T23:59:59-05:00"},
            422,
        ),
        ("POST", "/replay", None, {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 422),
        ("POST", "/replay", None, {"since": "2026-01-01T00:00:00", "until": "2026-01-02T00:00:00Z"}, 422),
    ],
)
async def test_out_of_range_delivery_queries_are_clear_problems(
    open_client, manager, receiver, method, path, params, body, status
):
    sub = await subscribe(open_client, manager, receiver.url)
    response = await open_client.request(
        method, f"{PATH}/{sub['id']}{path}", params=params, json=body, headers=manager
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_options_lists_every_method(client):
    assert set((await client.options(PATH)).headers["allow"].split(", ")) >= {"GET", "POST"}
    one = await client.options(f"{PATH}/0190a0a0-0000-7000-8000-000000000000")
    assert set(one.headers["allow"].split(", ")) >= {"GET", "PATCH", "DELETE"}


async def test_pause_holds_deliveries_and_resume_sends_them_in_order(open_client, manager, writer, receiver):
    sub = await subscribe(open_client, manager, receiver.url)
    paused = await open_client.post(f"{PATH}/{sub['id']}/pause", headers=manager)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    for n, status in enumerate(["granted", "withdrawn"]):
        await write(
            open_client, writer, record("ike@example.com", "analytics", status, at=f"2026-11-20T1{n}:00:00Z")
        )
    await asyncio.sleep(1.5)
    assert receiver.received == []
    assert (await open_client.get(f"{PATH}/{sub['id']}", headers=manager)).json()["pending"] == 2
    resumed = await open_client.post(f"{PATH}/{sub['id']}/resume", headers=manager)
    assert resumed.json()["status"] == "active"
    got = await receiver.wait_for(2)
    assert [e["data"]["status"] for e in got] == ["granted", "withdrawn"]


async def test_a_deleted_subscription_gets_nothing_more(open_client, manager, writer, receiver, conn):
    sub = await subscribe(open_client, manager, receiver.url)
    await open_client.post(f"{PATH}/{sub['id']}/pause", headers=manager)
    await write(open_client, writer, record("jo@example.com", "analytics"))
    await asyncio.sleep(0.5)
    assert (await open_client.delete(f"{PATH}/{sub['id']}", headers=manager)).status_code == 204
    assert (await open_client.get(f"{PATH}/{sub['id']}", headers=manager)).status_code == 404
    assert (await open_client.get(PATH, headers=manager)).json() == []
    await write(open_client, writer, record("kim@example.com", "analytics"))
    await asyncio.sleep(1.5)
    assert receiver.received == []
    assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'") == 0
    actions = [
        r[0]
        for r in await conn.fetch("SELECT action FROM audit_log WHERE action LIKE 'webhook.%' ORDER BY at")
    ]
    assert actions == [
        "webhook.subscription.created",
        "webhook.subscription.paused",
        "webhook.subscription.deleted",
    ]


async def test_after_a_rotation_deliveries_verify_with_either_secret(open_client, manager, writer, receiver):
    sub = await subscribe(open_client, manager, receiver.url)
    rotated = await open_client.post(f"{PATH}/{sub['id']}/rotate", headers=manager)
    assert rotated.status_code == 200
    new = rotated.json()
    assert new["secret"] != sub["secret"] and new["previous_secret_retires_at"] is not None
    await write(open_client, writer, record("lou@example.com", "analytics"))
    await receiver.wait_for(1)
    headers, body = receiver.received[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(sub["secret"]).verify(body, headers) == Webhook(new["secret"]).verify(body, headers)


async def test_an_update_changes_where_and_what_is_sent(open_client, manager, writer, receiver):
    other = Receiver()
    try:
        sub = await subscribe(open_client, manager, receiver.url)
        response = await open_client.patch(
            f"{PATH}/{sub['id']}",
            json={"url": other.url, "filter": {"purposes": ["analytics"]}},
            headers=manager,
        )
        assert response.status_code == 200, response.text
        assert (
            response.json()["filter"] == {"purposes": ["analytics"]} and response.json()["url"] == other.url
        )
        await write(
            open_client,
            writer,
            record("max@example.com", "email_marketing"),
            record("max@example.com", "analytics"),
        )
        [event] = await other.wait_for(1)
        assert event["data"]["purpose"] == "analytics" and receiver.received == []
        cleared = await open_client.patch(f"{PATH}/{sub['id']}", json={"filter": None}, headers=manager)
        assert cleared.json()["filter"] is None and cleared.json()["events"] == ["consent.changed"]
        refused = await open_client.patch(f"{PATH}/{sub['id']}", json={"url": "ftp://x/"}, headers=manager)
        assert refused.status_code == 422
    finally:
        other.close()


async def test_one_delivery_can_be_sent_again(open_client, manager, writer, receiver):
    sub = await subscribe(open_client, manager, receiver.url)
    await write(open_client, writer, record("ned@example.com", "analytics"))
    [delivered] = await settle(open_client, manager, sub)
    response = await open_client.post(
        f"{PATH}/{sub['id']}/deliveries/{delivered['seq']}/replay", headers=manager
    )
    assert response.status_code == 202
    await receiver.wait_for(2)
    first, again = receiver.received
    assert first[0]["webhook-id"] == again[0]["webhook-id"] and first[1] == again[1]
    missing = await open_client.post(f"{PATH}/{sub['id']}/deliveries/999/replay", headers=manager)
    assert missing.status_code == 404
    bad_range = await open_client.post(
        f"{PATH}/{sub['id']}/replay",
        json={"since": "2026-11-20T00:00:00Z", "until": "2026-11-19T00:00:00Z"},
        headers=manager,
    )
    assert bad_range.status_code == 422


async def test_deliveries_page_newest_first_and_filter_by_status(open_client, manager, writer, receiver):
    sub = await subscribe(open_client, manager, receiver.url)
    await write(open_client, writer, *[record(f"p{n}@example.com", "analytics") for n in range(5)])
    await settle(
        open_client, manager, sub, lambda ds: len(ds) == 5 and all(d["status"] == "delivered" for d in ds)
    )
    url = f"{PATH}/{sub['id']}/deliveries"
    page = (await open_client.get(url, params={"limit": 2}, headers=manager)).json()
    seqs = [d["seq"] for d in page["deliveries"]]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == 2
    rest = (
        await open_client.get(url, params={"limit": 10, "cursor": page["next_cursor"]}, headers=manager)
    ).json()
    assert [d["seq"] for d in rest["deliveries"]] == list(range(seqs[-1] - 1, seqs[-1] - 4, -1))
    assert rest["next_cursor"] is None
    assert (await open_client.get(url, params={"status": "dead"}, headers=manager)).json()["deliveries"] == []
    assert (await open_client.get(url, params={"status": "lost"}, headers=manager)).status_code == 422
    assert (await open_client.get(url, params={"cursor": "x"}, headers=manager)).status_code == 422


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_the_address_is_checked_again_at_delivery(local, settings, manager, writer, receiver, host):
    """A subscription made where private networks were allowed is not sent to them once they are not, whether
    its URL names an address or a name that resolves to one."""
    async with AsyncTestClient(create_app(local)) as allowed:
        sub = await subscribe(allowed, manager, receiver.url.replace("127.0.0.1", host))
        await allowed.post(f"{PATH}/{sub['id']}/pause", headers=manager)
    strict = msgspec.structs.replace(local, webhook_allow_private_networks=False)
    async with AsyncTestClient(create_app(strict)) as client:
        await client.post(f"{PATH}/{sub['id']}/resume", headers=manager)
        await write(client, writer, record("oz@example.com", "analytics"))
        got = await settle(client, manager, sub, lambda ds: ds and ds[0]["attempts"] >= 1)
        assert got[0]["status"] == "pending" and "refused" in got[0]["last_error"]
        assert receiver.received == []
