"""fastai's interpretation from the command line: top losses, most confused, lr-find, show-batch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image

from conftest import make_image_folder, make_tone_folder, trilla

FAST = ["--set", "data.image_size=16", "--set", "train.progress=false"]
AUDIO = "input={type: audio, sample_rate: 8000, n_fft: 256, hop: 64, n_mels: 32}"


def test_interpret_shows_the_top_losses_and_the_most_confused_pairs(tmp_path):
    data = make_image_folder(tmp_path / "shapes", {"alpha": 20, "beta": 20, "gamma": 20})
    run = trilla("train", "--data", data, *FAST, "--set", "train.epochs=2", "--set", f"run.dir={tmp_path / 'runs'}").stdout.strip().splitlines()[-1]
    result = trilla("interpret", run, "--top", "6")
    out = Path(result.stdout.strip().splitlines()[-1])
    losses = pd.read_csv(out / "top_losses.csv")
    assert len(losses) == 6 and list(losses.columns) == ["path", "predicted", "actual", "loss", "probability_of_actual"]
    assert losses["loss"].is_monotonic_decreasing
    assert (abs(losses["loss"] + losses["probability_of_actual"].map(__import__("math").log)) < 1e-6).all()
    predictions = pd.read_csv(Path(run) / "predictions.csv")
    assert losses["loss"].iloc[0] == -__import__("math").log(predictions["label_probability"].min()) or abs(
        losses["probability_of_actual"].iloc[0] - predictions["label_probability"].min()) < 1e-5
    confused = pd.read_csv(out / "most_confused.csv")
    wrong = predictions[predictions["label"] != predictions["predicted"]]
    assert confused["count"].sum() == len(wrong)
    with Image.open(out / "top_losses.png") as grid:
        assert grid.width > 400
    assert "most confused (actual -> predicted)" in result.stdout


def test_lr_find_suggests_a_rate_and_show_batch_draws_augmented_examples(tmp_path):
    data = make_image_folder(tmp_path / "shapes", {"alpha": 30, "beta": 30})
    found = trilla("lr-find", "--data", data, *FAST, "--set", "train.batch_size=8", "--steps", "20", "--out", tmp_path / "lr")
    assert "suggested learning rate" in found.stdout and Path(found.stdout.strip().splitlines()[-1]).is_file()
    shown = trilla("show-batch", "--data", data, *FAST, "--set", "augment.rotate=90", "--count", "8", "--out", tmp_path / "batch")
    with Image.open(shown.stdout.strip().splitlines()[-1]) as grid:
        assert grid.width > 400
    tones = make_tone_folder(tmp_path / "tones", {"low": 8, "high": 8})
    sound = trilla("show-batch", "--data", tones, "--set", AUDIO, "--set", "train.progress=false", "--count", "4", "--out", tmp_path / "sound")
    assert Path(sound.stdout.strip().splitlines()[-1]).is_file()
    assert not list(tmp_path.glob("runs"))  # neither made a run directory
