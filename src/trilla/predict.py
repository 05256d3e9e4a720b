"""Predictor: load a checkpoint once, preprocess exactly as in training, predict in batches.

Metadata fields fused into the model are encoded with the run's vocabularies; a field read from the
path is taken from each file's path unless a value is given. Test-time augmentation averages the
softmax (or the regressed values) over the original and `tta` augmented views (the run's own
`augment:` transforms). Sound files are decoded and turned into spectrograms as the run's `input:` says.
A multi-label run returns every label whose probability reaches its threshold (tuned on validation).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from trilla.config import AudioAugmentConfig, AudioInput, AugmentConfig, ImageInput, MetadataField
from trilla.data import audio, images
from trilla.data import metadata as meta
from trilla.data.audio_augment import SpectrogramAugment
from trilla.data.augment import build_augment
from trilla.data.datamodule import to_batch
from trilla.data.sources import visible_files
from trilla.errors import TrillaError
from trilla.tasks import load_task


class Predictor:
    def __init__(
        self, checkpoint: Path, device: str = "cpu", fields: Mapping[str, MetadataField] | None = None,
        augment: AugmentConfig | AudioAugmentConfig | None = None, tta: int = 0, input_cfg: ImageInput | AudioInput | None = None,
        thresholds: list[float] | None = None,
    ):
        self.task = load_task(checkpoint, device).eval()
        self.device = device
        hp = self.task.hparams
        self.classes: list[str] = list(hp.classes)
        self.regression: bool = self.task.regression
        self.multilabel: bool = self.task.multilabel
        self.thresholds = np.full(len(self.classes), 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        self.kind: str = hp.input_spec.get("kind", "image")
        if self.kind == "image":
            self.size: int = hp.input_spec["size"]
            self.channels: images.Channels = "grey" if hp.input_spec["channels"] == 1 else "rgb"
        elif self.kind == "audio":  # embeddings runs read rows of their files through the data layer, never files
            from trilla.data.spectrogram import Spectrogram

            if not isinstance(input_cfg, AudioInput):
                raise TrillaError("an audio run needs its input: section (the run's config.yaml) to predict")
            self.input_cfg = input_cfg
            self.spectrogram = Spectrogram(input_cfg)
        self.vocab: dict[str, list[str]] = dict(hp.get("metadata") or {})
        self.fields = {name: (fields or {}).get(name, MetadataField(source="column")) for name in self.vocab}
        self.tta = tta
        self.augment = None
        if tta:
            self.augment = SpectrogramAugment(augment, input_cfg) if isinstance(augment, AudioAugmentConfig) else (
                build_augment(augment, self.size) if self.kind == "image" and augment is not None else None)
            if self.augment is None:
                raise TrillaError("test-time augmentation needs the run's augment: section, and this run trained without one")

    @torch.inference_mode()
    def predict_inputs(self, inputs: dict[str, np.ndarray], metadata: np.ndarray | None = None, batch_size: int = 256) -> np.ndarray:
        """Arrays as `LabelledData.inputs` gives them and (N, fields) metadata codes -> class
        probabilities (N, classes), or the regressed values (N, outputs)."""
        out = []
        count = len(next(iter(inputs.values())))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for start in range(0, count, batch_size):
                part = {key: value[start : start + batch_size] for key, value in inputs.items()}
                extra = {} if metadata is None else {"metadata": torch.from_numpy(metadata[start : start + batch_size])}
                views = [to_batch(part)] + [to_batch(part, self.augment) for _ in range(self.tta)]
                total = sum(
                    self.task.outputs(self.task.logits({k: v.to(self.device) for k, v in {**view, **extra}.items()})) for view in views
                )
                out.append((total / len(views)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def load(self, path: Path) -> dict[str, np.ndarray]:
        """One file as a batch of one, preprocessed as in training; raises ValueError with the reason."""
        if self.kind == "embeddings":
            raise TrillaError("a run on embeddings predicts embedding files: use trilla evaluate RUN --data FILE.h5 (predictions.csv)")
        if self.kind == "image":
            try:
                return {"image": images.load(path, self.size, self.channels)[None]}
            except images.ImageError as err:
                raise ValueError(str(err)) from err
        try:
            samples = audio.load(path, self.input_cfg.sample_rate)
        except audio.AudioError as err:
            raise ValueError(str(err)) from err
        if self.input_cfg.seconds is not None:
            samples = audio.fit(samples, int(round(self.input_cfg.seconds * self.input_cfg.sample_rate)))
        with torch.inference_mode():
            return {"spectrogram": self.spectrogram(torch.from_numpy(samples)[None]).numpy()}

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
        """One record per file: its top-k labels with probabilities (or its regressed values), or the
        reason it could not be read. Files whose inputs have one shape (all images; clips of a fixed
        length) are predicted in batches."""
        records: list[dict] = [{"file": str(path)} for path in paths]
        metadata = metadata or [{}] * len(paths)
        codes = self.encode_metadata(paths, metadata)
        groups: dict[tuple, list[tuple[int, dict[str, np.ndarray]]]] = {}
        for i, path in enumerate(paths):
            try:
                inputs = self.load(path)
            except ValueError as err:
                records[i]["error"] = str(err)
                continue
            groups.setdefault(tuple(v.shape for v in inputs.values()), []).append((i, inputs))
        k = min(top_k, len(self.classes))
        for members in groups.values():
            where = np.asarray([i for i, _ in members])
            stacked = {key: np.concatenate([inputs[key] for _, inputs in members]) for key in members[0][1]}
            for i, p in zip(where, self.predict_inputs(stacked, None if codes is None else codes[where])):
                if self.regression:
                    records[i]["values"] = {name: float(v) for name, v in zip(self.classes, p)}
                elif self.multilabel:
                    above = [j for j in np.argsort(-p) if p[j] >= self.thresholds[j]]
                    records[i]["predictions"] = [
                        {"label": self.classes[j], "probability": float(p[j]), "threshold": float(self.thresholds[j])} for j in above
                    ]
                else:
                    best = np.argsort(-p)[:k]
                    records[i]["predictions"] = [{"label": self.classes[j], "probability": float(p[j])} for j in best]
        return records


class Ensemble:
    """Several runs' predictors used as one: their probabilities (or regressed values) averaged. On data
    unlike the training set, runs that differ only in their seed can differ by several points
    (benchmarks/results/audio_quality_instruments.md); their ensemble does not depend on one draw.
    Multi-label thresholds are the members' mean."""

    def __init__(self, members: list[Predictor]):
        first = members[0]
        for other in members[1:]:
            if (other.classes, other.regression, other.multilabel, other.vocab) != (first.classes, first.regression, first.multilabel, first.vocab):
                raise TrillaError("the runs of an ensemble must predict the same classes the same way (and read the same metadata)")
        self.members = members
        self.classes, self.regression, self.multilabel, self.vocab = first.classes, first.regression, first.multilabel, first.vocab
        self.thresholds = np.mean([m.thresholds for m in members], axis=0)

    def predict_inputs(self, inputs: dict[str, np.ndarray], metadata: np.ndarray | None = None, batch_size: int = 256) -> np.ndarray:
        return np.mean([m.predict_inputs(inputs, metadata, batch_size) for m in self.members], axis=0)


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
