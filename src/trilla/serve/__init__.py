"""Serving trained runs over HTTP: a DEEPaaS-compatible REST API on FastAPI (`create_app`)."""

from trilla.serve.app import create_app

__all__ = ["create_app"]
