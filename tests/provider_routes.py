"""What the tests of runs at providers share: the settings that point a live runbase at
each fake provider, a run's create, its attempts, and the check of its money.

    fal_settings(fake), replicate_settings(fake), ark_settings(fake), runbase_settings(up)
    create(server, key, **input) -> run id
    attempts(server, run_id)     its rows of `upstream_attempts`, first first
    check_money(server, run_id, refunded=...)   charged once, refunded exactly once if it
                                 did not succeed, and the account's books balance
    check_one_at_a_time(rows)    each attempt ended before the next one began
    served(fake)                 a fake provider on 127.0.0.1 for the length of a block
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fakes.common import FakeServer
from runbase.storage.tables import UpstreamAttemptRow
from support import SEEDANCE, LiveServer

if TYPE_CHECKING:
    from fakes.fal import FakeFal
    from fakes.modelark import FakeModelArk
    from fakes.replicate import FakeReplicate

ARK_KEY = "ark-secret-key-0123456789abcdef"
FAL_KEY = "fal-key-id:fal-key-secret"
REPLICATE_TOKEN = "r8_gateway_test_token"
QUICK = {"poll_interval_seconds": 0.05, "max_poll_interval_seconds": 0.2}


def _quick(provider: str, **values: Any) -> dict[str, Any]:
    found = {f"{provider}_{name}": value for name, value in QUICK.items()}
    found[f"{provider}_submit_retry_seconds"] = 0.3
    found[f"{provider}_allow_private_hosts"] = True
    return found | {f"{provider}_{name}": value for name, value in values.items()}


def fal_settings(fake: FakeFal, **values: Any) -> dict[str, Any]:
    return _quick(
        "fal",
        key=FAL_KEY,
        queue_url=fake.base_url,
        jwks_url=fake.base_url + "/.well-known/jwks.json",
        **values,
    )


def replicate_settings(fake: FakeReplicate, **values: Any) -> dict[str, Any]:
    return _quick("replicate", api_token=REPLICATE_TOKEN, base_url=fake.base_url, **values)


def ark_settings(fake: FakeModelArk, **values: Any) -> dict[str, Any]:
    return _quick("ark", api_key=ARK_KEY, base_url=fake.base_url + "/api/v3", **values)


def runbase_settings(base_url: str, api_key: str, **values: Any) -> dict[str, Any]:
    values = {"poll_interval_seconds": 0.3, "max_poll_interval_seconds": 1.0, **values}
    return _quick("runbase", base_url=base_url, api_key=api_key, **values)


def create(server: LiveServer, key: str, **input: Any) -> str:
    body = {
        "model": SEEDANCE,
        "input": {"prompt": "a lighthouse", "resolution": "480p", "generate_audio": False, **input},
    }
    with server.client(key) as client:
        response = client.post("/api/v1/runs", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def attempts(server: LiveServer, run_id: str) -> list[Any]:
    table = UpstreamAttemptRow.__table__
    rows = server.admin.select(table, table.c.run_id == run_id)
    return sorted(rows, key=lambda row: row.number)


def check_money(server: LiveServer, run_id: str, *, refunded: bool) -> None:
    """Charged once; refunded exactly once if it did not succeed; the books balance."""
    [run] = [r for r in server.admin.runs() if r.id == run_id]
    server.admin.check_books(run.account_id)
    entries = [e for e in server.admin.ledger(run.account_id) if e.run_id == run_id]
    assert sorted(e.kind for e in entries) == (["charge", "refund"] if refunded else ["charge"])
    assert sum(e.amount_micros for e in entries) == (0 if refunded else -run.cost_micros)


def check_one_at_a_time(rows: Sequence[Any]) -> None:
    """Never in flight at two providers: each attempt ended before the next one began."""
    for earlier, later in itertools.pairwise(rows):
        assert earlier.finished_ms is not None and earlier.finished_ms <= later.created_ms


@contextmanager
def served(fake: Any) -> Iterator[Any]:
    """A fake provider served on 127.0.0.1 for the length of the block."""
    server = FakeServer(fake)
    server.start()
    try:
        yield fake
    finally:
        server.stop()
