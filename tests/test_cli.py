"""End-to-end: the `trilla` command on tiny generated folders, as a user runs it."""

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_image_folder, trilla
from trilla import Run, load_config, train

FAST = ["--set", "data.image_size=16", "--set", "train.epochs=4", "--set", "train.progress=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One training run on a folder with a truncated file, a text file and an empty class folder."""
    root = tmp_path_factory.mktemp("cli")
    data = make_image_folder(root / "shapes", {"alpha": 40, "beta": 40, "gamma": 40})
    good = (data / "alpha" / "alpha_000.png").read_bytes()
    (data / "alpha" / "broken.png").write_bytes(good[:40])
    (data / "beta" / "readme.txt").write_text("not a picture")
    (data / "delta").mkdir()
    result = trilla("train", "--data", data, *FAST, "--set", f"run.dir={root / 'runs'}")
    run = Path(result.stdout.strip().splitlines()[-1])
    return root, data, run, result


def test_train_writes_the_run_contract(trained):
    root, data, run, result = trained
    assert run.parent == root / "runs" and run.is_dir()
    for name in ("config.yaml", "classes.json", "history.csv", "metrics.json", "checkpoints/best.ckpt",
                 "checkpoints/last.ckpt", "report.md", "confusion_matrix.png", "curves.png", "run.json", "splits.csv"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    assert json.loads((run / "classes.json").read_text()) == ["alpha", "beta", "gamma"]
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("test/accuracy", "test/balanced_accuracy", "test/top_1", "test/top_2", "test/top_3",
                "test/majority_baseline", "best_epoch", "min_val_loss", "time_to_best_s", "train_time_s", "train_samples_per_s"):
        assert key in metrics, key
    assert "test/top_4" not in metrics
    assert metrics["test/accuracy"] > 0.6  # a learnable task, 4 epochs
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert {"train/loss", "val/loss", "val/accuracy", "lr", "elapsed_s"} <= set(history.columns)
    config = (run / "config.yaml").read_text()
    assert "image_size: 16" in config and str(data) in config  # resolved: absolute data path, overrides applied


def test_bad_files_and_empty_class_are_reported_not_fatal(trained):
    root, data, run, result = trained
    report = (run / "report.md").read_text()
    for name in ("broken.png", "readme.txt", "delta"):
        assert name in result.stderr, name
        assert name in report, name
    skipped = pd.read_csv(run / "skipped.csv")
    assert len(skipped) == 3
    counts = pd.read_csv(run / "counts.csv", index_col=0)
    assert counts["total"].sum() == 120 and "delta" not in counts.index


def test_predict_reports_bad_file_on_its_own_line(trained, tmp_path):
    root, data, run, _ = trained
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    result = trilla("predict", run, data / "gamma" / "gamma_001.png", bad, data / "beta", "--top-k", "2", check=False)
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2 + 41  # two files, then beta's 40 pictures and its text file
    assert lines[0]["file"].endswith("gamma_001.png") and len(lines[0]["predictions"]) == 2
    assert sum(p["probability"] for p in lines[0]["predictions"]) <= 1.0 + 1e-6
    assert "error" in lines[1] and "not an image" in lines[1]["error"]
    assert sum("error" in line for line in lines) == 2
    as_csv = trilla("predict", run, data / "gamma" / "gamma_001.png", "--format", "csv", "--top-k", "3")
    header, row = as_csv.stdout.strip().splitlines()
    assert header.startswith("file,label_1,probability_1") and row.split(",")[1] in {"alpha", "beta", "gamma"}


def test_copied_run_predicts_the_same(trained, tmp_path):
    root, data, run, _ = trained
    copy = tmp_path / "elsewhere" / "copied"
    shutil.copytree(run, copy)
    files = [data / "alpha" / "alpha_003.png", data / "beta" / "beta_004.png"]
    here = trilla("predict", run, *files).stdout
    there = trilla("predict", copy, *files).stdout
    assert here == there


def test_evaluate_on_other_data(trained, tmp_path):
    root, data, run, _ = trained
    other = make_image_folder(tmp_path / "other", {"alpha": 10, "beta": 10, "gamma": 10, "omega": 3}, seed=5)
    out = tmp_path / "eval.json"
    result = trilla("evaluate", run, "--data", other, "--out", out)
    metrics = json.loads(out.read_text())
    assert metrics["test/samples"] == 30 and metrics["skipped"] == 3  # omega is not a class of the run
    assert 0.0 <= metrics["test/accuracy"] <= 1.0 and "test/top_3" in metrics
    folder = Path(result.stdout.strip().splitlines()[-1])
    assert folder.parent == run / "evaluations" and (folder / "confusion_matrix.png").is_file()
    default = trilla("evaluate", run)  # the run's own test split, preprocessed as in training
    assert json.loads((Path(default.stdout.strip().splitlines()[-1]) / "metrics.json").read_text())["test/accuracy"] == pytest.approx(
        json.loads((run / "metrics.json").read_text())["test/accuracy"]
    )


def test_evaluate_several_runs_as_an_ensemble(trained, tmp_path):
    root, data, run, _ = trained
    other = make_image_folder(tmp_path / "other", {"alpha": 6, "beta": 6, "gamma": 6}, seed=7)
    # the members, trained and evaluated in process (the CLI's own train and evaluate are tested above): the
    # ensemble below is what this test runs as a command
    quick = [*FAST[1::2], f"run.dir={tmp_path / 'runs'}"]  # FAST's settings, as library overrides
    second = train(load_config(data=data, overrides=[*quick, "train.epochs=2", "train.seed=1"])).path
    members = [pd.read_csv(Run(r).evaluate(other, progress=False)[1] / "predictions.csv") for r in (run, second)]
    result = trilla("evaluate", run, second, "--data", other)
    folder = Path(result.stdout.strip().splitlines()[-1])
    assert folder.parent == run / "evaluations" and "ensemble" in folder.name
    assert json.loads((folder / "metrics.json").read_text())["ensemble"] == [str(run), str(second)]
    averaged = pd.read_csv(folder / "predictions.csv")
    assert averaged["label_probability"].to_numpy() == pytest.approx(
        (members[0]["label_probability"] + members[1]["label_probability"]).to_numpy() / 2, abs=1e-5)
    assert (members[0]["label_probability"] - members[1]["label_probability"]).abs().max() > 1e-3  # two different models
    bigger = train(load_config(data=data, overrides=[*quick, "train.epochs=1", "data.image_size=20"])).path
    refused = trilla("evaluate", run, bigger, "--data", other, check=False)
    assert refused.returncode != 0 and "reads its inputs differently" in refused.stderr


def test_runs_table_and_runs_never_overwritten(trained, tmp_path):
    root, data, run, _ = trained
    # a second run of the same name, trained in process (the command line's train is tested above)
    second_run = train(load_config(data=data, overrides=[*FAST[1::2], "train.epochs=1", f"run.dir={root / 'runs'}",
                                                         f"run.name={run.name.split('-', 2)[-1]}", "train.batch_size=16"])).path
    assert second_run != run and (run / "checkpoints" / "best.ckpt").is_file()
    table = trilla("runs", root / "runs", "--format", "csv", "--sort", "test/accuracy").stdout
    frame = pd.read_csv(pd.io.common.StringIO(table))
    assert set(frame["id"]) >= {run.name, second_run.name}
    assert set(frame["batch_size"]) >= {16, 32}
    # the study's columns, then what the runs differ in (not where they were filed), then the metrics
    assert list(frame.columns[:9]) == ["id", "batch_size", "lr", "momentum", "train.epochs", "min_val_loss", "best_epoch",
                                       "test/accuracy", "test/balanced_accuracy"]
    assert frame.loc[frame["id"] == second_run.name, "train.epochs"].item() == 1
    assert "at_majority" in frame and frame["test/accuracy"].is_monotonic_decreasing
    markdown = trilla("runs", root / "runs").stdout  # for people: what differs, the main metrics, one naming style
    header = markdown.splitlines()[0]
    assert header.startswith("| id | train.batch_size | train.epochs | min_val_loss | test/accuracy |"), header
    assert "train.lr" not in header and "architecture" not in header and "e+0" not in markdown
    everything = trilla("runs", root / "runs", "--columns", "all").stdout
    assert "4 conv" in everything and "| train.lr |" in everything.splitlines()[0]
    assert "| train_time_s |" in trilla("runs", root / "runs", "--columns", "train_time_s").stdout.splitlines()[0]
    wrong = trilla("runs", root / "runs", "--columns", "train_tme_s", check=False)
    assert wrong.returncode == 2 and "no column 'train_tme_s'" in wrong.stderr
    html = trilla("runs", root / "runs", "--format", "html").stdout
    assert html.startswith("<!doctype html>") and second_run.name in html


def test_user_errors_exit_2_without_traceback(tmp_path):
    result = trilla("train", "--data", tmp_path / "missing", check=False)
    assert result.returncode == 2 and "error: data path" in result.stderr and "Traceback" not in result.stderr
    result = trilla("train", "--data", tmp_path, "--set", "train.epoch=3", check=False)
    assert result.returncode == 2 and "did you mean 'train.epochs'" in result.stderr
    result = trilla("predict", tmp_path, "x.png", check=False)
    assert result.returncode == 2 and "not a trilla run" in result.stderr


def test_majority_baseline_warning_on_data_with_nothing_to_learn(tmp_path):
    """Pure noise, 9:1: the model can only learn the prior, and the report must say so in words."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, count in (("guitar", 180), ("bass", 20)):
        (tmp_path / "noise" / label).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "noise" / label / f"{i}.png")
    result = trilla("train", "--data", tmp_path / "noise", "--set", "data.image_size=8", "--set", "train.epochs=3",
                    "--set", "train.progress=false", "--set", f"run.dir={tmp_path / 'runs'}", "--set", "model.conv=[{maps: 4, pool: 1}]")
    run = Path(result.stdout.strip().splitlines()[-1])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/majority_baseline"] == pytest.approx(0.9)
    assert metrics["test/accuracy"] <= 0.91
    assert "within one point of the majority baseline" in (run / "report.md").read_text()


def test_odd_names_each_get_their_own_line_and_loops_are_never_followed(trained, tmp_path):
    root, data, run, _ = trained
    odd = tmp_path / "odd"
    (odd / "sub").mkdir(parents=True)
    shutil.copy(data / "alpha" / "alpha_001.png", odd / "good.png")
    shutil.copy(data / "beta" / "beta_001.png", odd / "sub" / "also_good.png")
    (odd / "loop1").symlink_to("loop2")
    (odd / "loop2").symlink_to("loop1")
    (odd / "sub" / "dangling.png").symlink_to("missing.png")
    (odd / "sub" / "up").symlink_to("..")
    (odd / "bad_dir.png").mkdir()
    result = trilla("predict", run, odd / "loop1", odd / "good.png", odd / "bad_dir.png", odd / "sub", check=False)
    lines = {Path(r["file"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert set(lines) == {"loop1", "good.png", "bad_dir.png", "also_good.png", "dangling.png", "up"}
    assert "predictions" in lines["good.png"] and "predictions" in lines["also_good.png"]
    assert "symbolic links" in lines["loop1"]["error"] and "no files" in lines["bad_dir.png"]["error"]
    assert "broken symlink" in lines["dangling.png"]["error"] and "symlink loop" in lines["up"]["error"]


def test_a_loop_in_the_data_tree_is_reported_not_a_class(tmp_path):
    data = make_image_folder(tmp_path / "shapes", {"alpha": 20, "beta": 20})
    (data / "loop").symlink_to(".")
    (data / "alpha" / "dangling.png").symlink_to("nowhere.png")
    (data / "beta" / "bad_dir.png").mkdir()
    result = trilla("train", "--data", data, *FAST, "--set", "train.epochs=1", "--set", f"run.dir={tmp_path / 'runs'}")
    run = Path(result.stdout.strip().splitlines()[-1])
    assert json.loads((run / "classes.json").read_text()) == ["alpha", "beta"]
    skipped = dict(pd.read_csv(run / "skipped.csv").itertuples(index=False))
    assert {Path(p).name for p in skipped} == {"loop", "dangling.png", "bad_dir.png"}
    assert "symlink loop" in skipped[str(data / "loop")]


def test_manifests_stay_in_their_folder_semicolons_are_read_and_one_class_is_an_error(tmp_path):
    data = make_image_folder(tmp_path / "project" / "photos", {"alpha": 12, "beta": 12})
    secret = tmp_path / "secret.png"
    shutil.copy(data / "alpha" / "alpha_000.png", secret)
    rows = [f"photos/{p.parent.name}/{p.name};{p.parent.name}" for p in sorted(data.rglob("*.png"))]
    manifest = tmp_path / "project" / "labels.csv"
    manifest.write_text("path;label\n" + "\n".join([*rows, "../secret.png;alpha", f"{secret};beta"]) + "\n")
    result = trilla("train", "--data", manifest, *FAST, "--set", "train.epochs=1", "--set", f"run.dir={tmp_path / 'runs'}")
    run = Path(result.stdout.strip().splitlines()[-1])
    assert len(pd.read_csv(run / "splits.csv")) == 24
    skipped = pd.read_csv(run / "skipped.csv")
    assert len(skipped) == 2 and skipped["reason"].str.contains("outside the CSV's folder").all()

    one = tmp_path / "one"
    make_image_folder(one, {"alpha": 10})
    runs = tmp_path / "one_runs"
    result = trilla("train", "--data", one, *FAST, "--set", f"run.dir={runs}", check=False)
    assert result.returncode == 2 and "one class only (alpha, 10 files)" in result.stderr
    assert not runs.exists()  # refused before a run directory was made


def _damage(run: Path, how: str) -> None:
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))  # so --resume gets as far as the damage
    if how == "config not yaml":
        (run / "config.yaml").write_text("data: [unclosed\n  - {")
    elif how == "truncated checkpoint":
        for name in ("best.ckpt", "last.ckpt"):
            whole = (run / "checkpoints" / name).read_bytes()
            (run / "checkpoints" / name).write_bytes(whole[: len(whole) // 3])
    elif how == "no run.json":
        (run / "run.json").unlink()
    elif how == "checkpoint with code":
        import argparse

        import torch

        for name in ("best.ckpt", "last.ckpt"):
            torch.save({"state_dict": {}, "hook": argparse.Namespace(run="anything")}, run / "checkpoints" / name)


@pytest.mark.parametrize("how, says", [
    ("config not yaml", "config.yaml is not valid YAML"),
    ("truncated checkpoint", "is damaged or not a torch checkpoint"),
    ("no run.json", "run.json is missing"),
    ("checkpoint with code", "refused to load"),
])
def test_every_broken_run_directory_is_a_clear_error(trained, tmp_path, how, says, monkeypatch, capsys):
    from trilla.cli import main

    root, data, run, _ = trained
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    _damage(broken, how)
    # the run reads as interrupted (for --resume to get as far as the damage), which predict and evaluate are told to use all the same
    for command in (["predict", broken, data / "alpha" / "alpha_001.png", "--allow-unfinished"], ["evaluate", broken, "--allow-unfinished"],
                    ["train", "--resume", broken]):
        monkeypatch.setattr(sys, "argv", ["trilla", *map(str, command)])  # the command line's own entry point, in this process
        with pytest.raises(SystemExit) as exit:
            main()
        stderr = capsys.readouterr().err
        assert exit.value.code == 2, (command, stderr[-1500:])
        assert "Traceback" not in stderr and says in stderr, (command, stderr[-1500:])


def test_tensorboard_ranks_runs_by_their_real_metric_and_shows_their_pictures(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    root, data, run, _ = trained
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 10, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"lr", "train/accuracy", "train/epoch_loss", "val/loss", "hp/test_accuracy", "hp/val_loss_best"} <= set(tags["scalars"])
    assert "hp_metric" not in tags["scalars"]  # Lightning's -1 placeholder
    assert {"confusion_matrix", "worst", "examples"} <= set(tags["images"])
    assert events.Scalars("hp/test_accuracy")[-1].value == pytest.approx(json.loads((run / "metrics.json").read_text())["test/accuracy"])
    session = plugin_data_pb2.HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    assert session.session_start_info.hparams["train.lr"].number_value == pytest.approx(0.002)
    assert (run / "examples.png").is_file()


def test_report_html_stands_alone_and_the_html_leaderboard_links_to_it(trained):
    root, data, run, _ = trained
    text = (run / "report.md").read_text()
    assert "None" not in text and "momentum" not in text  # nothing unset spelled out, nothing AdamW does not use
    assert "no early stopping (best epoch by val/loss)" in text and "120 usable images" in text
    page = (run / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "<table>" in page and "<h1>Run " in page
    assert page.count('src="data:image/png;base64,') >= 3 and 'src="' not in page.replace('src="data:', "")  # every picture inline
    assert "http" not in page.split("<body>")[0]  # no script or style sheet fetched from anywhere
    board = trilla("runs", root / "runs", "--format", "html").stdout
    assert f'<a href="{run / "report.html"}">{run.name}</a>' in board
    assert "path" not in trilla("runs", root / "runs").stdout.splitlines()[0]


def test_numbers_are_written_for_people():
    from trilla.tables import human

    assert [human(v) for v in (16000.0, 0.98765, 0.0003, 3e-6, 6.06e22, 2.0)] == ["16000", "0.9877", "0.0003", "3e-06", "6.06e+22", "2"]
