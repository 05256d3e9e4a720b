"""Predictor: load a checkpoint once, preprocess exactly as in training, predict in batches.

It takes what a program or a server holds: paths, bytes, binary file objects, PIL images, picture
arrays, or decoded audio as (samples, sample_rate). Each item is decoded and preprocessed by the run's
input kind with the same functions that packed the training data, so an item predicts as it scored
at training time. An item that cannot be read comes back with its reason; the others are predicted.

Metadata fields fused into the model are encoded with the run's vocabularies; a field read from the
path is taken from each file's path unless a value is given. Test-time augmentation averages the
softmax (or the regressed values) over the original and `tta` augmented views (the run's own
`augment:` transforms). A multi-label run returns every label whose probability reaches its threshold
(tuned on validation).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from trilla.data import metadata as meta
from trilla.data.sources import Problem, manifest_rows, walk
from trilla.errors import TrillaError, Unreadable
from trilla.kinds import input_kind
from trilla.kinds.protocols import Augments, Decodes, able
from trilla.kinds.registry import WINDOWS, Preprocessor
from trilla.tasks import load_task

if TYPE_CHECKING:
    from trilla.config import Config


class Predictor:
    """A trained checkpoint with the run's preprocessing. `config` is the run's resolved config and
    `record` the `data` section of its run.json (what the store held: sizes, clip lengths)."""

    def __init__(
        self, checkpoint: Path, config: Config, record: Mapping[str, Any] | None = None, device: str = "cpu", tta: int = 0,
        thresholds: list[float] | None = None,
    ):
        self.task = load_task(checkpoint, device).eval()
        self.device = device
        hp: Any = self.task.hparams
        self.classes: list[str] = list(hp.classes)
        self.objective = self.task.objective
        self.thresholds = np.full(len(self.classes), 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        self.spec: dict = dict(hp.input_spec)
        self.input = input_kind(self.spec.get("kind", "image"))
        self.config, self.record = config, dict(record or {})
        self._preprocessor: Preprocessor | None = None
        self.vocab: dict[str, list[str]] = dict(hp.get("metadata") or {})
        self.fields = {name: config.data.metadata[name] for name in self.vocab}
        self.tta = tta
        self.augment = None
        if tta:
            if config.augment is None:
                raise TrillaError("test-time augmentation needs the run's augment: section, and this run trained without one")
            self.augment = able(self.input, Augments, "input type {kind} has no test-time augmentation").augmentation(config.augment, config, self.spec)

    @property
    def preprocessor(self):
        """The run's input kind's preprocessing, built on first use (a run on embeddings has none)."""
        if self._preprocessor is None:
            decodes = able(self.input, Decodes, "a run on {kind} cannot predict single items: use trilla evaluate RUN --data FILE (predictions.csv)")
            self._preprocessor = decodes.preprocessor(self.config, self.spec, self.record)
        return self._preprocessor

    @torch.inference_mode()
    def predict_inputs(self, inputs: dict[str, np.ndarray], metadata: np.ndarray | None = None, batch_size: int = 256) -> np.ndarray:
        """Arrays as `LabelledData.inputs` gives them and (N, fields) metadata codes -> class
        probabilities (N, classes), or the regressed values (N, outputs)."""
        out = []
        count = len(next(iter(inputs.values())))
        with torch.random.fork_rng(devices=[], enabled=bool(self.tta)):  # augmented views: the same draws every call
            if self.tta:
                torch.manual_seed(0)  # not without views: it costs a stack trace per call (torch's lazy device seeding)
            for start in range(0, count, batch_size):
                part = {key: value[start : start + batch_size] for key, value in inputs.items()}
                extra = {} if metadata is None else {"metadata": torch.from_numpy(metadata[start : start + batch_size])}
                views = [self.input.to_batch(part)] + [self.input.to_batch(part, self.augment) for _ in range(self.tta)]
                total = torch.stack([
                    self.task.outputs(self.task.logits({k: v.to(self.device) for k, v in {**view, **extra}.items()})) for view in views
                ]).sum(0)
                out.append((total / len(views)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def prepare(self, item: Any, hop: float | None = None) -> dict[str, np.ndarray]:
        """One item as a batch of one (or of its windows, see `Preprocessor`), preprocessed as in
        training; raises Unreadable with the reason."""
        return self.preprocessor.prepare(item, hop)

    def encode_metadata(self, paths: list[Path | None], given: list[Mapping[str, str]]) -> np.ndarray | None:
        """Codes for these items; a value not given is read from the path for `from: path` fields."""
        if not self.vocab:
            return None
        codes = []
        for name, spec in self.fields.items():
            values = [
                values.get(name) or (meta.raw_value(name, spec, path, {}) if spec.source == "path" and path is not None else "")
                for path, values in zip(paths, given)
            ]
            codes.append(meta.encode(name, values, self.vocab[name], where="the items to predict"))
        return np.stack(codes, axis=1)

    def predict(
        self, items: list[Any], top_k: int = 5, metadata: list[Mapping[str, str]] | None = None, batch_size: int = 64,
        hop: float | None = None, windows: bool = False,
    ) -> list[dict]:
        """One record per item, in order: its top-k labels with probabilities (or its regressed values, or
        the labels above their thresholds), or the reason it could not be read. Path items name their
        `file`. Items are decoded one by one and predicted `batch_size` windows at a time.

        An item longer than the model's input (a long sound) is read in windows every `hop` seconds and
        answered for the whole (see `combine`); `windows` adds each window's own answer."""
        items = list(items)
        paths = [Path(item) if isinstance(item, (str, Path)) else Path(item.path) if isinstance(item, Problem) else None for item in items]
        records: list[dict] = [{"file": str(path)} if path is not None else {} for path in paths]
        codes = self.encode_metadata(paths, list(metadata or [{}] * len(items)))
        outputs, spans, errors = self.window_outputs(items, codes, hop, batch_size)
        for i, found in enumerate(outputs):
            if found is None:
                records[i]["error"] = errors[i]
                continue
            records[i].update(self.answer(self.combine(found), top_k))
            if i in spans:
                records[i]["windows_read"] = len(found)
                if windows:
                    records[i]["windows"] = [
                        {"start": round(float(a), 3), "end": round(float(b), 3), **self.answer(p, top_k)} for (a, b), p in zip(spans[i], found)
                    ]
        return records

    def combine(self, windows: np.ndarray) -> np.ndarray:
        return self.objective.combine(windows)

    def window_outputs(
        self, items: list[Any], codes: np.ndarray | None = None, hop: float | None = None, batch_size: int = 64,
    ) -> tuple[list[np.ndarray | None], dict[int, np.ndarray], dict[int, str]]:
        """Per item, the outputs of each of its windows (W, classes), or None when it cannot be read; the
        (start, end) seconds of the windows of items read in several; the reason of each unread item."""
        rows: list[tuple[int, dict[str, np.ndarray]]] = []  # (item, one window as a batch of one)
        spans: dict[int, np.ndarray] = {}
        errors: dict[int, str] = {}
        for i, item in enumerate(items):
            try:
                prepared = self.prepare(item, hop)
            except Unreadable as err:
                errors[i] = str(err)
                continue
            windows, cut = single_windows(prepared)
            if cut is not None:
                spans[i] = cut
            rows += [(i, window) for window in windows]
        flat = self.forward([inputs for _, inputs in rows], None if codes is None else codes[[i for i, _ in rows]], batch_size)
        owner = np.asarray([i for i, _ in rows], dtype=np.int64)
        return [None if i in errors else flat[owner == i] for i in range(len(items))], spans, errors

    def forward(self, windows: list[dict[str, np.ndarray]], codes: np.ndarray | None = None, batch_size: int = 64) -> np.ndarray:
        """Outputs (W, classes) of single prepared windows (batches of one, as `prepare` cuts them) with
        their (W, fields) metadata codes, `batch_size` at a time: what a server's batcher calls on the
        windows of several requests at once."""
        flat = np.zeros((len(windows), len(self.classes)), np.float32)
        for start in range(0, len(windows), batch_size):
            batch = self.preprocessor.collate(windows[start : start + batch_size])
            flat[start : start + batch_size] = self.predict_inputs(batch, None if codes is None else codes[start : start + batch_size])
        return flat

    def gradcam_png(self, prepared: dict[str, np.ndarray], codes: np.ndarray | None = None) -> bytes:
        """A prepared item with the Grad-CAM heat of its predicted class over it, as a PNG (what a server
        shows; `trilla explain` writes files)."""
        import io

        from trilla.evaluation.explain import explain_item, plot_gradcam

        found = explain_item(self, prepared, codes)
        buffer = io.BytesIO()
        plot_gradcam(found["picture"], found["heat"], f"Grad-CAM: {found['label']} ({found['probability']:.2f})", buffer, found["axes"])
        return buffer.getvalue()

    def answer(self, p: np.ndarray, top_k: int = 5) -> dict:
        """What one prediction says, as the run's objective words it (`predictions` with their
        probabilities, or regressed `values`); an error where the model answered no number (a run that diverged), which no JSON could hold."""
        if not np.isfinite(p).all():
            return {"error": "the model answered NaN or infinity: its weights are not finite (a run that diverged; retrain it)"}
        return self.objective.answer(p, self.classes, self.thresholds, top_k)


