"""MkDocs hook: the reference pages, generated from the code at build time and never written by hand.

- reference/config.md: every config key from the pydantic schema (its type or allowed values, default,
  description), section by section, with the sections that depend on the input kind or the model per kind
  and per registered model;
- reference/cli.md: every command's help, as Typer prints it;
- reference/rest-api.md: every route of the OpenAPI document `create_app` serves (parameters, bodies,
  answers and their schemas).

Written here by hand because no MkDocs plugin renders pydantic v2 schemas, a Typer app and an OpenAPI
document offline in one build.
"""

from __future__ import annotations

import tempfile
import types
import typing
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File

PAGES = {"reference/config.md": "config_page", "reference/cli.md": "cli_page", "reference/rest-api.md": "rest_page"}


def on_files(files, config):
    for uri, maker in PAGES.items():
        files.append(File.generated(config, uri, content=globals()[maker]()))
    return files


# --- config ---------------------------------------------------------------------------------------


def _type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in args if a is not type(None)) + (" or `null`" if type(None) in args else "")
    if origin is typing.Annotated:
        return _type(args[0])
    if origin in (list, tuple, dict):
        return f"{origin.__name__} of " + ", ".join(_type(a) for a in args if a is not Ellipsis) if args else origin.__name__
    return getattr(annotation, "__name__", str(annotation)).replace("NoneType", "null")


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.default if field.default_factory is None else field.default_factory()
    if hasattr(value, "model_dump"):
        return "see below"
    return f"`{value!r}`".replace("|", "\\|")


