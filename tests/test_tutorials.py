"""The first steps of each tutorial run as the page writes them, on tiny generated data in place of the
study's: the command is read from the page (so an edit to the page is what runs), and only settings that
make it fast on two cores are appended (a few epochs, small pictures, no pretrained weights fetched)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_multilabel import write_scenes_hdf5
from test_readme import ROOT, blocks, concrete

from conftest import make_instrument_folder, make_region_tree, tone_clip, trilla

FAST = ["--set", "train.epochs=2", "--set", "train.progress=false", "--set", "run.dir=runs", "-q"]


def step(page: str, start: str) -> list[str]:
    """The first command of the tutorial's command blocks that starts with `start`, as argv."""
    text = (ROOT / "docs" / "tutorials" / page).read_text()
    line = next(line for block in blocks(text) for line in block if line.startswith(start))
    return concrete(line)[1:]


def guitar_bass(folder: Path) -> None:
    """guitar_bass/provenance.csv as a crawl writes it: a manifest of the pictures, paths relative to it."""
    make_instrument_folder(folder / "guitar_bass", {"guitar": 16, "bass": 16}, size=48)
    rows = [f"{p.relative_to(folder / 'guitar_bass')},{p.parent.name}" for p in sorted((folder / "guitar_bass").rglob("*.png"))]
    (folder / "guitar_bass" / "provenance.csv").write_text("path,label\n" + "\n".join(rows) + "\n")


def songs(folder: Path) -> None:
    """Two 45-second songs (the tutorial skips each song's first 30 s)."""
    (folder / "SONGS").mkdir()
    for name, freq in (("one", 330.0), ("two", 440.0)):
        sf.write(folder / "SONGS" / f"{name}.wav", tone_clip(freq, 45.0, 8000), 8000)


def audioset(folder: Path) -> None:
    (folder / "audioset").mkdir()
    write_scenes_hdf5(folder / "audioset" / "bal_train.h5", 300, seed=0)
    write_scenes_hdf5(folder / "audioset" / "eval.h5", 100, seed=1)


CASES = {
    "guitar-vs-bass": ("guitar-vs-bass.md", "trilla train examples/guitar_bass.yaml", guitar_bass, ["--set", "data.image_size=32"]),
    "cone-snails": ("cone-snails.md", "trilla train --data photos/ --set model.name=timm", lambda f: make_region_tree(f / "photos", 8),
                    ["--set", "model.pretrained=false", "--set", "data.image_size=32"]),
    "audioset": ("audioset.md", "trilla train examples/audioset.yaml", audioset, ["--set", "data.class_list=null", "--set", "model.units=64"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_tutorials_training_step_runs_as_written(name, tmp_path):
    page, start, make, settings = CASES[name]
    make(tmp_path)
    argv = [str(ROOT / a) if a.startswith("examples/") else a for a in step(page, start)]
    done = trilla(*argv, *settings, *FAST, cwd=tmp_path)
    run = tmp_path / done.stdout.strip().splitlines()[-1]
    assert (run / "report.md").is_file() and (run / "metrics.json").is_file()


def test_the_music_tutorial_cuts_songs_into_clips_as_written(tmp_path):
    songs(tmp_path)
    trilla(*step("music-feelings.md", "trilla harvest clips"), "-q", cwd=tmp_path)
    listed = (tmp_path / "clips" / "manifest.csv").read_text().splitlines()
    assert "song" in listed[0].split(",") and len(listed) == 3  # each clip names its song, so a split keeps a song's clips together
    clips = sorted((tmp_path / "clips").rglob("*.wav"))
    assert len(clips) == 2 and all(sf.info(c).samplerate == 44100 and sf.info(c).duration == pytest.approx(10.0) for c in clips)
    assert np.isfinite(sf.read(clips[0])[0]).all()
