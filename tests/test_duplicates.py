"""No leak between splits: the same content counts once and never lands in two splits, and neither
does a group a manifest names (data.split.group_column)."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import make_image_folder, trilla
from trilla.config import load_config
from trilla.data.datamodule import StoreDataModule
from trilla.errors import TrillaError

FAST = ["data.image_size=8", "data.channels=rgb", "train.progress=false"]


def prepared(data, tmp_path, *extra):
    module = StoreDataModule(load_config(None, [*FAST, f"data.store={tmp_path / 'stores'}", *extra], data), progress=False)
    module.prepare()
    return module


def split_of(module) -> dict[str, set[str]]:
    return {name: {module.data.digests()[p] for p in positions} for name, positions in module.splits.items()}


def test_rows_listed_three_times_count_once_and_stay_in_one_split(tmp_path):
    root = make_image_folder(tmp_path / "photos", {"a": 12, "b": 12})
    rows = [{"path": str(p.relative_to(root)), "label": p.parent.name} for p in sorted(root.rglob("*.png"))]
    pd.DataFrame(rows * 3).to_csv(root / "labels.csv", index=False)
    module = prepared(root / "labels.csv", tmp_path, "data.split.test=0.25", "data.split.val=0.25")
    assert len(module.data.targets) == 24 and len(module.data.merged) == 48
    contents = split_of(module)
    assert not (contents["train"] & contents["test"]) and not (contents["train"] & contents["val"]) and not (contents["val"] & contents["test"])
    assert sum(len(c) for c in contents.values()) == 24


def test_identical_files_under_other_paths_merge_and_conflicting_labels_are_left_out(tmp_path):
    root = make_image_folder(tmp_path / "photos", {"a": 10, "b": 10})
    (root / "a" / "copy_of_a_001.png").write_bytes((root / "a" / "a_001.png").read_bytes())  # same product in two categories
    (root / "b" / "really_a.png").write_bytes((root / "a" / "a_002.png").read_bytes())  # the same picture under two labels
    module = prepared(root, tmp_path)
    assert module.data.merged.to_dict("records") == [{"path": str(root / "a" / "copy_of_a_001.png"), "kept": str(root / "a" / "a_001.png")}]
    assert len(module.data.targets) == 19  # 22 files: one copy merged, both files of the conflict left out
    left_out = {p.path: p.reason for p in module.data.problems}
    assert set(left_out) == {str(root / "a" / "a_002.png"), str(root / "b" / "really_a.png")}
    assert "filed under a, b; left out" in left_out[str(root / "b" / "really_a.png")]
    assert sorted(module.data.conflicts["label"]) == ["a", "b"]

    kept = prepared(root, tmp_path, "data.keep_conflicts=true")  # opting in: both kept, in one split together
    assert len(kept.data.targets) == 21
    digest = kept.data.digests()[kept.data.paths.index(str(root / "b" / "really_a.png"))]
    holding = [name for name, contents in split_of(kept).items() if digest in contents]
    assert len(holding) == 1
    assert sum(digest == d for d in kept.data.digests()[kept.splits[holding[0]]]) == 2


def test_a_training_file_identical_to_a_test_file_is_left_out(tmp_path):
    train_root = make_image_folder(tmp_path / "train", {"a": 10, "b": 10})
    test_root = make_image_folder(tmp_path / "test", {"a": 4, "b": 4}, seed=1)
    (train_root / "b" / "leaked.png").write_bytes((test_root / "b" / "b_000.png").read_bytes())
    module = prepared(train_root, tmp_path, f"data.test_path={test_root}")
    trained = {module.data.paths[p] for name in ("train", "val") for p in module.splits[name]}
    assert str(train_root / "b" / "leaked.png") not in trained and len(trained) == 20
    assert any("identical to the test file" in p.reason for p in module.data.problems)


def test_the_report_says_how_many_duplicates_were_merged_and_which_column_groups_the_splits(tmp_path):
    root = make_image_folder(tmp_path / "photos", {"a": 12, "b": 12}, size=16)
    rows = [{"path": str(p.relative_to(root)), "label": p.parent.name, "session": f"{p.parent.name}{i % 4}"}
            for i, p in enumerate(sorted(root.rglob("*.png")))]
    pd.DataFrame(rows * 3).to_csv(root / "labels.csv", index=False)
    result = trilla("train", "--data", root / "labels.csv", "--set", f"run.dir={tmp_path / 'runs'}", "--set", "train.epochs=1",
                    *[part for item in FAST for part in ("--set", item)], "--set", "data.image_size=16", "--set", "data.split.group_column=session")
    run = result.stdout.strip().splitlines()[-1]
    splits = pd.read_csv(f"{run}/splits.csv")
    assert len(splits) == 24 and splits["path"].is_unique
    session = {str(root / r["path"]): r["session"] for r in rows}
    assert splits.groupby(splits["path"].map(session))["split"].nunique().max() == 1
    report = open(f"{run}/report.md").read()
    assert "duplicates merged: 48" in report and "files sharing a `session` value are in one split" in report


def test_files_sharing_a_group_column_value_land_in_one_split_and_other_sets_need_no_such_column(tmp_path):
    root = make_image_folder(tmp_path / "photos", {"a": 24, "b": 24})
    rows = [{"path": str(p.relative_to(root)), "label": p.parent.name, "speaker": f"{p.parent.name}{i % 8}"}
            for i, p in enumerate(sorted(root.rglob("*.png")))]
    rows[0]["speaker"] = ""  # no value: a group of its own
    (root / "b" / "really_a.png").write_bytes((root / "a" / "a_005.png").read_bytes())  # kept conflict: follows a_005's speaker
    rows.append({"path": "b/really_a.png", "label": "b", "speaker": "b3"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    test_root = make_image_folder(tmp_path / "test", {"a": 3, "b": 3}, seed=1)  # a folder: it has no speaker column
    module = prepared(root / "labels.csv", tmp_path, "data.split.group_column=speaker", "data.split.val=0.25", f"data.test_path={test_root}",
                      "data.keep_conflicts=true")
    speaker = {str(root / r["path"]): r["speaker"] for r in rows}
    speaker[str(root / "b" / "really_a.png")] = speaker[str(root / "a" / "a_005.png")]
    where = {}
    for name, positions in module.splits.items():
        for p in positions:
            where.setdefault(speaker[module.data.paths[p]], set()).add(name)
    assert all(len(splits) == 1 for splits in where.values()), where
    val_speakers = {s for s, splits in where.items() if splits == {"val"}}
    assert {s[0] for s in val_speakers if s} == {"a", "b"}  # stratified over the groups: each class has a speaker in validation
    assert len(module.splits["val"]) == 3 * len(val_speakers - {""}) + ("" in val_speakers) + (speaker[str(root / "a" / "a_005.png")] in val_speakers)
    assert len(module.test_data.targets) == 6

    ungrouped = prepared(root / "labels.csv", tmp_path, "data.split.val=0.25")
    mixed = {speaker[ungrouped.data.paths[p]] for p in ungrouped.splits["val"]} & {speaker[ungrouped.data.paths[p]] for p in ungrouped.splits["train"]}
    assert mixed  # without it, a speaker is in both: what the option is for

    with pytest.raises(TrillaError, match="no column 'session'"):
        prepared(root / "labels.csv", tmp_path, "data.split.group_column=session")
    with pytest.raises(TrillaError, match=r"data.split.group_column\) need a CSV manifest"):
        prepared(root, tmp_path, "data.split.group_column=speaker")