class Ensemble:
    """Several runs' predictors used as one: their probabilities (or regressed values) averaged. On data
    unlike the training set, runs that differ only in their seed can differ by several points
    (benchmarks/results/audio_quality_instruments.md); their ensemble does not depend on one draw.
    Multi-label thresholds are the members' mean."""

    def __init__(self, members: list[Predictor]):
        first = members[0]
        for other in members[1:]:
            if (other.classes, other.objective.name, other.vocab) != (first.classes, first.objective.name, first.vocab):
                raise TrillaError("the runs of an ensemble must predict the same classes the same way (and read the same metadata)")
        self.members = members
        self.classes, self.objective, self.vocab, self.input = first.classes, first.objective, first.vocab, first.input
        self.thresholds = np.mean([m.thresholds for m in members], axis=0)

    def predict_inputs(self, inputs: dict[str, np.ndarray], metadata: np.ndarray | None = None, batch_size: int = 256) -> np.ndarray:
        return np.mean([m.predict_inputs(inputs, metadata, batch_size) for m in self.members], axis=0)

    def window_outputs(self, items: list[Any], codes: np.ndarray | None = None, hop: float | None = None, batch_size: int = 64):
        """As `Predictor.window_outputs`, each window's outputs averaged over the members (which read
        their inputs the same way, so they cut the same windows)."""
        answers = [m.window_outputs(items, codes, hop, batch_size) for m in self.members]
        outputs = [None if found is None else np.mean([cast(np.ndarray, a[0][i]) for a in answers], axis=0) for i, found in enumerate(answers[0][0])]
        return outputs, answers[0][1], answers[0][2]

    def combine(self, windows: np.ndarray) -> np.ndarray:
        return self.objective.combine(windows)


