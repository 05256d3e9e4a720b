"""The REST API over loaded runs, shaped as DEEPaaS v2 (the AI4OS / DEEP-Hybrid-DataCloud framework the
cone-snail study served its model through) so that a DEEPaaS client or dashboard works unchanged.

`create_app(runs)` builds the FastAPI app over already loaded runs; `trilla serve` only starts uvicorn
on it. Every answer is a pydantic model, so the OpenAPI schema (`/swagger.json`) documents its shape.
The Swagger UI's scripts and styles ship in the `swagger-ui-bundle` package: the page loads nothing
from elsewhere. Preprocessing is the run's own (`Run.predictor`, bytes in), so an upload is read
exactly as training read its files.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from trilla.data.inputs import ItemError
from trilla.errors import TrillaError
from trilla.runs import Run
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


class ModelMeta(BaseModel):
    """DEEPaaS's model metadata, plus what trilla knows of the run."""

    id: str
    name: str
    description: str
    author: str = ""
    version: str = __version__
    url: str = ""
    license: str = ""
    links: list[Link]
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
    predictions: LabelledPrediction


class FileAnswer(BaseModel):
    file: str = Field(description="the name the client gave the upload (never used as a path)")
    predictions: list[dict[str, Any]] | None = None
    values: dict[str, float] | None = None
    windows_read: int | None = None
    error: str | None = None


class ManyAnswers(BaseModel):
    model: str
    results: list[FileAnswer]


class Failure(BaseModel):
    message: str


def model_name(run: Run) -> str:
    """The run's name without its timestamp prefix (YYYYMMDD-HHMMSS-)."""
    parts = run.id.split("-", 2)
    return parts[2] if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit() else run.id


def describe(run: Run) -> dict[str, Any]:
    """What the metadata routes say of a run, besides its name and links."""
    config = run.config
    return {
        "description": f"{run.record.get('model_summary', config.model.name)} trained on {config.data.path}",
        "classes": run.classes, "input": config.input.type,
        "metrics": {k: float(v) for k, v in run.metrics.items() if k.startswith("test/") and isinstance(v, (int, float))},
    }


