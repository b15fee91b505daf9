"""Usage through the admin API, checked against runs made here through the runs API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from conftest import AdminServer
from fakes.common import Fault
from fakes.fal import FakeFal
from fakes.replicate import FakeReplicate
from provider_routes import (
    attempts,
    fal_settings,
    replicate_settings,
)
from provider_routes import create as create_run
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


def test_upstream_cost_and_margin_of_runs_made_at_providers(
    admin_server: Callable[..., AdminServer], fal: FakeFal, replicate: FakeReplicate
) -> None:
    """Runs made here at fal and Replicate (one failed over from fal): each provider's
    upstream cost is what its runs' attempts cost, and its margin net spend minus that."""
    admin = admin_server(
        engines=["fal", "replicate"],
        rate_limit="1000/10seconds",
        **fal_settings(fal),
        **replicate_settings(replicate),
    )
    key = admin.server.new_key()
    made = [admin.server.wait_for_run(key, create_run(admin.server, key)) for _ in range(2)]
    fal.faults.add(Fault.FAILED)  # lost at fal, made by Replicate
    made.append(admin.server.wait_for_run(key, create_run(admin.server, key)))
    assert [run["backend"] for run in made] == ["fal", "fal", "replicate"]
    costs: dict[str, int] = {}
    for run in made:
        for attempt in attempts(admin.server, run["id"]):
            costs[run["backend"]] = costs.get(run["backend"], 0) + attempt.cost_micros
    assert costs["fal"] > 0 and costs["replicate"] > 0

    today = datetime.now(UTC).date()
    window = {"from": f"{today}T00:00:00Z", "to": f"{today}T23:59:00Z", "groupBy": "backend"}
    report = admin.api.get("/usage", params=window).json()
    totals = {series["group"]: series["total"] for series in report["series"]}
    for provider in ("fal", "replicate"):
        total = totals[provider]
        assert total["upstreamCostUsd"] == costs[provider]
        assert total["marginUsd"] == total["netUsd"] - costs[provider]
    assert report["total"]["upstreamCostUsd"] == sum(costs.values())
