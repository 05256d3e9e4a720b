"""Grad-CAM heat maps: where in a picture, or in a sound's spectrogram, the evidence for the predicted
class lies.

Uses captum's LayerGradCam on the model's `feature_map` (the last feature map every trilla CNN exposes,
over the picture or over time x frequency), upsampled to the model's input and laid over it as the
input kind shows it to a person: the picture as the model saw it (resized and padded to a square), or
the spectrogram with time on x and frequency on y. Answers the guitar/bass study's open question of
what the network looks at.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import IO

import numpy as np
import torch

from trilla.errors import TrillaError, Unreadable
from trilla.figures import save_figure
from trilla.kinds.protocols import Shows, able
from trilla.kinds.registry import WINDOWS
from trilla.paths import free_path


def gradcam(predictor, inputs: dict[str, np.ndarray], codes: np.ndarray | None = None) -> tuple[np.ndarray, int, float]:
    """(heat map in [0, 1] over the model input's last two axes, predicted class, its probability) for
    one prepared item (a batch of one, as `Predictor.prepare` gives it)."""
    from captum.attr import LayerAttribution, LayerGradCam

    task, kind = predictor.task, predictor.input
    if not hasattr(task.model, "feature_map"):
        raise TrillaError(f"Grad-CAM needs a convolutional model with a feature map; this run's model is {task.hparams.model['name']}")
    batch = {k: v.to(predictor.device) for k, v in kind.to_batch(inputs).items()}
    x = batch[kind.key].float()
    meta = None if codes is None else torch.from_numpy(codes[None]).to(predictor.device)
    lengths = batch.get("lengths")
    with torch.no_grad():
        probs = task.outputs(task(x, meta, lengths))[0]
    predicted = int(probs.argmax())
    cam = LayerGradCam(lambda inputs, m, n: task(inputs, m, n), task.model.feature_map)
    attribution = cam.attribute(x, target=predicted, additional_forward_args=(meta, lengths), relu_attributions=True)
    if attribution.dim() != 4:
        raise TrillaError("Grad-CAM needs a model whose last features are a spatial map (a CNN), not tokens")
    heat = LayerAttribution.interpolate(attribution, tuple(x.shape[-2:]), interpolate_mode="bilinear")[0, 0]
    heat = heat.detach().cpu().numpy()
    peak = heat.max()
    return (heat / peak if peak > 0 else heat), predicted, float(probs[predicted])


def plot_gradcam(picture: np.ndarray, heat: np.ndarray, title: str, path: Path | IO[bytes], axes: tuple[str, str] | None = None) -> None:
    """The input as a person sees it, and the same with the heat over it; `axes` labels x and y (a
    spectrogram's time and frequency), or None for a picture."""
    from trilla.figures import plt

    grey = picture.shape[-1] == 1
    shown = picture.squeeze(-1) if grey else picture
    height, width = shown.shape[:2]
    wide = min(max(width / height, 1.0), 4.0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(3.5 * wide + 0.5, 3.8), squeeze=True)
    for ax in (left, right):
        ax.imshow(shown, cmap="magma" if axes else ("gray" if grey else None), aspect="auto" if axes else "equal")
        if axes:
            ax.set_xlabel(axes[0], fontsize=8)
            ax.set_ylabel(axes[1], fontsize=8)
            ax.set_yticks([])
        else:
            ax.axis("off")
    left.set_title("input (as the model sees it)", fontsize=9)
    right.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1, aspect="auto" if axes else "equal")
    right.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def explain_item(predictor, inputs: dict[str, np.ndarray], codes: np.ndarray | None = None) -> dict:
    """Grad-CAM of one prepared item (`Predictor.prepare`; a long sound: the window that speaks most for
    the answer of the whole): the picture a person sees, the heat in its coordinates, the axis labels,
    the predicted label and probability, and that window's (start, end) seconds or None."""
    shows = able(predictor.input, Shows, "Grad-CAM lays heat over what a person can look at; this run reads {kind} input")
    inputs = dict(inputs)
    spans = inputs.pop(WINDOWS, None)
    best = None
    if spans is not None:
        probabilities = predictor.predict_inputs(inputs, None if codes is None else np.repeat(codes, len(spans), axis=0))
        best = int(probabilities[:, probabilities.mean(0).argmax()].argmax())
        inputs = {key: value[best : best + 1] for key, value in inputs.items()}
    heat, predicted, probability = gradcam(predictor, inputs, None if codes is None else codes[0])
    picture, shown_heat, axes = shows.explain_view(inputs, heat)
    return {"picture": picture, "heat": shown_heat, "axes": axes, "label": predictor.classes[predicted], "probability": probability,
            "window": None if best is None else [float(v) for v in spans[best]]}


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
            inputs = predictor.prepare(path)
        except Unreadable as err:
            records.append({"file": str(path), "error": str(err)})
            continue
        found = explain_item(predictor, inputs, predictor.encode_metadata([path], [given]))
        target = free_path(out_dir / f"{Path(path).stem}_gradcam.png")
        plot_gradcam(found["picture"], found["heat"], f"Grad-CAM: {found['label']} ({found['probability']:.2f})", target, found["axes"])
        records.append({"file": str(path), "label": found["label"], "probability": found["probability"], "heatmap": str(target),
                        **({"window": found["window"]} if found["window"] is not None else {})})
    return records
