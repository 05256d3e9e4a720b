"""Grad-CAM heat maps: where in a picture the evidence for the predicted class lies.

Uses captum's LayerGradCam on the model's `feature_map` (the last spatial feature map every trilla
image model exposes), upsampled to the input and laid over the picture as the model saw it (resized
and padded to a square). Answers the guitar/bass study's open question of what the network looks at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from trilla.data.inputs import ItemError
from trilla.errors import TrillaError
from trilla.runs import free_path


def gradcam(predictor, picture: np.ndarray, codes: np.ndarray | None = None) -> tuple[np.ndarray, int, float]:
    """(heat map in [0, 1] of the picture's size, predicted class, its probability) for one uint8 HWC
    picture, as the run's input kind shows it to a person and feeds it to the model."""
    from captum.attr import LayerAttribution, LayerGradCam

    task, kind = predictor.task, predictor.input
    x = kind.to_batch({kind.key: np.array(picture)[None]})[kind.key].float().to(predictor.device)
    meta = None if codes is None else torch.from_numpy(codes[None]).to(predictor.device)
    with torch.no_grad():
        probs = torch.softmax(task(x, meta), dim=1)[0]
    predicted = int(probs.argmax())
    cam = LayerGradCam(lambda inputs, m: task(inputs, m), task.model.feature_map)
    attribution = cam.attribute(x, target=predicted, additional_forward_args=(meta,), relu_attributions=True)
    if attribution.dim() != 4:
        raise TrillaError("Grad-CAM needs a model whose last features are a spatial map (a CNN), not tokens")
    heat = LayerAttribution.interpolate(attribution, tuple(picture.shape[:2]), interpolate_mode="bilinear")[0, 0]
    heat = heat.detach().cpu().numpy()
    peak = heat.max()
    return (heat / peak if peak > 0 else heat), predicted, float(probs[predicted])


def plot_gradcam(picture: np.ndarray, heat: np.ndarray, title: str, path: Path) -> None:
    from trilla.evaluation.report import plt

    grey = picture.shape[-1] == 1
    shown = picture.squeeze(-1) if grey else picture
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.8))
    left.imshow(shown, cmap="gray" if grey else None)
    left.set_title("input (as the model sees it)", fontsize=9)
    right.imshow(shown, cmap="gray" if grey else None)
    right.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    right.set_title(title, fontsize=9)
    for ax in (left, right):
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def explain_files(
    run, files: list[Path], out_dir: Path, metadata: list[Mapping[str, str]] | None = None
) -> list[dict]:
    """One Grad-CAM PNG per readable file in `out_dir`; a record per file with the prediction or the error."""
    predictor = run.predictor()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = metadata or [{}] * len(files)
    records = []
    for path, given in zip(files, metadata):
        try:
            picture = predictor.input.picture(predictor.prepare(path))
        except ItemError as err:
            records.append({"file": str(path), "error": str(err)})
            continue
        if picture is None:
            raise TrillaError(f"Grad-CAM lays heat over pictures; run {run.id} reads {predictor.input.name} input")
        codes = predictor.encode_metadata([path], [given])
        heat, predicted, probability = gradcam(predictor, picture, None if codes is None else codes[0])
        label = predictor.classes[predicted]
        target = free_path(out_dir / f"{Path(path).stem}_gradcam.png")
        plot_gradcam(picture, heat, f"Grad-CAM: {label} ({probability:.2f})", target)
        records.append({"file": str(path), "label": label, "probability": probability, "heatmap": str(target)})
    return records
