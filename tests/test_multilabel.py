"""task: multilabel for images, sound clips and AudioSet embeddings: labels, thresholds, predictions, reports."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_audioset import weak_scenes

import trilla
from conftest import tone_clip
from trilla.errors import TrillaError, Unreadable

QUADRANTS = ["nw", "ne", "sw", "se"]


def blobs_image(rng: np.random.Generator, present: list[int], size: int = 24) -> Image.Image:
    """Dark noise with a bright block in every quadrant listed: each block is one label."""
    pixels = rng.integers(0, 80, size=(size, size, 3), dtype=np.uint8)
    half = size // 2
    for q in present:
        y, x = divmod(q, 2)
        pixels[y * half + 2 : y * half + half - 2, x * half + 2 : x * half + half - 2] = rng.integers(170, 256, size=3, dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def make_multilabel_images(root, n: int, seed: int = 0) -> pd.DataFrame:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        present = [q for q in range(4) if rng.random() < 0.4]
        blobs_image(rng, present).save(root / f"{i:03d}.png")
        rows.append({"path": f"{i:03d}.png", "labels": ";".join(QUADRANTS[q] for q in present)})
    frame = pd.DataFrame(rows)
    frame.to_csv(root / "manifest.csv", index=False)
    return frame


def write_scenes_hdf5(path, n: int, seed: int):
    """weak_scenes quantized as AudioSet stores embeddings: uint8 with 128 as zero, padded seconds at 128."""
    x, y, _ = weak_scenes(n, seed=seed)
    with h5py.File(path, "w") as f:
        f["x"] = np.clip(np.round(x.numpy() * 40 + 128), 0, 255).astype(np.uint8)
        f["y"] = y.numpy() > 0.5
        f["video_id_list"] = np.asarray([f"s{seed}_{i:05d}".encode() for i in range(n)])
    return path


def _config(tmp_path, *overrides):
    return trilla.load_config(None, ["train.progress=false", f"run.dir={tmp_path / 'runs'}", *overrides])


def test_images_with_any_number_of_labels_train_tune_thresholds_and_predict_above_them(tmp_path):
    frame = make_multilabel_images(tmp_path / "images", 160)
    assert (frame["labels"] == "").any() and frame["labels"].str.contains(";").any()  # none and several both occur
    config = _config(
        tmp_path, "task=multilabel", f"data.path={tmp_path / 'images' / 'manifest.csv'}", "train.epochs=8", "train.monitor=val/mAP",
        "train.batch_size=16", "augment=null",
    )
    run = trilla.train(config)
    assert run.classes == sorted(QUADRANTS)
    metrics = run.metrics
    assert metrics["test/mAP"] >= 0.8 and metrics["val/mAP"] >= 0.8
    assert 0.5 < metrics["test/mean_auc"] <= 1.0 and metrics["test/d_prime"] > 0
    thresholds = json.loads((run.path / "thresholds.json").read_text())
    assert sorted(thresholds) == sorted(QUADRANTS) and all(0.0 < t < 1.0 for t in thresholds.values())
    assert "val/mAP" in pd.read_csv(run.path / "history.csv")
    splits = pd.read_csv(run.path / "splits.csv", keep_default_na=False)
    assert set(splits["label"]) <= {"", *(";".join(sorted(c)) for c in _subsets())}
    report = run.report.read_text()
    assert "test macro mAP" in report and "not macro mAP" in report and "pSR" in report
    assert (run.path / "average_precision.png").is_file()
    # predict: every label at or above its threshold, with its probability, and no other
    files = [tmp_path / "images" / f"{i:03d}.png" for i in range(20)]
    predictor = run.predictor()
    records = run.predict(files)
    for record, path in zip(records, files):
        probs = predictor.predict_inputs(predictor.prepare(path))[0]
        expected = {run.classes[j] for j in range(4) if probs[j] >= thresholds[run.classes[j]]}
        assert {p["label"] for p in record["predictions"]} == expected
        assert all(abs(p["probability"] - probs[run.classes.index(p["label"])]) < 1e-6 for p in record["predictions"])
    truth = [set(filter(None, frame["labels"][i].split(";"))) for i in range(20)]
    assert np.mean([{p["label"] for p in r["predictions"]} == t for r, t in zip(records, truth)]) >= 0.6


def _subsets():
    from itertools import combinations

    return [c for k in range(1, 5) for c in combinations(QUADRANTS, k)]


def test_sound_clips_take_multiple_labels_too(tmp_path):
    import soundfile as sf

    root = tmp_path / "clips"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(80):
        present = [name for name in ("low", "high") if rng.random() < 0.5]
        mix = sum((tone_clip(300.0 if name == "low" else 2000.0, 0.5, 8000, seed=i * 2 + k) for k, name in enumerate(present)),
                  0.02 * rng.standard_normal(4000).astype(np.float32))
        sf.write(root / f"{i:03d}.wav", mix, 8000)
        rows.append({"path": f"{i:03d}.wav", "labels": ";".join(present)})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    config = _config(
        tmp_path, "task=multilabel", f"data.path={root / 'manifest.csv'}", "input={type: audio, sample_rate: 8000, seconds: 0.5, n_fft: 256, hop: 64, n_mels: 32}",
        "model.channels=[8, 16]", "model.embedding=16", "train.epochs=6", "train.batch_size=16", "augment=null",
    )
    run = trilla.train(config)
    assert run.classes == ["high", "low"]
    assert run.metrics["test/mAP"] >= 0.9


def test_multilabel_configuration_mistakes_are_named(tmp_path):
    make_multilabel_images(tmp_path / "images", 4)
    with pytest.raises(TrillaError, match="val/mAP needs task: multilabel"):
        _config(tmp_path, "train.monitor=val/mAP")
    with pytest.raises(TrillaError, match="logs val/loss and val/mAP"):
        _config(tmp_path, "task=multilabel", "train.monitor=val/accuracy")
    with pytest.raises(TrillaError, match="affect targets"):
        _config(tmp_path, "task=multilabel", "data.targets={valence: v, arousal: a}")
    with pytest.raises(TrillaError, match="set task: multilabel"):
        _config(tmp_path, "input={type: embeddings}", "task=classification")
    config = _config(tmp_path, "task=multilabel", f"data.path={tmp_path / 'images'}")
    with pytest.raises(TrillaError, match="needs a CSV manifest with a 'labels' column"):
        trilla.train(config)
    (tmp_path / "bad.csv").write_text("path,label\n000.png,nw\n")
    with pytest.raises(TrillaError, match="has no column 'labels'"):
        trilla.train(_config(tmp_path, "task=multilabel", f"data.path={tmp_path / 'bad.csv'}"))


def test_evaluating_on_a_set_with_an_unknown_label_skips_and_reports_those_files(tmp_path):
    make_multilabel_images(tmp_path / "images", 80)
    run = trilla.train(_config(tmp_path, "task=multilabel", f"data.path={tmp_path / 'images' / 'manifest.csv'}", "train.epochs=1", "augment=null"))
    other = make_multilabel_images(tmp_path / "other", 12, seed=5)
    other.loc[0, "labels"] = "nw;centre"
    other.to_csv(tmp_path / "other" / "manifest.csv", index=False)
    result, folder = run.evaluate(tmp_path / "other" / "manifest.csv", progress=False)
    assert result["skipped"] == 1 and result["test/samples"] == 11
    assert len(pd.read_csv(folder / "predictions.csv")) == 11


def test_thresholds_maximize_f1_on_validation():
    from sklearn.metrics import f1_score

    from trilla.metrics import tune_thresholds

    rng = np.random.default_rng(0)
    targets = rng.random((300, 3)) < 0.3
    probs = np.clip(targets * 0.3 + rng.random((300, 3)) * 0.7, 0, 1)
    targets[:, 2] = False  # no positives: the default stays
    tuned = tune_thresholds(targets, probs)
    assert tuned[2] == 0.5
    for c in range(2):
        best = max(f1_score(targets[:, c], probs[:, c] >= t) for t in np.unique(probs[:, c]))
        assert f1_score(targets[:, c], probs[:, c] >= tuned[c]) == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("stream", [False, True])
def test_embeddings_train_from_hdf5_in_memory_or_streamed(tmp_path, stream):
    write_scenes_hdf5(tmp_path / "train.h5", 500, seed=0)
    write_scenes_hdf5(tmp_path / "eval.h5", 200, seed=1)
    (tmp_path / "classes.csv").write_text("index,mid,display_name\n" + "".join(f"{i},/m/{i},Sound {i}\n" for i in range(4)))
    config = _config(
        tmp_path, f"input={{type: embeddings, stream: {str(stream).lower()}, buffer: 128, chunk: 64}}", f"data.path={tmp_path / 'train.h5'}",
        f"data.test_path={tmp_path / 'eval.h5'}", f"data.class_list={tmp_path / 'classes.csv'}", "model.units=64", "train.epochs=5",
        "train.monitor=val/mAP", "train.early_stopping=3", "train.lr=0.003",
    )
    run = trilla.train(config)
    assert run.config.task == "multilabel" and run.config.model.name == "mlp"
    assert run.classes == [f"Sound {i}" for i in range(4)]
    assert run.metrics["test/mAP"] >= 0.9
    predictions = pd.read_csv(run.path / "predictions.csv")
    assert predictions["path"].str.startswith("s1_").all() and len(predictions) == 200
    splits = pd.read_csv(run.path / "splits.csv")
    assert set(splits["split"]) == {"train", "val", "test"}
    with pytest.raises(Unreadable, match="trilla evaluate"):
        run.predictor().prepare(tmp_path / "train.h5")


def test_bipolar_variant_fits_tanh_outputs_to_targets_in_minus_one_one(tmp_path):
    from trilla.objectives.multi_label import _bipolar_mse

    logits = torch.tensor([[3.0, -3.0]])
    assert _bipolar_mse(logits, torch.tensor([[1.0, 0.0]])) < 0.01 < _bipolar_mse(logits, torch.tensor([[0.0, 1.0]]))
    write_scenes_hdf5(tmp_path / "train.h5", 400, seed=0)
    config = _config(
        tmp_path, "input={type: embeddings}", f"data.path={tmp_path / 'train.h5'}", "model.units=64", "train.epochs=4",
        "train.multilabel_loss=bipolar", "train.lr=0.003",
    )
    run = trilla.train(config)
    assert run.metrics["test/mAP"] >= 0.85
    predictor = run.predictor()
    assert predictor.objective.name == "bipolar" and predictor.objective.several


def test_embeddings_train_from_a_folder_of_tfrecord_shards_and_the_same_clips_give_the_same_fingerprint(tmp_path):
    from test_audioset import write_tfrecord

    from trilla.config import EmbeddingsInput
    from trilla.kinds.embeddings.data import load_embeddings

    write_scenes_hdf5(tmp_path / "scenes.h5", 240, seed=0)
    with h5py.File(tmp_path / "scenes.h5", "r") as f:
        x, y, ids = f["x"][:], f["y"][:], f["video_id_list"][:].astype(str)
    shards = tmp_path / "shards"
    shards.mkdir()
    for part in range(2):
        rows = range(part * 120, (part + 1) * 120)
        write_tfrecord(shards / f"{part}.tfrecord", [(ids[i], 0, np.flatnonzero(y[i]), x[i]) for i in rows])
    (tmp_path / "classes.csv").write_text("index,mid,display_name\n" + "".join(f"{i},/m/{i},Sound {i}\n" for i in range(4)))
    config = _config(
        tmp_path, "input={type: embeddings}", f"data.path={shards}", f"data.class_list={tmp_path / 'classes.csv'}", "model.units=32",
        "train.epochs=2",
    )
    run = trilla.train(config)
    assert run.classes == [f"Sound {i}" for i in range(4)] and "test/mAP" in run.metrics
    cfg = config.data
    from_shards = load_embeddings(shards, cfg, EmbeddingsInput(type="embeddings"))
    from_hdf5 = load_embeddings(tmp_path / "scenes.h5", cfg, EmbeddingsInput(type="embeddings"))
    assert from_shards.fingerprint == from_hdf5.fingerprint
    assert np.array_equal(from_shards.inputs(np.arange(5))["embeddings"], from_hdf5.inputs(np.arange(5))["embeddings"])
    with pytest.raises(TrillaError, match="4 label columns; the run was trained on 3"):
        load_embeddings(tmp_path / "scenes.h5", cfg, EmbeddingsInput(type="embeddings"), classes=["a", "b", "c"])


def test_a_file_that_is_not_hdf5_is_named_in_a_clear_error(tmp_path):
    (tmp_path / "broken.h5").write_text("not an HDF5 file")
    with pytest.raises(TrillaError, match="broken.h5: not a readable HDF5 file"):
        trilla.train(_config(tmp_path, "input={type: embeddings}", f"data.path={tmp_path / 'broken.h5'}"))
