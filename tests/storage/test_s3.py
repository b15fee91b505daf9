"""Outputs in S3-compatible storage, against moto's S3 server on 127.0.0.1.

A run through the live server ends with a presigned URL on the bucket that downloads a
valid MP4; large files go up as multipart uploads.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from runbase.media.probe import probe
from support import S3_BUCKET, SEEDANCE, LiveServer, make_settings

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from runbase.storage.blob_location import RemoteFile  # noqa: E402
from runbase.storage.blobs import open_blob_store  # noqa: E402
from runbase.storage.s3 import S3BlobStore, parse_s3_url  # noqa: E402

BUCKET = S3_BUCKET  # moto's bucket (the s3_endpoint fixture, tests/conftest.py)


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError):
        parse_s3_url("https://bucket/a")


def test_settings_pick_the_store(tmp_path: Path, s3_endpoint: str) -> None:
    local = open_blob_store(make_settings(tmp_path))
    assert not isinstance(local, S3BlobStore)
    remote = open_blob_store(
        make_settings(tmp_path, storage_url=f"s3://{BUCKET}/out", s3_endpoint_url=s3_endpoint)
    )
    assert isinstance(remote, S3BlobStore) and remote.object_key("k") == "out/k"


def test_run_output_is_a_presigned_url_on_the_bucket(
    start_server: Callable[..., LiveServer], s3_endpoint: str, tmp_path: Path
) -> None:
    server = start_server(storage_url=f"s3://{BUCKET}/prod/", s3_endpoint_url=s3_endpoint)
    key = server.new_key()
    with server.client(key) as client:
        body = {"model": SEEDANCE, "input": {"prompt": "a harbour", "resolution": "480p"}}
        response = client.post("/api/v1/runs", json=body)
        assert response.status_code == 200, response.text
        run_id = response.json()["id"]
    run = server.wait_for_run(key, run_id)
    assert run["status"] == "succeeded", run
    [url] = run["output"]["urls"]
    assert url.startswith(f"{s3_endpoint}/{BUCKET}/prod/runs/{run_id}/")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=604800" in url  # capped at 7 days

    download = httpx.get(url, timeout=30)
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    video = tmp_path / "downloaded.mp4"
    video.write_bytes(download.content)
    info = probe(video)
    assert info.video is not None and info.video.codec == "h264" and info.video.num_frames > 0

    # (moto does not check signatures, so refusing a tampered URL is left to real S3.)
    # Nothing was written locally, and /files/ serves no S3 keys.
    assert not (server.settings.outputs_dir / "runs").exists()
    path = url.split(f"/{BUCKET}/prod/")[1].split("?")[0]
    with server.client() as client:
        assert client.get(f"/files/{path}?expires=9999999999&sig=x").status_code == 404
    server.admin.check_books(server.admin.runs()[0].account_id)


def test_large_files_go_up_in_parts(s3_endpoint: str, tmp_path: Path) -> None:
    store = S3BlobStore(
        BUCKET,
        "big",
        endpoint_url=s3_endpoint,
        multipart_threshold_bytes=5 * 1024 * 1024,
        multipart_chunk_bytes=5 * 1024 * 1024,
    )
    source = tmp_path / "large.bin"
    payload = os.urandom(12 * 1024 * 1024)
    source.write_bytes(payload)
    asyncio.run(store.put_file("runs/r1/large.bin", source))
    head = s3_client(s3_endpoint).head_object(Bucket=BUCKET, Key="big/runs/r1/large.bin")
    assert head["ContentLength"] == len(payload)
    assert head["ETag"].strip('"').endswith("-3")  # a multipart ETag: 3 parts of <= 5 MiB
    url = store.signed_url("runs/r1/large.bin", base_url="http://unused", ttl_seconds=60)
    assert "X-Amz-Expires=60" in url
    assert httpx.get(url, timeout=30).content == payload


def test_the_bucket_serves_every_blob_and_runbase_signs_no_file_link(
    s3_endpoint: str, tmp_path: Path
) -> None:
    store = S3BlobStore(BUCKET, "loc", endpoint_url=s3_endpoint)
    source = tmp_path / "output.mp4"
    source.write_bytes(b"mp4" * 100)
    asyncio.run(store.put_file("runs/r2/output.mp4", source))
    assert source.exists()  # uploaded; the caller's scratch clean-up removes it

    location = store.locate("runs/r2/output.mp4", base_url="http://unused", ttl_seconds=90)
    assert isinstance(location, RemoteFile)
    assert location.url.startswith(f"{s3_endpoint}/{BUCKET}/loc/runs/r2/output.mp4?")
    assert "X-Amz-Expires=90" in location.url
    download = httpx.get(location.url, timeout=30)
    assert download.content == b"mp4" * 100 and download.headers["content-type"] == "video/mp4"
    # A link to a key with nothing behind it is not checked here: the bucket answers 404.
    missing = store.locate("runs/none/output.mp4", base_url="http://unused", ttl_seconds=90)
    assert httpx.get(missing.url, timeout=30).status_code == 404
    # No /files/ link is this store's, whatever it carries.
    local = open_blob_store(make_settings(tmp_path))
    url = local.signed_url("runs/r2/output.mp4", base_url="http://h/", ttl_seconds=60)
    expires, signature = url.split("expires=")[1].split("&sig=")
    assert local.verify("runs/r2/output.mp4", int(expires), signature)
    assert not store.verify("runs/r2/output.mp4", int(expires), signature)


def test_the_openai_content_route_redirects_to_the_bucket(
    start_server: Callable[..., LiveServer], s3_endpoint: str
) -> None:
    server = start_server(storage_url=f"s3://{BUCKET}/prod/", s3_endpoint_url=s3_endpoint)
    key = server.new_key()
    body = {"model": SEEDANCE, "input": {"prompt": "a harbour", "resolution": "480p"}}
    with server.client(key) as client:
        run_id = client.post("/api/v1/runs", json=body).json()["id"]
    assert server.wait_for_run(key, run_id)["status"] == "succeeded"
    with server.client(key) as client:
        answer = client.get(f"/v1/videos/{run_id}/content")
        assert answer.status_code == 302, answer.text
        location = answer.headers["location"]
        assert location.startswith(f"{s3_endpoint}/{BUCKET}/prod/runs/{run_id}/output.mp4?")
        assert "x-ratelimit-limit" in answer.headers
        thumbnail = client.get(f"/v1/videos/{run_id}/content", params={"variant": "thumbnail"})
    assert thumbnail.status_code == 400
    assert thumbnail.json()["error"]["param"] == "variant"
    video = httpx.get(location, timeout=30)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"


def test_images_sent_inside_a_create_are_stored_in_the_bucket(
    start_server: Callable[..., LiveServer], s3_endpoint: str
) -> None:
    """storage/inputs.py on S3: the data URI goes to the bucket, the run shows a presigned
    link to it, and the engine gets the data URI back exactly (it renders its first frame)."""
    import base64
    import io

    from PIL import Image

    server = start_server(storage_url=f"s3://{BUCKET}/prod/", s3_endpoint_url=s3_endpoint)
    key = server.new_key()
    buffer = io.BytesIO()
    Image.new("RGB", (640, 360), (20, 120, 200)).save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    body = {"model": SEEDANCE, "input": {"prompt": "a harbour", "image_urls": [uri]}}
    with server.client(key) as client:
        run_id = client.post("/api/v1/runs", json=body).json()["id"]
    run = server.wait_for_run(key, run_id)
    assert run["status"] == "succeeded", run
    [link] = run["input"]["image_urls"]
    assert link.startswith(f"{s3_endpoint}/{BUCKET}/prod/inputs/") and "X-Amz-Signature=" in link
    served = httpx.get(link, timeout=30)
    assert served.content == buffer.getvalue()
    assert served.headers["content-type"] == "image/png"
