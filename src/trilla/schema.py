"""The base of every config section, shared by config.py and the parts that own a section's schema
(input kinds, augmentations, a harvest's site file) without importing the whole config, and the
explanation of a validation error in the user's own keys (so a crawl validates its site file without
loading the models)."""

import difflib
import math
import typing
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

LARGEST = 2**32  # no count, size or seed trilla takes is larger; a 30-digit epochs is a typo
MAX_ITEMS = 10_000  # no list a setting takes is longer (AudioSet has 527 classes); 200 000 layers is a slip


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated too, and no whole number is
    beyond `LARGEST` (pydantic takes ints of any size, and a loop over 10**29 epochs never ends)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    dynamic_sections: ClassVar[tuple[str, ...]] = ()  # top-level sections whose schema `section_schema` tells

    @classmethod
    def section_schema(cls, part: str, raw: dict[str, Any]) -> type[BaseModel] | None:
        """The schema of the dynamic section `part` for this raw config (None: not known)."""
        return None

    @classmethod
    def user_loc(cls, loc: list[str]) -> list[str]:
        """A validation error's location as the user wrote the key."""
        return loc

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_number(cls, data: Any) -> Any:
        """`epochs: true` is a slip, not the number 1 (pydantic's lax mode would take it as one). A model
        validator: a field validator before the union tags (input.type) is not allowed."""
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(key, str) else None
                kinds = [field.annotation, *_flatten_args(field.annotation)] if field is not None else []
                if isinstance(value, bool) and bool not in kinds and {int, float} & set(kinds):
                    raise ValueError(f"{key}: {str(value).lower()} is a yes/no, and {key} takes a number")
        return data

    @field_validator("*", mode="after")
    @classmethod
    def _not_huge(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > LARGEST:
            raise ValueError(f"{value:.3e} is far beyond any sensible value (at most {LARGEST})")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} is no number a setting can take")
        if isinstance(value, (list, dict)) and len(value) > MAX_ITEMS:
            raise ValueError(f"{len(value)} items; a setting takes at most {MAX_ITEMS}")
        return value




class InputSection(Section):
    """Base of every input kind's `input:` section: `type` names the kind (a `Literal` in each kind)."""

    type: str

def load_yaml(text: str) -> Any:
    """YAML as the safe loader reads it, except that a key written twice in one mapping is an error
    naming both lines (the safe loader keeps the last silently, so an edit above would be ignored)."""
    return yaml.load(text, Loader=_UniqueKeys)  # noqa: S506 - a SafeLoader subclass


class _UniqueKeys(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is written twice in one mapping (lines {seen[key] + 1} and {key_node.start_mark.line + 1}); "
                    "keep one", key_node.start_mark)
            if isinstance(key, typing.Hashable):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def short(err: Any, limit: int = 300) -> str:
    """An error's message cut to a readable length (a 5000-digit number is quoted whole otherwise)."""
    text = str(err)
    return text if len(text) <= limit else text[:limit] + "..."


def explain(error: dict[str, Any], raw: dict[str, Any], root: type[Section]) -> str:
    """One line per problem: the dotted key, what is wrong, and what would be right (in the schema
    `root`: the training config, a harvest's site file)."""
    loc = root.user_loc([str(p) for p in error["loc"]])
    key = ".".join(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = _fields_at(loc[:-1], raw, root)
        close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{'.'.join(loc[:-1] + close)}'?" if close else ""
        return f"  {key}: unknown key{hint} Valid keys here: {', '.join(valid)}"
    if kind == "literal_error":
        allowed = [a.strip(" '") for a in error["ctx"]["expected"].replace(" or ", ", ").split(",")]
        close = difflib.get_close_matches(str(error["input"]), allowed, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"  {key}: {error['input']!r} is not allowed{hint} Allowed values: {', '.join(allowed)}"
    if kind == "value_error" and not key:  # a check across sections: its message names the keys; its input is the whole config
        return f"  {error['ctx']['error']}"
    return f"  {key}: {error['msg']} (got {short(repr(error.get('input')), 80)})"


def _fields_at(loc: list[str], raw: dict[str, Any], root: type[Section]) -> list[str]:
    """Valid field names of the section at `loc` (walks the schema, following list items)."""
    model: Any = root
    for part in loc:
        if model is root and part in root.dynamic_sections:
            model = root.section_schema(part, raw)
            if model is None:
                return []
            continue
        if part.isdigit():
            continue
        annotation = model.model_fields[part].annotation
        model = next(
            (t for t in (annotation, *_flatten_args(annotation)) if isinstance(t, type) and issubclass(t, BaseModel)),
            None,
        )
        if model is None:
            return []
    return list(model.model_fields)


def _flatten_args(annotation: Any) -> list[Any]:
    out = []
    for arg in typing.get_args(annotation):
        out.append(arg)
        out.extend(_flatten_args(arg))
    return out
