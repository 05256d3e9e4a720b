"""Export a run's best model to ONNX, with everything needed to feed it beside it.

The graph takes what a run's store holds: `image`, float32 (N, C, H, W) pixels in 0-255, already
resized and padded to the run's square side, and, when the run fuses metadata, `metadata`, int64
(N, fields) codes (0 = unknown; the vocabularies are in the JSON sidecar). It returns `probabilities`.
Normalization, the metadata one-hot encoding and the softmax are inside the graph.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from trilla.errors import TrillaError
from trilla.runs import free_path


class _Probabilities(nn.Module):
    def __init__(self, task):
        super().__init__()
        self.task = task

    def forward(self, image: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(self.task(image, metadata), dim=1)


def export_onnx(run, out: Path | None = None) -> Path:
    """Write `<run>/export/model.onnx` (or `out`) and its `.json` sidecar; existing files are kept."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise TrillaError("ONNX export needs the export extra: pip install 'trilla[export]'") from err
    predictor = run.predictor()
    task = predictor.task.cpu().eval()
    channels = 1 if predictor.channels == "grey" else 3
    image = torch.full((2, channels, predictor.size, predictor.size), 128.0)
    inputs: tuple = (image,)
    names = ["image"]
    if predictor.vocab:
        inputs += (torch.zeros(2, len(predictor.vocab), dtype=torch.long),)
        names.append("metadata")
    path = free_path(Path(out) if out else run.path / "export" / "model.onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch")
    torch.onnx.export(
        _Probabilities(task), inputs, str(path), input_names=names, output_names=["probabilities"],
        dynamic_shapes={"image": {0: batch}, **({"metadata": {0: batch}} if predictor.vocab else {})}, dynamo=True,
        external_data=False, verbose=False,
    )
    sidecar = {
        "run": run.id, "classes": predictor.classes, "inputs": names, "image_size": predictor.size,
        "channels": predictor.channels, "pixel_range": [0, 255], "metadata": predictor.vocab,
        "metadata_unknown_code": 0,
    }
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2))
    return path
