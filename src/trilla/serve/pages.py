"""The web pages' plumbing: Jinja2 templates with autoescaping (every string a user or a file name brings
is escaped), the scripts and styles that ship in the package (served under /static; nothing is loaded
from elsewhere), and the CSRF token each page carries for the requests that change state."""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).parent


class Pages:
    def __init__(self, app: FastAPI, token: str | None):
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
        self.csrf = secrets.token_urlsafe(24)
        self.token = token
        app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def render(self, template: str, request: Request, **values) -> HTMLResponse:
        html = self.env.get_template(template).render(csrf=self.csrf, needs_token=self.token is not None, **values)
        response = HTMLResponse(html)
        response.headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def check(self, request: Request) -> None:
        """The CSRF check for a state-changing request from a page: the header the page sets."""
        given = request.headers.get("x-csrf-token", "")
        if not secrets.compare_digest(given.encode(), self.csrf.encode()):
            raise HTTPException(403, "this request needs the page's CSRF token (X-CSRF-Token): reload the page")


def wants_html(request: Request) -> bool:
    """A browser asking for a page rather than a program asking for JSON (DEEPaaS's GET / answers JSON)."""
    accept = request.headers.get("accept", "")
    return "text/html" in accept.split(";")[0] or accept.startswith("text/html")
