import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_image_folder
from trilla.config import load_config
from trilla.data import store
from trilla.data.datamodule import load_data
from trilla.data.sources import read_source
from trilla.data.splits import class_counts, split_indices
from trilla.errors import TrillaError
from trilla.kinds.image.kind import ImageCodec


def test_folder_tree_labels_and_problems(tmp_path):
    root = make_image_folder(tmp_path / "d", {"cat": 3, "dog": 2})
    (root / "empty").mkdir()
    (root / "loose.png").write_bytes((root / "cat" / "cat_000.png").read_bytes())
    (root / "dog" / ".DS_Store").write_text("finder noise")
    (root / "README.md").write_text("where these came from")  # notes beside the classes are no data, and no problem
    (root / "provenance.csv").write_text("path,label\n")
    listing = read_source(root)
    assert sorted({s.label for s in listing.samples}) == ["cat", "dog"]
    assert len(listing.samples) == 5
    reasons = {p.path.split("/")[-1]: p.reason for p in listing.problems}
    assert "empty" in reasons["empty"] and "not inside a class folder" in reasons["loose.png"]
    assert set(reasons) == {"empty", "loose.png"}


def test_csv_manifest_resolves_relative_paths(tmp_path):
    make_image_folder(tmp_path / "d", {"a": 2, "b": 2})
    manifest = tmp_path / "d" / "list.csv"
    manifest.write_text("path,label,extra\na/a_000.png,x,1\nb/b_001.png,y,2\nmissing.png,x,3\n,y,4\n")
    listing = read_source(manifest)
    assert [(s.path.name, s.label) for s in listing.samples] == [("a_000.png", "x"), ("b_001.png", "y")]
    assert all(s.path.is_file() for s in listing.samples)
    assert len(listing.problems) == 2
    with pytest.raises(TrillaError, match="no column 'file'"):
        read_source(manifest, path_column="file")
    with pytest.raises(TrillaError, match="does not exist"):
        read_source(tmp_path / "nope")


def _load(path, cache):
    config = load_config(overrides=["data.image_size=16", f"data.store={cache}"])
    return load_data(path, config, progress=False)


def test_store_is_reused_until_files_or_preprocessing_change(tmp_path):
    root = make_image_folder(tmp_path / "d", {"a": 5, "b": 5})
    paths = sorted(root.rglob("*.png"))
    cache = tmp_path / "cache"
    first = store.open_or_build(paths, ImageCodec(16), cache_dir=cache, progress=False)
    assert not first.reused and first.array.shape == (10, 16, 16, 3)
    again = store.open_or_build(paths, ImageCodec(16), cache_dir=cache, progress=False)
    assert again.reused and again.root == first.root
    np.testing.assert_array_equal(np.asarray(again.array), np.asarray(first.array))
    assert store.open_or_build(paths, ImageCodec(20), cache_dir=cache, progress=False).root != first.root
    Image.new("RGB", (30, 30), (255, 255, 255)).save(paths[0])
    os.utime(paths[0], ns=(1, 1))
    rebuilt = store.open_or_build(paths, ImageCodec(16), cache_dir=cache, progress=False)
    assert not rebuilt.reused and rebuilt.root != first.root
    assert np.asarray(rebuilt.array[0]).min() == 255


def test_store_packs_in_parallel_and_matches_decoding(tmp_path):
    root = make_image_folder(tmp_path / "d", {"a": 100, "b": 100}, size=20)
    paths = sorted(root.rglob("*.png"))
    packed = store.open_or_build(paths, ImageCodec(12), cache_dir=tmp_path / "c", progress=False)
    from trilla.kinds.image import decode as images

    for i in (0, 77, 199):
        np.testing.assert_array_equal(np.asarray(packed.array[i]), images.decode(Path(paths[i]).read_bytes(), 12, "rgb"))


