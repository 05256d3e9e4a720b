"""Bad input and faults a user meets in training, predicting and relabelling, each through the real CLI:
a clear error and exit 2 (or the item skipped and listed), never a traceback, a silent result or a NaN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import yaml

from conftest import TRILLA, make_image_folder, make_tone_folder, trilla
from trilla import load_config, train
from trilla.checkpoints import load_checkpoint
from trilla.runs import Run, find_runs

TINY = ["--set", "data.image_size=16", "--set", "train.progress=false", "-q"]


def trained(data: Path, runs: Path, *overrides: str) -> Run:
    """A one-epoch run trained in this process: for the tests whose subject is what comes after training
    (the command line's own train is what the rest of this file runs)."""
    return train(load_config(data=data, overrides=["data.image_size=16", "train.progress=false", "train.epochs=1", f"run.dir={runs}", *overrides]))


@pytest.fixture
def pictures(tmp_path):
    return make_image_folder(tmp_path / "img", {"a": 12, "b": 12}, size=16)


def test_a_run_that_diverges_fails_naming_the_cause_and_is_not_used_unawares(pictures, tmp_path):
    runs = tmp_path / "runs"
    diverged = trilla("train", "--data", pictures, "--set", "train.lr=1e30", "--set", "train.epochs=3", "--set", f"run.dir={runs}", *TINY,
                      check=False)
    assert diverged.returncode == 2 and "Traceback" not in diverged.stderr
    assert "training diverged: the loss became NaN or infinite" in diverged.stderr and "train.lr=1e+30" in diverged.stderr
    assert "trilla lr-find" in diverged.stderr and "--resume" not in diverged.stderr  # a resume would diverge again
    run = Run(next(runs.iterdir()))
    assert run.status == "failed" and run.info["error"].startswith("training diverged")
    again = trilla("train", "--resume", run.path, check=False)
    assert again.returncode == 2 and "cannot be resumed, it would fail the same way: training diverged" in again.stderr
    for command in (["predict", run.path, pictures / "a" / "a_000.png"], ["evaluate", run.path, "-q"]):
        refused = trilla(*command, check=False)
        assert refused.returncode == 2 and f"run {run.path} is failed: training diverged" in refused.stderr, refused.stderr
        assert "--allow-unfinished" in refused.stderr and "Traceback" not in refused.stderr
    # a checkpoint whose weights are no numbers (what a diverged epoch saves; which epoch diverges first varies
    # with the machine's threads, so made here), used all the same: said per file, never NaN in the JSON
    import torch

    finished = trained(pictures, tmp_path / "ok")
    best = finished.path / "checkpoints" / "best.ckpt"
    saved = load_checkpoint(best)
    saved["state_dict"] = {k: v.float().fill_(float("nan")) if v.is_floating_point() else v for k, v in saved["state_dict"].items()}
    torch.save(saved, best)
    used = trilla("predict", finished.path, pictures / "a", check=False)
    lines = [json.loads(line, parse_constant=lambda word: pytest.fail(f"{word} in the JSON")) for line in used.stdout.splitlines()]
    assert used.returncode == 1 and len(lines) == 12 and all("not finite" in line["error"] for line in lines)


class Interrupted(BaseException):
    """Stands for Ctrl+C: the run ends interrupted, to be resumed."""


class StopAfterEpoch(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise Interrupted


def _interrupted_run(pictures, tmp_path, *overrides) -> Run:
    config = load_config(None, ["data.image_size=16", "train.epochs=3", "train.progress=false", "train.schedule=onecycle",
                                f"run.dir={tmp_path / 'runs'}", *overrides], pictures)
    with pytest.raises(Interrupted):
        train(config, callbacks=[StopAfterEpoch()])
    return find_runs(tmp_path / "runs")[-1]


def _edit(run: Run, **values) -> None:
    raw = yaml.safe_load((run.path / "config.yaml").read_text())
    for key, value in values.items():
        section, name = key.split("__")
        raw[section][name] = value
    (run.path / "config.yaml").write_text(yaml.safe_dump(raw))


def test_a_resume_honours_more_epochs_and_patience_and_refuses_edits_it_cannot_follow(pictures, tmp_path):
    run = _interrupted_run(pictures, tmp_path, "train.early_stopping=5")
    _edit(run, train__epochs=6, train__early_stopping=1)
    resumed = trilla("train", "--resume", run.path, "-q", check=False)
    assert resumed.returncode == 0, resumed.stderr  # the one-cycle schedule re-planned for 6 epochs, not stepped past its end
    finished = Run(run.path)
    assert finished.status == "finished" and finished.history["epoch"].tolist()[:2] == [1, 2]
    # patience 1, not the 5 it started with: it stops one epoch after the best, or runs all 6
    best, last = finished.metrics["best_epoch"], finished.metrics["epochs"]
    assert last == 6 or (finished.metrics["stopped_early"] and last == max(best + 1, 3))

    for edit, keys in (({"data__image_size": 24}, "data.image_size (16 -> 24)"),
                       ({"model__conv": [{"kernel": 3, "maps": 4, "pool": 2}]}, "model.conv"),
                       ({"train__lr": 0.5}, "train.lr")):
        other = _interrupted_run(pictures, tmp_path / str(len(keys)))
        _edit(other, **edit)
        refused = trilla("train", "--resume", other.path, check=False)
        assert refused.returncode == 2 and "was edited since the run started" in refused.stderr and keys in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr and Run(other.path).status == "interrupted"


def test_a_sound_with_nan_or_infinite_samples_is_skipped_and_listed_not_packed_as_silence(tmp_path):
    import numpy as np
    import soundfile as sf

    tones = make_tone_folder(tmp_path / "tones", {"low": 8, "high": 8})
    broken = np.sin(np.arange(4000) / 5).astype(np.float32)
    broken[100:200] = np.nan
    sf.write(tones / "low" / "nan.wav", broken, 8000, subtype="FLOAT")
    sf.write(tones / "high" / "inf.wav", np.full(4000, np.inf, np.float32), 8000, subtype="FLOAT")
    trained = trilla("train", "--data", tones, "--set", "train.epochs=1", "--set", f"run.dir={tmp_path / 'runs'}", "--set", "train.progress=false")
    run = Run(trained.stdout.strip().splitlines()[-1])
    skipped = run.table("skipped.csv").set_index("path")
    assert {Path(p).name for p in skipped.index} == {"nan.wav", "inf.wav"} and run.info["data"]["samples"] == 16
    assert skipped["reason"].str.contains("100 samples are NaN or infinite").sum() == 1
    answered = trilla("predict", run.path, tones / "low" / "nan.wav", check=False)
    assert answered.returncode == 1 and "NaN or infinite" in json.loads(answered.stdout)["error"]


def test_manifests_and_names_as_users_files_have_them_are_read_or_refused_by_line(pictures, tmp_path, caplog):
    rows = [f"img/{c}/{c}_{i:03d}.png,{c}" for c in "ab" for i in range(12)]
    manifests = {
        "latin.csv": ("path,label,note\n" + "\n".join(f"{row},café" for row in rows)).encode("cp1252"),  # Excel's "CSV" in Western Europe
        "nul.csv": ("path,label\n" + "\n".join(rows)).encode().replace(b"img/a/a_003", b"img/a/a\x00003"),
        "long.csv": ("path,label\n" + "\n".join(rows) + "\n" + "x" * 200_000 + ",a\n").encode(),
    }
    expected = {"latin.csv": (24, "read as Windows-1252"), "nul.csv": (23, "the path holds a NUL character"),
                "long.csv": (24, "the path holds 200000 characters")}
    for name, content in manifests.items():  # read in this process (the refusal below goes through the command line)
        (tmp_path / name).write_bytes(content)
        caplog.clear()
        run = trained(tmp_path / name, tmp_path / "runs")
        samples, said = expected[name]
        assert run.info["data"]["samples"] == samples and said in caplog.text, (name, caplog.text)
    (tmp_path / "broken.csv").write_bytes(b"path,label\nimg/a/a_000.png,a\nimg/a/a_001.png,\x81\x8d\n")
    refused = trilla("train", "--data", tmp_path / "broken.csv", "--set", f"run.dir={tmp_path / 'runs'}", *TINY, check=False)
    assert refused.returncode == 2 and "broken.csv, line 3: byte 0x81 is neither UTF-8 nor Windows-1252" in refused.stderr
    # a file name that is not UTF-8 (written on another system): trained on, and named in splits.csv as its own bytes
    os.rename(os.fsencode(pictures / "a" / "a_000.png"), os.fsencode(pictures / "a") + b"/caf\xe9.png")
    run = trained(pictures, tmp_path / "runs")
    assert run.info["data"]["samples"] == 24 and os.fsencode(pictures / "a") + b"/caf\xe9.png" in (run.path / "splits.csv").read_bytes()


def test_relabel_reads_a_semicolon_manifest_as_train_does_and_refuses_contradicting_rows(pictures, tmp_path):
    manifest = tmp_path / "photos.csv"
    manifest.write_text("path;label\n" + "".join(f"img/{c}/{c}_{i:03d}.png;{c}\n" for c in "ab" for i in range(12)))
    first = str(pictures / "a" / "a_000.png")
    queue = tmp_path / "queue.csv"
    queue.write_text(f"manifest,path,new_label\n{manifest},{first},b\n")
    done = trilla("relabel", queue, "--apply", "-q")
    assert "1 changes written" in done.stdout
    lines = manifest.read_text().splitlines()
    assert lines[0] == "path;label;label_history" and lines[1].startswith("img/a/a_000.png;b;") and "label: a -> b" in lines[1]
    assert trained(manifest, tmp_path / "runs").info["data"]["samples"] == 24  # read as train reads it

    before = manifest.read_bytes()
    queue.write_text(f"manifest,path,new_label\n{manifest},{first},a\n{manifest},{pictures / 'b' / 'b_000.png'},a\n{manifest},{first},b\n")
    refused = trilla("relabel", queue, "--apply", check=False)
    assert refused.returncode == 2 and f"two values of label for {first} (line 2: 'a'; line 4: 'b')" in refused.stderr
    assert manifest.read_bytes() == before  # nothing written
    missing = trilla("relabel", tmp_path / "nowhere.csv", check=False)
    assert missing.returncode == 2 and "nowhere.csv does not exist" in missing.stderr and "Traceback" not in missing.stderr


@pytest.fixture
def read_only(tmp_path, pictures):
    """A real read-only file system (a tmpfs remounted ro) holding a finished run: EROFS from the kernel."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    disk = tmp_path / "ro"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=True)
    run = trained(pictures, disk / "runs")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    yield disk, run.path
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_read_only_folder_is_an_error_naming_it(read_only, pictures, tmp_path):
    disk, run = read_only
    cases = {
        "run.dir": (["train", "--data", pictures, "--set", "train.epochs=1", "--set", f"run.dir={disk / 'new'}", *TINY], {}),
        "the cache": (["train", "--data", pictures, "--set", "train.epochs=1", "--set", f"run.dir={tmp_path / 'runs'}", *TINY],
                      {"TRILLA_CACHE": str(disk / "cache")}),
        "the run folder": (["evaluate", run, "-q"], {}),
        "the export folder": (["export", run, "--out", disk / "model.onnx"], {}),
    }
    for what, (command, env) in cases.items():
        result = subprocess.run([*TRILLA, *map(str, command)], capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
        assert result.returncode == 2, (what, result.stderr[-2000:])
        assert "Traceback" not in result.stderr and f"cannot write in {disk}" in result.stderr and "read-only file system" in result.stderr, (
            what, result.stderr[-2000:])


def test_a_plain_state_dict_as_checkpoint_and_a_file_gone_before_packing_are_said(pictures, tmp_path):
    import torch

    from trilla.data.store import open_or_build
    from trilla.kinds.image.kind import ImageCodec

    done = trilla("train", "--data", pictures, "--set", "train.epochs=1", "--set", f"run.dir={tmp_path / 'runs'}", *TINY)
    run = Run(done.stdout.strip().splitlines()[-1])
    best = run.path / "checkpoints" / "best.ckpt"
    torch.save(load_checkpoint(best)["state_dict"], best)  # what a user saving "the model" writes
    refused = trilla("predict", run.path, pictures / "a" / "a_000.png", check=False)
    assert refused.returncode == 2 and f"{best} is not a checkpoint trilla (or Lightning) wrote" in refused.stderr
    assert "Traceback" not in refused.stderr
    files = sorted(pictures.rglob("*.png"))
    files[3].unlink()  # listed a moment ago, deleted before packing
    store = open_or_build(files, ImageCodec(16, "rgb"), tmp_path / "stores", progress=False)
    assert [(Path(p.path).name, "No such file" in p.reason) for p in store.problems] == [(files[3].name, True)]


@pytest.mark.parametrize("given, says", [
    (["--set", "train.seed=-1"], "train.seed: Input should be greater than or equal to 0"),
    (["--set", "model.hidden=[-5]"], "model.hidden.0: Input should be greater than 0"),
    (["--set", "train.lr=.inf"], "train.lr: Value error, inf is no number a setting can take"),
    (["--set", "train.lr=nan"], "train.lr: Input should be greater than 0 (got 'nan')"),
    (["--set", "train.epochs=true"], "epochs: true is a yes/no, and epochs takes a number"),
    (["--set", "model.hidden=[" + ",".join(["1"] * 200_000) + "]"], "model.hidden: Value error, 200000 items; a setting takes at most 10000"),
    ("train:\n  seed: 3\n  lr: 0.01\n  seed: 4\n", "the key 'seed' is written twice in one mapping (lines 2 and 4); keep one"),
])
def test_config_values_at_the_edges_are_validation_errors(given, says, pictures, tmp_path, monkeypatch, capsys):
    from trilla.cli import main

    if isinstance(given, str):
        (tmp_path / "config.yaml").write_text(given)
        given = [str(tmp_path / "config.yaml")]
    monkeypatch.setattr(sys, "argv", ["trilla", "train", *given, "--data", str(pictures), "--set", f"run.dir={tmp_path / 'runs'}"])
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit:
        main()
    stderr = capsys.readouterr().err
    assert exit.value.code == 2 and says in stderr and "Traceback" not in stderr, stderr[-1500:]
    assert time.monotonic() - started < 60 and not (tmp_path / "runs").exists()  # refused before any work


def test_a_manifest_listing_few_files_on_many_rows_packs_each_file_once(pictures, tmp_path):
    files = [f"img/{c}/{c}_{i:03d}.png,{c}" for c in "ab" for i in range(12)]
    (tmp_path / "many.csv").write_text("path,label\n" + "\n".join(files[i % 24] for i in range(20_000)) + "\n")
    done = trilla("train", "--data", tmp_path / "many.csv", "--set", "train.epochs=1", "--set", f"run.dir={tmp_path / 'runs'}", *TINY)
    run = Run(done.stdout.strip().splitlines()[-1])
    store = Path(run.info["data"]["store"])
    assert len((store / "index.csv").read_text().splitlines()) == 1 + 24  # one row per distinct file, not per manifest row
    assert run.info["data"]["samples"] == 24 and run.info["data"]["duplicates_merged"] == 20_000 - 24


def _peak_rss_mb(*args) -> tuple[subprocess.CompletedProcess, float]:
    """A trilla command in a fresh parent whose only child it is, and that child's peak resident memory."""
    probe = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)")
    done = subprocess.run([sys.executable, "-c", probe, *TRILLA, *map(str, args)], capture_output=True, text=True, timeout=600)
    return done, int(done.stdout.strip().splitlines()[-1]) / 1024


def test_clips_of_a_long_recording_cost_the_clips_not_the_recording(tmp_path):
    import numpy as np
    import soundfile as sf

    (tmp_path / "songs").mkdir()
    rate, minutes = 8000, 40  # decoded whole at 44.1 kHz: 40 * 60 * 44100 * 4 bytes = 423 MB of float32
    with sf.SoundFile(tmp_path / "songs" / "long.wav", "w", rate, 1, "PCM_16") as song:
        for minute in range(minutes):
            t = np.arange(rate * 60) / rate + minute * 60
            song.write((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    done, peak = _peak_rss_mb("harvest", "clips", tmp_path / "songs", tmp_path / "clips", "--sample", 3, "-q")
    assert done.returncode == 0, done.stderr
    clips = sorted((tmp_path / "clips").rglob("*.wav"))
    assert len(clips) == 3 and all(sf.info(c).duration == 10.0 and sf.info(c).samplerate == 44100 for c in clips)
    assert peak < 300, f"peak {peak:.0f} MB cutting 3 clips of {minutes} minutes"


def test_a_run_no_better_than_the_majority_baseline_says_so_in_the_console(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, count in (("common", 60), ("rare", 20)):  # noise: nothing to learn
        (tmp_path / "noise" / label).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "noise" / label / f"{i}.png")
    done = trilla("train", "--data", tmp_path / "noise", "--set", "train.epochs=1", "--set", "train.lr=1e-9", "--set", f"run.dir={tmp_path / 'runs'}",
                  *TINY)
    run = Run(done.stdout.strip().splitlines()[-1])
    assert run.metrics["test/accuracy"] <= run.metrics["test/majority_baseline"] + 0.01, run.metrics
    assert "is no better than the majority baseline" in done.stderr and "trilla lr-find" in done.stderr
