"""Input kinds as a registry, and a Predictor that takes what a server gets: paths, bytes, file objects,
PIL images, arrays and decoded audio, batched, loaded once, bad items answered one by one."""

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from conftest import make_image_folder, make_tone_folder
from trilla import load_config, train
from trilla.errors import TrillaError
from trilla.kinds import infer_kind, input_kind, list_inputs


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    folder = make_image_folder(root / "images", {"a": 12, "b": 12})
    return train(load_config(data=folder, overrides=["train.progress=false", "train.epochs=1", "data.image_size=24", f"run.dir={root / 'runs'}"]))


def test_the_registry_names_each_kind_and_explains_unknown_ones():
    assert list_inputs() == ["audio", "embeddings", "image"]
    assert {input_kind(name).key for name in list_inputs()} == {"spectrogram", "embeddings", "image"}
    with pytest.raises(TrillaError, match="unknown input type 'audoi'; did you mean 'audio'"):
        input_kind("audoi")


def test_the_kind_is_inferred_from_the_files(tmp_path):
    tones = make_tone_folder(tmp_path / "tones", {"low": 2, "high": 2})
    pictures = make_image_folder(tmp_path / "pictures", {"a": 2, "b": 2})
    assert infer_kind(tones)[0] == "audio" and infer_kind(pictures)[0] == "image"
    (tmp_path / "m.csv").write_text("path,label\n" + "".join(f"tones/low/{i:03d}.wav,low\n" for i in range(2)))
    assert infer_kind(tmp_path / "m.csv")[0] == "audio"
    (tmp_path / "clips.h5").write_bytes(b"")
    assert infer_kind(tmp_path / "clips.h5") == ("embeddings", "clips.h5 is embedding clip data")


def test_every_kind_of_item_predicts_as_its_file_does(image_run, tmp_path):
    path = sorted(Path(image_run.config.data.path).rglob("*.png"))[0]
    data = path.read_bytes()
    picture = Image.open(path)
    items = [path, str(path), data, io.BytesIO(data), picture, np.asarray(picture.convert("RGB"))]
    records = image_run.predictor().predict(items, top_k=2, batch_size=4)
    expected = records[0]["predictions"]
    for record in records[1:]:
        assert [p["label"] for p in record["predictions"]] == [p["label"] for p in expected]
        np.testing.assert_allclose([p["probability"] for p in record["predictions"]], [p["probability"] for p in expected], atol=1e-6)
    assert records[0]["file"] == str(path) and "file" not in records[2]


def test_bad_items_get_their_own_error_and_the_others_are_predicted(image_run, tmp_path):
    good = sorted(Path(image_run.config.data.path).rglob("*.png"))[0]
    (tmp_path / "notes.txt").write_text("not a picture")
    items = [b"\x89PNG truncated", tmp_path / "missing.png", good, open(tmp_path / "notes.txt"), 42, np.zeros((4, 4), np.float32), tmp_path / "notes.txt"]
    records = image_run.predictor().predict(items)
    errors = [record.get("error", "") for record in records]
    assert "predictions" in records[2] and not errors[2]
    assert "not an image" in errors[0] and "cannot read file" in errors[1] and "binary mode" in errors[3]
    assert "cannot predict a int" in errors[4] and "uint8" in errors[5] and "not an image" in errors[6]


def test_the_checkpoint_is_loaded_once_for_many_calls(image_run, monkeypatch):
    from trilla import predict
    from trilla.runs import Run

    calls = []
    real = predict.load_task
    monkeypatch.setattr(predict, "load_task", lambda *a, **k: calls.append(a) or real(*a, **k))
    run = Run(image_run.path)
    path = sorted(Path(run.config.data.path).rglob("*.png"))[0]
    for _ in range(3):
        assert "predictions" in run.predict([path])[0]
    assert len(calls) == 1


def test_decoded_audio_predicts_as_its_file_and_needs_its_rate(tmp_path):
    folder = make_tone_folder(tmp_path / "tones", {"low": 8, "high": 8}, seconds=(0.3, 0.6))
    run = train(load_config(data=folder, overrides=[
        "train.progress=false", "train.epochs=1", "input={type: audio, sample_rate: 8000, n_fft: 256, hop: 64, n_mels: 32}",
        f"run.dir={tmp_path / 'runs'}", "model={name: panns_cnn, channels: [8]}",
    ]))
    path = folder / "low" / "000.wav"
    samples, rate = sf.read(path, dtype="float32")
    stereo = np.stack([samples, samples], axis=1)
    records = run.predictor().predict([path, (samples, rate), (stereo, rate), samples, (samples,)], top_k=2)
    for record in records[1:3]:
        np.testing.assert_allclose(record["predictions"][0]["probability"], records[0]["predictions"][0]["probability"], atol=1e-6)
    assert "sample rate" in records[3]["error"] and "(samples, sample_rate)" in records[4]["error"]
    upsampled = run.predictor().predict([(np.repeat(samples, 2), 2 * rate)])[0]
    assert upsampled["predictions"][0]["label"] in ("low", "high")