def create_app(runs: list[Run], names: list[str] | None = None, max_upload_mb: float = 20.0) -> FastAPI:
    """The API over these runs (their predictors load once, here), each served under its name; a
    request body over `max_upload_mb` is refused with 413 while it streams in."""
    if not runs:
        raise TrillaError("serve needs at least one run")
    names = list(names) if names else [model_name(run) for run in runs]
    if len(names) != len(runs):
        raise TrillaError(f"{len(names)} names for {len(runs)} runs")
    if len(set(names)) != len(names):
        names = [run.id for run in runs]  # two runs of one data folder: their full ids tell them apart
    served = dict(zip(names, runs))
    for run in runs:
        run.predictor()  # load now: the first request should not wait for a checkpoint
    app = FastAPI(title="trilla", version=__version__, openapi_url="/swagger.json", docs_url=None, redoc_url=None,
                  description="DEEPaaS-compatible API over trained trilla runs")
    app.router.redirect_slashes = False  # DEEPaaS answers a missing trailing slash with 308, done below
    _swagger(app)
    observe = instrument(app)
    app.add_middleware(UploadLimit, limit=int(max_upload_mb * 2**20))

    described = {name: describe(run) for name, run in served.items()}  # read from the run folders once, not per request

    def meta(name: str, request: Request) -> ModelMeta:
        return ModelMeta(id=name, name=name, links=[Link(rel="self", href=str(request.url_for("model_meta", name=name)).rstrip("/"))],
                         **described[name])

    def known(name: str) -> Run:
        if name not in served:
            raise HTTPException(404, f"no model {name!r}; the models are {', '.join(served)}")
        return served[name]

    @app.get("/", response_model=Versions, tags=["versions"], summary="API versions")
    def versions(request: Request) -> Versions:
        return Versions(versions=[Version(links=[Link(rel="self", href=str(request.url_for("version")))])])

    @app.get("/v2/", response_model=Version, tags=["versions"], summary="V2 API version information")
    def version(request: Request) -> Version:
        return Version(links=[Link(rel="self", href=str(request.url_for("version")))])

    @app.get("/v2/models/", response_model=Models, tags=["models"], summary="The loaded models and their metadata")
    def models(request: Request) -> Models:
        return Models(models=[meta(name, request) for name in served])

    @app.get("/v2/models/{name}/", response_model=ModelMeta, tags=["models"], summary="A model's metadata",
             responses={404: {"model": Failure}})
    def model_meta(name: str, request: Request) -> ModelMeta:
        known(name)
        return meta(name, request)

    @app.post("/v2/models/{name}/predict/", response_model=Prediction, tags=["predict"], summary="Predict one uploaded file",
              responses={400: {"model": Failure}, 404: {"model": Failure}})
    def predict(name: str, data: UploadFile = File(..., description="a picture or a sound file"),
                top_k: int = Query(5, ge=1, le=1000, description="labels in the answer")) -> Prediction:
        run = known(name)
        [record] = run.predictor().predict([data.file.read()], top_k=top_k)
        if "error" in record:
            raise HTTPException(400, record["error"])
        if "values" in record:
            raise HTTPException(400, "this model regresses values; use POST /predict, which answers them")
        labels = [p["label"] for p in record["predictions"]]
        return Prediction(predictions=LabelledPrediction(
            labels=labels, probabilities=[p["probability"] for p in record["predictions"]], links=label_links(labels)))

    @app.post("/predict", response_model=ManyAnswers, tags=["predict"], summary="Predict several uploaded files at once",
              responses={404: {"model": Failure}})
    def predict_many(files: list[UploadFile] = File(..., description="pictures or sound files"),
                     model: str | None = Query(None, description="the model's name; needed when several are served"),
                     top_k: int = Query(5, ge=1, le=1000, description="labels per answer")) -> ManyAnswers:
        if model is None and len(served) > 1:
            raise HTTPException(422, f"several models are served: say which with ?model= ({', '.join(served)})")
        name = model or next(iter(served))
        run = known(name)
        records = run.predictor().predict([upload.file.read() for upload in files], top_k=top_k)
        return ManyAnswers(model=name, results=[FileAnswer(file=upload.filename or "", **record) for upload, record in zip(files, records)])

    @app.get("/healthz", tags=["operations"], summary="The process answers")
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["operations"], summary="Every model is loaded")
    def readyz() -> dict[str, Any]:
        return {"status": "ready", "models": list(served)}

    app.get("/metrics", tags=["operations"], summary="Prometheus metrics (text exposition format)", response_class=Response)(observe)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        if error.status_code == 404 and not request.url.path.endswith("/") and _routes_with_slash(app, request):
            return RedirectResponse(request.url.replace(path=request.url.path + "/"), status_code=308)
        return JSONResponse({"message": str(error.detail)}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def bad_arguments(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return JSONResponse({"message": problems, "errors": [{k: e[k] for k in ("loc", "msg", "type")} for e in error.errors()]},
                            status_code=422)

    @app.exception_handler(ItemError)
    async def unreadable(request: Request, error: ItemError):
        return JSONResponse({"message": str(error)}, status_code=400)

    return app


class UploadLimit:
    """ASGI middleware: a body larger than `limit` bytes is answered with 413. A declared Content-Length
    is checked before anything is read; a streamed body is cut off where it passes the limit (the app
    then sees a truncated body, and its answer is replaced by the 413), so an oversized upload never
    sits in memory."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        seen, over, answered = 0, False, False

        async def counted():
            nonlocal seen, over
            if over:
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                over = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded(message):
            nonlocal answered
            if not over:
                return await send(message)
            if not answered:
                answered = True
                await self._refuse(send)

        await self.app(scope, counted, guarded)

    async def _refuse(self, send) -> None:
        await JSONResponse({"message": f"the upload exceeds {self.limit / 2**20:g} MB (trilla serve --max-upload-mb)"}, status_code=413)(
            {"type": "http"}, None, send)


def instrument(app: FastAPI):
    """Prometheus counters and a latency histogram per route and status (prometheus-client, a
    registry of this app's own); returns the /metrics handler."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

    registry = CollectorRegistry()
    requests = Counter("trilla_requests", "HTTP requests answered", ["route", "status"], registry=registry)
    latency = Histogram("trilla_request_seconds", "time to answer a request", ["route"], registry=registry,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    @app.middleware("http")
    async def measure(request: Request, call_next):
        import time

        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        requests.labels(path, str(response.status_code)).inc()
        latency.labels(path).observe(time.perf_counter() - start)
        return response

    def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


def label_links(labels: list[str]) -> dict[str, list[str]]:
    """Where a person looks a label up, as the study's API linked each answer."""
    quoted = [urllib.parse.quote(label.replace("_", " ")) for label in labels]
    return {
        "Google Images": [f"https://www.google.com/search?tbm=isch&q={q}" for q in quoted],
        "Wikipedia": [f"https://en.wikipedia.org/wiki/{urllib.parse.quote(label.replace(' ', '_'))}" for label in labels],
    }


def _routes_with_slash(app: FastAPI, request: Request) -> bool:
    from starlette.routing import Match

    scope = {**request.scope, "path": request.url.path + "/"}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


def _swagger(app: FastAPI) -> None:
    """The Swagger UI at /docs (and /ui, DEEPaaS's address), from the assets the package ships."""
    import swagger_ui_bundle

    app.mount("/swagger-assets", StaticFiles(directory=Path(swagger_ui_bundle.swagger_ui_path)), name="swagger-assets")

    def page() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/swagger.json", title="trilla API", swagger_js_url="/swagger-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/swagger-assets/swagger-ui.css", swagger_favicon_url="/swagger-assets/favicon-32x32.png")

    app.get("/docs", include_in_schema=False)(page)
    app.get("/ui", include_in_schema=False)(page)
