"""The API in DEEPaaS's own format: Swagger 2.0 at /swagger.json, converted from the OpenAPI 3.1 document
FastAPI builds (served as it is at /openapi.json), so both describe the same routes.

A DEEPaaS client reads `definitions`, `formData` parameters and one path per model
(`/v2/models/NAME/predict/`), as `deepaas-run` writes them; this module writes the same: model routes
are spelled out for each served model, multipart fields become `formData` parameters (a file field is
`type: file`), a JSON body an `in: body` parameter, and each schema is cut down to what Swagger 2.0 can
say (an optional value is `x-nullable`; a choice between several types, which Swagger 2.0 cannot state,
is left open).

Written by hand: no maintained Python package converts OpenAPI 3.1 to Swagger 2.0.
"""

from __future__ import annotations

import copy
from typing import Any

REF, DEFINITIONS = "#/components/schemas/", "#/definitions/"
SIMPLE = ("string", "integer", "number", "boolean", "array")
PARAMETER_KEYS = ("format", "default", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
                  "pattern", "enum", "description", "minItems", "maxItems")


def swagger2(openapi: dict[str, Any], models: list[str]) -> dict[str, Any]:
    """The Swagger 2.0 document of `openapi`, with `/v2/models/{name}/...` written out for each of `models`."""
    schemas = openapi.get("components", {}).get("schemas", {})
    paths: dict[str, Any] = {}
    for path, operations in openapi.get("paths", {}).items():
        spelled = [path.replace("{name}", model) for model in models] if path.startswith("/v2/models/{name}") else [path]
        for concrete in spelled:
            paths[concrete] = {method: _operation(operation, schemas, concrete != path) for method, operation in operations.items()}
    return {
        "swagger": "2.0",
        "info": openapi.get("info", {}),
        "produces": ["application/json"],
        "paths": paths,
        "definitions": {name: _schema(schema) for name, schema in schemas.items()},
    }


def _operation(operation: dict[str, Any], schemas: dict[str, Any], named: bool) -> dict[str, Any]:
    out = {key: operation[key] for key in ("tags", "summary", "description", "operationId") if key in operation}
    parameters = [_parameter(p) for p in operation.get("parameters", []) if not (named and p.get("in") == "path" and p.get("name") == "name")]
    consumes = []
    for media, body in operation.get("requestBody", {}).get("content", {}).items():
        consumes.append(media)
        schema = body.get("schema", {})
        if media in ("multipart/form-data", "application/x-www-form-urlencoded"):
            resolved = schemas.get(schema.get("$ref", "").removeprefix(REF), schema)
            required = set(resolved.get("required", []))
            parameters += [_form_field(name, field, name in required) for name, field in resolved.get("properties", {}).items()]
        else:
            parameters.append({"in": "body", "name": "body", "required": bool(operation["requestBody"].get("required")), "schema": _schema(schema)})
    if parameters:
        out["parameters"] = parameters
    if consumes:
        out["consumes"] = consumes
    out["responses"] = {}
    for code, response in operation.get("responses", {}).items():
        answer = {"description": response.get("description", "")}
        content = response.get("content", {})
        if "application/json" in content and content["application/json"].get("schema"):
            answer["schema"] = _schema(content["application/json"]["schema"])
        out["responses"][code] = answer
    produces = sorted({media for response in operation.get("responses", {}).values() for media in response.get("content", {})})
    if produces and produces != ["application/json"]:
        out["produces"] = produces
    return out


def _parameter(parameter: dict[str, Any]) -> dict[str, Any]:
    out = {"in": parameter["in"], "name": parameter["name"], "required": bool(parameter.get("required"))}
    if parameter.get("description"):
        out["description"] = parameter["description"]
    out.update(_simple(parameter.get("schema", {})))
    return out


def _form_field(name: str, field: dict[str, Any], required: bool) -> dict[str, Any]:
    """A multipart field as a formData parameter: a file (or several under one name) is `type: file`."""
    plain, _ = _nullable(field)
    is_file = plain.get("format") == "binary" or "contentMediaType" in plain or (plain.get("type") == "array" and (
        plain.get("items", {}).get("format") == "binary" or "contentMediaType" in plain.get("items", {})))
    out = {"in": "formData", "name": name, "required": required}
    if field.get("description"):
        out["description"] = field["description"] + (" (repeat the field for several files)" if plain.get("type") == "array" else "")
    if is_file:
        out["type"] = "file"
    else:
        out.update(_simple(field))
    return out


def _simple(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's type in Swagger 2.0's terms (no $ref, no null)."""
    plain, nullable = _nullable(schema)
    out: dict[str, Any] = {"type": plain.get("type") if plain.get("type") in SIMPLE else "string"}
    out.update({key: plain[key] for key in PARAMETER_KEYS if key in plain and key != "description"})
    if out["type"] == "array":
        out["items"] = _simple(plain.get("items", {}))
        out["collectionFormat"] = "multi"
    if nullable:
        out["x-nullable"] = True
    return out


def _nullable(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema without its `null` alternative, and whether it had one."""
    options = schema.get("anyOf")
    if not options:
        return schema, False
    rest = [option for option in options if option.get("type") != "null"]
    if len(rest) != 1:
        return {key: value for key, value in schema.items() if key != "anyOf"}, len(rest) != len(options)
    merged = {**{k: v for k, v in schema.items() if k != "anyOf"}, **rest[0]}
    return merged, len(rest) != len(options)


def _schema(schema: Any) -> Any:
    """A JSON Schema (2020-12, as pydantic writes it) in Swagger 2.0's subset."""
    if isinstance(schema, list):
        return [_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    plain, nullable = _nullable(copy.deepcopy(schema))
    out: dict[str, Any] = {}
    for key, value in plain.items():
        if key == "$ref":
            out[key] = value.replace(REF, DEFINITIONS)
        elif key in ("const",):
            out["enum"] = [value]
        elif key in ("properties",):
            out[key] = {name: _schema(field) for name, field in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _schema(value) if isinstance(value, dict) else value
        elif key in ("allOf",):
            out[key] = [_schema(item) for item in value]
        elif key in ("oneOf", "anyOf", "prefixItems", "examples", "contentMediaType", "discriminator", "$defs"):
            continue  # not Swagger 2.0: the value is left open
        elif key == "type" and isinstance(value, list):
            kinds = [kind for kind in value if kind != "null"]
            nullable |= len(kinds) != len(value)
            if len(kinds) == 1:
                out[key] = kinds[0]
        else:
            out[key] = value
    if "$ref" in out and len(out) > 1:  # Swagger 2.0 ignores a $ref's siblings: keep them through allOf
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    if nullable:
        out["x-nullable"] = True
    return out
