"""Labelling projects as a library and a command: items from folders and CSVs, one annotator's view,
answers that are only appended (undo, back, supersede), the exported manifest, Krippendorff's alpha,
the Label Studio round trip, and nothing a user made ever overwritten."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_image_folder, make_tone_folder, trilla
from trilla.errors import TrillaError
from trilla.label import Project
from trilla.label.export import agreement, manifest
from trilla.label.labelstudio import email_of, from_labelstudio, labeling_config, to_labelstudio


@pytest.fixture
def pictures(tmp_path):
    return make_image_folder(tmp_path / "pics", {"alpha": 3, "beta": 3})


def test_the_next_item_is_the_one_with_fewest_answers_and_each_annotator_sees_only_their_own(tmp_path, pictures):
    project = Project.create(tmp_path / "p", pictures, "classes", ["alpha", "beta"])
    items = project.items()
    assert len(items) == 6 and set(items["media"]) == {"image"} and set(items["given"]) == {"alpha", "beta"}
    first = project.next_item("ann")
    project.answer(first.id, "ann", "alpha", seconds=1.5)
    assert project.next_item("bob").id != first.id  # bob gets an item nobody answered yet
    assert project.show(first.id, "bob").answer is None and project.show(first.id, "ann").answer == "alpha"
    for _ in range(5):
        shown = project.next_item("bob")
        project.answer(shown.id, "bob", "beta")
    assert project.next_item("bob").id == first.id  # the last one bob has not seen
    with pytest.raises(ValueError, match="one of alpha, beta"):
        project.answer(first.id, "ann", "gamma")


def test_undo_restores_the_previous_answer_and_back_goes_to_the_one_before(tmp_path, pictures):
    project = Project.create(tmp_path / "p", pictures, "classes", ["alpha", "beta"])
    a, b = project.next_item("ann").id, None
    project.answer(a, "ann", "alpha")
    b = project.next_item("ann").id
    project.answer(b, "ann", "beta")
    assert project.previous("ann") == b and project.previous("ann", before=b) == a
    project.answer(a, "ann", "beta")  # a second thought supersedes the first answer
    assert project.show(a, "ann").answer == "beta"
    assert project.undo("ann") == a and project.show(a, "ann").answer == "alpha"
    assert project.undo("ann") == b and project.show(b, "ann").answer is None
    history = project.answers()
    assert len(history) == 3 and history["undone"].sum() == 2  # nothing is deleted


def test_the_manifest_has_the_majority_agreement_and_history_and_trains(tmp_path, pictures):
    project = Project.create(tmp_path / "p", pictures, "classes", ["alpha", "beta"])
    items = project.items()
    for row in items.itertuples():
        for annotator in ("ann", "bob", "cid"):
            value = row.given if annotator != "cid" or row.item % 2 else ("beta" if row.given == "alpha" else "alpha")
            project.answer(row.item, annotator, value)
    table = manifest(project)
    assert len(table) == 6 and (table["label"] == items.set_index("path").loc[table["path"], "given"].to_numpy()).all()
    assert sorted(set(table["agreement"].round(3))) == [0.667, 1.0] and (table["annotators"] == 3).all()
    assert table["label_history"].str.count("ann: ").eq(1).all()
    alpha = agreement(project)["alpha"]
    import krippendorff

    matrix = [[project.classes.index(v) for v in project.standing().query("annotator == @a").sort_values("item")["value"]] for a in ("ann", "bob", "cid")]
    assert alpha == pytest.approx(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"))
    result = trilla("label", "export", tmp_path / "p")
    written = tmp_path / "p" / "labels.csv"
    assert str(written) in result.stdout and len(pd.read_csv(written)) == 6
    again = trilla("label", "export", tmp_path / "p")
    assert "labels-2.csv" in again.stdout  # the first export is kept
    stats = trilla("label", "stats", tmp_path / "p").stdout
    assert "6 of 6 items answered, 18 answers by 3 annotators" in stats and f"alpha: {alpha:.3f}" in stats


def test_the_plane_stores_points_and_exports_their_mean_and_interval_alpha(tmp_path):
    tones = make_tone_folder(tmp_path / "tones", {"low": 2, "high": 2})
    project = Project.create(tmp_path / "p", tones, "plane", ["valence", "arousal"])
    ids = list(project.items()["item"])
    for k, item in enumerate(ids):
        project.answer(item, "ann", [0.1 * k, -0.5])
        project.answer(item, "bob", [0.1 * k + 0.2, -0.3])
    table = manifest(project)
    assert list(table["valence"]) == pytest.approx([0.1 * k + 0.1 for k in range(4)])
    assert list(table["arousal"]) == pytest.approx([-0.4] * 4)
    assert table["agreement"].iloc[0] == pytest.approx(1 - np.hypot(0.1, 0.1) / (2 * np.sqrt(2)), abs=1e-4)
    scores = agreement(project)
    assert set(scores) == {"alpha", "alpha/valence", "alpha/arousal"}
    with pytest.raises(ValueError, match=r"\[valence, arousal\], each in \[-1, 1\]"):
        project.answer(ids[0], "ann", [2, 0])


def test_label_studio_tasks_round_trip_into_a_new_project(tmp_path, pictures):
    project = Project.create(tmp_path / "p", pictures, "multilabel", ["alpha", "beta"])
    for k, item in enumerate(project.items()["item"]):
        project.answer(item, "ann", ["alpha", "beta"][: k % 3])
    export = to_labelstudio(project)
    tasks = export["tasks"]
    assert len(tasks) == 6 and tasks[1]["annotations"][0]["result"][0]["value"]["choices"] == ["alpha"]
    assert export["document_root"] == str(tmp_path) and export["storage"] == str(pictures)
    with pytest.raises(TrillaError, match="must lie below Label Studio's document root"):  # Label Studio refuses a storage that is its root
        to_labelstudio(project, pictures)
    assert tasks[0]["data"]["image"] == "/data/local-files/?d=pics/alpha/alpha_000.png"
    assert labeling_config(project, "image").startswith('<View><Image name="item" value="$image"/><Choices')
    assert export["users"] == [{"email": "ann@trilla.invalid", "username": "ann", "trilla_annotator": "ann"}]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks + [{"id": 99, "data": {"image": "/nowhere.png"}, "annotations": []}]))
    other = Project.create(tmp_path / "q", pictures, "multilabel", ["alpha", "beta"])
    added, skipped = from_labelstudio(other, path, progress=False)
    assert added == 6 and skipped == ["task 99: no item's file is /nowhere.png"]
    assert other.standing().sort_values("item")["value"].tolist() == project.standing().sort_values("item")["value"].tolist()
    assert from_labelstudio(other, path, progress=False)[0] == 0  # a second import adds nothing


def test_annotators_get_stable_distinct_label_studio_addresses():
    assert email_of("ann") == "ann@trilla.invalid" and email_of("carla@example.org") == "carla@example.org"
    assert email_of("Bob Smith") == email_of("Bob Smith") != email_of("bob-smith")
    assert email_of("<script>") .endswith("@trilla.invalid") and email_of("") .startswith("annotator-")


def test_malformed_label_studio_exports_are_left_out_and_listed_never_attached_elsewhere(tmp_path, pictures):
    project = Project.create(tmp_path / "p", pictures, "classes", ["alpha", "beta"])
    items = project.items()
    good = [{"id": 1, "data": {"image": f"/data/local-files/?d=pics/{Path(p).parent.name}/{Path(p).name}", "trilla_item": int(i)},
             "annotations": [{"completed_by": {"email": "ann@example.org"}, "result": [
                 {"from_name": "label", "to_name": "item", "type": "choices", "value": {"choices": ["alpha"]}}]}]}
            for i, p in zip(items["item"][:2], items["path"][:2])]
    choice = good[0]["annotations"][0]
    bad = [
        {"id": 10, "data": "pics/alpha/alpha_000.png", "annotations": [choice]},
        {"id": 11, "data": {"image": good[0]["data"]["image"]}, "annotations": {"0": choice}},
        {"id": 12, "data": {"image": good[0]["data"]["image"], "trilla_item": True}, "annotations": [choice]},
        {"id": 13, "data": {"image": good[0]["data"]["image"], "trilla_item": 1.9}, "annotations": [choice]},
        {"id": 14, "data": {"image": good[0]["data"]["image"]}, "annotations": [{**choice, "result": "alpha"}]},
        {"id": 15, "data": {"image": good[1]["data"]["image"], "trilla_item": good[0]["data"]["trilla_item"]}, "annotations": [choice]},
        {"id": 16, "data": {"image": good[0]["data"]["image"]}, "annotations": [{"result": choice["result"]}]},
        "a task that is a string",
        {"id": 18, "data": {"image": "alpha_000.png"}, "annotations": [choice]},  # found by its name: the answer is there already
    ]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(good + bad))
    result = trilla("label", "import", tmp_path / "p", export)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "2 answers imported, 8 left out" in result.stdout, result.stdout + result.stderr
    for reason in ("task 10: not a task with a data object", "task 11: its annotations are not a list", "task 12: its trilla_item True",
                   "task 13: its trilla_item 1.9", "task 14, ann@example.org: its result is not a list", "task 15: its trilla_item",
                   "task 16: an annotation without a known annotator", "task #10 of the file: not a task"):
        assert reason in result.stderr, (reason, result.stderr)
    standing = project.standing()
    assert sorted(standing["item"]) == sorted(int(i) for i in items["item"][:2])  # nothing landed on a third item
    broken = tmp_path / "broken.json"
    broken.write_text('{"tasks": ')
    refused = trilla("label", "import", tmp_path / "p", broken, check=False)
    assert refused.returncode == 2 and "not a readable Label Studio JSON export" in refused.stderr


def test_ten_thousand_answers_import_at_once(tmp_path):
    pictures = make_image_folder(tmp_path / "pics", {"alpha": 100, "beta": 100}, size=8)
    project = Project.create(tmp_path / "p", pictures, "classes", ["alpha", "beta"])
    tasks = to_labelstudio(project)["tasks"]
    for task in tasks:
        task["annotations"] = [{"completed_by": {"email": f"a{n}@example.org"}, "result": [
            {"from_name": "label", "to_name": "item", "type": "choices", "value": {"choices": [["alpha", "beta"][n % 2]]}}]} for n in range(50)]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    result = trilla("label", "import", tmp_path / "p", export)
    assert "10000 answers imported, 0 left out" in result.stdout
    assert len(project.standing()) == 10000 and project.standing()["annotator"].nunique() == 50


LABELSTUDIO = Path(__file__).resolve().parents[1] / ".venv-labelstudio" / "bin" / "python"
CHECK = Path(__file__).resolve().parent / "labelstudio_check.py"


@pytest.mark.parametrize("kind, names, value", [
    ("classes", "alpha,beta", lambda k: ["alpha", "beta"][k % 2]),
    ("multilabel", "alpha,beta", lambda k: [["alpha"], ["beta"], ["alpha", "beta"]][k % 3]),
    ("plane", "valence,arousal", lambda k: [round(0.3 * k - 0.5, 4), -0.25]),
])
def test_label_studio_accepts_what_the_export_writes(tmp_path, pictures, kind, names, value):
    """Label Studio's own SDK (in its own virtualenv) validates the exported config and every region; a
    tampered export fails, so the check can."""
    assert LABELSTUDIO.exists(), f"{LABELSTUDIO} is missing: make labelstudio (make test builds it) installs Label Studio's SDK"
    data = pictures if kind != "plane" else make_tone_folder(tmp_path / "tones", {"low": 2, "high": 2})
    trilla("label", "new", tmp_path / "p", "--data", data, f"--{kind}", names, "-q")
    project = Project(tmp_path / "p")
    for k, item in enumerate(project.items()["item"]):
        project.answer(int(item), "ann@example.org", value(k))
    written = trilla("label", "export", tmp_path / "p", "--format", "labelstudio", "-q")
    media = "audio" if kind == "plane" else "image"
    config, tasks = tmp_path / "p" / f"labelstudio.{media}.xml", tmp_path / "p" / "labelstudio.json"
    assert written.stdout.strip().splitlines()[-1] == str(tasks) and str(config) in written.stdout
    checked = subprocess.run([LABELSTUDIO, CHECK, config, tasks], capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report == {"tasks": len(project.items()), "regions": len(project.items()) * (2 if kind == "plane" else 1), "errors": []}
    exported = json.loads(tasks.read_text())
    result = exported[0]["annotations"][0]["result"][0]
    result["from_name"] = "mood" if kind == "plane" else result["from_name"]
    result["value"] = result["value"] if kind == "plane" else {"choices": ["gamma"]}
    tasks.write_text(json.dumps(exported))
    tampered = subprocess.run([LABELSTUDIO, CHECK, config, tasks], capture_output=True, text=True, timeout=300)
    assert tampered.returncode == 1 and len(json.loads(tampered.stdout)["errors"]) == 1, tampered.stdout


def test_projects_are_never_overwritten_and_bad_requests_say_why(tmp_path, pictures):
    Project.create(tmp_path / "p", pictures, "classes", ["alpha", "beta"])
    with pytest.raises(TrillaError, match="already a labelling project"):
        Project.create(tmp_path / "p", pictures, "classes", ["alpha", "beta"])
    with pytest.raises(TrillaError, match="two axes"):
        Project.create(tmp_path / "q", pictures, "plane", ["valence"])
    with pytest.raises(TrillaError, match="no pictures or sounds"):
        Project.create(tmp_path / "r", tmp_path / "p", "classes", ["a", "b"])
    bad = trilla("label", "new", tmp_path / "s", "--data", pictures, "--classes", "a,b", "--plane", "x,y", check=False)
    assert bad.returncode == 2 and "exactly one of --classes, --multilabel or --plane" in bad.stderr
    made = trilla("label", "new", tmp_path / "t", "--data", pictures, "--classes", "alpha,beta")
    assert "6 items to label" in made.stdout


def test_the_same_project_on_a_real_postgresql_server(tmp_path, pictures, postgres):
    url = postgres()
    project = Project.create(tmp_path / "team", pictures, "classes", ["alpha", "beta"], db=url)
    assert not (tmp_path / "team" / "labels.db").exists()
    first = int(project.items()["item"].min())
    for annotator, value in (("ann", "alpha"), ("bob", "alpha"), ("cid", "beta")):
        project.answer(first, annotator, value)
    project.undo("cid")
    reopened = Project(tmp_path / "team")  # project.json remembers the database
    assert reopened.engine.dialect.name == "postgresql"
    assert sorted(reopened.standing()["annotator"]) == ["ann", "bob"] and len(reopened.answers()) == 3
    assert "1 of 6 items answered, 2 answers by 2 annotators" in trilla("label", "stats", tmp_path / "team").stdout
