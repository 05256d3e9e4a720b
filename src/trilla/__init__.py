"""trilla: turn homegrown datasets of images and audio into good classifiers.

Library first: `trilla.train(config) -> Run`, `trilla.load_run(path).predict(files)`; the CLI is thin.
Its names load on first use (PEP 562), so `import trilla` and `trilla --help` start without torch,
Lightning or timm: a crawler or a web process stays light until it touches a network.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trilla.errors import TrillaError
from trilla.version import __version__

if TYPE_CHECKING:
    from trilla.config import Config
    from trilla.runs import Run

_LAZY = {"Config": "trilla.config", "load_config": "trilla.config", "Run": "trilla.runs"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trilla' has no attribute {name!r}")


def train(config: Config, **kwargs) -> Run:
    from trilla.training.train import train as _train

    return _train(config, **kwargs)


def resume(run: str, **kwargs) -> Run:
    from trilla.training.train import resume as _resume

    return _resume(run, **kwargs)


def load_run(path: str) -> Run:
    from trilla.runs import Run

    return Run(path)


__all__ = ["Config", "Run", "TrillaError", "__version__", "load_config", "load_run", "resume", "train"]
