"""Predictor: load a checkpoint once, preprocess exactly as in training, predict in batches.

Metadata fields fused into the model are encoded with the run's vocabularies; a field read from the
path is taken from each file's path unless a value is given. Test-time augmentation averages the
softmax over the original and `tta` augmented views (the run's own `augment:` transforms).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from trilla.config import AugmentConfig, MetadataField
from trilla.data import images
from trilla.data import metadata as meta
from trilla.data.augment import build_augment
from trilla.data.sources import visible_files
from trilla.errors import TrillaError
from trilla.tasks import load_task


class Predictor:
    def __init__(
        self, checkpoint: Path, device: str = "cpu", fields: Mapping[str, MetadataField] | None = None,
        augment: AugmentConfig | None = None, tta: int = 0,
    ):
        self.task = load_task(checkpoint, device).eval()
        self.device = device
        hp = self.task.hparams
        self.classes: list[str] = list(hp.classes)
        self.size: int = hp.input_spec["size"]
        self.channels: images.Channels = "grey" if hp.input_spec["channels"] == 1 else "rgb"
        self.vocab: dict[str, list[str]] = dict(hp.get("metadata") or {})
        self.fields = {name: (fields or {}).get(name, MetadataField(source="column")) for name in self.vocab}
        self.tta = tta
        self.augment = build_augment(augment, self.size) if tta else None
        if tta and self.augment is None:
            raise TrillaError("test-time augmentation needs the run's augment: section, and this run trained without one")

    @torch.inference_mode()
    def predict_arrays(self, batch: np.ndarray, metadata: np.ndarray | None = None, batch_size: int = 256) -> np.ndarray:
        """uint8 (N, H, W, C) images and (N, fields) metadata codes -> class probabilities (N, classes)."""
        out = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for start in range(0, len(batch), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(batch[start : start + batch_size])).permute(0, 3, 1, 2)
                codes = None if metadata is None else torch.from_numpy(metadata[start : start + batch_size]).to(self.device)
                views = [x] + [torch.stack([self.augment(image) for image in x]) for _ in range(self.tta)]
                probs = sum(torch.softmax(self.task(v.to(self.device), codes), dim=1) for v in views) / len(views)
                out.append(probs.cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def encode_metadata(self, paths: list[Path], given: list[Mapping[str, str]]) -> np.ndarray | None:
        """Codes for these files; a value not given is read from the path for `from: path` fields."""
        if not self.vocab:
            return None
        codes = []
        for name, spec in self.fields.items():
            values = [
                values.get(name) or (meta.raw_value(name, spec, path, {}) if spec.source == "path" else "")
                for path, values in zip(paths, given)
            ]
            codes.append(meta.encode(name, values, self.vocab[name], where="the files to predict"))
        return np.stack(codes, axis=1)

    def predict_files(self, paths: list[Path], top_k: int = 5, metadata: list[Mapping[str, str]] | None = None) -> list[dict]:
        """One record per file: its top-k labels with probabilities, or the reason it could not be read."""
        records: list[dict] = []
        arrays, where = [], []
        metadata = metadata or [{}] * len(paths)
        for path in paths:
            try:
                arrays.append(images.load(path, self.size, self.channels))
                where.append(len(records))
                records.append({"file": str(path)})
            except images.ImageError as err:
                records.append({"file": str(path), "error": str(err)})
        if arrays:
            codes = self.encode_metadata([paths[i] for i in where], [metadata[i] for i in where])
            probs = self.predict_arrays(np.stack(arrays), codes)
            k = min(top_k, len(self.classes))
            for slot, p in zip(where, probs):
                best = np.argsort(-p)[:k]
                records[slot]["predictions"] = [{"label": self.classes[i], "probability": float(p[i])} for i in best]
        return records


def metadata_per_file(paths: list[Path], fixed: Mapping[str, str], table: Path | None, fields: list[str]) -> list[dict[str, str]]:
    """Values for each file: a CSV (`file` column plus one column per field) overridden by fixed values."""
    unknown = sorted(set(fixed) - set(fields))
    if unknown:
        raise TrillaError(f"--meta {', '.join(unknown)}: this run's metadata fields are {fields or 'none'}")
    by_file: dict[str, dict[str, str]] = {}
    if table is not None:
        if not Path(table).is_file():
            raise TrillaError(f"metadata table {table} does not exist")
        with Path(table).open(newline="", encoding="utf-8-sig") as handle:
            rows = csv.DictReader(handle)
            if "file" not in (rows.fieldnames or []):
                raise TrillaError(f"{table} needs a 'file' column and one column per field ({', '.join(fields)})")
            for row in rows:
                by_file[str(Path(row["file"]).resolve())] = {k: v for k, v in row.items() if k in fields and v}
    return [{**by_file.get(str(Path(p).resolve()), {}), **fixed} for p in paths]


def expand(inputs: list[Path]) -> list[Path]:
    """Files as given, folders as their visible files (recursively, sorted)."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out.extend(visible_files(item))
        else:
            out.append(item)
    return out


def default_device(accelerator: str = "auto") -> str:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"
