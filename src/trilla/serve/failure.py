"""The one shape of every error answer (4xx) the server gives, documented for the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Failure(BaseModel):
    message: str
    errors: list[dict[str, Any]] | None = Field(None, description="422: each argument's problem (loc, msg, type)")


def failures(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for routes that answer these statuses with a Failure."""
    return {code: {"model": Failure} for code in codes}
