"""The registry of objectives (what a run predicts), as `trilla.models` registers models and
`trilla.kinds` input kinds: `objective(name)` gives the one registered under a checkpoint's name,
`objective_for(config)` the one a config asks for.

A new objective is a module with an `Objective` subclass decorated with `@register`, imported below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trilla.errors import TrillaError, unknown_name
from trilla.objectives.base import Objective

if TYPE_CHECKING:
    from trilla.config import Config

_OBJECTIVES: dict[str, type[Objective]] = {}


def register(cls: type[Objective]) -> type[Objective]:
    if cls.name in _OBJECTIVES:
        raise TrillaError(f"an objective named {cls.name!r} is already registered")
    _OBJECTIVES[cls.name] = cls
    return cls


def list_objectives() -> list[str]:
    return sorted(_OBJECTIVES)


def objective(name: str) -> Objective:
    if name not in _OBJECTIVES:
        raise unknown_name("objective", name, list_objectives())
    return _OBJECTIVES[name]()


def objective_for(config: Config) -> Objective:
    """The objective a config asks for (task, train.multilabel_loss and data.target_mode say it)."""
    return objective(config.objective)


from trilla.objectives import multi_label, regression, single_label  # noqa: E402,F401  (they register themselves)

__all__ = ["Objective", "list_objectives", "objective", "objective_for", "register"]
