"""A create whose answer is lost is retried with its Idempotency-Key: one run, one charge.

The client talks to a live server through `LossyProxy`, which lets the server handle the
first create and then loses its answer (the connection drops, or a 502 comes instead).
"""

from __future__ import annotations

import pytest
from faces import Connect
from lossy_proxy import LossyProxy

from runbase.client import SEEDANCE_1_5_PRO, ConnectionFailed, RunStatus, SeedanceInput
from support import LiveServer

PROMPT = SeedanceInput("A ceramic lamp on a desk", resolution="480p")


def _is_create(method: str, path: str) -> bool:
    return method == "POST" and path == "/api/v1/runs"


@pytest.mark.parametrize("mode", ["drop", "502"])
def test_a_create_whose_answer_is_lost_is_retried_without_a_second_run(
    server: LiveServer, connect: Connect, mode: str
) -> None:
    proxy = LossyProxy(server.base_url, mode=mode, lose=_is_create)
    try:
        key = server.new_key(balance_usd=1.0)
        run = connect(key, proxy.base_url).runs.create(SEEDANCE_1_5_PRO, PROMPT)
    finally:
        proxy.close()
    assert run.status in (RunStatus.PENDING, RunStatus.PROCESSING, RunStatus.SUCCEEDED)
    creates = [exchange for exchange in proxy.log if _is_create(exchange.method, exchange.path)]
    assert [exchange.lost for exchange in creates] == [True, False]
    # The server created the run on the first request; the second was answered with it.
    assert " 200 " in creates[0].head and "idempotent-replayed" not in creates[0].head.lower()
    assert "idempotent-replayed: true" in creates[1].head.lower()
    [row] = server.admin.runs()
    assert row.id == run.id
    account = row.account_id
    [charge] = [entry for entry in server.admin.ledger(account) if entry.kind == "charge"]
    assert -charge.amount_micros == run.cost_micro_usd and charge.run_id == run.id
    server.admin.check_books(account)


def test_a_post_without_a_key_is_not_resent(server: LiveServer, connect: Connect) -> None:
    proxy = LossyProxy(server.base_url, mode="drop", lose=_is_create)
    try:
        client = connect(server.new_key(), proxy.base_url)
        body = {"model": SEEDANCE_1_5_PRO, "input": PROMPT.to_dict()}
        with pytest.raises(ConnectionFailed):
            client.request("POST", "/api/v1/runs", json=body)
    finally:
        proxy.close()
    assert [exchange.lost for exchange in proxy.log] == [True]
    assert len(server.admin.runs()) == 1  # created once, and the client was told it failed


def test_the_callers_own_key_makes_a_repeated_create_replay(
    server: LiveServer, connect: Connect
) -> None:
    client = connect(server.new_key(), server.base_url)
    first = client.runs.create(SEEDANCE_1_5_PRO, PROMPT, idempotency_key="order-42")
    again = client.runs.create(SEEDANCE_1_5_PRO, PROMPT, idempotency_key="order-42")
    other = client.runs.create(SEEDANCE_1_5_PRO, PROMPT)
    assert again.id == first.id and other.id != first.id
    assert len(server.admin.runs()) == 2
