"""Export a run's best model to ONNX, with everything needed to feed it beside it.

The graph takes what a run's store holds, as its input kind lays it out: for pictures `image`, float32
(N, C, H, W) pixels in 0-255, already resized and padded to the run's square side (for fixed-length
clips `spectrogram`, float32 (N, frames, bins) decibels), and, when the run fuses metadata, `metadata`,
int64 (N, fields) codes (0 = unknown; the vocabularies are in the JSON sidecar). It returns
`probabilities` (or the regressed values). Normalization, the metadata one-hot encoding and the output
function are inside the graph.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trilla.atomic import write_json
from trilla.errors import TrillaError
from trilla.kinds.protocols import Exports, able
from trilla.paths import free_path


class _Probabilities(nn.Module):
    def __init__(self, task):
        super().__init__()
        self.task = task

    def forward(self, inputs: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        return self.task.outputs(self.task(inputs, metadata))


def export_onnx(run, out: Path | None = None) -> Path:
    """Write `<run>/export/model.onnx` (or `out`) and its `.json` sidecar; existing files are kept."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise TrillaError("ONNX export needs the export extra: pip install 'trilla[export]'") from err
    predictor = run.predictor()
    task = predictor.task.cpu().eval()
    kind = able(predictor.input, Exports, "export takes runs on fixed-shape inputs; this run reads {kind} input")
    spec = predictor.spec
    inputs: tuple = (kind.example_input(spec),)
    names = [kind.key]
    if predictor.vocab:
        inputs += (torch.zeros(2, len(predictor.vocab), dtype=torch.long),)
        names.append("metadata")
    path = free_path(Path(out) if out else run.path / "export" / "model.onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch")
    torch.onnx.export(
        _Probabilities(task).eval(), inputs, str(path), input_names=names, output_names=["probabilities"],
        dynamic_shapes={"inputs": {0: batch}, **({"metadata": {0: batch}} if predictor.vocab else {})}, dynamo=True,
        external_data=False, verbose=False,
    )
    sidecar = {
        "run": run.id, "classes": predictor.classes, "inputs": names, "input": spec, **kind.export_sidecar(spec),
        "metadata": predictor.vocab, "metadata_unknown_code": 0,
    }
    write_json(path.with_suffix(".json"), sidecar)
    return path
