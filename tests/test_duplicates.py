"""No leak between splits: the same content counts once and never lands in two splits."""

from __future__ import annotations

import pandas as pd

from conftest import make_image_folder, trilla
from trilla.config import load_config
from trilla.data.datamodule import StoreDataModule

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


def test_the_report_says_how_many_duplicates_were_merged(tmp_path):
    root = make_image_folder(tmp_path / "photos", {"a": 12, "b": 12}, size=16)
    rows = [{"path": str(p.relative_to(root)), "label": p.parent.name} for p in sorted(root.rglob("*.png"))]
    pd.DataFrame(rows * 3).to_csv(root / "labels.csv", index=False)
    result = trilla("train", "--data", root / "labels.csv", "--set", f"run.dir={tmp_path / 'runs'}", "--set", "train.epochs=1",
                    *[part for item in FAST for part in ("--set", item)], "--set", "data.image_size=16")
    run = result.stdout.strip().splitlines()[-1]
    splits = pd.read_csv(f"{run}/splits.csv")
    assert len(splits) == 24 and splits["path"].is_unique
    assert "duplicates merged: 48" in open(f"{run}/report.md").read()
