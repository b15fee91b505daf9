"""`GET /api/v1/models[/{owner}/{name}]` over real HTTP, and the schema it publishes
agreeing with the validator it was made from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema_rs
import pytest

from runbase.core import seedance
from runbase.engines import BUILTIN_ENGINES, ENGINE_LICENSES
from runbase.errors import InvalidInput
from runbase.providers import BUILTIN_PROVIDERS
from support import SEEDANCE, LiveServer


def test_models_describe_schemas_prices_and_engines(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(price_audio_per_million_tokens=3_000_000)
    key = server.new_key()
    with server.client(key) as client:
        listing = client.get("/api/v1/models")
        assert listing.status_code == 200
        [model] = listing.json()["data"]
        one = client.get(f"/api/v1/models/{SEEDANCE}")
        assert one.json() == model
        assert model["id"] == SEEDANCE
        assert (model["owner"], model["name"]) == ("bytedance", "seedance-1.5-pro")
        assert model["backends"] == ["engine_fixtures:QuickEngine"]
        assert model["testBackend"] == "preview"
        # The licence of each engine's weights: unknown for an engine runbase does not ship.
        assert [(item["backend"], item["license"]) for item in model["licenses"]] == [
            ("engine_fixtures:QuickEngine", "unknown"),
            ("preview", "Apache-2.0"),
        ]
        schema = model["inputSchema"]
        assert schema["required"] == ["prompt"]
        assert schema["properties"]["resolution"]["enum"] == ["480p", "720p", "1080p"]
        assert schema["properties"]["resolution"]["default"] == "720p"
        assert all(p["description"] for p in schema["properties"].values())
        assert model["outputSchema"]["properties"]["urls"]["maxItems"] == 1
        # The price table is what create charges, at this server's rates.
        row = next(
            r
            for r in model["pricing"]["table"]
            if (r["resolution"], r["aspect_ratio"], r["duration"], r["generate_audio"])
            == ("480p", "1:1", "8", True)
        )
        body = {
            "model": SEEDANCE,
            "input": {"prompt": "x", "resolution": "480p", "aspect_ratio": "1:1", "duration": 8},
        }
        assert client.post("/api/v1/runs", json=body).json()["costUsd"] == row["costUsd"]
        assert model["pricing"]["audioPerMillionTokens"] == 3_000_000
        missing = client.get("/api/v1/models/acme/nothing")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"


def test_every_builtin_engine_states_its_licence(
    start_server: Callable[..., LiveServer],
) -> None:
    assert set(ENGINE_LICENSES) == set(BUILTIN_ENGINES) | set(BUILTIN_PROVIDERS)
    # Listed, not loaded: the listing names engines this machine could not start (no GPU).
    engines = ["ltx2", "ark", "fal", "replicate", "runbase", "preview"]
    server = start_server(engines=engines, workers=0)
    with server.client(server.new_key()) as client:
        [model] = client.get("/api/v1/models").json()["data"]
    licenses = {item["backend"]: item for item in model["licenses"]}
    assert list(licenses) == engines
    ltx2 = licenses["ltx2"]
    assert ltx2["license"] == "LTX-2 Community License"
    assert ltx2["url"].startswith("https://") and "US$10 million" in ltx2["note"]
    assert licenses["preview"]["license"] == "Apache-2.0"
    for provider in ("ark", "fal", "replicate", "runbase"):
        assert "terms" in licenses[provider]["license"].lower(), licenses[provider]
        assert "your" in licenses[provider]["note"]  # the operator's own account
    assert licenses["fal"]["url"] == "https://fal.ai/terms"
    assert licenses["replicate"]["url"] == "https://replicate.com/terms"


def test_etag_and_if_none_match(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0)
    with server.client(server.new_key()) as client:
        first = client.get(f"/api/v1/models/{SEEDANCE}")
        etag = first.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"')
        assert client.get(f"/api/v1/models/{SEEDANCE}").headers["ETag"] == etag
        cached = client.get(f"/api/v1/models/{SEEDANCE}", headers={"If-None-Match": etag})
        assert cached.status_code == 304 and cached.content == b""
        assert cached.headers["ETag"] == etag
        weak = client.get(f"/api/v1/models/{SEEDANCE}", headers={"If-None-Match": f"W/{etag}"})
        assert weak.status_code == 304
        stale = client.get(f"/api/v1/models/{SEEDANCE}", headers={"If-None-Match": '"old"'})
        assert stale.status_code == 200
        listing = client.get("/api/v1/models")
        again = client.get("/api/v1/models", headers={"If-None-Match": listing.headers["ETag"]})
        assert again.status_code == 304
    with server.client() as anonymous:
        assert anonymous.get("/api/v1/models").status_code == 401


# ---- the published schema and the validator agree -------------------------------------

VALID: list[dict[str, Any]] = [
    {"prompt": "x"},
    {"prompt": " a "},
    {"prompt": "x" * 2000},
    *({"prompt": "x", "aspect_ratio": r} for r in seedance.ASPECT_RATIOS),
    *({"prompt": "x", "resolution": r} for r in seedance.RESOLUTIONS),
    *({"prompt": "x", "duration": d} for d in ("4", "8", "12", 4, 8, 12)),
    {"prompt": "x", "generate_audio": False},
    {"prompt": "x", "image_urls": []},
    {"prompt": "x", "image_urls": None},
    {"prompt": "x", "image_urls": ["https://e.com/a.png", "http://e.com/b.png"]},
    {"prompt": "x", "image_urls": ["data:image/png;base64,iVBORw0KGgo="]},
    {"prompt": "x", "seed": -1},
    {"prompt": "x", "seed": 0},
    {"prompt": "x", "seed": 2**32 - 1},
    {"prompt": "x", "camera_fixed": True},
]
INVALID: list[dict[str, Any]] = [
    {},
    {"prompt": ""},
    {"prompt": "  \n "},
    {"prompt": 3},
    {"prompt": "x" * 2001},
    {"prompt": "x", "aspect_ratio": "2:1"},
    {"prompt": "x", "aspect_ratio": 16},
    {"prompt": "x", "resolution": "4k"},
    {"prompt": "x", "duration": "5"},
    {"prompt": "x", "duration": 5},
    {"prompt": "x", "duration": 4.5},
    {"prompt": "x", "duration": True},
    {"prompt": "x", "generate_audio": "yes"},
    {"prompt": "x", "generate_audio": 1},
    {"prompt": "x", "image_urls": ["a", "b", "c"]},
    {"prompt": "x", "image_urls": ["https://e.com/1", "https://e.com/2", "https://e.com/3"]},
    {"prompt": "x", "image_urls": ["ftp://e.com/a.png"]},
    {"prompt": "x", "image_urls": [7]},
    {"prompt": "x", "image_urls": "https://e.com/a.png"},
    {"prompt": "x", "seed": -2},
    {"prompt": "x", "seed": 2**32},
    {"prompt": "x", "seed": "1"},
    {"prompt": "x", "seed": True},
    {"prompt": "x", "camera_fixed": 1},
    {"prompt": "x", "negative_prompt": "blur"},
]


def _accepted_by_validator(value: dict[str, Any]) -> bool:
    try:
        seedance.validate_input(value)
    except InvalidInput:
        return False
    return True


@pytest.mark.parametrize(
    ("value", "is_valid"), [(v, True) for v in VALID] + [(v, False) for v in INVALID]
)
def test_schema_and_validator_agree(value: dict[str, Any], is_valid: bool) -> None:
    validator = jsonschema_rs.validator_for(seedance.input_schema())
    assert validator.is_valid(value) == _accepted_by_validator(value) == is_valid


def test_defaults_in_the_schema_are_what_validation_fills_in() -> None:
    filled = seedance.validate_input({"prompt": "x"})
    for name, spec in seedance.input_schema()["properties"].items():
        if "default" in spec:
            assert filled[name] == spec["default"], name
