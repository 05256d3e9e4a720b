"""A route of your own beside trilla's: `create_app` gives a FastAPI application over loaded runs, and a
router included in it is served by the same server, listed in its OpenAPI document, and guarded as every
other route is (host names, the bearer token, the upload limit). tests/test_extending.py serves it.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel, Field

from trilla.runs import Run
from trilla.serve import create_app
from trilla.serve.failure import failures


class Classes(BaseModel):
    model: str = Field(description="the served model's name")
    classes: list[str] = Field(description="what it tells apart, in the order of its outputs")


def classes_router(runs: dict[str, Run]) -> APIRouter:
    router = APIRouter(tags=["extra"])

    @router.get("/extra/classes/{name}", response_model=Classes, responses=failures(404), summary="The classes a model tells apart")
    def classes(name: str) -> Classes:
        if name not in runs:
            raise HTTPException(404, f"no model named {name}; served: {', '.join(runs)}")
        return Classes(model=name, classes=runs[name].classes)

    return router


def app_with_classes(runs: dict[str, Run], **options) -> FastAPI:
    """trilla's application over `runs` (`options` are its settings: token, allowed_hosts...) with the route."""
    app = create_app(list(runs.values()), names=list(runs), **options)
    app.include_router(classes_router(runs))
    return app
