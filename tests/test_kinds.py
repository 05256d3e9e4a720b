"""A fourth input kind, written outside the package as a plugin author would (docs/examples/frames_kind.py:
short grey videos, a few frames of a small picture, stored as .frames files, with a model that reads
them). Registered from outside, it is inferred from the files, validated in the config, packed into the
store (a broken file skipped and listed), trained, evaluated, predicted from bytes or an array, and
reloaded from its run. It implements the protocols it has (Packs, Decodes) and nothing to show or
export: the evaluation leaves out the grid of the worst predicted, and export says it cannot."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

import trilla
from conftest import docs_example
from trilla.export import export_onnx


@pytest.fixture
def frames_kind():
    """The example imported (which registers its kind and model), and unregistered after the test."""
    from trilla.data.sources import MEDIA
    from trilla.kinds import registry as kinds
    from trilla.models import registry as models

    with docs_example("frames_kind") as example:
        yield example
        kinds._KINDS.pop(example.FramesKind.name)
        models._MODELS.pop("frames_net_in_a_test")
        MEDIA.difference_update(example.FramesKind.suffixes)


FRAMES, SIDE = 4, 8


def moving_bar(direction: int, rng: np.random.Generator) -> np.ndarray:
    """A bright column crossing the picture left to right (1) or right to left (-1), over noise."""
    clip = rng.integers(0, 60, size=(FRAMES, SIDE, SIDE), dtype=np.uint8)
    start = int(rng.integers(0, SIDE - FRAMES))
    for t in range(FRAMES):
        clip[t, :, start + t if direction > 0 else SIDE - 1 - start - t] = 250
    return clip


def write_clips(root: Path, per_class: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for label, direction in (("rightwards", 1), ("leftwards", -1)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            buffer = io.BytesIO()
            np.save(buffer, moving_bar(direction, rng))
            (root / label / f"{label}_{i:03d}.frames").write_bytes(buffer.getvalue())
    return root


def test_a_fourth_kind_registered_from_outside_trains_evaluates_and_predicts(tmp_path, frames_kind):
    data = write_clips(tmp_path / "clips", per_class=40)
    (data / "rightwards" / "broken.frames").write_bytes(b"not a clip")
    config = trilla.load_config(data=data, overrides=["train.epochs=6", "train.lr=0.01", "train.progress=false", f"run.dir={tmp_path / 'runs'}"])
    assert config.input.type == "frames" and config.model.name == "frames_net_in_a_test"  # inferred from the files, with its model
    run = trilla.train(config)
    assert run.metrics["test/accuracy"] >= 0.9
    skipped = run.table("skipped.csv")
    assert skipped["path"].str.endswith("broken.frames").tolist() == [True] and "not a .frames clip" in skipped["reason"][0]
    reloaded = trilla.load_run(run.path)
    rng = np.random.default_rng(99)
    fresh = [moving_bar(1, rng), moving_bar(-1, rng)]
    buffer = io.BytesIO()
    np.save(buffer, fresh[0])
    answers = reloaded.predict([buffer.getvalue(), fresh[1], b"junk"])
    assert [a["predictions"][0]["label"] for a in answers[:2]] == ["rightwards", "leftwards"]
    assert "not a .frames clip" in answers[2]["error"]
    assert "usable frames clips" in (run.path / "report.md").read_text()
    assert not (run.path / "worst.png").exists()  # nothing a person can look at
    with pytest.raises(trilla.TrillaError, match="export takes runs on fixed-shape inputs; this run reads frames input"):
        export_onnx(reloaded, tmp_path / "model.onnx")


def test_a_kind_is_validated_in_the_config_like_the_built_in_ones(tmp_path, frames_kind):
    with pytest.raises(trilla.TrillaError, match="input.bogus: unknown key"):
        trilla.load_config(overrides=["input.type=frames", "input.bogus=1"])
    with pytest.raises(trilla.TrillaError, match=r"input: \{type: frames\} has no augmentation: set augment: null"):
        trilla.load_config(overrides=["input.type=frames", "augment.hflip=true"])
    with pytest.raises(trilla.TrillaError, match="model 'small_cnn' does not take frames input; models for frames: frames_net_in_a_test"):
        trilla.train(trilla.load_config(data=write_clips(tmp_path / "clips", 4), overrides=["model.name=small_cnn", f"run.dir={tmp_path}"]))
