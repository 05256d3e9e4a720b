"""Categorical metadata fused into a model: read each field's raw value, and encode it with the
training run's vocabulary, code 0 standing for a missing or never-seen value ("unknown").

The same functions serve training, evaluation and prediction, so a value is read and encoded the same
way everywhere; a run keeps its vocabularies in the checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from trilla.config import MetadataField

log = logging.getLogger("trilla")

UNKNOWN = "<unknown>"


def raw_value(name: str, spec: MetadataField, path: str | Path, columns: Mapping[str, str]) -> str:
    """The field's text for one file: a level of its path, or its manifest column ('' when absent)."""
    if spec.source == "path":
        parts = Path(path).parts
        return parts[spec.level] if -len(parts) <= spec.level < len(parts) else ""  # type: ignore[operator]
    return (columns.get(spec.column or name) or "").strip()


def column_names(fields: Mapping[str, MetadataField]) -> list[str]:
    """The manifest columns the fields read."""
    return [spec.column or name for name, spec in fields.items() if spec.source == "column"]


def vocabulary(values: list[str]) -> list[str]:
    return sorted({v for v in values if v})


def encode(name: str, values: list[str], vocab: list[str], where: str = "") -> np.ndarray:
    """Codes 1..len(vocab) for known values and 0 for missing or unseen ones, with a warning for those."""
    index = {value: i + 1 for i, value in enumerate(vocab)}
    codes = np.asarray([index.get(v, 0) for v in values], dtype=np.int64)
    unseen = sorted({v for v in values if v and v not in index})
    missing = sum(1 for v in values if not v)
    if unseen or missing:
        parts = []
        if unseen:
            parts.append(f"values never seen in training ({', '.join(unseen[:5])}{', ...' if len(unseen) > 5 else ''})")
        if missing:
            parts.append(f"{missing} missing values")
        log.warning("metadata %s%s: %s are treated as %s", name, f" in {where}" if where else "", " and ".join(parts), UNKNOWN)
    return codes


def encode_table(
    fields: Mapping[str, MetadataField], paths: list[str], columns: list[Mapping[str, str]],
    vocab: Mapping[str, list[str]] | None = None, where: str = "",
) -> tuple[np.ndarray, dict[str, list[str]]]:
    """(N, fields) codes for these files, with the vocabularies: given, or learnt from these values."""
    codes, vocabs = [], {}
    for name, spec in fields.items():
        values = [raw_value(name, spec, p, c) for p, c in zip(paths, columns)]
        vocabs[name] = list(vocab[name]) if vocab is not None else vocabulary(values)
        codes.append(encode(name, values, vocabs[name], where))
    table = np.stack(codes, axis=1) if codes else np.zeros((len(paths), 0), np.int64)
    return table, vocabs
