"""What a hostile client sends, over real HTTP on every surface: refused in the surface's
own envelope before anything is charged (balance and ledger checked after each), never a
500 or a cut connection, and no message that shows a path or a library's wording.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from envelopes import error_of, refused

from runbase.core import creation, keys
from runbase.storage.db import Database
from support import SEEDANCE, LiveServer

FAST = "100000/second"
BALANCE = 10_000_000
DEEP = 10_000


@dataclass
class Victim:
    server: LiveServer
    account: str
    key: str
    ledger: list[object]

    def client(self) -> httpx.Client:
        return self.server.client(self.key)

    def nothing_charged(self) -> None:
        """No run, no new ledger entry, the balance as it was."""
        assert self.server.admin.runs() == []
        assert self.server.admin.ledger(self.account) == self.ledger
        assert self.server.admin.balance(self.account) == BALANCE


@pytest.fixture
def victim(start_server: Callable[..., LiveServer]) -> Iterator[Victim]:
    server = start_server(workers=0)
    account = server.admin.create_account("victim", BALANCE / 1e6)
    key = server.admin.create_key(account, rate_limit=FAST)
    yield Victim(server, account, key, server.admin.ledger(account))


def _runbase(prompt: bytes, extra: bytes = b"") -> bytes:
    return (
        b'{"model":"' + SEEDANCE.encode() + b'","input":{"prompt":' + prompt + b"}" + extra + b"}"
    )


def _openai(prompt: bytes, extra: bytes = b"") -> bytes:
    return b'{"model":"sora-2","size":"864x496","prompt":' + prompt + extra + b"}"


def _ark(prompt: bytes, extra: bytes = b"") -> bytes:
    text = b'{"type":"text","text":' + prompt + b"}"
    return b'{"model":"seedance-1-5-pro-251215","content":[' + text + b"]" + extra + b"}"


# Every route that reads a JSON body, with a body builder: (path, builder).
JSON_ROUTES = [
    ("/api/v1/runs", _runbase),
    ("/v1/runs", _runbase),
    ("/api/v1/runs/estimate", _runbase),
    ("/v1/runs/estimate", _runbase),
    ("/v1/videos", _openai),
    ("/api/v3/contents/generations/tasks", _ark),
]
NESTED = b"[" * DEEP + b"]" * DEEP
# Text that is not valid Unicode, where it can hide in a body: (prompt, extra fields).
INVALID_TEXT = [
    (b'"\\ud800"', b""),  # a lone high surrogate escape
    (b'"a lamp \\udfff"', b""),  # a lone low one
    (b'"\\uDBFF\\u0041"', b""),  # a high one followed by no low one
    (b'"a lamp"', b',"\\ud800x":1'),  # in a key
    (b'"a lamp"', b',"n":{"deep":["ok",["\\ud801"]]}'),  # deep in a value
    (b'"\xed\xa0\x80"', b""),  # a surrogate's own bytes (CESU-8)
]


def test_deep_json_is_refused_on_every_create_route(victim: Victim) -> None:
    with victim.client() as client:
        for path, build in JSON_ROUTES:
            body = build(b'"a lamp"', b',"n":' + NESTED)
            answer = client.post(path, content=body, headers={"Content-Type": "application/json"})
            error = refused(path, answer)
            assert "32 deep" in error["message"], error
            if path.startswith(("/api/v1", "/v1/runs")):
                assert error["code"] == "invalid_json"
            victim.nothing_charged()


@pytest.mark.parametrize(("prompt", "extra"), INVALID_TEXT)
def test_text_that_is_not_unicode_is_refused_before_any_charge(
    victim: Victim, prompt: bytes, extra: bytes
) -> None:
    with victim.client() as client:
        for path, build in JSON_ROUTES:
            answer = client.post(
                path, content=build(prompt, extra), headers={"Content-Type": "application/json"}
            )
            error = refused(path, answer)
            assert "not valid Unicode" in error["message"], error
            if not path.startswith(("/v1/videos", "/api/v3")):
                assert error["code"] == "invalid_json"
            victim.nothing_charged()
        # The same fields in valid text are accepted: the refusal is the text, not the shape.
        fine = client.post("/api/v1/runs", json={"model": SEEDANCE, "input": {"prompt": "😀"}})
        assert fine.status_code == 200 and fine.json()["input"]["prompt"] == "😀"


def _multipart(name: bytes, value: bytes) -> tuple[bytes, str]:
    boundary = "hostile-boundary"
    body = (
        b'--hostile-boundary\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na lamp\r\n'
        b'--hostile-boundary\r\nContent-Disposition: form-data; name="'
        + name
        + b'"\r\n\r\n'
        + value
        + b"\r\n--hostile-boundary--\r\n"
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"size\xff", b"864x496"),  # a field name that is not UTF-8
        (b"seed", b"\xed\xa0\x80"),  # a value holding a surrogate's bytes
        (b"seed", b"--5"),
        (b"seed", "²".encode()),
        (b"seed", b"99999999999999999999999"),
        (b"seconds", "٤".encode()),  # an Arabic-Indic four
    ],
)
def test_multipart_fields_are_read_strictly(victim: Victim, name: bytes, value: bytes) -> None:
    body, content_type = _multipart(name, value)
    with victim.client() as client:
        answer = client.post("/v1/videos", content=body, headers={"Content-Type": content_type})
    refused("/v1/videos", answer)
    victim.nothing_charged()


def test_client_integers_are_ascii_digits_in_64_bits(victim: Victim) -> None:
    bad_numbers = ["²", "--5", "-1", "1_0", " 5", "٣", "99999999999999999999999", "1e3", ""]
    huge_cursor = base64.urlsafe_b64encode(b"99999999999999999999999:run_x").decode()
    sup_cursor = base64.urlsafe_b64encode("²:run_x".encode()).decode()
    with victim.client() as client:
        for number in bad_numbers:
            for path, name in [
                ("/api/v1/runs", "limit"),
                ("/v1/runs", "limit"),
                ("/v1/videos", "limit"),
                ("/api/v3/contents/generations/tasks", "page_size"),
                ("/api/v3/contents/generations/tasks", "page_num"),
            ]:
                if number == "" and path.startswith("/api/v3"):
                    continue  # ModelArk reads an empty page parameter as absent
                answer = client.get(path, params={name: number})
                error = refused(path, answer)
                assert name in error["message"], error
        for cursor in (huge_cursor, sup_cursor, "\x00", "%00"):
            refused("/api/v1/runs", client.get("/api/v1/runs", params={"cursor": cursor}))
        for header in ("²s", "٣s", "1e3s", "--5s", "99999999999999s", "1h²", "²"):
            answer = client.post(
                "/api/v1/runs",
                json={"model": SEEDANCE, "input": {"prompt": "x"}},
                headers={"Cancel-After": _raw(header)},
            )
            assert refused("/api/v1/runs", answer)["code"] == "invalid_request"
        victim.nothing_charged()


def _raw(text: str) -> bytes:
    """A header value as raw bytes: Latin-1 where it can be (so that "²" arrives as the
    superscript itself, which str.isdigit() accepts), UTF-8 otherwise."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


