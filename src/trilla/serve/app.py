"""The REST API over loaded runs, shaped as DEEPaaS v2 (the AI4OS / DEEP-Hybrid-DataCloud framework the
cone-snail study served its model through) so that a DEEPaaS client or dashboard works unchanged.

`create_app(runs)` builds the FastAPI app over already loaded runs; `trilla serve` only starts uvicorn
on it. Every answer is a pydantic model, so the OpenAPI schema (`/openapi.json`, and DEEPaaS's Swagger 2.0 at
`/swagger.json`) documents its shape.
The Swagger UI's scripts and styles ship in the `swagger-ui-bundle` package: the page loads nothing
from elsewhere. Preprocessing is the run's own (`Run.predictor`, bytes in), so an upload is read
exactly as training read its files; decoding runs on a thread pool and inference on each model's
batcher (serve/batching.py), so the event loop only moves bytes. Once the models are loaded, the
garbage collector is told to leave every object so far alone (`gc.freeze`): a full collection over them
paused every request for 290 ms (benchmarks/serve_speed.py; p99 at 8 concurrent requests 228 ms -> 26 ms).
While serving, the interpreter hands its lock between threads every millisecond instead of Python's five:
torch releases the lock inside each operation and takes it back after, and under load the event loop
holds it, so an inference thread can wait up to the whole interval between two layers (T6 batched at 32
concurrent requests on 2 cores: 1.05x-1.35x the requests per second over eight measurements,
benchmarks/serve_speed.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import secrets
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from trilla.config import MAX_EPOCHS
from trilla.errors import Unreadable
from trilla.paths import cache_root
from trilla.errors import TrillaError
from trilla.runs import Run
from trilla.label.project import Project
from trilla.label.store import StorageError
from trilla.serve.failure import Failure
from trilla.serve.hosts import HostCheck
from trilla.serve.labelling import label_router
from trilla.serve.pages import Pages, wants_html
from trilla.serve.quiz import quiz_router
from trilla.serve.remote import Allowed, Fetcher
from trilla.serve.served import ServedModel
from trilla.serve.swagger2 import swagger2
from trilla.errors import Refused
from trilla.serve.trainings import Busy, Trainings
from trilla.version import __version__

access_log = logging.getLogger("trilla.access")
ENVIRONMENT = "TRILLA_SERVE"  # what `trilla serve --workers N` hands each worker process: runs, names, options


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


class FileAnswer(BaseModel):
    file: str = Field(description="the name the client gave the upload (never used as a path)")
    predictions: list[dict[str, Any]] | None = None
    values: dict[str, float] | None = None
    windows_read: int | None = None
    error: str | None = None


class ManyAnswers(BaseModel):
    model: str
    results: list[FileAnswer]


class Progress(BaseModel):
    epoch: int = Field(description="epochs done")
    epochs: int | None = Field(None, description="epochs the training runs")
    metrics: dict[str, float] = Field(description="the latest epoch's losses and metrics (history.csv)")


class TrainingState(BaseModel):
    """DEEPaaS's training answer (uuid, date, status, args, message), with trilla's progress."""

    uuid: str
    date: str
    status: str = Field(description="running, done, error or cancelled")
    args: dict[str, Any]
    message: str | None = Field(None, description="why it failed")
    progress: Progress
    run: str | None = Field(None, description="the new run's folder name, once it exists")
    model: str | None = Field(None, description="the name it is served under, once it is done")
    result: dict[str, Any] | None = Field(None, description="DEEPaaS's result of a finished training: output (the run and its metrics), "
                                          "finish_date, duration")


@dataclass
class Settings:
    """How `create_app` serves: batching, limits, URL predict and trainings over HTTP."""

    max_upload_mb: float = 20.0
    max_batch: int = 32
    max_wait_ms: float = 1.0
    decode_threads: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))
    torch_threads: int | None = None  # intra-op threads for inference; None: leave torch's own setting
    gil_switch_ms: float = 1.0  # the interpreter's switch interval while serving (Python's own: 5 ms), see the module docstring
    token: str | None = None
    allowed_hosts: tuple[str, ...] | None = None  # without a token, the Host names answered (addresses always are); None: any
    data_root: Path | None = None
    trainings: bool = True
    max_trainings: int = 1  # trainings over HTTP running at once; more are answered 429
    max_epochs: int = MAX_EPOCHS  # the most epochs a training over HTTP may run, however asked
    urls: bool = True
    url_allow: tuple[str, ...] = ()
    url_timeout: float = 10.0  # connect and read, each
    url_deadline: float = 30.0  # a whole URL fetch, from the lookup to the last byte
    url_fetches: int = 16  # URL fetches in flight at once (on the event loop); more wait their turn
    quiz_data: Path | None = None  # the quiz's labelled items; default: each run's test split
    quiz_scores: Path | None = None  # the high-score table; default: $TRILLA_CACHE/quiz_scores.db


def model_name(run: Run) -> str:
    """The run's name without its timestamp prefix (YYYYMMDD-HHMMSS-)."""
    parts = run.id.split("-", 2)
    return parts[2] if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit() else run.id


