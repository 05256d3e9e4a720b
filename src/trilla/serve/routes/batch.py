"""trilla's own batch route: several uploaded files answered at once, each with its answer or the reason
it could not be read (a regression model's values too, which DEEPaaS's answer has no place for)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, File, HTTPException, Query, UploadFile
from pydantic import BaseModel, Field

from trilla.serve.context import Serving
from trilla.serve.failure import failures


class FileAnswer(BaseModel):
    file: str = Field(description="the name the client gave the upload (never used as a path)")
    predictions: list[dict[str, Any]] | None = None
    values: dict[str, float] | None = None
    windows_read: int | None = None
    error: str | None = None


class ManyAnswers(BaseModel):
    model: str
    results: list[FileAnswer]


def router(serving: Serving) -> APIRouter:
    routes = APIRouter()
    served = serving.served

    @routes.post("/predict", response_model=ManyAnswers, tags=["predict"], summary="Predict several uploaded files at once",
                 responses=failures(404, 413, 422))
    async def predict_many(files: list[UploadFile] = File(..., description="pictures, sound files or embedding clips"),
                           model: str | None = Query(None, description="the model's name; needed when several are served"),
                           top_k: int = Query(5, ge=1, le=1000, description="labels per answer")) -> ManyAnswers:
        if model is None and len(served) > 1:
            raise HTTPException(422, f"several models are served: say which with ?model= ({', '.join(served)})")
        name = model or next(iter(served))
        chosen = serving.model(name)
        bodies = [await upload.read() for upload in files]
        records = await asyncio.gather(*(serving.answer(chosen, body, top_k) for body in bodies))
        for record in records:
            if "error" in record:
                serving.observe.error(name, "unreadable")
        return ManyAnswers(model=name, results=[FileAnswer(file=upload.filename or "", **record) for upload, record in zip(files, records)])

    return routes
