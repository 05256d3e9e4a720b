"""What every route family of one server shares: its settings, the models it serves (by name), its
labelling projects, its trainings, its metrics and pages, and the few lookups and guards routes take as
FastAPI dependencies (a model by the name in the path or a 404; the token; trainings switched on)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request

from trilla.errors import Unreadable
from trilla.label.project import Project
from trilla.serve.pages import Pages
from trilla.serve.remote import Fetcher
from trilla.serve.served import ServedModel
from trilla.serve.settings import Settings
from trilla.serve.trainings import Training, Trainings

if TYPE_CHECKING:
    from trilla.serve.app import Metrics


@dataclass
class Serving:
    settings: Settings
    served: dict[str, ServedModel]
    projects: list[Project]
    trainings: Trainings
    observe: Metrics
    pages: Pages
    fetcher: Fetcher
    fetch_slots: asyncio.Semaphore
    add: Callable[[str, Any], None]  # serve one more run under a name (a training that finished)

    def model(self, name: str) -> ServedModel:
        """The model the path names (a dependency: `model: ServedModel = Depends(serving.model)`), or 404."""
        if name not in self.served:
            raise HTTPException(404, f"no model {name!r}; the models are {', '.join(self.served)}")
        return self.served[name]

    def training(self, name: str, uuid: str) -> Training:
        """The training of the model the path names, or 404."""
        self.model(name)
        found = self.trainings.items.get(uuid)
        if found is None or found.model != name:
            raise HTTPException(404, f"no training {uuid!r} of model {name!r}")
        return found

    def authorized(self, request: Request) -> None:
        """With a token, the routes that change things need it (a 401 naming the route family)."""
        token = self.settings.token
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.encode()):
            path = request.url.path
            what = "labelling answers need" if path.startswith("/label/") else "the quiz needs" if path.startswith("/quiz") else "trainings need"
            raise HTTPException(401, f"{what} the server's token (the --token it was started with): give it on the page, "
                                     "or send Authorization: Bearer TOKEN", headers={"WWW-Authenticate": "Bearer"})

    def page_guard(self, request: Request) -> None:
        self.authorized(request)
        self.pages.check(request)

    def trainings_on(self) -> None:
        if not self.settings.trainings:
            raise HTTPException(501, "trainings over HTTP need a single server process (trilla serve --workers 1)")

    async def fetched(self, url: str) -> bytes | Unreadable:
        """A URL's bytes, or why they could not be had; at most `url_fetches` at once."""
        try:
            async with self.fetch_slots:
                return await self.fetcher.fetch_async(url)
        except Unreadable as err:
            return err

    @staticmethod
    async def answer(model: ServedModel, item: Any, top_k: int) -> dict:
        """A record for an item, or for a URL that could not be fetched."""
        return {"error": str(item)} if isinstance(item, Unreadable) else await model.predict(item, top_k)
