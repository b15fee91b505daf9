"""Request and response shapes of the runs API, as the contract spells them (camelCase)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runbase.core.clock import format_timestamp
from runbase.core.run_view import Run
from runbase.parsing import readable


class RunCreate(BaseModel):
    """The body of `POST /api/v1/runs` (parsed by hand to keep the contract's error codes)."""

    model_config = ConfigDict(populate_by_name=True)

    model: str = Field(examples=["bytedance/seedance-1.5-pro"])
    input: dict[str, Any] = Field(examples=[{"prompt": "A cinematic product photo of a lamp"}])
    webhook: str | None = Field(
        None,
        description="Extension: an https URL that receives the run object on run events "
        "(signed, Standard Webhooks; see GET /api/v1/webhooks/secret)",
    )
    webhook_events_filter: list[Literal["start", "progress", "completed"]] | None = Field(
        None,
        alias="webhookEventsFilter",
        description='Extension: which events to send; default ["start", "completed"]',
    )


class RunOutput(BaseModel):
    urls: list[str]


class RunError(BaseModel):
    message: str
    code: str


class RunPublic(BaseModel):
    """A run as the API shows it; fields not yet known are null."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    model: str
    status: str = Field(
        description="pending, processing, succeeded or failed; canceled (an extension) only "
        "for runs their owner canceled"
    )
    input: dict[str, Any]
    output: RunOutput | None
    error: RunError | None
    cost_usd: int = Field(alias="costUsd", description="Cost in micro-USD, fixed at creation")
    created_at: str = Field(alias="createdAt")
    started_at: str | None = Field(alias="startedAt")
    completed_at: str | None = Field(alias="completedAt")
    backend: str | None = Field(description="The engine that made (or is making) the run")
    progress: float = Field(description="0 to 1 while processing")
    logs: list[str] = Field(description="Short messages from the engine")


class RunRead(RunPublic):
    """A run as reads show it (GET, list, events): with its place in the queue."""

    queue_position: int | None = Field(
        alias="queuePosition",
        description="Extension: pending runs ahead of this one in the queue; null unless pending",
    )


class RunPage(BaseModel):
    """One page of `GET /api/v1/runs`, newest first."""

    model_config = ConfigDict(populate_by_name=True)

    data: list[RunRead]
    next_cursor: str | None = Field(
        alias="nextCursor", description="Pass as `cursor` for the next page; null at the end"
    )


class CostEstimate(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    model: str
    cost_usd: int = Field(alias="costUsd", description="What a create would charge, micro-USD")
    input: dict[str, Any] = Field(description="The input with every default filled in")


def run_public(run: Run, urls: list[str] | None, shown_input: dict[str, Any]) -> dict[str, Any]:
    """The run object as a JSON-ready dict (built directly: this is the hot path of GET),
    with `shown_input` as its input (stored images as links, `storage.inputs`).

    Text is shown `readable`: a run stored before lone surrogates were refused still
    answers (with U+FFFD in their place).
    """
    return {
        "id": run.id,
        "model": run.model,
        "status": run.status,
        "input": readable(shown_input),
        "output": {"urls": urls} if urls is not None else None,
        "error": (
            {"message": readable(run.error_message or ""), "code": run.error_code}
            if run.error_code
            else None
        ),
        "costUsd": run.cost_micros,
        "createdAt": format_timestamp(run.created_ms),
        "startedAt": format_timestamp(run.started_ms),
        "completedAt": format_timestamp(run.completed_ms),
        "backend": run.backend,
        "progress": run.progress,
        "logs": readable(list(run.logs or [])),
    }