def _section_table(model, prefix: str, nest: bool = True) -> list[str]:
    from pydantic import BaseModel

    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    nested = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        inner = [a for a in (typing.get_args(annotation) or (annotation,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{prefix}{name}` | {_type(annotation)} | {_default(field)} | {description} |")
        if nest and inner:
            nested.append((inner[0], f"{prefix}{name}."))
    out = lines + [""]
    for sub, sub_prefix in nested:
        out += [f"#### `{sub_prefix.rstrip('.')}`", "", *_section_table(sub, sub_prefix)]
    return out


def config_page() -> str:
    from trilla.config import Config, DataConfig, RunConfig, SweepConfig, TrainConfig
    from trilla.kinds import input_kinds
    from trilla.models import list_models, params_class

    lines = ["# Config reference", "",
             "Generated from the schema at build time (docs/hooks.py). How a config is written and read is in",
             "[Configuration](config-overview.md). Every key has a default; `--set dotted.key=value` sets any of them.", "",
             "## Top level", "", *_section_table(Config, "", nest=False)]
    for title, section, prefix in (("data", DataConfig, "data."), ("train", TrainConfig, "train."), ("run", RunConfig, "run."),
                                   ("sweep", SweepConfig, "sweep.")):
        lines += [f"## `{title}`", "", (section.__doc__ or "").strip(), "", *_section_table(section, prefix)]
    lines += ["## `input` and `augment`, per input kind", "",
              "`input.type` names the kind; the rest of `input:` and the whole of `augment:` are that kind's.", ""]
    for kind in input_kinds():
        lines += [f"### `input.type: {kind.name}`", "", (kind.schema.__doc__ or "").strip(), "", *_section_table(kind.schema, "input.")]
        if kind.augment_schema is not None:
            lines += [f"#### `augment` for {kind.name}", "", *_section_table(kind.augment_schema, "augment.")]
        else:
            lines += [f"`augment: null`: {kind.name} has no augmentation.", ""]
    lines += ["## `model`, per registered model", "", "`model.name` picks the model; the rest of `model:` is its own.", ""]
    for name in list_models():
        params = params_class(name)
        lines += [f"### `model.name: {name}`", "", f"Reads: {', '.join(params.inputs)}. " + (params.__doc__ or "").strip(), "",
                  *_section_table(params, "model.")]
    return "\n".join(lines) + "\n"


# --- command line ---------------------------------------------------------------------------------


def cli_page() -> str:
    from typer.main import get_command

    from trilla.cli import app

    root = get_command(app)
    lines = ["# Command line reference", "", "Every command's `--help`, generated at build time (docs/hooks.py).", ""]

    def plain_help(command, context) -> str:
        """The help as click formats it (Typer's own prints to the terminal through rich)."""
        base = next(k for k in type(command).__mro__ if k.__name__ == "Command" and k.__module__.endswith("click.core"))
        formatter = context.make_formatter()
        base.format_help(command, context, formatter)
        return formatter.getvalue()

    def visit(command, path: list[str], parent) -> None:
        context = command.context_class(command, info_name=path[-1], parent=parent)
        if path[1:]:
            lines.extend([f"## `{' '.join(path)}`", "", "```text", plain_help(command, context).strip(), "```", ""])
        if hasattr(command, "list_commands"):
            for name in command.list_commands(context):
                visit(command.get_command(context, name), [*path, name], context)

    visit(root, ["trilla"], None)
    return "\n".join(lines) + "\n"


# --- REST API -------------------------------------------------------------------------------------


def _document() -> dict:
    """The OpenAPI document of `create_app` over one labelling project (no trained run needed: the model
    routes take the model's name as a path parameter)."""
    import numpy as np
    from PIL import Image

    from trilla.label.project import Project
    from trilla.serve import create_app

    with tempfile.TemporaryDirectory() as folder:
        pictures = Path(folder) / "pictures" / "a"
        pictures.mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(pictures / "one.png")
        project = Project.create(Path(folder) / "project", pictures.parent, "classes", ["a", "b"])
        return create_app([], projects=[project]).openapi()


def _schema_name(schema: dict) -> str:
    if "$ref" in schema:
        return f"[`{schema['$ref'].rsplit('/', 1)[-1]}`](#{schema['$ref'].rsplit('/', 1)[-1].lower()})"
    if schema.get("type") == "array":
        return f"array of {_schema_name(schema.get('items', {}))}"
    if "anyOf" in schema:
        return " or ".join(_schema_name(s) for s in schema["anyOf"])
    return f"`{schema.get('type', 'object')}`"


def rest_page() -> str:
    document = _document()
    lines = ["# REST API reference", "",
             f"{document['info']['title']} {document['info'].get('version', '')}: the OpenAPI document `trilla serve` answers at",
             "`/openapi.json` (and shows at `/docs`), rendered at build time (docs/hooks.py). DEEPaaS clients use the `/v2/` routes.", ""]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            lines += [f"## `{method.upper()} {path}`", "", operation.get("summary", ""), "", (operation.get("description") or "").strip(), ""]
            parameters = operation.get("parameters", [])
            if parameters:
                lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
                lines += [f"| `{p['name']}` | {p['in']} | {_schema_name(p.get('schema', {}))} | {'yes' if p.get('required') else 'no'} | "
                          f"{(p.get('description') or '').replace('|', '/')} |" for p in parameters]
                lines.append("")
            body = operation.get("requestBody", {}).get("content", {})
            if body:
                lines += ["Body: " + ", ".join(f"`{media}` {_schema_name(c.get('schema', {}))}" for media, c in body.items()), ""]
            lines += ["| answer | description | body |", "|---|---|---|"]
            for code, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                shown = ", ".join(_schema_name(c.get("schema", {})) for c in content.values()) or "none"
                lines.append(f"| {code} | {response.get('description', '')} | {shown} |")
            lines.append("")
    lines += ["## Schemas", ""]
    for name, schema in sorted(document.get("components", {}).get("schemas", {}).items()):
        lines += [f"### {name}", "", (schema.get("description") or "").strip(), ""]
        properties = schema.get("properties", {})
        if properties:
            lines += ["| field | type | description |", "|---|---|---|"]
            lines += [f"| `{field}` | {_schema_name(p)} | {(p.get('description') or '').replace('|', '/')} |" for field, p in properties.items()]
            lines.append("")
    return "\n".join(lines) + "\n"