def test_an_unreadable_prefer_wait_is_ignored(victim: Victim) -> None:
    body = {"model": SEEDANCE, "input": {"prompt": "a lamp"}}
    with victim.client() as client:
        for prefer in ("wait=²", "wait=--5", "wait=1e3", "wait=٣", "wait=" + "9" * 30 + "x"):
            answer = client.post("/api/v1/runs", json=body, headers={"Prefer": _raw(prefer)})
            assert answer.status_code == 200, (prefer, answer.text)
            assert "preference-applied" not in answer.headers
    assert len(victim.server.admin.runs()) == 5


def test_last_event_id_is_a_400_or_the_start_never_a_cut_stream(victim: Victim) -> None:
    with victim.client() as client:
        run = client.post("/api/v1/runs", json={"model": SEEDANCE, "input": {"prompt": "x"}})
        run_id = run.json()["id"]
        assert client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
        for header in ("²", "--5", "-1", "99999999999999999999999", "1e3", "٣"):
            answer = client.get(
                f"/api/v1/runs/{run_id}/events", headers={"Last-Event-ID": _raw(header)}
            )
            error = refused("/api/v1/runs", answer)
            assert "Last-Event-ID" in error["message"]
        for header in ("",):  # blank: from the start
            with client.stream(
                "GET", f"/api/v1/runs/{run_id}/events", headers={"Last-Event-ID": header}
            ) as stream:
                text = "".join(stream.iter_text())
            assert text.count("event: status") == 2 and "canceled" in text
        largest = str(2**63 - 1)  # readable, beyond every event: nothing more, a clean end
        with client.stream(
            "GET", f"/api/v1/runs/{run_id}/events", headers={"Last-Event-ID": largest}
        ) as stream:
            assert stream.status_code == 200
            assert "event:" not in "".join(stream.iter_text())


