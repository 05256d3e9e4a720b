"""The labelling tool's routes: the page at /label/PROJECT and the JSON it talks to.

Media are served by item id only (never a path from the request). Every request that changes state
carries the page's CSRF token (a header a cross-site form cannot set) and, when the server has a token,
the bearer token. An annotator's requests see only that annotator's answers.
"""

from __future__ import annotations

import json
import mimetypes
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field

from trilla.label.export import agreement
from trilla.label.project import Project, Shown
from trilla.serve.failure import failures


class ItemView(BaseModel):
    id: int
    media: str = Field(description="image or audio")
    url: str = Field(description="where the page fetches it (by id)")
    position: int = Field(description="items this annotator has answered or skipped")
    total: int
    answer: Any = Field(None, description="this annotator's current answer to it")
    given: str | None = Field(None, description="the label under review (review projects only)")
    name: str = Field("", description="the file's name")
    skipped: bool = Field(False, description="this annotator's standing answer to it is a skip")


class Next(BaseModel):
    item: ItemView | None = Field(description="null when this annotator has seen every item (or, revisiting, every skipped one)")
    skipped: int = Field(0, description="items this annotator has skipped and not answered since")


class Posted(BaseModel):
    annotator: str = Field(min_length=1, max_length=200)
    item: int | None = None
    value: Any = None
    seconds: float = Field(0.0, ge=0, le=86400)
    revisit: bool = Field(False, description="the next item may be one this annotator skipped (once every item is seen)")


class ProjectView(BaseModel):
    name: str
    kind: str
    classes: list[str]
    axes: list[str]
    quadrants: dict[str, list[int]]
    guesses: bool = Field(description="the model's guess (or the reviewed runs' votes) can be shown: the project was made with a run or by a review")


class Stats(BaseModel):
    items: int
    answered: int = Field(description="items with at least one answer")
    annotators: list[str]
    agreement: dict[str, float | None] = Field(description="Krippendorff's alpha (per axis for the plane)")


def label_router(projects: dict[str, Project], guard, render) -> APIRouter:
    """Routes for these projects; `guard` is the dependency state-changing requests pass (token and
    CSRF), `render(template, **values)` the page renderer."""
    router = APIRouter(prefix="/label", tags=["label"], responses=failures(401, 403, 404, 422, 503))

    def project_of(name: str) -> Project:
        if name not in projects:
            raise HTTPException(404, f"no labelling project {name!r}")
        return projects[name]

    def view(name: str, shown: Shown | None, annotator: str) -> Next:
        skipped = len(project_of(name).skipped(annotator))
        if shown is None:
            return Next(item=None, skipped=skipped)
        return Next(item=ItemView(id=shown.id, media=shown.media, url=f"/label/{name}/media/{shown.id}", position=shown.position,
                                  total=shown.total, answer=shown.answer, given=shown.given, name=shown.name, skipped=shown.skipped),
                    skipped=skipped)

    @router.get("/{name}", response_class=HTMLResponse, include_in_schema=False)
    def page(name: str, request: Request):
        project = project_of(name)
        return render("label.html", request, project=project, quadrants=project.quadrants)

    @router.get("/{name}/api/project", response_model=ProjectView)
    def describe(name: str) -> ProjectView:
        project = project_of(name)
        return ProjectView(name=name, kind=project.kind, classes=project.classes, axes=project.axes,
                           quadrants={k: list(v) for k, v in project.quadrants.items()}, guesses=project.guided)

    @router.get("/{name}/api/next", response_model=Next)
    def next_item(name: str, annotator: str = Query(..., min_length=1, max_length=200),
                  revisit: bool = Query(False, description="once every item is seen, the one skipped longest ago")) -> Next:
        return view(name, project_of(name).next_item(annotator, revisit), annotator)

    @router.get("/{name}/api/item/{item}", response_model=Next)
    def one(name: str, item: int, annotator: str = Query(..., min_length=1, max_length=200)) -> Next:
        project = project_of(name)
        try:
            return view(name, project.show(item, annotator), annotator)
        except KeyError:
            raise HTTPException(404, f"no item {item} in {name}") from None

    @router.get("/{name}/api/back", response_model=Next)
    def back(name: str, annotator: str = Query(..., min_length=1, max_length=200), before: int | None = None) -> Next:
        project = project_of(name)
        found = project.previous(annotator, before)
        return view(name, None if found is None else project.show(found, annotator), annotator)

    def record(name: str, posted: Posted, value: Any) -> Next:
        """Store `value` (None: a skip) for the posted item; the annotator's next item."""
        project = project_of(name)
        if posted.item is None:
            raise HTTPException(422, "say which item the answer is for")
        try:
            project.answer(posted.item, posted.annotator, value, posted.seconds)
        except KeyError:
            raise HTTPException(404, f"no item {posted.item} in {name}") from None
        except ValueError as err:
            raise HTTPException(422, str(err)) from None
        return view(name, project.next_item(posted.annotator, posted.revisit), posted.annotator)

    @router.post("/{name}/api/answer", response_model=Next, dependencies=[Depends(guard)])
    def answer(name: str, posted: Posted) -> Next:
        return record(name, posted, posted.value)

    @router.post("/{name}/api/skip", response_model=Next, dependencies=[Depends(guard)])
    def skip(name: str, posted: Posted) -> Next:
        return record(name, posted, None)

    @router.post("/{name}/api/undo", response_model=Next, dependencies=[Depends(guard)])
    def undo(name: str, posted: Posted) -> Next:
        project = project_of(name)
        found = project.undo(posted.annotator)
        return view(name, None if found is None else project.show(found, posted.annotator), posted.annotator)

    @router.get("/{name}/api/guess/{item}")
    def guess(name: str, item: int) -> dict[str, Any]:
        project = project_of(name)
        try:
            found = project.item(item)
        except KeyError:
            raise HTTPException(404, f"no item {item} in {name}") from None
        return {"predictions": json.loads(found.guess) if found.guess else None, "given": found.given}

    @router.get("/{name}/api/stats", response_model=Stats)
    def stats(name: str) -> Stats:
        project = project_of(name)
        standing = project.standing()
        return Stats(items=len(project.items()), answered=int(standing["item"].nunique()) if len(standing) else 0,
                     annotators=sorted(set(standing["annotator"])), agreement=agreement(project))

    @router.get("/{name}/media/{item}", include_in_schema=False)
    def media(name: str, item: int):
        project = project_of(name)
        try:
            found = project.item(item)
        except KeyError:
            raise HTTPException(404, f"no item {item} in {name}") from None
        kind = mimetypes.guess_type(found.path)[0] or "application/octet-stream"
        return FileResponse(found.path, media_type=kind)

    return router
