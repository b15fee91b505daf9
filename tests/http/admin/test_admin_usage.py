"""Usage through the admin API, checked against runs made here through the runs API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import AdminServer
from support import SEEDANCE


def create(admin: AdminServer, key: str, prompt: str, resolution: str = "480p") -> dict[str, Any]:
    body = {"model": SEEDANCE, "input": {"prompt": prompt, "resolution": resolution}}
    with admin.runs_client(key) as client:
        answer = client.post("/api/v1/runs", json=body)
    assert answer.status_code == 200, answer.text
    return admin.server.wait_for_run(key, answer.json()["id"], until=("succeeded", "failed"))


def ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def test_usage_counts_the_runs_made_here(admin_server: Callable[..., AdminServer]) -> None:
    admin = admin_server(test_engine="engine_fixtures:QuickEngine")
    admin.api.post("/accounts", json={"name": "acme", "balanceUsd": 20})
    options = {"account": "acme", "rateLimit": "100/second"}  # wait_for_run polls fast
    live = admin.api.post("/keys", json={**options, "name": "live"}).json()
    test = admin.api.post("/keys", json={**options, "name": "ci", "test": True}).json()
    made = [create(admin, live["key"], "A lamp"), create(admin, live["key"], "A cup", "720p")]
    failed = create(admin, test["key"], "A lamp [fail:generation_failed]")
    passed = create(admin, test["key"], "A lamp")
    assert [r["status"] for r in made] == ["succeeded", "succeeded"]
    assert failed["status"] == "failed"

    today = datetime.now(UTC).date()
    window = {"from": f"{today - timedelta(days=6)}T00:00:00Z", "to": f"{today}T23:59:00Z"}
    report = admin.api.get("/usage", params={**window, "groupBy": "key"}).json()
    assert report["bucket"] == "day" and report["mode"] == "live"
    [series] = report["series"]  # test keys' runs are not live usage
    assert series["group"] == live["id"] and series["label"].startswith("live (sk-")
    assert (
        len(series["buckets"]) == 7 and series["buckets"][-1]["start"] == f"{today}T00:00:00.000Z"
    )
    total = series["total"]
    charged = sum(r["costUsd"] for r in made)
    assert total["runs"]["succeeded"] == 2 and total["totalRuns"] == 2
    assert (total["chargedUsd"], total["refundedUsd"], total["netUsd"]) == (charged, 0, charged)
    assert series["buckets"][-1]["netUsd"] == charged and report["total"]["netUsd"] == charged
    generation = sorted(ms(r["completedAt"]) - ms(r["startedAt"]) for r in made)
    p95 = total["generationMs"]["p95"]
    assert generation[-1] * 0.9 - 10 <= p95 <= generation[-1] * 1.1 + 10
    assert total["upstreamCostUsd"] is None and total["marginUsd"] is None

    tests = admin.api.get("/usage", params={**window, "mode": "test", "groupBy": "backend"}).json()
    [quick] = tests["series"]
    assert quick["group"] == "quick"
    assert quick["total"]["runs"]["failed"] == 1 and quick["total"]["runs"]["succeeded"] == 1
    assert quick["total"]["failures"] == {"generation_failed": 1}
    assert quick["total"]["refundedUsd"] == failed["costUsd"]
    assert quick["total"]["netUsd"] == passed["costUsd"]

    hourly = admin.api.get(
        "/usage", params={**window, "bucket": "hour", "account": live["accountId"], "mode": "all"}
    ).json()
    assert len(hourly["series"][0]["buckets"]) == 7 * 24  # "to" rounded up to the hour
    assert hourly["total"]["totalRuns"] == 4


def test_usage_parameters_are_checked(admin_server: Callable[..., AdminServer]) -> None:
    admin = admin_server(workers=0)
    for params, field in (
        ({"to": "2026-01-02T00:00:00Z"}, "from"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        ({"from": "2026-01-01T00:00:00", "to": "2026-01-02T00:00:00Z"}, "from"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z", "bucket": "hour"}, "to"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "groupBy": "x"}, "groupBy"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "mode": "x"}, "mode"),
    ):
        answer = admin.api.get("/usage", params=params)
        assert answer.status_code == 400, (params, answer.text)
        assert field in answer.json()["error"]["fields"], answer.json()