def test_identifiers_no_row_can_have_are_simply_not_found(victim: Victim) -> None:
    with victim.client() as client:
        for run_id in ("run_%00", "r%00n", "run_é", "run_%ED%A0%80", "a" * 5000):
            for path in (
                f"/api/v1/runs/{run_id}",
                f"/v1/videos/{run_id}",
                f"/api/v3/contents/generations/tasks/{run_id}",
            ):
                refused(path, client.get(path), 404)
            refused("/api/v1/runs", client.post(f"/api/v1/runs/{run_id}/cancel"), 404)
        refused("/api/v1/runs", client.get("/api/v1/runs", params={"model": "\x00"}))
        assert client.get("/api/v1/runs", params={"model": "é"}).json()["data"] == []
        tasks = "/api/v3/contents/generations/tasks"
        listed = client.get(tasks, params={"filter.task_ids": ["run_\x00", "x\x00"]})
        assert listed.status_code == 200 and listed.json() == {"items": [], "total": 0}
        with_after = client.get("/v1/videos", params={"after": "run_\x00"})
        refused("/v1/videos", with_after)


def test_a_malformed_file_link_is_answered_in_our_words(victim: Victim) -> None:
    with victim.client() as client:
        for expires in ("not-a-number", "²", "99999999999999999999999", "-1"):
            answer = client.get(
                "/files/runs/run_x/output.mp4", params={"expires": expires, "sig": "x"}
            )
            error = refused("/files", answer)
            assert error["code"] == "invalid_request" and "expires" in error["message"]
        answer = client.get("/files/runs/run_x/output.mp4", params={"expires": "1", "sig": "é"})
        refused("/files", answer, 404)


def _store_damaged_run(server: LiveServer, key: str, prompt: str) -> str:
    """A run whose prompt holds a lone surrogate, stored as before this was refused."""
    database = Database(server.settings.resolved_database_url)
    try:
        with database.transaction() as connection:
            record = keys.find_key(connection, key)
            assert record is not None
            run = creation.create_run(
                connection,
                key=record,
                model=SEEDANCE,
                validated_input={
                    "prompt": prompt,
                    "aspect_ratio": "16:9",
                    "resolution": "720p",
                    "duration": "4",
                    "generate_audio": True,
                    "image_urls": [],
                },
                cost=207_360,
            )
            return str(run.id)
    finally:
        database.dispose()


def test_an_account_holding_a_damaged_run_can_still_read_list_and_cancel(
    victim: Victim,
) -> None:
    run_id = _store_damaged_run(victim.server, victim.key, "a lamp \ud800 on a desk")
    shown = "a lamp \ufffd on a desk"
    tasks = "/api/v3/contents/generations/tasks"
    with victim.client() as client:
        assert client.get(f"/api/v1/runs/{run_id}").json()["input"]["prompt"] == shown
        assert client.get("/v1/runs").json()["data"][0]["input"]["prompt"] == shown
        assert client.get(f"/v1/videos/{run_id}").json()["prompt"] == shown
        assert client.get("/v1/videos").json()["data"][0]["id"] == run_id
        assert client.get(f"{tasks}/{run_id}").json()["id"] == run_id
        assert client.get(tasks).json()["total"] == 1
        canceled = client.post(f"/api/v1/runs/{run_id}/cancel")
        assert canceled.status_code == 200 and canceled.json()["input"]["prompt"] == shown
        with client.stream("GET", f"/api/v1/runs/{run_id}/events") as stream:
            frames = "".join(stream.iter_text())
        final = json.loads(frames.rsplit("data: ", 1)[1])
        assert final["run"]["input"]["prompt"] == shown
    victim.server.admin.check_books(victim.account)
    assert victim.server.admin.balance(victim.account) == BALANCE  # charged, then refunded


def test_every_405_names_the_methods_allowed(victim: Victim) -> None:
    with victim.client() as client:
        for method, path, allowed in [
            ("DELETE", "/api/v1/runs", {"GET", "POST"}),
            ("PUT", "/v1/runs/run_x", {"GET"}),
            ("POST", "/files/runs/run_x/output.mp4", {"GET", "HEAD"}),
            ("PATCH", "/v1/videos/video_x", {"GET", "DELETE"}),
            ("PUT", "/api/v3/contents/generations/tasks", {"GET", "POST"}),
        ]:
            answer = client.request(method, path)
            error_of(path, answer)
            assert answer.status_code == 405, (method, path, answer.text)
            assert set(answer.headers["allow"].split(", ")) == allowed, (path, answer.headers)
