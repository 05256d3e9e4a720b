"""What an operator's probes read: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from trilla.serve.context import Serving


def router(serving: Serving) -> APIRouter:
    routes = APIRouter(tags=["operations"])

    @routes.get("/healthz", summary="The process answers")
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @routes.get("/readyz", summary="Every model is loaded")
    def readyz() -> dict[str, Any]:
        return {"status": "ready", "models": list(serving.served), "projects": [p.name for p in serving.projects]}

    routes.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=Response)(serving.observe.exposition)
    return routes