def test_grey_kept_and_long_side_padded(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("L", (40, 20), 200).save(tmp_path / "a" / "wide.png")
    data = _load(tmp_path, tmp_path / "c")
    image = data.inputs(np.array([0]))["image"][0]
    assert image.shape == (16, 16, 1)
    assert image[8, :, 0].min() > 150  # the middle rows hold the picture, resized to the full width
    assert image[0, :, 0].max() == 0 and image[-1, :, 0].max() == 0  # padded above and below


def test_corrupt_files_skipped_and_reported(tmp_path):
    root = make_image_folder(tmp_path / "d", {"a": 4, "b": 4})
    good = (root / "a" / "a_000.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "b" / "notes.txt").write_text("not a picture")
    (root / "b" / "empty.jpg").write_bytes(b"")
    data = _load(root, tmp_path / "c")
    assert len(data.targets) == 8
    reasons = {p.path.split("/")[-1]: p.reason for p in data.problems}
    assert set(reasons) == {"truncated.png", "notes.txt", "empty.jpg"}
    assert "not an image" in reasons["notes.txt"]


def test_labels_outside_run_classes_are_left_out(tmp_path):
    root = make_image_folder(tmp_path / "d", {"a": 2, "b": 2, "c": 2})
    config = load_config(overrides=["data.image_size=8", "data.channels=rgb", f"data.store={tmp_path / 'c'}"])
    data = load_data(root, config, classes=["b", "a"], progress=False)
    assert data.classes == ["b", "a"] and sorted(data.targets.tolist()) == [0, 0, 1, 1]
    assert sum("not a class of this run" in p.reason for p in data.problems) == 2


def test_stratified_split_covers_everything_once_and_keeps_proportions():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    parts = split_indices(labels, val=0.15, test=0.15, seed=0, stratify=True)
    joined = np.concatenate(list(parts.values()))
    assert sorted(joined.tolist()) == list(range(1000))
    assert len(parts["val"]) == 150 and len(parts["test"]) == 150
    for name in ("train", "val", "test"):
        shares = np.bincount(labels[parts[name]]) / len(parts[name])
        np.testing.assert_allclose(shares, [0.6, 0.3, 0.1], atol=0.01)
    again = split_indices(labels, val=0.15, test=0.15, seed=0, stratify=True)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    other = split_indices(labels, val=0.15, test=0.15, seed=1, stratify=True)
    assert not np.array_equal(parts["test"], other["test"])
    table = class_counts(["x", "y", "z"], {k: labels[v] for k, v in parts.items()})
    assert table.loc["z", "total"] == 100 and list(table.columns) == ["train", "val", "test", "total"]


def test_split_falls_back_when_a_class_is_too_small():
    labels = np.array([0] * 20 + [1])
    parts = split_indices(labels, val=0.2, test=0.2, seed=0, stratify=True)
    assert sum(len(v) for v in parts.values()) == 21


def test_too_few_images_for_the_splits_is_a_clear_error(tmp_path):
    from trilla.config import load_config
    from trilla.data.datamodule import StoreDataModule

    data = make_image_folder(tmp_path / "d", {"a": 1, "b": 1})
    with pytest.raises(TrillaError, match="too few to split|split empty"):
        StoreDataModule(load_config(data=data, overrides=["data.split.val=0.1"]), progress=False).prepare()


def test_classes_too_small_for_every_split_train_only_and_are_named(caplog):
    labels = np.array([0] * 30 + [1] * 30 + [2] * 2 + [3])
    with caplog.at_level("WARNING", logger="trilla"):
        parts = split_indices(labels, val=0.2, test=0.2, seed=0, stratify=True, names=["big", "large", "pair", "single"])
    assert "2 classes have too few files for every split and stay in training only: pair (2), single (1)" in caplog.text
    assert set(labels[parts["train"]].tolist()) == {0, 1, 2, 3}
    assert not {2, 3} & (set(labels[parts["val"]].tolist()) | set(labels[parts["test"]].tolist()))
    assert sorted(np.concatenate(list(parts.values()))) == list(range(len(labels)))
    tiny = np.repeat(np.arange(10), 3)  # every class tiny: split at random, but every class still trains
    parts = split_indices(tiny, val=0.15, test=0.15, seed=0, stratify=True)
    assert set(tiny[parts["train"]].tolist()) == set(range(10)) and len(parts["val"]) and len(parts["test"])


def test_many_classes_get_a_readable_confusion_matrix_and_the_report_names_the_missing_ones(tmp_path, capfd, caplog):
    from PIL import Image

    from trilla import train
    from trilla.config import load_config

    root = tmp_path / "species"
    rng = np.random.default_rng(0)
    for c in range(34):
        (root / f"sp{c:02d}").mkdir(parents=True)
        for i in range(2 if c >= 30 else 5):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / f"sp{c:02d}" / f"{i}.png")
    with caplog.at_level("INFO", logger="trilla"):
        run = train(load_config(data=root, overrides=["data.image_size=16", "train.epochs=1", "train.progress=false",
                                                      f"run.dir={tmp_path / 'runs'}", "data.split.val=0.2", "data.split.test=0.2"]))
    console = capfd.readouterr().err + caplog.text
    for noise in ("GPU available", "litlogger", "y_pred contains classes not in y_true"):  # Lightning's banners, sklearn's warning
        assert noise not in console, noise
    assert "34 classes (all in counts.csv):" in console and "classes have no samples; balanced accuracy is the mean recall" in console
    assert (run.path / "confusion_matrix.png").is_file() and (run.path / "confusion_matrix_top.png").is_file()
    report = run.report.read_text()
    assert "the classes of the most frequent confusions" in report
    assert "- classes missing from validation (4, too few files to split): sp30, sp31, sp32, sp33" in report
    assert "34 classes, 2 to 5 files each (all in counts.csv)" not in report  # 34 rows still fit the table


def test_the_most_confused_classes_are_those_of_the_largest_errors():
    from trilla.evaluation.plots import most_confused_classes

    matrix = np.diag(np.full(40, 10))
    matrix[3, 17], matrix[17, 3], matrix[8, 30], matrix[39, 0] = 9, 4, 6, 2
    assert most_confused_classes(matrix, 4) == [3, 8, 17, 30]
    assert most_confused_classes(matrix, 30) == [0, 3, 8, 17, 30, 39]
