"""Predictor: load a checkpoint once, preprocess exactly as in training, predict in batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trilla.data import images
from trilla.data.sources import visible_files
from trilla.tasks import ClassificationTask


class Predictor:
    def __init__(self, checkpoint: Path, device: str = "cpu"):
        self.task = ClassificationTask.load_from_checkpoint(checkpoint, map_location=device).eval()
        self.device = device
        hp = self.task.hparams
        self.classes: list[str] = list(hp.classes)
        self.size: int = hp.input_spec["size"]
        self.channels: images.Channels = "grey" if hp.input_spec["channels"] == 1 else "rgb"

    @torch.inference_mode()
    def predict_arrays(self, batch: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """uint8 (N, H, W, C) images -> class probabilities (N, classes)."""
        out = []
        for start in range(0, len(batch), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(batch[start : start + batch_size])).permute(0, 3, 1, 2)
            out.append(torch.softmax(self.task(x.to(self.device)), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def predict_files(self, paths: list[Path], top_k: int = 5) -> list[dict]:
        """One record per file: its top-k labels with probabilities, or the reason it could not be read."""
        records: list[dict] = []
        arrays, where = [], []
        for path in paths:
            try:
                arrays.append(images.load(path, self.size, self.channels))
                where.append(len(records))
                records.append({"file": str(path)})
            except images.ImageError as err:
                records.append({"file": str(path), "error": str(err)})
        if arrays:
            probs = self.predict_arrays(np.stack(arrays))
            k = min(top_k, len(self.classes))
            for slot, p in zip(where, probs):
                best = np.argsort(-p)[:k]
                records[slot]["predictions"] = [{"label": self.classes[i], "probability": float(p[i])} for i in best]
        return records


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
