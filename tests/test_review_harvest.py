"""Clip harvesting from songs, and the label-review loop (review -> queue -> relabel)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from conftest import make_tone_folder, tone_clip, trilla
from trilla import load_config, train
from trilla.cli import app
from trilla.errors import TrillaError
from trilla.evaluation.review import relabel, review
from trilla.kinds.audio import decode as audio
from trilla.label import Project
from trilla.runs import Run


def test_harvest_lists_samples_cuts_and_skips_what_is_there(tmp_path):
    songs = tmp_path / "songs"
    (songs / "album").mkdir(parents=True)
    sf.write(songs / "album" / "long.wav", tone_clip(440.0, 25.0, 8000), 8000)
    sf.write(songs / "short.flac", tone_clip(880.0, 12.0, 22050), 22050)
    (songs / "broken.mp3").write_text("not audio")
    out = tmp_path / "clips"
    args = ["harvest", "clips", str(songs), str(out), "--seconds", "5", "--skip-start", "2", "--sample", "3", "--sample-rate", "16000"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    listing = pd.read_csv(out / "clips.csv")
    assert len(listing) == 4 + 2  # starts 2, 7, 12, 17 in 25 s; 2, 7 in 12 s
    assert "3 cut now, 0 already there; 1 songs skipped" in first.output
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 3
    row = manifest.iloc[0]
    clip = audio.load(out / row["path"], 16000)
    song = audio.load(songs / row["song"], 16000)
    start = int(row["start"] * 16000)
    assert len(clip) == 5 * 16000 and np.abs(clip - song[start : start + len(clip)]).max() < 1e-3
    manifest["arousal"] = 0.5  # a person labels the clips...
    manifest.to_csv(out / "manifest.csv", index=False)
    again = CliRunner().invoke(app, args)
    assert "0 cut now, 3 already there" in again.output
    assert (pd.read_csv(out / "manifest.csv")["arousal"] == 0.5).all()  # ...and a re-run keeps the labels


def test_review_queues_flipped_labels_and_relabel_keeps_history(tmp_path):
    folder = make_tone_folder(tmp_path / "tones", {"low": 30, "high": 30})
    rows = [{"path": str(p.relative_to(folder)), "label": p.parent.name} for p in sorted(folder.rglob("*.wav"))]
    flipped = {0, 31}
    for i in flipped:
        rows[i]["label"] = "high" if rows[i]["label"] == "low" else "low"
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    runs = []
    for seed in range(3):  # different splits, so every clip is held out by some run
        runs.append(train(load_config(data=folder / "manifest.csv", overrides=[
            "train.progress=false", "train.epochs=8", "train.lr=0.01", "train.batch_size=16", f"data.split.seed={seed}",
            "data.split.val=0.3", "data.split.test=0.3", "input={type: audio, sample_rate: 8000, n_fft: 256, hop: 64, n_mels: 32}",
            "model={name: rnn, units: [16]}", f"run.dir={tmp_path / 'runs'}"])).path)
    queue = review(runs, min_votes=3, progress=False)
    flipped_paths = {str(folder / rows[i]["path"]) for i in flipped}
    voted = set(queue.loc[queue["votes"] >= 3, "path"])
    assert flipped_paths <= voted and len(voted) <= 4, queue
    assert set(queue.loc[queue["cleanlab_issue"], "path"]) & flipped_paths
    assert {"new_label", "manifest", "label_probability_out_of_fold"} <= set(queue)
    queue["new_label"] = queue["new_label"].astype(object)
    for i in flipped:
        queue.loc[queue["path"] == str(folder / rows[i]["path"]), "new_label"] = folder.joinpath(rows[i]["path"]).parent.name
    queue.to_csv(tmp_path / "queue.csv", index=False)
    dry = relabel(tmp_path / "queue.csv")
    assert len(dry) == 2 and pd.read_csv(folder / "manifest.csv")["label"].tolist() == [r["label"] for r in rows]
    result = CliRunner().invoke(app, ["relabel", str(tmp_path / "queue.csv"), "--apply"])
    assert "2 changes written" in result.output, result.output
    fixed = pd.read_csv(folder / "manifest.csv", keep_default_na=False)
    assert (fixed["label"] == [p.split("/")[0] for p in fixed["path"]]).all()
    assert "label: low -> high" in fixed.loc[0, "label_history"] and fixed.loc[1, "label_history"] == ""
    backups = list(folder.glob("manifest.csv.*.bak"))
    assert len(backups) == 1 and pd.read_csv(backups[0])["label"].tolist() == [r["label"] for r in rows]
    with pytest.raises(TrillaError, match="more than the 3 runs"):
        review(runs, min_votes=4)


def test_manifest_of_a_folder_tree_trains_and_is_never_overwritten(tmp_path):
    from conftest import make_region_tree, trilla

    tree = make_region_tree(tmp_path / "snails", per_species=4)
    result = trilla("manifest", tree, "--label-level", "-2")
    target = tmp_path / "snails.csv"
    assert result.stdout.strip().splitlines()[-1] == str(target) and "16 files, 4 labels" in result.stdout
    table = pd.read_csv(target)
    assert list(table.columns) == ["path", "label", "level_1", "level_2"]
    assert table.loc[0].to_dict() == {"path": "snails/east/q0-east/000.png", "label": "q0-east", "level_1": "east", "level_2": "q0-east"}
    again = trilla("manifest", tree, check=False)
    assert again.returncode == 2 and "exists and is kept" in again.stderr
    config = load_config(None, ["data.image_size=16"], target)
    from trilla.data.datamodule import load_data

    assert len(load_data(target, config, progress=False).targets) == 16  # read back whole: its paths stay in its folder


def test_relabel_refuses_a_label_that_is_no_class_unless_asked_and_review_warns_on_one_split_seed(tmp_path, caplog):
    from conftest import make_image_folder

    folder = make_image_folder(tmp_path / "photos", {"cat": 10, "dog": 10}, size=16)
    rows = [{"path": str(p.relative_to(folder)), "label": p.parent.name, "valence": "0.5"} for p in sorted(folder.rglob("*.png"))]
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    queue = pd.DataFrame({"manifest": [str(folder / "manifest.csv")], "path": [str(folder / rows[0]["path"])],
                          "new_label": ["dgo"], "new_valence": [""]})
    queue.to_csv(tmp_path / "queue.csv", index=False)
    with pytest.raises(TrillaError, match=r"unknown label 'dgo'; did you mean 'dog'\? Available: cat, dog\. Pass --new-class"):
        relabel(tmp_path / "queue.csv", apply=True)
    assert pd.read_csv(folder / "manifest.csv")["label"].tolist() == [r["label"] for r in rows]  # nothing written
    assert relabel(tmp_path / "queue.csv", apply=True, new_class=True)["new"].tolist() == ["dgo"]
    queue.assign(new_label="", new_valence="very").to_csv(tmp_path / "queue.csv", index=False)
    with pytest.raises(TrillaError, match="new_valence 'very' is not a number"):
        relabel(tmp_path / "queue.csv")

    runs = [train(load_config(data=folder, overrides=["train.progress=false", "train.epochs=1", "data.image_size=16",
                                                      f"run.dir={tmp_path / 'runs'}", f"train.seed={seed}"])).path for seed in (0, 1)]
    with caplog.at_level("WARNING", logger="trilla"):
        review(runs, data=folder, min_votes=1, progress=False)
    assert "all 2 runs split with data.split.seed 0" in caplog.text


def test_review_into_a_plane_project_and_relabel_from_its_answers(tmp_path):
    """A run on valence/arousal: review --label makes a plane project of the suspects, each showing its
    current label and the run's votes; relabel --from-project writes the mean point of the answers."""
    from conftest import make_affect_manifest, trilla

    manifest = make_affect_manifest(tmp_path / "emo", n=24)
    table = pd.read_csv(manifest)
    table.loc[0, ["valence", "arousal"]] = -table.loc[0, "valence"], -table.loc[0, "arousal"]  # the opposite quadrant
    table.to_csv(manifest, index=False)
    run = train(load_config(data=manifest, overrides=[
        "train.progress=false", "train.epochs=1", "input={type: audio, sample_rate: 8000, n_fft: 256, hop: 64, n_mels: 32}",
        "data.targets={valence: valence, arousal: arousal}", "model={name: rnn, units: [8]}", f"run.dir={tmp_path / 'runs'}"])).path
    made = trilla("review", run, "--min-votes", "1", "--label", tmp_path / "recheck", "-q")
    project = Project(tmp_path / "recheck")
    assert made.stdout.strip().splitlines()[-1] == str(project.folder) and "trilla relabel --from-project" in made.stdout
    queue = pd.read_csv(project.folder / "review.csv")
    items = project.items()
    assert project.kind == "plane" and project.axes == ["valence", "arousal"] and len(items) == len(queue) >= 1
    first = project.next_item("ann")
    shown = items.set_index("item").loc[first.id]
    assert first.given == shown["given"] == queue.set_index("path").loc[shown["path"], "label"]  # the label under review, shown
    votes = json.loads(shown["guess"])
    assert sum(v["votes"] for v in votes) == 1 and votes[0]["runs"] == 1  # one run, one vote
    for annotator, point in (("ann", [0.5, 0.25]), ("bob", [0.7, 0.45])):
        project.answer(first.id, annotator, point)
    dry = trilla("relabel", "--from-project", project.folder, "-q")
    assert f"{len(items) - 1} of {len(items)} items" in dry.stderr if len(items) > 1 else dry.stderr == ""
    assert "2 changes found" in dry.stdout and pd.read_csv(manifest).equals(table)  # a dry run writes nothing
    trilla("relabel", "--from-project", project.folder, "--apply", "-q")
    fixed = pd.read_csv(manifest, keep_default_na=False)
    row = fixed[(manifest.parent / fixed["path"]).map(lambda p: str(p.resolve())) == shown["path"]].iloc[0]
    assert (row["valence"], row["arousal"]) == (0.6, 0.35)
    assert "valence: " in row["label_history"] and "project recheck, 2 annotators" in row["label_history"] and "bob: [0.7, 0.45]" in row["label_history"]
    again = trilla("review", run, "--min-votes", "1", "--label", tmp_path / "recheck", check=False)
    assert again.returncode == 2 and "is kept" in again.stderr  # a project is never overwritten
    with pytest.raises(TrillaError, match="not made by trilla review"):
        from trilla.label.review import queue_from_project

        queue_from_project(Project.create(tmp_path / "plain", manifest.parent / "clips", "classes", ["a", "b"]))


