"""Serving trained runs over HTTP: a DEEPaaS-compatible REST API on FastAPI (`create_app`), loaded on
first use, so that `trilla.serve.settings` (the command line's defaults) imports nothing heavy."""

__all__ = ["create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from trilla.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'trilla.serve' has no attribute {name!r}")
