"""No traceback from any command on any input a user can give: every run kind given every other kind's
files, and Grad-CAM over a sound's spectrogram."""

from __future__ import annotations

import json
import sys

import pytest
from PIL import Image
from test_multilabel import write_scenes_hdf5

from conftest import make_image_folder, make_tone_folder
from trilla import load_config, train
from trilla.cli import main

AUDIO = "input={type: audio, sample_rate: 8000, n_fft: 256, hop: 64, n_mels: 32}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny run of each input kind, and one folder of each kind's files."""
    root = tmp_path_factory.mktemp("kinds")
    pictures = make_image_folder(root / "pictures", {"a": 12, "b": 12}, size=16)
    sounds = make_tone_folder(root / "sounds", {"low": 12, "high": 12})
    write_scenes_hdf5(root / "scenes.h5", 120, seed=0)
    common = ["train.progress=false", "train.epochs=1", f"run.dir={root / 'runs'}"]
    trained = {
        "image": train(load_config(None, [*common, "data.image_size=16"], pictures)),
        "audio": train(load_config(None, [*common, AUDIO, "model={name: panns_cnn, channels: [8, 16], embedding: 16}"], sounds)),
        "embeddings": train(load_config(None, [*common, "input={type: embeddings}", "model.units=16"], root / "scenes.h5")),
    }
    files = {"image": pictures / "a" / "a_000.png", "audio": sounds / "low" / "000.wav", "embeddings": root / "scenes.h5"}
    folders = {"image": pictures, "audio": sounds, "embeddings": root / "scenes.h5"}
    return root, trained, files, folders


def command(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["trilla", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exit:
        code = exit.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("kind", ["image", "audio", "embeddings"])
def test_every_command_on_another_kind_s_files_is_a_clear_answer(runs, kind, monkeypatch, capsys, tmp_path):
    root, trained, files, folders = runs
    run = trained[kind].path
    for other in (k for k in files if k != kind):
        for args in (["predict", run, files[other]], ["explain", run, files[other], "--out", tmp_path / "cams"],
                     ["evaluate", run, "--data", folders[other]], ["export", run]):
            code, out, err = command(monkeypatch, capsys, *args)
            assert "Traceback" not in err and "Error:" not in err.replace("error:", ""), (args, err[-2000:])
            assert code in (0, 1, 2), (args, code, err[-2000:])
            if args[0] == "predict" and code == 1:  # the file was read and refused: its own line says why
                assert "error" in json.loads(out.splitlines()[0]), out
            if code == 2:
                assert err.strip().splitlines()[-1].startswith("error: "), (args, err[-2000:])


def test_gradcam_over_a_sound_shows_its_spectrogram_time_by_frequency(runs, monkeypatch, capsys, tmp_path):
    root, trained, files, _ = runs
    code, out, err = command(monkeypatch, capsys, "explain", trained["audio"].path, files["audio"], "--out", tmp_path / "cams")
    assert code == 0, err[-2000:]
    record = json.loads(out.splitlines()[0])
    assert record["label"] in ("low", "high") and 0 < record["probability"] <= 1
    with Image.open(record["heatmap"]) as picture:
        assert picture.width > picture.height  # the spectrogram laid out wide: time on x

    from trilla.evaluation.explain import gradcam

    predictor = trained["audio"].predictor()
    inputs = predictor.prepare(files["audio"])
    heat, _, _ = gradcam(predictor, inputs)
    frames, bins = inputs["spectrogram"].shape[1:]
    assert heat.shape == (frames, bins) and 0 <= heat.min() and heat.max() <= 1
    picture, shown, axes = predictor.input.explain_view(inputs, heat)
    assert picture.shape == (bins, int(inputs["lengths"][0]), 1) and shown.shape == picture.shape[:2]
    assert axes[0].startswith("time")