def test_clips_of_one_song_stay_in_one_split_and_the_label_export_keeps_their_song(tmp_path):
    songs, out = tmp_path / "songs", tmp_path / "clips"
    songs.mkdir()
    for i in range(8):
        sf.write(songs / f"{'low' if i % 2 else 'high'}-{i}.wav", tone_clip(300.0 if i % 2 else 2000.0, 12.0, 8000, seed=i), 8000)
    trilla("harvest", "clips", songs, out, "--seconds", "1", "--sample-rate", "8000", "-q")
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest.columns) == ["path", "song", "start", "end"] and len(manifest) == 96
    manifest["label"] = manifest["song"].str.split("-").str[0]  # a person labels the songs' clips
    manifest.to_csv(out / "manifest.csv", index=False)
    song_of = {str((out / p).resolve()): s for p, s in zip(manifest["path"], manifest["song"])}

    def splits_per_song(*overrides) -> tuple[Run, pd.Series]:
        done = trilla("train", "--data", out / "manifest.csv", "--set", "train.epochs=1", "--set", f"run.dir={tmp_path / 'runs'}",
                      "--set", "train.progress=false", *overrides, "-q")
        run = Run(done.stdout.strip().splitlines()[-1])
        splits = run.table("splits.csv")
        return run, splits.assign(song=[song_of[str(Path(p).resolve())] for p in splits["path"]]).groupby("song")["split"].nunique()

    run, held = splits_per_song()
    assert run.config.data.split.group_column == "song" and (held == 1).all()  # whole songs held out, by default
    groups = run.info["data"]["groups_per_split"]
    assert sum(groups.values()) == 8 and groups["val"] >= 1 and groups["test"] >= 1
    assert (f"`song` values: {groups['train']} in train, {groups['val']} in val, {groups['test']} in test" in run.report.read_text())
    _, mixed = splits_per_song("--set", "data.split.group_column=null")
    assert (mixed > 1).any()  # without it, a song's clips land in two splits

    trilla("label", "new", tmp_path / "p", "--data", out, "--classes", "low,high", "-q")
    project = Project(tmp_path / "p")
    for item, path in zip(project.items()["item"], project.items()["path"]):
        project.answer(int(item), "ann", "low" if "/low-" in path else "high")
    trilla("label", "export", tmp_path / "p", "-q")
    exported = pd.read_csv(tmp_path / "p" / "labels.csv")
    assert len(exported) == 96 and [song_of[str((tmp_path / "p" / p).resolve())] for p in exported["path"]] == exported["song"].tolist()
