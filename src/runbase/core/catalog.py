"""The model catalog: model id -> input schema, price and output geometry.

Engines are chosen by configuration (`Settings.engines`), not here: every engine serves the
catalog's models through the same `GenerationRequest`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runbase.core import seedance
from runbase.errors import ModelNotFound


@dataclass(frozen=True)
class ModelSpec:
    """One model: how its input is checked and priced, and what its output looks like."""

    id: str
    display_name: str
    validate_input: Callable[[Mapping[str, Any]], dict[str, Any]]
    price_micros: Callable[[Mapping[str, Any], seedance.PriceRates], int]
    output_geometry: Callable[[Mapping[str, Any], str | None], seedance.Geometry]
    nearest_aspect_ratio: Callable[[int, int], str]
    input_schema: Callable[[], dict[str, Any]]
    """The input's JSON Schema, made from the same field table as `validate_input`."""
    output_schema: Callable[[], dict[str, Any]]
    price_table: Callable[[seedance.PriceRates], list[dict[str, Any]]]
    max_image_bytes: int
    """The largest input image, in bytes (`media.images.FetchPolicy.max_bytes`)."""


MODELS: Mapping[str, ModelSpec] = {
    seedance.MODEL_ID: ModelSpec(
        id=seedance.MODEL_ID,
        display_name="Seedance 1.5 Pro",
        validate_input=seedance.validate_input,
        price_micros=seedance.price_micros,
        output_geometry=seedance.output_geometry,
        nearest_aspect_ratio=seedance.nearest_aspect_ratio,
        input_schema=seedance.input_schema,
        output_schema=seedance.output_schema,
        price_table=seedance.price_table,
        max_image_bytes=seedance.MAX_IMAGE_BYTES,
    )
}


def find_model(model_id: str) -> ModelSpec:
    try:
        return MODELS[model_id]
    except KeyError:
        raise ModelNotFound(
            f"model {model_id!r} is not available; available: {', '.join(MODELS)}"
        ) from None
