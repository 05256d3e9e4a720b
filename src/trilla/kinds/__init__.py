"""Input kinds, one package each (image/, audio/, embeddings/, each with its `kind.py`), behind one
registry (registry.py), in the manner of timm's `register_model`.

The names below load the registry with every kind package in this folder on first use; importing one
kind's own helpers (the picture decoder a crawl uses, the audio decoder that cuts clips) loads no other
kind and no torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trilla.kinds.registry import InputKind, Preprocessor, infer_kind, input_kind, input_kinds, list_inputs, register_input

__all__ = ["InputKind", "Preprocessor", "infer_kind", "input_kind", "input_kinds", "list_inputs", "register_input"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    registry = importlib.import_module(f"{__name__}.registry")
    for found in pkgutil.iter_modules(__path__):
        if found.ispkg:
            importlib.import_module(f"{__name__}.{found.name}.kind")
    globals().update({exported: getattr(registry, exported) for exported in __all__})  # the next lookups skip this function
    return globals()[name]
