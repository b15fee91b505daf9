"""The admin API over real HTTP: authentication, validation, every route, the audit log,
and the perimeter (cross-site refusals, anti-framing headers, switched off)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from conftest import AdminServer
from support import SEEDANCE, LiveServer

RUN = {"model": SEEDANCE, "input": {"prompt": "A lamp", "resolution": "480p"}}


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


def test_only_the_admin_token_opens_the_admin_api(
    admin_server: Callable[..., AdminServer],
) -> None:
    admin = admin_server(workers=0)
    key = admin.server.new_key()
    base = admin.server.base_url
    with httpx.Client(base_url=base) as anonymous:
        error_of(anonymous.get("/admin/api/accounts"), 401, "missing_admin_token")
        for wrong in (key, admin.token + "x", admin.token[:-1], "Bearer"):
            answer = anonymous.get(
                "/admin/api/accounts", headers={"Authorization": f"Bearer {wrong}"}
            )
            error = error_of(answer, 401, "invalid_admin_token")
            assert admin.token not in answer.text and key not in error["message"]
        # ... and the admin token is no API key.
        answer = anonymous.post(
            "/api/v1/runs", json=RUN, headers={"Authorization": f"Bearer {admin.token}"}
        )
        error_of(answer, 401, "invalid_api_key")
    answer = admin.api.get("/accounts")
    assert answer.status_code == 200
    # Every admin answer, refusals included, forbids framing and caching.
    for response in (answer, httpx.get(base + "/admin/api/keys"), httpx.get(base + "/admin")):
        assert "frame-ancestors 'none'" in response.headers.get_list("content-security-policy")
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"


def test_accounts_and_credits(admin_server: Callable[..., AdminServer]) -> None:
    admin = admin_server(workers=0)
    created = admin.api.post("/accounts", json={"name": "acme", "balanceUsd": 2.5})
    assert created.status_code == 201, created.text
    account = created.json()
    assert account["name"] == "acme" and account["balanceMicroUsd"] == 2_500_000
    error_of(admin.api.post("/accounts", json={"name": "acme"}), 409, "account_exists")

    credited = admin.api.post("/accounts/acme/credits", json={"usd": 0.75, "note": "invoice 42"})
    assert credited.json()["balanceMicroUsd"] == 3_250_000
    listed = admin.api.get("/accounts").json()["data"]
    assert [a["name"] for a in listed] == ["default", "acme"] or "acme" in [
        a["name"] for a in listed
    ]
    by_id = admin.api.get(f"/accounts/{account['id']}").json()
    by_name = admin.api.get("/accounts/acme").json()
    assert by_id == by_name and by_id["balanceMicroUsd"] == 3_250_000
    # The note landed in the ledger, next to the starting balance's top-up.
    top_ups = [(e["amountMicroUsd"], e["note"]) for e in by_id["ledger"]]
    assert top_ups == [(750_000, "invoice 42"), (2_500_000, None)]
    admin.server.admin.check_books(account["id"])

    error_of(admin.api.get("/accounts/nobody"), 404, "account_not_found")
    error_of(admin.api.post("/accounts/nobody/credits", json={"usd": 1}), 404, "account_not_found")


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("/accounts", {"name": ""}, {"name"}),
        ("/accounts", {"name": "x", "balanceUsd": -1}, {"balanceUsd"}),
        ("/accounts", {"name": "x", "balanceUsd": "10"}, {"balanceUsd"}),
        ("/accounts", {"name": "x", "owner": "me"}, {"owner"}),
        ("/accounts", {}, {"name"}),
        ("/accounts/default/credits", {"usd": 0}, {"usd"}),
        ("/accounts/default/credits", {"usd": 1, "note": "n" * 501}, {"note"}),
        ("/keys", {"account": "default", "allowedIps": ["not-an-ip"]}, {"allowedIps"}),
        ("/keys", {"account": "default", "allowedIps": ["10.0.0.1"] * 11}, {"allowedIps"}),
        ("/keys", {"account": "default", "spendLimitCents": -5}, {"spendLimitCents"}),
        ("/keys", {"account": "default", "dailyRunQuota": 0}, {"dailyRunQuota"}),
        ("/keys", {"account": "default", "rateLimit": "lots"}, {"rateLimit"}),
        ("/keys", {"account": "default", "spendLimitCents": 1.5}, {"spendLimitCents"}),
        ("/keys", {"account": "default", "test": "yes"}, {"test"}),
        (
            "/keys",
            {"account": "default", "spendLimitCents": -1, "rateLimit": "x"},
            {"spendLimitCents", "rateLimit"},
        ),
    ],
)
def test_invalid_bodies_name_each_bad_field(
    admin_server: Callable[..., AdminServer], path: str, body: dict[str, Any], fields: set[str]
) -> None:
    admin = admin_server(workers=0)
    error = error_of(admin.api.post(path, json=body), 400, "invalid_request")
    assert set(error["fields"]) == fields
    assert all(name in error["message"] for name in fields)
    assert "pydantic" not in error["message"] and "/" + "src" not in error["message"]
    # A refusal changes nothing, and is not an admin action.
    assert admin.api.get("/audit").json()["data"] == []


def test_a_body_that_is_not_json(admin_server: Callable[..., AdminServer]) -> None:
    admin = admin_server(workers=0)
    answer = admin.api.post(
        "/accounts", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert error_of(answer, 400, "invalid_request")["fields"] == {
        "body": "the body is not valid JSON"
    }


def test_keys_with_every_option_and_their_life(admin_server: Callable[..., AdminServer]) -> None:
    admin = admin_server(workers=0)
    admin.api.post("/accounts", json={"name": "acme", "balanceUsd": 5})
    created = admin.api.post(
        "/keys",
        json={
            "account": "acme",
            "name": "prod",
            "allowedIps": ["127.0.0.1", "2001:db8::/32"],
            "spendLimitCents": 500,
            "dailyRunQuota": 100,
            "rateLimit": "100/second",
        },
    )
    assert created.status_code == 201, created.text
    key = created.json()
    secret = key.pop("key")
    assert secret.startswith("sk-") and len(secret) == 43
    assert key["allowedIps"] == ["127.0.0.1/32", "2001:db8::/32"]
    assert (key["spendLimitCents"], key["dailyRunQuota"], key["rateLimit"]) == (
        500,
        100,
        "100/second",
    )
    listed = admin.api.get("/keys", params={"account": "acme"}).json()["data"]
    assert listed == [key] and secret not in str(listed)
    assert admin.api.get(f"/keys/{key['id']}").json() == key

    with admin.runs_client(secret) as client:
        assert client.post("/api/v1/runs", json=RUN).status_code == 200
        assert admin.api.post(f"/keys/{key['id']}/disable").json()["enabled"] is False
        time.sleep(1.1)  # servers cache a found key for a second
        error_of(client.post("/api/v1/runs", json=RUN), 401, "invalid_api_key")
        assert admin.api.post(f"/keys/{key['id']}/enable").json()["enabled"] is True
        time.sleep(1.1)
        assert client.post("/api/v1/runs", json=RUN).status_code == 200
        assert admin.api.delete(f"/keys/{key['id']}").status_code == 204
        time.sleep(1.1)
        error_of(client.post("/api/v1/runs", json=RUN), 401, "invalid_api_key")
    # A deleted key is gone from every admin view, and cannot come back.
    assert admin.api.get("/keys", params={"account": "acme"}).json()["data"] == []
    for answer in (
        admin.api.get(f"/keys/{key['id']}"),
        admin.api.post(f"/keys/{key['id']}/enable"),
        admin.api.delete(f"/keys/{key['id']}"),
    ):
        error_of(answer, 404, "key_not_found")
    test_key = admin.api.post("/keys", json={"account": "acme", "test": True}).json()
    assert test_key["key"].startswith("sk-test-") and test_key["isTest"] is True
    error_of(admin.api.post("/keys", json={"account": "nobody"}), 404, "account_not_found")


def test_every_admin_action_is_audited(admin_server: Callable[..., AdminServer]) -> None:
    admin = admin_server(workers=0)
    account = admin.api.post("/accounts", json={"name": "acme"}).json()
    admin.api.post("/accounts/acme/credits", json={"usd": 1, "note": "trial"})
    key = admin.api.post("/keys", json={"account": "acme", "spendLimitCents": 10}).json()
    admin.api.post(f"/keys/{key['id']}/disable")
    admin.api.post(f"/keys/{key['id']}/enable")
    admin.api.delete(f"/keys/{key['id']}")
    admin.api.get("/accounts")  # reads are not actions

    entries = admin.api.get("/audit").json()["data"]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("key.delete", key["id"]),
        ("key.enable", key["id"]),
        ("key.disable", key["id"]),
        ("key.create", key["id"]),
        ("credits.add", account["id"]),
        ("account.create", account["id"]),
    ]
    fingerprint = admin.api.get("/audit").json()["data"][0]["actor"]
    assert all(e["actor"] == fingerprint for e in entries)
    assert fingerprint.startswith("admin-token:") and admin.token not in str(entries)
    assert {e["address"] for e in entries} == {"127.0.0.1"}
    assert entries[4]["details"] == {"amountMicroUsd": 1_000_000, "note": "trial"}
    assert entries[3]["details"]["spendLimitCents"] == 10 and "key" not in entries[3]["details"]
    page = admin.api.get("/audit", params={"limit": 4}).json()
    rest = admin.api.get("/audit", params={"limit": 4, "before": page["nextBefore"]}).json()
    assert page["data"] + rest["data"] == entries and rest["nextBefore"] is None
    error_of(admin.api.get("/audit", params={"limit": "many"}), 400, "invalid_request")


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_changes_from_another_site_are_refused(
    admin_server: Callable[..., AdminServer], headers: dict[str, str]
) -> None:
    admin = admin_server(workers=0)
    answer = admin.api.post("/accounts", json={"name": "evil"}, headers=headers)
    error_of(answer, 403, "cross_site_request")
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    # Nothing happened; reads from anywhere are fine (they need the token all the same).
    names = [a["name"] for a in admin.api.get("/accounts", headers=headers).json()["data"]]
    assert "evil" not in names
    same_site = {"Origin": admin.server.base_url, "Sec-Fetch-Site": "same-origin"}
    assert admin.api.post("/accounts", json={"name": "ok"}, headers=same_site).status_code == 201


def test_the_runs_browser_sees_every_account_and_cancels(
    admin_server: Callable[..., AdminServer],
) -> None:
    admin = admin_server(workers=0)  # runs stay pending
    keys = {name: admin.server.new_key(name=name) for name in ("acme", "globex")}
    ids = {}
    for name, key in keys.items():
        with admin.runs_client(key) as client:
            ids[name] = [client.post("/api/v1/runs", json=RUN).json()["id"] for _ in range(2)]
    accounts = {a["name"]: a["id"] for a in admin.api.get("/accounts").json()["data"]}

    every = admin.api.get("/runs").json()
    assert [r["id"] for r in every["data"]] == ids["globex"][::-1] + ids["acme"][::-1]
    acme = admin.api.get("/runs", params={"account": accounts["acme"]}).json()["data"]
    assert [r["id"] for r in acme] == ids["acme"][::-1]
    assert {r["accountId"] for r in acme} == {accounts["acme"]}
    page = admin.api.get("/runs", params={"limit": 3}).json()
    rest = admin.api.get("/runs", params={"limit": 3, "cursor": page["nextCursor"]}).json()
    assert [r["id"] for r in page["data"] + rest["data"]] == [r["id"] for r in every["data"]]
    key_id = acme[0]["keyId"]
    assert len(admin.api.get("/runs", params={"key": key_id}).json()["data"]) == 2
    error_of(admin.api.get("/runs", params={"status": "lost"}), 400, "invalid_request")
    error_of(admin.api.get("/runs", params={"createdAfter": "yesterday"}), 400, "invalid_request")
    error_of(
        admin.api.get("/runs", params={"createdAfter": "2026-01-01T00:00:00"}),
        400,
        "invalid_request",
    )

    target = ids["acme"][0]
    run = admin.api.get(f"/runs/{target}").json()
    assert run["status"] == "pending" and run["input"]["prompt"] == "A lamp"
    canceled = admin.api.post(f"/runs/{target}/cancel").json()
    assert canceled["status"] == "canceled" and canceled["cancel"] == "canceled"
    assert admin.api.get("/runs", params={"status": "canceled"}).json()["data"][0]["id"] == target
    admin.server.admin.check_books(accounts["acme"])  # charged once, refunded once
    again = admin.api.post(f"/runs/{target}/cancel").json()
    assert again["status"] == "canceled" and again["cancel"] == "finished"
    assert admin.api.get("/audit").json()["data"][0]["action"] == "run.cancel"
    error_of(admin.api.get("/runs/run_missing"), 404, "run_not_found")


def test_turned_off_there_is_no_admin_side(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0, admin=False)
    with httpx.Client(base_url=server.base_url) as client:
        for path in ("/admin", "/admin/api/accounts", "/admin/static/app.js"):
            error_of(client.get(path), 404, "not_found")
    assert not (server.settings.data_dir / "admin-token").exists()


def test_the_console_is_served_from_the_package(admin_server: Callable[..., AdminServer]) -> None:
    admin = admin_server(workers=0)
    with httpx.Client(base_url=admin.server.base_url) as client:
        page = client.get("/admin")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        policy = page.headers.get_list("content-security-policy")
        assert any("script-src 'self'" in p and "connect-src 'self'" in p for p in policy)
        assert admin.token not in page.text  # the page is public; its data needs the token
        for name in ("app.js", "api.js", "charts.js", "pages.js", "runs.js", "app.css"):
            assert client.get(f"/admin/static/{name}").status_code == 200, name
        chart_library = client.get("/admin/static/uPlot.iife.min.js")
        assert chart_library.status_code == 200 and "uPlot" in chart_library.text[:200]
        for name in ("index.html", "LICENSE-uPlot", "..%2Fconsole.py", "%2e%2e"):
            error_of(client.get(f"/admin/static/{name}"), 404, "not_found")
