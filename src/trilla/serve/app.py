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
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from trilla.config import MAX_EPOCHS
from trilla.errors import TrillaError, Unreadable
from trilla.label.project import Project
from trilla.label.store import StorageError
from trilla.paths import cache_root
from trilla.runs import Run
from trilla.serve.context import Serving
from trilla.serve.hosts import HostCheck
from trilla.serve.labelling import label_router
from trilla.serve.pages import Pages
from trilla.serve.quiz import quiz_router
from trilla.serve.remote import Allowed, Fetcher
from trilla.serve.routes import batch, deepaas_v2, operations, train
from trilla.serve.served import ServedModel
from trilla.serve.settings import Settings
from trilla.serve.swagger2 import swagger2
from trilla.serve.trainings import Trainings
from trilla.version import __version__

access_log = logging.getLogger("trilla.access")
ENVIRONMENT = "TRILLA_SERVE"  # what `trilla serve --workers N` hands each worker process: runs, names, options


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

    serving = Serving(settings, served, projects, trainings, observe, pages, fetcher, fetch_slots, add)
    app.include_router(label_router({p.name: p for p in projects}, serving.page_guard, pages.render))
    scores = Path(settings.quiz_scores) if settings.quiz_scores else cache_root() / "quiz_scores.db"
    app.include_router(quiz_router(served, None if settings.quiz_data is None else Path(settings.quiz_data), scores, serving.page_guard,
                                   pages.render))
    for family in (deepaas_v2, batch, train, operations):
        app.include_router(family.router(serving))

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
        handler.trilla_access = True  # type: ignore[attr-defined]  # marks the handler this function installed
        access_log.addHandler(handler)
    access_log.propagate = False
    access_log.setLevel(logging.WARNING if quiet else logging.INFO)


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


async def _no_body() -> dict:
    """The receive channel of a refusal sent before the body was read: nothing more comes."""
    return {"type": "http.disconnect"}


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
            {"type": "http"}, _no_body, send)


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


def _routes(app: FastAPI):
    """Every route of the app, those of included routers too (FastAPI keeps an included router as one
    entry that matches for all of its routes)."""
    def flat(routes):
        for route in routes:
            inner = getattr(route, "original_router", None)
            yield from flat(inner.routes) if inner is not None else [route]

    return list(flat(app.router.routes))


def _methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route answers at this request's path."""
    from starlette.routing import Match

    found = set()
    for route in _routes(app):
        if route.matches(request.scope)[0] != Match.NONE and getattr(route, "methods", None):
            found |= set(route.methods)
    return sorted(found)


def _routes_with_slash(app: FastAPI, request: Request) -> bool:
    from starlette.routing import Match

    scope = {**request.scope, "path": request.url.path + "/"}
    return any(route.matches(scope)[0] == Match.FULL for route in _routes(app))


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
