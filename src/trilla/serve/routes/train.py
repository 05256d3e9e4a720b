"""DEEPaaS V2's training routes: start a training from a served model's config (a new run beside it),
list, follow and cancel them; behind the token and only in a single server process."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from trilla.errors import Refused
from trilla.serve.context import Serving
from trilla.serve.failure import failures
from trilla.serve.served import ServedModel
from trilla.serve.trainings import Busy, Training


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


def router(serving: Serving) -> APIRouter:
    routes = APIRouter(dependencies=[Depends(serving.authorized), Depends(serving.trainings_on)], tags=["train"])
    trainings = serving.trainings

    @routes.post("/v2/models/{name}/train/", response_model=TrainingState, summary="Start a training from this model's config (a new run beside it)",
                 responses=failures(401, 404, 422, 429))
    def train(model: ServedModel = Depends(serving.model),
              data: str | None = Query(None, description="data folder or CSV, relative to the server's --data-root; default: the run's own"),
              epochs: int | None = Query(None, ge=1, le=100000, description="epochs to train"),
              overrides: list[str] = Query([], description="config overrides, as trilla train --set: train.lr=0.01")) -> TrainingState:
        try:
            started = trainings.start(model.name, model.run, data, epochs, overrides)
        except Busy as err:
            raise HTTPException(429, str(err), headers={"Retry-After": "30"}) from None
        except Refused as err:
            raise HTTPException(422, str(err)) from None
        return TrainingState(**started.describe())

    @routes.get("/v2/models/{name}/train/", response_model=list[TrainingState], summary="This model's trainings, running or ended",
                responses=failures(401, 404))
    def train_list(model: ServedModel = Depends(serving.model)) -> list[TrainingState]:
        return [TrainingState(**t.describe()) for t in list(trainings.items.values()) if t.model == model.name]

    @routes.get("/v2/models/{name}/train/{uuid}", response_model=TrainingState, summary="One training's status and progress",
                responses=failures(401, 404))
    def train_get(training: Training = Depends(serving.training)) -> TrainingState:
        return TrainingState(**training.describe())

    @routes.delete("/v2/models/{name}/train/{uuid}", response_model=TrainingState, summary="Cancel a training (its run is kept, marked cancelled)",
                   responses=failures(401, 404))
    def train_cancel(training: Training = Depends(serving.training)) -> TrainingState:
        trainings.cancel(training)
        return TrainingState(**training.describe())

    return routes
