"""What a trained image model offers beyond predictions: Grad-CAM, ONNX export, TTA and the report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from conftest import make_region_tree
from trilla import load_config, train
from trilla.errors import TrillaError
from trilla.evaluation.explain import gradcam

FAST = ["data.image_size=24", "train.epochs=12", "train.progress=false", "model.conv=[{maps: 8}, {maps: 16, pool: 1}]",
        "train.lr=0.01"]


@pytest.fixture(scope="module")
def quadrant_run(tmp_path_factory):
    from conftest import make_image_folder

    root = tmp_path_factory.mktemp("quadrants")
    folder = make_image_folder(root / "images", {"a": 40, "b": 40, "c": 40, "d": 40})
    return train(load_config(data=folder, overrides=[*FAST, f"run.dir={root / 'runs'}", "augment={rotate: 0, zoom: 0, shift: 0.05, tta: 2}"]))


def colour_patch(rng: np.random.Generator, colour: int, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Grey noise with one red, green or blue square somewhere: the colour is the class, the place is random."""
    picture = rng.integers(40, 90, (size, size, 3), dtype=np.uint8)
    top, left = rng.integers(0, size - 8, size=2)
    picture[top : top + 8, left : left + 8] = 30
    picture[top : top + 8, left : left + 8, colour] = 230
    mask = np.zeros((size, size), bool)
    mask[top : top + 8, left : left + 8] = True
    return picture, mask


def test_gradcam_points_at_the_evidence(quadrant_run, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for colour, name in enumerate(("blue", "green", "red")[::-1]):
        (tmp_path / "colours" / name).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(colour_patch(rng, colour)[0]).save(tmp_path / "colours" / name / f"{i}.png")
    run = train(load_config(data=tmp_path / "colours", overrides=[
        *FAST, "model.global_pool=avg", "augment=null", f"run.dir={tmp_path / 'runs'}", "data.split.test=0"]))
    predictor = run.predictor()
    inside, outside = [], []
    for colour in range(3):
        picture, mask = colour_patch(rng, colour)
        heat, predicted, _ = gradcam(predictor, predictor.prepare(picture))
        assert predictor.classes[predicted] == ("red", "green", "blue")[colour]
        inside.append(heat[mask].mean())
        outside.append(heat[~mask].mean())
    assert np.mean(inside) > 2 * np.mean(outside), (inside, outside)

    files = sorted((quadrant_run.config.data.path).rglob("*.png"))[:2]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / f"{files[0].stem}_gradcam.png").write_text("mine")
    cli = [sys.executable, "-m", "trilla", "explain", str(quadrant_run.path), *map(str, files), str(tmp_path / "bad.png"),
           "--out", str(tmp_path / "out")]
    (tmp_path / "bad.png").write_text("not a picture")
    done = subprocess.run(cli, capture_output=True, text=True)
    assert done.returncode == 1
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [("error" in r) for r in records] == [False, False, True]
    assert (tmp_path / "out" / f"{files[0].stem}_gradcam.png").read_text() == "mine", "an existing file is never overwritten"
    assert records[0]["heatmap"].endswith("_gradcam-2.png")
    assert all(open(r["heatmap"], "rb").read(4) == b"\x89PNG" for r in records[:2])


def test_tta_and_report_extras(quadrant_run):
    metrics = quadrant_run.metrics
    assert {f"val/top_{k}" for k in range(1, 5)} <= set(metrics) and {f"test/top_{k}" for k in range(1, 5)} <= set(metrics)
    assert metrics["test/top_4"] == 1.0 and metrics["test/top_1"] == metrics["test/accuracy"]
    for name in ("class_counts.png", "worst.png", "val/worst.png", "val/confusion_matrix.png"):
        assert (quadrant_run.path / name).read_bytes()[:4] == b"\x89PNG", name
    report = quadrant_run.report.read_text()
    assert "| split | top-1 | top-2 | top-3 | top-4 |" in report and "![class counts](class_counts.png)" in report
    assert "![worst predicted validation images](val/worst.png)" in report
    plain = quadrant_run.predictor()
    averaged = quadrant_run.predictor(tta=2)
    found = sorted(quadrant_run.config.data.path.rglob("*.png"))[:6]
    from trilla.kinds.image.decode import decode

    batch = np.stack([decode(p.read_bytes(), 24, "rgb") for p in found])
    p0, p2 = plain.predict_inputs({"image": batch}), averaged.predict_inputs({"image": batch})
    assert np.allclose(p2.sum(1), 1, atol=1e-5) and not np.array_equal(p0, p2)
    np.testing.assert_allclose(averaged.predict_inputs({"image": batch}), p2)  # seeded: the same views every time


