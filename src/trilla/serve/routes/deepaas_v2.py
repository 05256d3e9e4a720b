"""DEEPaaS V2's routes as the cone-snail study's clients call them: versions, models and their metadata,
predict (an upload and/or URLs) and trilla's Grad-CAM explain."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from trilla.errors import TrillaError
from trilla.serve.context import Serving
from trilla.serve.failure import failures
from trilla.serve.pages import wants_html
from trilla.serve.served import ServedModel
from trilla.version import __version__


class Link(BaseModel):
    rel: str
    href: str
    type: str = "application/json"


class Version(BaseModel):
    version: str = "stable"
    id: str = "v2"
    links: list[Link]


class Versions(BaseModel):
    versions: list[Version]
    links: list[Link] = Field(description="the API's documentation (help) and its OpenAPI schema (describedby)")


class ModelLink(BaseModel):
    rel: str
    href: str


class ModelMeta(BaseModel):
    """DEEPaaS's model metadata, plus what trilla knows of the run."""

    id: str
    name: str
    description: str
    author: str = ""
    version: str = __version__
    url: str = ""
    license: str = ""
    links: list[ModelLink]
    classes: list[str] = Field(description="trilla: the labels, in output order")
    input: str = Field(description="trilla: the input kind (image, audio, embeddings)")
    metrics: dict[str, float] = Field(description="trilla: the run's test metrics")


class Models(BaseModel):
    models: list[ModelMeta]


class LabelledPrediction(BaseModel):
    """The study's answer: labels and their probabilities, most probable first, with links per label."""

    labels: list[str]
    probabilities: list[float]
    links: dict[str, list[str]] = Field(description="per link kind (Google Images, Wikipedia), one URL per label")


class Prediction(BaseModel):
    status: str = "OK"
    predictions: LabelledPrediction | list[LabelledPrediction] = Field(
        description="one answer for one input; a list, in order, for several (a file and URLs, or several URLs)")


def label_links(labels: list[str]) -> dict[str, list[str]]:
    """Where a person looks a label up, as the study's API linked each answer."""
    quoted = [urllib.parse.quote(label.replace("_", " ")) for label in labels]
    return {
        "Google Images": [f"https://www.google.com/search?tbm=isch&q={q}" for q in quoted],
        "Wikipedia": [f"https://en.wikipedia.org/wiki/{urllib.parse.quote(label.replace(' ', '_'))}" for label in labels],
    }


def router(serving: Serving) -> APIRouter:
    routes = APIRouter()
    served, settings = serving.served, serving.settings

    def meta(name: str) -> ModelMeta:
        return ModelMeta(id=name, name=name, links=[ModelLink(rel="self", href=f"/v2/models/{name}")], **served[name].meta)

    @routes.get("/", response_model=Versions, tags=["versions"], summary="API versions (a browser gets the predict page)",
                responses={200: {"content": {"text/html": {}}}})
    def versions(request: Request):
        if wants_html(request):
            return serving.pages.render("predict.html", request, models=[(name, served[name].meta) for name in served], urls=settings.urls,
                                        projects=[p.name for p in serving.projects], max_upload=int(settings.max_upload_mb * 2**20))
        return Versions(versions=[version()], links=[Link(rel="help", type="text/html", href="/api"), Link(rel="describedby", href="/swagger.json")])

    @routes.get("/v2/", response_model=Version, tags=["versions"], summary="V2 API version information")
    def version() -> Version:
        return Version(links=[Link(rel="self", href="/v2/")])

    @routes.get("/v2/debug/", status_code=204, response_class=Response, tags=["debug"],
                summary="Debug information: none, as deepaas-run answers without --debug-endpoint")
    def debug() -> Response:
        return Response(status_code=204)

    @routes.get("/v2/models/", response_model=Models, tags=["models"], summary="The loaded models and their metadata")
    def models() -> Models:
        return Models(models=[meta(name) for name in list(served)])

    @routes.get("/v2/models/{name}/", response_model=ModelMeta, tags=["models"], summary="A model's metadata", responses=failures(404))
    def model_meta(model: ServedModel = Depends(serving.model)) -> ModelMeta:
        return meta(model.name)

    @routes.post("/v2/models/{name}/predict/", response_model=Prediction, tags=["predict"],
                 summary="Predict an uploaded file and/or pictures or sounds at URLs", responses=failures(400, 404, 413, 422))
    async def predict(model: ServedModel = Depends(serving.model),
                      data: UploadFile | None = File(None, description="a picture, a sound file, or an embedding clip (.npy or JSON)"),
                      urls: list[str] = Query([], description="URLs of pictures or sounds to fetch (http or https, public addresses only)"),
                      top_k: int = Query(5, ge=1, le=1000, description="labels in the answer")) -> Prediction:
        if data is None and not urls:
            raise HTTPException(422, "give a file in the multipart field data, or one or more urls")
        if urls and not settings.urls:
            raise HTTPException(422, "this server does not fetch URLs (trilla serve --no-urls)")
        items: list[Any] = [] if data is None else [await data.read()]
        items += await asyncio.gather(*(serving.fetched(url) for url in urls))
        records = await asyncio.gather(*(serving.answer(model, item, top_k) for item in items))
        answers = []
        for where, record in zip(([data.filename or "data"] if data is not None else []) + list(urls), records):
            if "error" in record:
                serving.observe.error(model.name, "unreadable")
                raise HTTPException(400, f"{where}: {record['error']}")
            if "values" in record:
                raise HTTPException(400, "this model regresses values; use POST /predict, which answers them")
            labels = [p["label"] for p in record["predictions"]]
            answers.append(LabelledPrediction(labels=labels, probabilities=[p["probability"] for p in record["predictions"]],
                                              links=label_links(labels)))
        return Prediction(predictions=answers[0] if len(answers) == 1 else answers)

    @routes.post("/v2/models/{name}/explain/", tags=["predict"], summary="Grad-CAM: the picture with the evidence for the answer laid over it",
                 response_class=Response, responses={200: {"content": {"image/png": {}}}, **failures(400, 404)})
    async def explain(model: ServedModel = Depends(serving.model), data: UploadFile = File(..., description="a picture or a sound file")) -> Response:
        try:
            png = await model.explain(await data.read())
        except TrillaError as err:  # an unreadable picture is one
            raise HTTPException(400, str(err)) from None
        return Response(png, media_type="image/png")

    return routes
