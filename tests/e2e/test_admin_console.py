"""The admin console in real headless Chromium against a live server (preview engine): sign
in, create an account and a key with an allowlist and a spend limit, use the key through
the runs API, then find the run and its spend in the usage charts and the runs browser.

Thirty days of synthetic history (other accounts, two providers with their upstream
attempts and a compute engine) are written first, so that the charts have something to
draw around the run made here; the screenshots of each page (artifacts/admin-*.png, copied
to docs/) come from this test.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright
from sqlalchemy import insert
from test_playground import CHROMIUM, CHROMIUM_ARGS

from runbase.core.admin_token import load_admin_token
from runbase.core.clock import now_ms
from runbase.storage.db import Database
from runbase.storage.tables import ApiKeyRow, RunRow, UpstreamAttemptRow
from support import SEEDANCE, Admin, LiveServer

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
DAY_MS = 86_400_000


def seed_history(admin: Admin) -> None:
    """Finished runs of two other accounts over the last 30 days, on two providers (with
    what each attempt cost upstream; some failed over from fal to ark) and LTX-2."""
    rng = random.Random(15)
    for name in ("studio", "agency"):
        admin.create_key(admin.create_account(name, 500.0), name="prod")
    keys = [(k.account_id, k.id) for k in admin.select(ApiKeyRow.__table__)]
    now, runs, attempts = now_ms(), [], []
    for number in range(900):
        account_id, key_id = rng.choice(keys)
        created = now - DAY_MS - rng.randrange(29 * DAY_MS)
        backend = rng.choice(["ark", "ark", "fal", "ltx2"])
        status = rng.choice(["succeeded"] * 12 + ["failed", "failed", "canceled"])
        started = created + rng.randrange(200, 9000)
        took = {"ark": 45_000, "fal": 60_000, "ltx2": 30_000}[backend]
        completed = started + int(took * rng.uniform(0.6, 1.8))
        errors = ["upstream_error", "upstream_error", "timeout", "generation_failed"]
        runs.append(
            {
                "id": f"run_history{number:05d}",
                "account_id": account_id,
                "key_id": key_id,
                "model": SEEDANCE,
                "input": {"prompt": "history"},
                "status": status,
                "cost_micros": rng.choice([103_680, 207_360, 466_560]),
                "backend": backend,
                "error_code": rng.choice(errors) if status == "failed" else None,
                "created_ms": created,
                "started_ms": started,
                "completed_ms": completed,
                "logs": [],
                "progress": 1.0,
                "attempts": 1,
            }
        )
        if backend == "ltx2":
            continue
        tried = ["fal", "ark"] if backend == "ark" and rng.random() < 0.2 else [backend]
        for number, provider in enumerate(tried, start=1):
            made = provider == backend and status == "succeeded"
            attempts.append(
                {
                    "run_id": runs[-1]["id"],
                    "number": number,
                    "provider": provider,
                    "state": "succeeded" if made else "failed",
                    "task_id": f"task-{number:05d}-{provider}",
                    "cost_micros": int(runs[-1]["cost_micros"] * rng.uniform(0.5, 0.8))
                    if made
                    else 0,
                    "created_ms": created,
                }
            )
    database = Database(admin.settings.resolved_database_url)
    try:
        with database.transaction() as connection:
            connection.execute(insert(RunRow.__table__), runs)
            connection.execute(insert(UpstreamAttemptRow.__table__), attempts)
    finally:
        database.dispose()


def ready(page: Page, name: str) -> None:
    page.wait_for_selector(f"body[data-ready={name}]", timeout=30_000)


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("document.querySelector('#toast').hidden = true")
    page.screenshot(path=str(ARTIFACTS / f"admin-{name}.png"), full_page=True)


def create_run(server: LiveServer, key: str, **fields: Any) -> str:
    body = {"model": SEEDANCE, "input": {"prompt": "A lighthouse at dusk", **fields}}
    with server.client(key) as client:
        answer = client.post("/api/v1/runs", json=body)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def test_the_console_from_sign_in_to_the_run_and_its_spend(
    start_server: Callable[..., LiveServer],
) -> None:
    assert shutil.which(CHROMIUM), "chromium is missing: run `make system-deps`"
    server = start_server(engines=["preview"])
    seed_history(server.admin)
    token = load_admin_token(None, server.settings.data_dir).value
    requested: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
            page = context.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(server.base_url + "/admin")
            ready(page, "signin")
            page.fill("#token", "not-the-token")
            page.click("#signin-button")
            page.wait_for_selector("#signin-error:not([hidden])")
            page.fill("#token", token)
            page.click("#signin-button")
            ready(page, "accounts")
            assert page.evaluate("sessionStorage.getItem('runbase.adminToken')") == token
            assert token not in page.url

            # An account, then a key with an allowlist and a spend limit.
            page.fill("#account-form [name=name]", "acme")
            page.fill("#account-form [name=balanceUsd]", "5")
            page.click("#account-form button[type=submit]")
            page.wait_for_selector("tr[data-account=acme]")
            assert page.text_content("tr[data-account=acme] .balance") == "$5"
            shoot(page, "accounts")

            page.click("nav a[data-page=keys]")
            ready(page, "keys")
            page.select_option("#key-form [name=account]", label="acme")
            page.fill("#key-form [name=name]", "console")
            page.fill("#key-form [name=allowedIps]", "127.0.0.1\n10.0.0.0/8")
            page.fill("#key-form [name=spendLimitCents]", "300")
            page.click("#key-form button[type=submit]")
            page.wait_for_selector("#new-key-secret")
            secret = page.text_content("#new-key-secret") or ""
            assert secret.startswith("sk-")
            page.click("#copy-key")
            assert page.evaluate("navigator.clipboard.readText()") == secret
            shoot(page, "keys")

            # The key works through the runs API, from an allowed address.
            run_id = create_run(server, secret, resolution="480p", duration="4")
            run = server.wait_for_run(secret, run_id, timeout=120)
            assert run["status"] == "succeeded", run
            keys = httpx.get(
                f"{server.base_url}/admin/api/keys",
                params={"account": "acme"},
                headers={"Authorization": f"Bearer {token}"},
            ).json()["data"]
            [key_id] = [k["id"] for k in keys if secret.startswith(k["prefix"])]
            assert keys[0]["allowedIps"] == ["127.0.0.1/32", "10.0.0.0/8"]
            assert keys[0]["spendLimitCents"] == 300

            # A second run waits behind a long one; the runs browser cancels it.
            long_id = create_run(server, secret, resolution="1080p", duration="12")
            pending_id = create_run(server, secret, resolution="480p")
            page.goto(f"{server.base_url}/admin#/runs?key={key_id}&status=pending")
            ready(page, "runs")
            page.click(f"tr[data-run={pending_id}]")
            page.click("#cancel-run")
            page.wait_for_selector("#run-detail .pill.canceled", timeout=30_000)
            assert (
                server.wait_for_run(secret, pending_id, until=("canceled",))["status"] == "canceled"
            )

            # The run and its spend in the usage charts: acme's own, today.
            page.click("nav a[data-page=usage]")
            ready(page, "usage")
            # Upstream cost and margin per provider, as the admin API says; none for the
            # compute engines.
            [asked] = [url for url in requested if "groupBy=backend" in url]
            expected = httpx.get(asked, headers={"Authorization": f"Bearer {token}"}).json()
            shown = page.eval_on_selector_all(
                "tr[data-group]",
                "rows => rows.map(r => [r.dataset.group, r.dataset.upstream, r.dataset.margin])",
            )
            assert shown == [
                [
                    s["group"],
                    str(s["total"]["upstreamCostUsd"] or ""),
                    str(s["total"]["marginUsd"] or ""),
                ]
                for s in expected["series"]
            ]
            costed = {group for group, upstream, _ in shown if upstream}
            assert costed == {"ark", "fal"}
            charts = page.evaluate("window.runbaseCharts")
            assert (
                set(charts["margins"]["series"])
                == set(charts["upstream"]["series"])
                == {"ark", "fal"}
            )
            assert page.is_visible("#usage-summary [data-stat=margin]")
            shoot(page, "usage")
            page.select_option("#usage-form [name=account]", label="acme")
            page.click("#usage-form button[type=submit]")
            # Charged: the run, and the long one (in flight or done); the canceled one was
            # refunded.
            [long_run] = [r for r in server.admin.runs() if r.id == long_id]
            net = run["costUsd"] + long_run.cost_micros
            page.wait_for_function(
                "(net) => document.querySelector('#usage-summary')?.dataset.net === net",
                arg=str(net),
                timeout=30_000,
            )
            charts = page.evaluate("window.runbaseCharts")
            spend = charts["spend"]["series"]["net (succeeded or in flight)"]
            assert spend[-1] == net and sum(spend) == net
            assert charts["runs"]["series"]["succeeded"][-1] == 1
            assert charts["runs"]["series"]["canceled"][-1] == 1

            # ... and in the runs browser: thumbnail, playback, input, logs.
            page.goto(f"{server.base_url}/admin#/runs?key={key_id}&status=succeeded")
            ready(page, "runs")
            page.wait_for_selector(f"tr[data-run={run_id}] video")
            page.click(f"tr[data-run={run_id}]")
            page.wait_for_function(
                "() => { const v = document.querySelector('#run-video');"
                " return v && v.readyState >= 2 && v.duration > 0; }",
                timeout=30_000,
            )
            assert page.evaluate("document.querySelector('#run-video').duration") == pytest.approx(
                97 / 24, abs=0.05
            )
            assert '"resolution": "480p"' in (page.text_content("#run-input") or "")
            page.evaluate(
                "() => new Promise((resolve) => { const v = document.querySelector('#run-video');"
                " v.addEventListener('seeked', resolve, { once: true }); v.currentTime = 2; })"
            )
            shoot(page, "runs")

            page.click("nav a[data-page=audit]")
            ready(page, "audit")
            actions = page.eval_on_selector_all(
                "tr[data-action]", "rows => rows.map(r => r.dataset.action)"
            )
            assert actions[:3] == ["run.cancel", "key.create", "account.create"]
            shoot(page, "audit")

            page.click("#signout")
            page.wait_for_selector("#signin:not([hidden])")
            assert page.evaluate("sessionStorage.getItem('runbase.adminToken')") is None
        finally:
            browser.close()

    # Offline by construction, and the token never rode in a URL.
    assert all(url.startswith((server.base_url, "data:", "blob:")) for url in requested), requested
    assert not any(token in url for url in requested)
    page_answer = httpx.get(server.base_url + "/admin")
    assert "frame-ancestors 'none'" in page_answer.headers["content-security-policy"]
