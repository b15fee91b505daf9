"""The yardstick for benchmarks/api.py: a bare FastAPI app answering a run-sized JSON object.

GET /bare/{id} returns the object; POST /bare parses the JSON body first, as runbase must.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SAMPLE: dict[str, Any] = {
    "id": "run_01jbench0000000000000000000",
    "model": "bytedance/seedance-1.5-pro",
    "status": "pending",
    "input": {
        "prompt": "A ceramic lamp on a wooden desk, warm light",
        "aspect_ratio": "16:9",
        "resolution": "720p",
        "duration": "4",
        "generate_audio": True,
        "image_urls": [],
    },
    "output": None,
    "error": None,
    "costUsd": 207360,
    "createdAt": "2026-11-24T12:00:00.000Z",
    "startedAt": None,
    "completedAt": None,
    "backend": None,
    "progress": 0.0,
    "logs": [],
}

app = FastAPI()


@app.get("/bare/{run_id}")
async def read_bare(run_id: str) -> JSONResponse:
    return JSONResponse(SAMPLE)


@app.post("/bare")
async def create_bare(request: Request) -> JSONResponse:
    json.loads(await request.body())
    return JSONResponse(SAMPLE)
