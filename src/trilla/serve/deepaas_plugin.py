"""A trilla run as a DEEPaaS v2 model, so that DEEPaaS itself (`deepaas-run`) can serve it:

    TRILLA_RUN=runs/20261201-120000-shapes deepaas-run --listen-ip 127.0.0.1

The `deepaas.v2.model` entry point `trilla` names this module; DEEPaaS calls its functions (in its own
worker processes, which is why the run is loaded per process, on `warm` or the first call). It answers
as `trilla serve` does (the same metadata, the same predictions: the run's own Predictor on the same
bytes, URLs fetched with the same checks), which is what tests/test_deepaas.py compares. DEEPaaS pins
old aiohttp, marshmallow and webargs, so it lives in a virtualenv of its own (`make deepaas`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiohttp import web

from trilla.errors import Refused, Unreadable
from trilla.runs import Run
from trilla.serve.remote import Allowed, Fetcher
from trilla.serve.routes.deepaas_v2 import label_links
from trilla.serve.served import describe
from trilla.serve.trainings import guarded
from trilla.version import __version__


def _answer(status: int, reason: str) -> web.HTTPException:
    return web.HTTPUnprocessableEntity(reason=reason) if status == 422 else web.HTTPBadRequest(reason=reason)


class _Refusal(Refused):
    """A 4xx raised in DEEPaaS's worker process. aiohttp's HTTP exceptions cannot be unpickled (their
    constructor takes keywords only), and DEEPaaS 2.6 then waits for the answer forever; this one
    unpickles, in DEEPaaS's server process, as the aiohttp exception itself."""

    def __init__(self, status: int, reason: str):
        super().__init__(status, reason)
        self.status, self.reason = status, reason

    def __reduce__(self):
        return _answer, (self.status, self.reason)


@lru_cache(maxsize=1)
def _run() -> Run:
    path = os.environ.get("TRILLA_RUN")
    if not path:
        raise RuntimeError("set TRILLA_RUN to the run directory DEEPaaS should serve")
    return Run(path)


def warm() -> None:
    _run().predictor()


def get_metadata() -> dict[str, Any]:
    return {"author": "", "version": __version__, "url": "", "license": "", **describe(_run())}


def get_predict_args() -> dict[str, Any]:
    from webargs import fields, validate

    return {
        "data": fields.Field(required=False, missing=None, type="file", location="form", description="a picture or a sound file"),
        "urls": fields.List(fields.Str(), required=False, missing=[], description="URLs of pictures or sounds to fetch"),
        "top_k": fields.Int(missing=5, validate=validate.Range(min=1, max=1000), description="labels in the answer"),
    }


def predict(data=None, urls=None, top_k: int = 5) -> dict[str, Any] | list[dict[str, Any]]:
    urls = list(urls or [])
    if data is None and not urls:
        raise _Refusal(422, "give a file in the multipart field data, or one or more urls")
    items: list[Any] = []
    if data is not None:
        with open(data.filename, "rb") as upload:  # DEEPaaS's own temporary file, not a client's name
            items.append(upload.read())
    allowed = tuple(Allowed.parse(text) for text in os.environ.get("TRILLA_URL_ALLOW", "").split(",") if text)
    fetcher = Fetcher(allowed=allowed)
    try:
        items += [fetcher.fetch(url) for url in urls]
    except Unreadable as err:
        raise _Refusal(400, str(err)) from None
    answers = []
    for record in _run().predictor().predict(items, top_k=top_k):
        if "error" in record:
            raise _Refusal(400, record["error"])
        labels = [p["label"] for p in record["predictions"]]
        answers.append({"labels": labels, "probabilities": [p["probability"] for p in record["predictions"]], "links": label_links(labels)})
    return answers[0] if len(answers) == 1 else answers


def get_train_args() -> dict[str, Any]:
    from webargs import fields

    return {
        "data": fields.Str(required=False, missing=None, description="data folder or CSV, relative to $TRILLA_DATA_ROOT; default: the run's own"),
        "epochs": fields.Int(required=False, missing=None, description="epochs to train"),
        "overrides": fields.List(fields.Str(), required=False, missing=[], description="config overrides, as trilla train --set"),
    }


def train(data: str | None = None, epochs: int | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """A training from the run's config (on its own data, or on `data` inside $TRILLA_DATA_ROOT), beside
    it, checked as trilla serve checks its trainings (`guarded`); DEEPaaS runs it in a worker process and
    cancels it by ending that process."""
    run = _run()
    root = os.environ.get("TRILLA_DATA_ROOT")
    try:
        _, checked = guarded(run, data, epochs, list(overrides or []), Path(root) if root else None)
    except Refused as err:
        raise _Refusal(422, str(err)) from None
    given = [*checked, f"run.dir={run.path.parent.resolve()}", "train.progress=false"]
    done = subprocess.run([sys.executable, "-m", "trilla", "train", str(run.path / "config.yaml"), "-q", *(f"--set={item}" for item in given)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"trilla train ended with {done.returncode}")
    return {"run": done.stdout.strip().splitlines()[-1], "finish_date": str(datetime.now())}
