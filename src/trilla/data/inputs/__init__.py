"""Input kinds: importing this package registers every module in it (one module per kind)."""

import importlib
import pkgutil

from trilla.data.inputs.registry import (
    InputKind, Preprocessor, infer_kind, input_kind, input_kinds, list_inputs, register_input,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["InputKind", "Preprocessor", "infer_kind", "input_kind", "input_kinds", "list_inputs", "register_input"]