def single_windows(prepared: dict[str, np.ndarray]) -> tuple[list[dict[str, np.ndarray]], np.ndarray | None]:
    """A prepared item as its windows, each a batch of one, and their (start, end) seconds when the
    item was cut in several."""
    inputs = {key: value for key, value in prepared.items() if key != WINDOWS}
    count = len(next(iter(inputs.values())))
    return [{key: value[w : w + 1] for key, value in inputs.items()} for w in range(count)], prepared.get(WINDOWS)


def answers_csv(records: list[dict]) -> str:
    """Answers as a CSV a spreadsheet opens: the file, then label and probability for each of the top k,
    then the error of a file that could not be read."""
    k = max((len(r.get("predictions", [])) for r in records), default=0)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["file", *[f"{c}_{i}" for i in range(1, k + 1) for c in ("label", "probability")], "error"])
    for record in records:
        cells = [v for p in record.get("predictions", []) for v in (p["label"], f"{p['probability']:.6f}")]
        writer.writerow([record["file"], *cells, *[""] * (2 * k - len(cells)), record.get("error", "")])
    return text.getvalue()


def metadata_per_file(paths: list[Any], fixed: Mapping[str, str], table: Path | None, fields: list[str]) -> list[dict[str, str]]:
    """Values for each item: a CSV (`file` column plus one column per field, for path items) overridden
    by fixed values."""
    unknown = sorted(set(fixed) - set(fields))
    if unknown:
        raise TrillaError(f"--meta {', '.join(unknown)}: this run's metadata fields are {fields or 'none'}")
    by_file: dict[str, dict[str, str]] = {}
    if table is not None:
        if not Path(table).is_file():
            raise TrillaError(f"metadata table {table} does not exist")
        with manifest_rows(Path(table)) as rows:
            if "file" not in (rows.fieldnames or []):
                raise TrillaError(f"{table} needs a 'file' column and one column per field ({', '.join(fields)})")
            for row in rows:
                by_file[os.path.realpath(row["file"])] = {k: v for k, v in row.items() if k in fields and v}
    return [{**(by_file.get(os.path.realpath(p), {}) if isinstance(p, (str, Path)) else {}), **fixed} for p in paths]


def expand(items: list[Any]) -> list[Any]:
    """Items as given, folders (paths) as their visible files (recursively, sorted). Whatever a folder
    holds that cannot be read (a symlink loop, a broken link), and a folder with no file at all, stays
    an item of its own, a `Problem`, so it gets its own answer: an error with the reason."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            files, problems = walk(Path(item))
            out.extend(sorted([*files, *problems], key=lambda x: str(x.path if isinstance(x, Problem) else x)))
            if not files and not problems:
                out.append(Problem(str(item), "a folder with no files in it"))
        else:
            out.append(Path(item) if isinstance(item, str) else item)
    return out


def default_device(accelerator: str = "auto") -> str:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"
