"""How the gateway waits on an upstream task, through a live runbase and a fake ModelArk:
polls keep to one schedule counted from the submit (a slow answer does not push the later
polls back), and a cancel arriving between two polls ends the run at once, not at the
next poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fakes.modelark import FakeModelArk
from provider_routes import ARK_KEY
from support import SEEDANCE, LiveServer


def start(
    start_server: Callable[..., LiveServer], fake: FakeModelArk, **overrides: Any
) -> LiveServer:
    values: dict[str, Any] = {
        "engines": ["ark"],
        "ark_base_url": fake.base_url + "/api/v3",
        "ark_api_key": ARK_KEY,
        "ark_allow_private_hosts": True,
        "rate_limit": "1000/10seconds",
        **overrides,
    }
    return start_server(**values)


def create(server: LiveServer, key: str) -> str:
    body = {
        "model": SEEDANCE,
        "input": {"prompt": "a lighthouse", "resolution": "480p", "generate_audio": False},
    }
    with server.client(key) as client:
        response = client.post("/api/v1/runs", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def test_polls_keep_to_the_schedule_from_the_submit_however_slow_the_answers(
    start_server: Callable[..., LiveServer], start_ark: Callable[..., FakeModelArk]
) -> None:
    # The task ends 6.8 s after its submit; each poll takes 1.5 s to answer. Polls are due
    # 1 s after the submit, then 1.5x longer each time up to 2 s: at 1, 2.5, 4.5, 6.5 s
    # (the last one finds it done). Counted from each answer instead, they would come at
    # 1, 4, 7.5 s. A loaded machine only makes a poll late, so lateness has some room.
    fake = start_ark(queued_seconds=5.8, running_seconds=1.0)
    fake.poll_delay_seconds = 1.5
    server = start(
        start_server, fake, ark_poll_interval_seconds=1.0, ark_max_poll_interval_seconds=2.0
    )
    key = server.new_key()
    run = server.wait_for_run(key, create(server, key), timeout=60)
    assert run["status"] == "succeeded", run
    [task] = fake.tasks.values()
    after_submit = [round(at - task.created_at, 2) for task_id, at in fake.polls]
    assert all(task_id == task.id for task_id, _ in fake.polls)
    assert len(after_submit) == 4, after_submit  # no poll at once, none after the end
    for due, at in zip((1.0, 2.5, 4.5, 6.5), after_submit, strict=True):
        assert due - 0.05 <= at <= due + 0.9, after_submit


def test_a_cancel_between_two_polls_ends_the_run_at_once(
    start_server: Callable[..., LiveServer], start_ark: Callable[..., FakeModelArk]
) -> None:
    # Polls 30 s apart: the cancel is seen by the next heartbeat (1 s), which wakes the
    # run's wait; the task is cancelled upstream and the run refunded.
    fake = start_ark(queued_seconds=120.0)
    server = start(
        start_server,
        fake,
        ark_poll_interval_seconds=30.0,
        ark_max_poll_interval_seconds=30.0,
        cancel_wait_seconds=20.0,
    )
    key = server.new_key()
    run_id = create(server, key)
    deadline = time.monotonic() + 20
    while not fake.tasks and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.tasks, "the run never reached the provider"
    time.sleep(0.5)  # the run is asleep until its first poll, 30 s after the submit
    started = time.monotonic()
    with server.client(key) as client:
        response = client.post(f"/api/v1/runs/{run_id}/cancel")
    took = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"
    assert took < 8, f"the cancel took {took:.1f} s"
    [task] = fake.tasks.values()
    assert fake.status(task) == "cancelled"
    assert fake.polls == []  # it never needed a poll to notice
    account = next(r.account_id for r in server.admin.runs() if r.id == run_id)
    server.admin.check_books(account)
    kinds = sorted(e.kind for e in server.admin.ledger(account) if e.run_id == run_id)
    assert kinds == ["charge", "refund"]