def test_tta_needs_an_augment_section(tmp_path):
    tree = make_region_tree(tmp_path / "tree", per_species=6)
    run = train(load_config(data=tree, overrides=[*FAST, "train.epochs=1", "augment=null", f"run.dir={tmp_path / 'runs'}"]))
    with pytest.raises(TrillaError, match="augment"):
        run.predictor(tta=2)


def test_onnx_export_with_metadata_matches_pytorch(tmp_path):
    tree = make_region_tree(tmp_path / "tree", per_species=8)
    run = train(load_config(data=tree, overrides=[
        *FAST, "train.epochs=2", "data.label_level=-2", "data.metadata={region: {from: path, level: -3}}", f"run.dir={tmp_path / 'runs'}",
    ]))
    done = subprocess.run([sys.executable, "-m", "trilla", "export", str(run.path), "--format", "onnx"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    path = done.stdout.strip().splitlines()[-1]
    sidecar = json.loads(open(path.replace(".onnx", ".json")).read())
    assert sidecar["metadata"] == {"region": ["east", "west"]} and sidecar["inputs"] == ["image", "metadata"]
    session = ort.InferenceSession(path)
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 256, (5, 24, 24, 3), dtype=np.uint8)
    codes = np.array([[0], [1], [2], [1], [2]], dtype=np.int64)
    ours = run.predictor().predict_inputs({"image": pictures}, codes)
    theirs = session.run(None, {"image": pictures.transpose(0, 3, 1, 2).astype(np.float32), "metadata": codes})[0]
    np.testing.assert_allclose(theirs, ours, atol=1e-4)
    again = subprocess.run([sys.executable, "-m", "trilla", "export", str(run.path)], capture_output=True, text=True, check=True)
    assert again.stdout.strip().splitlines()[-1].endswith("model-2.onnx"), "an earlier export is kept"
    wrong = subprocess.run([sys.executable, "-m", "trilla", "export", str(run.path), "--format", "tflite"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "'tflite' is not one of 'onnx'" in wrong.stderr


def test_the_onnx_sidecar_alone_reproduces_trilla_s_probabilities(quadrant_run, tmp_path):
    from PIL import Image, ImageOps

    done = subprocess.run([sys.executable, "-m", "trilla", "export", str(quadrant_run.path), "--out", str(tmp_path / "m.onnx")],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "training mode" not in done.stderr, done.stderr
    sidecar = json.loads((tmp_path / "m.json").read_text())
    steps = sidecar["preprocessing"]
    size = sidecar["image_size"]
    rng = np.random.default_rng(5)
    files = []
    for i, (width, height) in enumerate([(40, 25), (17, 33), (64, 64)]):
        picture = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        files.append(tmp_path / f"p{i}.png")
        picture.save(files[-1])
    files.append(tmp_path / "photo.jpg")
    Image.fromarray(rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)).save(files[-1], quality=90)

    def by_the_sidecar(path):  # what a program without trilla does, reading only the sidecar
        img = Image.open(path)
        if img.format == "JPEG":
            img.draft(None, (size, size))
        img = ImageOps.exif_transpose(img).convert(steps["channel_order"])
        img = ImageOps.pad(img, tuple(steps["resize"]["pad_to"]), method=getattr(Image.Resampling, steps["resize"]["method"].upper()),
                           color=steps["resize"]["pad_value"], centering=tuple(steps["resize"]["centering"]))
        array = np.asarray(img, dtype=np.float32)
        return (array[None] if array.ndim == 2 else array.transpose(2, 0, 1))[None]

    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    theirs = np.concatenate([session.run(None, {"image": by_the_sidecar(f)})[0] for f in files])
    ours = [{p["label"]: p["probability"] for p in r["predictions"]} for r in quadrant_run.predict(files, top_k=10)]
    ours = np.asarray([[record[c] for c in sidecar["classes"]] for record in ours])
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