def create_app(runs: list[Run], names: list[str] | None = None, projects: list[Project] | None = None, **options: Any) -> FastAPI:
    """The API and pages over these runs (their predictors load once, here), each served under its name,
    and the labelling pages of these projects; `options` are `Settings` fields (max_upload_mb,
    max_batch, max_wait_ms, token, data_root...)."""
    settings = Settings(**options)
    if settings.gil_switch_ms <= 0:
        raise TrillaError(f"gil_switch_ms must be positive, not {settings.gil_switch_ms}")
    projects = list(projects or [])
    if not runs and not projects:
        raise TrillaError("serve needs at least one run or labelling project")
    if len({p.name for p in projects}) != len(projects):
        raise TrillaError(f"two labelling projects share a name: {[p.name for p in projects]}")
    names = list(names) if names else [model_name(run) for run in runs]
    if len(names) != len(runs):
        raise TrillaError(f"{len(names)} names for {len(runs)} runs")
    if len(set(names)) != len(names):
        names = [run.id for run in runs]  # two runs of one data folder: their full ids tell them apart
    try:
        allowed = tuple(Allowed.parse(text) for text in settings.url_allow)
    except ValueError as err:
        raise TrillaError(str(err)) from None
    fetcher = Fetcher(max_bytes=int(settings.max_upload_mb * 2**20), read_timeout=settings.url_timeout, deadline=settings.url_deadline,
                      allowed=allowed)
    fetch_slots = asyncio.Semaphore(settings.url_fetches)
    pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="trilla-decode")
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    observe = Metrics()
    served: dict[str, ServedModel] = {}

    def add(name: str, run: Run) -> None:
        served[name] = ServedModel(name, run, pool, settings.max_batch, settings.max_wait_ms, observe.batch_observer(name))

    for name, run in zip(names, runs):
        add(name, run)
    if settings.max_trainings < 1 or not 1 <= settings.max_epochs <= MAX_EPOCHS:
        raise TrillaError(f"max_trainings must be at least 1 and max_epochs in 1..{MAX_EPOCHS}")
    trainings = Trainings(settings.data_root, settings.max_trainings, settings.max_epochs)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        gc.freeze()  # what loading left (torch, the models: half a million objects) is never scanned again
        switch = sys.getswitchinterval()
        sys.setswitchinterval(settings.gil_switch_ms / 1000)
        watcher = asyncio.create_task(_serve_finished(trainings, served, add))
        yield
        watcher.cancel()
        sys.setswitchinterval(switch)
        await asyncio.get_running_loop().run_in_executor(None, trainings.close)
        for model in served.values():
            model.close()
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="trilla", version=__version__, openapi_url="/openapi.json", docs_url=None, redoc_url=None,
                  description="DEEPaaS-compatible API over trained trilla runs", lifespan=lifespan)
    app.router.redirect_slashes = False  # DEEPaaS answers a missing trailing slash with 308, done below
    _swagger(app)
    app.get("/swagger.json", include_in_schema=False)(lambda: JSONResponse(swagger2(app.openapi(), list(served))))
    pages = Pages(app, settings.token)
    app.add_middleware(UploadLimit, limit=int(settings.max_upload_mb * 2**20))
    if settings.token is None and settings.allowed_hosts is not None:
        app.add_middleware(HostCheck, names=tuple(settings.allowed_hosts))
    observe.install(app)  # outermost: a 413 for an upload over the limit is counted too

    def meta(name: str) -> ModelMeta:
        return ModelMeta(id=name, name=name, links=[ModelLink(rel="self", href=f"/v2/models/{name}")], **served[name].meta)

    def known(name: str) -> ServedModel:
        if name not in served:
            raise HTTPException(404, f"no model {name!r}; the models are {', '.join(served)}")
        return served[name]

    def authorized(request: Request) -> None:
        if settings.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), settings.token.encode()):
            path = request.url.path
            what = "labelling answers need" if path.startswith("/label/") else "the quiz needs" if path.startswith("/quiz") else "trainings need"
            raise HTTPException(401, f"{what} the server's token (the --token it was started with): give it on the page, "
                                     "or send Authorization: Bearer TOKEN", headers={"WWW-Authenticate": "Bearer"})

    async def fetched(url: str) -> bytes | Unreadable:
        try:
            async with fetch_slots:
                return await fetcher.fetch_async(url)
        except Unreadable as err:
            return err

    def page_guard(request: Request) -> None:
        authorized(request)
        pages.check(request)

    app.include_router(label_router({p.name: p for p in projects}, page_guard, pages.render))
    scores = Path(settings.quiz_scores) if settings.quiz_scores else cache_root() / "quiz_scores.db"
    app.include_router(quiz_router(served, None if settings.quiz_data is None else Path(settings.quiz_data), scores, page_guard, pages.render))

    @app.get("/", response_model=Versions, tags=["versions"], summary="API versions (a browser gets the predict page)",
             responses={200: {"content": {"text/html": {}}}})
    def versions(request: Request):
        if wants_html(request):
            return pages.render("predict.html", request, models=[(name, served[name].meta) for name in served],
                                urls=settings.urls, projects=[p.name for p in projects], max_upload=int(settings.max_upload_mb * 2**20))
        return Versions(versions=[version()], links=[Link(rel="help", type="text/html", href="/api"),
                                                     Link(rel="describedby", href="/swagger.json")])

    @app.get("/v2/", response_model=Version, tags=["versions"], summary="V2 API version information")
    def version() -> Version:
        return Version(links=[Link(rel="self", href="/v2/")])

    @app.get("/v2/debug/", status_code=204, response_class=Response, tags=["debug"],
             summary="Debug information: none, as deepaas-run answers without --debug-endpoint")
    def debug() -> Response:
        return Response(status_code=204)

    @app.get("/v2/models/", response_model=Models, tags=["models"], summary="The loaded models and their metadata")
    def models() -> Models:
        return Models(models=[meta(name) for name in list(served)])

    @app.get("/v2/models/{name}/", response_model=ModelMeta, tags=["models"], summary="A model's metadata",
             responses={404: {"model": Failure}})
    def model_meta(name: str) -> ModelMeta:
        known(name)
        return meta(name)

    @app.post("/v2/models/{name}/predict/", response_model=Prediction, tags=["predict"],
              summary="Predict an uploaded file and/or pictures or sounds at URLs",
              responses={400: {"model": Failure}, 404: {"model": Failure}, 413: {"model": Failure}, 422: {"model": Failure}})
    async def predict(name: str, data: UploadFile | None = File(None, description="a picture, a sound file, or an embedding clip (.npy or JSON)"),
                      urls: list[str] = Query([], description="URLs of pictures or sounds to fetch (http or https, public addresses only)"),
                      top_k: int = Query(5, ge=1, le=1000, description="labels in the answer")) -> Prediction:
        model = known(name)
        if data is None and not urls:
            raise HTTPException(422, "give a file in the multipart field data, or one or more urls")
        if urls and not settings.urls:
            raise HTTPException(422, "this server does not fetch URLs (trilla serve --no-urls)")
        items: list[Any] = [] if data is None else [await data.read()]
        items += await asyncio.gather(*(fetched(url) for url in urls))
        records = await asyncio.gather(*(_predicted(model, item, top_k) for item in items))
        answers = []
        for where, record in zip(([data.filename or "data"] if data is not None else []) + list(urls), records):
            if "error" in record:
                observe.error(name, "unreadable")
                raise HTTPException(400, f"{where}: {record['error']}")
            if "values" in record:
                raise HTTPException(400, "this model regresses values; use POST /predict, which answers them")
            labels = [p["label"] for p in record["predictions"]]
            answers.append(LabelledPrediction(labels=labels, probabilities=[p["probability"] for p in record["predictions"]],
                                              links=label_links(labels)))
        return Prediction(predictions=answers[0] if len(answers) == 1 else answers)

    @app.post("/v2/models/{name}/explain/", tags=["predict"], summary="Grad-CAM: the picture with the evidence for the answer laid over it",
              response_class=Response, responses={200: {"content": {"image/png": {}}}, 400: {"model": Failure}, 404: {"model": Failure}})
    async def explain(name: str, data: UploadFile = File(..., description="a picture or a sound file")) -> Response:
        model = known(name)
        try:
            png = await model.explain(await data.read())
        except TrillaError as err:  # an unreadable picture is one
            raise HTTPException(400, str(err)) from None
        return Response(png, media_type="image/png")

    @app.post("/predict", response_model=ManyAnswers, tags=["predict"], summary="Predict several uploaded files at once",
              responses={404: {"model": Failure}, 413: {"model": Failure}, 422: {"model": Failure}})
    async def predict_many(files: list[UploadFile] = File(..., description="pictures, sound files or embedding clips"),
                           model: str | None = Query(None, description="the model's name; needed when several are served"),
                           top_k: int = Query(5, ge=1, le=1000, description="labels per answer")) -> ManyAnswers:
        if model is None and len(served) > 1:
            raise HTTPException(422, f"several models are served: say which with ?model= ({', '.join(served)})")
        name = model or next(iter(served))
        chosen = known(name)
        bodies = [await upload.read() for upload in files]
        records = await asyncio.gather(*(_predicted(chosen, body, top_k) for body in bodies))
        for record in records:
            if "error" in record:
                observe.error(name, "unreadable")
        return ManyAnswers(model=name, results=[FileAnswer(file=upload.filename or "", **record) for upload, record in zip(files, records)])

    def training_of(name: str, key: str):
        known(name)
        found = trainings.items.get(key)
        if found is None or found.model != name:
            raise HTTPException(404, f"no training {key!r} of model {name!r}")
        return found

    def trainings_on() -> None:
        if not settings.trainings:
            raise HTTPException(501, "trainings over HTTP need a single server process (trilla serve --workers 1)")

    train_guard = [Depends(authorized), Depends(trainings_on)]

    @app.post("/v2/models/{name}/train/", response_model=TrainingState, tags=["train"], dependencies=train_guard,
              summary="Start a training from this model's config (a new run beside it)",
              responses={401: {"model": Failure}, 404: {"model": Failure}, 422: {"model": Failure}, 429: {"model": Failure}})
    def train(name: str,
              data: str | None = Query(None, description="data folder or CSV, relative to the server's --data-root; default: the run's own"),
              epochs: int | None = Query(None, ge=1, le=100000, description="epochs to train"),
              overrides: list[str] = Query([], description="config overrides, as trilla train --set: train.lr=0.01")) -> TrainingState:
        base = known(name).run
        try:
            started = trainings.start(name, base, data, epochs, overrides)
        except Busy as err:
            raise HTTPException(429, str(err), headers={"Retry-After": "30"}) from None
        except Refused as err:
            raise HTTPException(422, str(err)) from None
        return TrainingState(**started.describe())

    @app.get("/v2/models/{name}/train/", response_model=list[TrainingState], tags=["train"], dependencies=train_guard,
             summary="This model's trainings, running or ended", responses={401: {"model": Failure}, 404: {"model": Failure}})
    def train_list(name: str) -> list[TrainingState]:
        known(name)
        return [TrainingState(**t.describe()) for t in list(trainings.items.values()) if t.model == name]

    @app.get("/v2/models/{name}/train/{uuid}", response_model=TrainingState, tags=["train"], dependencies=train_guard,
             summary="One training's status and progress", responses={401: {"model": Failure}, 404: {"model": Failure}})
    def train_get(name: str, uuid: str) -> TrainingState:
        return TrainingState(**training_of(name, uuid).describe())

    @app.delete("/v2/models/{name}/train/{uuid}", response_model=TrainingState, tags=["train"], dependencies=train_guard,
                summary="Cancel a training (its run is kept, marked cancelled)", responses={401: {"model": Failure}, 404: {"model": Failure}})
    def train_cancel(name: str, uuid: str) -> TrainingState:
        training = training_of(name, uuid)
        trainings.cancel(training)
        return TrainingState(**training.describe())

    @app.get("/healthz", tags=["operations"], summary="The process answers")
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["operations"], summary="Every model is loaded")
    def readyz() -> dict[str, Any]:
        return {"status": "ready", "models": list(served), "projects": [p.name for p in projects]}

    app.get("/metrics", tags=["operations"], summary="Prometheus metrics (text exposition format)", response_class=Response)(observe.exposition)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        if error.status_code == 404 and not request.url.path.endswith("/") and _routes_with_slash(app, request):
            return RedirectResponse(request.url.replace(path=request.url.path + "/"), status_code=308)
        headers = dict(getattr(error, "headers", None) or {})
        if error.status_code == 405:  # Starlette names the first matching route's methods; DEEPaaS names every one
            headers["Allow"] = ",".join(_methods(app, request))
        return JSONResponse({"message": str(error.detail)}, status_code=error.status_code, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def bad_arguments(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return JSONResponse({"message": problems, "errors": [{k: e[k] for k in ("loc", "msg", "type")} for e in error.errors()]},
                            status_code=422)

    @app.exception_handler(Unreadable)
    async def unreadable(request: Request, error: Unreadable):
        return JSONResponse({"message": str(error)}, status_code=400)

    @app.exception_handler(StorageError)
    async def storage(request: Request, error: StorageError):
        return JSONResponse({"message": str(error)}, status_code=503, headers={"Retry-After": "5"})

    return app


def app_from_environment() -> FastAPI:
    """The app of one of `trilla serve --workers N`'s processes (uvicorn's factory), from $TRILLA_SERVE."""
    given = json.loads(os.environ[ENVIRONMENT])
    log_access(given.get("quiet", False))
    projects = [Project(path, given["db"]) for path in given["projects"]]
    return create_app([Run(path) for path in given["runs"]], given["names"] or None, projects, **given["options"])


def exposure(host: str, token: str | None) -> str | None:
    """The warning `trilla serve` prints when it listens beyond this machine with no token to guard trainings."""
    import ipaddress

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    if loopback or token is not None:
        return None
    return f"listening on {host} without --token: anyone who reaches this address can use the models and start trainings"


def log_access(quiet: bool = False) -> None:
    """One JSON line per request on stdout (the `trilla.access` logger), unless quiet."""
    if not any(getattr(h, "trilla_access", False) for h in access_log.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.trilla_access = True
        access_log.addHandler(handler)
    access_log.propagate = False
    access_log.setLevel(logging.WARNING if quiet else logging.INFO)


async def _predicted(model: ServedModel, item: Any, top_k: int) -> dict:
    """A record for an item, or for a URL that could not be fetched."""
    return {"error": str(item)} if isinstance(item, Unreadable) else await model.predict(item, top_k)


async def _serve_finished(trainings: Trainings, served: dict[str, ServedModel], add) -> None:
    """Serve each training that has finished as a model of its own, under its run's name."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(0.5)
        for training in list(trainings.items.values()):
            if training.served_as is None and training.status == "done" and (run := training.run()) is not None:
                name = model_name(run)
                await loop.run_in_executor(None, add, name, run)
                gc.freeze()
                training.served_as = name


class Measured:
    """ASGI middleware feeding `Metrics`: the status each request was answered with and how long it took
    (a plain ASGI wrapper, not Starlette's BaseHTTPMiddleware, whose streams cost more than the work)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def noted(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            self.metrics.answered(scope, status, time.perf_counter() - start)


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


class Metrics:
    """Prometheus metrics (prometheus-client, a registry of this app's own): requests and latency per
    route and status, batch sizes and errors per model; and one JSON access-log line per request on the
    `trilla.access` logger."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("trilla_requests", "HTTP requests answered", ["route", "status"], registry=self.registry)
        self.latency = Histogram("trilla_request_seconds", "time to answer a request", ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.batches = Histogram("trilla_batch_size", "windows per forward pass", ["model"], registry=self.registry,
                                 buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.errors = Counter("trilla_prediction_errors", "inputs that could not be predicted", ["model", "kind"], registry=self.registry)

    def batch_observer(self, model: str):
        histogram = self.batches.labels(model)
        return histogram.observe

    def error(self, model: str, kind: str) -> None:
        self.errors.labels(model, kind).inc()

    def install(self, app: FastAPI) -> None:
        app.add_middleware(Measured, metrics=self)

    def answered(self, scope, status: int, elapsed: float) -> None:
        path = getattr(scope.get("route"), "path", "unmatched")
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(elapsed)
        if access_log.isEnabledFor(logging.INFO):
            params = scope.get("path_params") or {}
            query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
            access_log.info(json.dumps({
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid(), "client": (scope.get("client") or [None])[0],
                "method": scope.get("method"), "path": scope.get("path"), "route": path, "status": status,
                "ms": round(elapsed * 1000, 2), "model": params.get("name") or (query.get("model") or [None])[0],
            }))

    def exposition(self) -> Response:
        """Every process's counts: with $PROMETHEUS_MULTIPROC_DIR (trilla serve --workers N sets it) each
        worker writes its values there, and whichever worker answers sums them (prometheus-client's
        multiprocess mode)."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def label_links(labels: list[str]) -> dict[str, list[str]]:
    """Where a person looks a label up, as the study's API linked each answer."""
    quoted = [urllib.parse.quote(label.replace("_", " ")) for label in labels]
    return {
        "Google Images": [f"https://www.google.com/search?tbm=isch&q={q}" for q in quoted],
        "Wikipedia": [f"https://en.wikipedia.org/wiki/{urllib.parse.quote(label.replace(' ', '_'))}" for label in labels],
    }


def _methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route answers at this request's path."""
    from starlette.routing import Match

    found = set()
    for route in app.router.routes:
        if route.matches(request.scope)[0] != Match.NONE and getattr(route, "methods", None):
            found |= set(route.methods)
    return sorted(found)


def _routes_with_slash(app: FastAPI, request: Request) -> bool:
    from starlette.routing import Match

    scope = {**request.scope, "path": request.url.path + "/"}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


def _swagger(app: FastAPI) -> None:
    """The Swagger UI at /api (DEEPaaS's address; /ui redirects there) and /docs (FastAPI's), from the
    assets the package ships."""
    import swagger_ui_bundle

    app.mount("/swagger-assets", StaticFiles(directory=Path(swagger_ui_bundle.swagger_ui_path)), name="swagger-assets")

    def page() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="trilla API", swagger_js_url="/swagger-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/swagger-assets/swagger-ui.css", swagger_favicon_url="/swagger-assets/favicon-32x32.png")

    app.get("/api", include_in_schema=False)(page)
    app.get("/docs", include_in_schema=False)(page)
    app.get("/ui", include_in_schema=False)(lambda: RedirectResponse("/api", status_code=302))
