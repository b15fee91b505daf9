"""Output files speak HTTP as players and download tools expect, over real HTTP: HEAD like
GET without the body, Range read as RFC 9110 says (206, 416 with `Content-Range: bytes
*/size`, or the whole file for a header that cannot be read), on the signed file links and
on the OpenAI-compatible content route."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from envelopes import refused

from support import SEEDANCE, LiveServer

FAST = "100000/second"


def test_file_links_answer_head_and_range(start_server: Callable[..., LiveServer]) -> None:
    server = start_server()
    key = server.new_key(rate_limit=FAST)
    body = {"model": SEEDANCE, "input": {"prompt": "A lamp", "resolution": "480p"}}
    with server.client(key) as client:
        run_id = client.post("/api/v1/runs", json=body).json()["id"]
    run = server.wait_for_run(key, run_id)
    assert run["status"] == "succeeded", run
    [url] = run["output"]["urls"]
    content_route = f"{server.base_url}/v1/videos/{run_id}/content"
    with server.client(key) as client:
        whole = client.get(url)
        size = len(whole.content)
        assert whole.status_code == 200 and size > 1000
        for target in (url, content_route):
            head = client.head(target)
            assert head.status_code == 200 and head.content == b""
            assert int(head.headers["content-length"]) == size
            assert head.headers["content-type"] == "video/mp4"
            assert head.headers["accept-ranges"] == "bytes"

            part = client.get(target, headers={"Range": "bytes=0-99"})
            assert part.status_code == 206 and part.content == whole.content[:100]
            assert part.headers["content-range"] == f"bytes 0-99/{size}"
            tail = client.get(target, headers={"Range": "bytes=-10"})
            assert tail.status_code == 206 and tail.content == whole.content[-10:]
            past = client.get(target, headers={"Range": f"bytes={size}-"})
            path = "/v1/videos" if target == content_route else "/files"
            assert refused(path, past, 416)["code"] == "range_not_satisfiable"
            assert past.headers["content-range"] == f"bytes */{size}"
            assert client.head(target, headers={"Range": f"bytes={size + 5}-"}).status_code == 416
            # Unreadable or invalid: ignored, the whole file (RFC 9110 allows either).
            for header in ("bytes=abc", "bytes=5-2", "items=0-1", "bytes=²-3", "bytes="):
                answer = client.get(target, headers={"Range": header.encode("latin-1")})
                assert answer.status_code == 200, (target, header, answer.text[:200])
                assert answer.content == whole.content
        # A link whose signature does not match is missing, HEAD or GET.
        forged = url.replace("sig=", "sig=0")
        assert httpx.head(forged).status_code == 404
        refused("/files", client.get(forged), 404)
