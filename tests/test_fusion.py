"""Metadata fused into the head: read from a path level or a CSV column, encoded, used, and asked for at predict."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import make_region_tree
from trilla import load_config, train
from trilla.data.datamodule import load_data
from trilla.errors import TrillaError
from trilla.runs import Run

SMALL = ["model.conv=[{maps: 8}, {maps: 16}]", "model.global_pool=avg", "augment=null", "train.epochs=40",
         "train.progress=false", "train.lr=0.01", "data.label_level=-2", "data.split.test=0.25"]
REGION = "data.metadata={region: {from: path, level: -3}}"


def test_path_level_and_csv_column_metadata_are_encoded(tmp_path):
    tree = make_region_tree(tmp_path / "tree", per_species=3)
    store = f"data.store={tmp_path / 'c'}"
    config = load_config(overrides=[REGION, "data.image_size=16", "data.label_level=-2", store])
    data = load_data(tree, config, progress=False)
    assert data.classes == ["q0-east", "q0-west", "q3-east", "q3-west"]
    assert data.vocab == {"region": ["east", "west"]}
    regions = [data.vocab["region"][c - 1] for c in data.metadata[:, 0]]
    assert regions == [p.split("/")[-3] for p in data.paths]
    rows = [{"file": p, "species": p.split("/")[-2], "site": "" if i == 0 else p.split("/")[-3]} for i, p in enumerate(data.paths)]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    csv_keys = ["data.image_size=16", "data.path_column=file", "data.label_column=species", store]
    column = load_config(overrides=["data.metadata={site: {from: column}}", *csv_keys])
    from_csv = load_data(tmp_path / "m.csv", column, progress=False)
    assert from_csv.metadata[0, 0] == 0, "a missing value is the unknown code"
    assert (from_csv.metadata[1:, 0] == data.metadata[1:, 0]).all()
    with pytest.raises(TrillaError, match="no column 'region'"):
        wrong = load_config(overrides=["data.metadata={region: {from: column}}", *csv_keys])
        load_data(tmp_path / "m.csv", wrong)
    with pytest.raises(TrillaError, match="from: path needs a level"):
        load_config(overrides=["data.metadata={region: {from: path}}"])


def test_fused_region_beats_the_image_alone_and_is_asked_for_at_predict(tmp_path):
    tree = make_region_tree(tmp_path / "tree")
    runs = f"run.dir={tmp_path / 'runs'}"
    fused = train(load_config(data=tree, overrides=[*SMALL, REGION, runs]))
    alone = train(load_config(data=tree, overrides=[*SMALL, runs]))
    assert fused.metrics["test/accuracy"] >= 0.85, fused.metrics
    assert alone.metrics["test/accuracy"] <= 0.75, alone.metrics
    assert fused.metrics["test/accuracy"] >= alone.metrics["test/accuracy"] + 0.3

    picture = tree / "west" / "q3-west" / "000.png"
    cli = [sys.executable, "-m", "trilla", "predict", str(fused.path), str(picture), "--top-k", "1"]
    from_path = json.loads(subprocess.run(cli, capture_output=True, text=True, check=True).stdout)
    assert from_path["predictions"][0]["label"] == "q3-west"
    given = json.loads(subprocess.run([*cli, "--meta", "region=east"], capture_output=True, text=True, check=True).stdout)
    assert given["predictions"][0]["label"] == "q3-east", "an explicit value overrides the path"
    (tmp_path / "meta.csv").write_text(f"file,region\n{picture},east\n")
    table = json.loads(subprocess.run([*cli, "--meta-csv", str(tmp_path / "meta.csv")], capture_output=True, text=True, check=True).stdout)
    assert table["predictions"][0]["label"] == "q3-east"
    unseen = subprocess.run([*cli, "--meta", "region=north"], capture_output=True, text=True)
    assert unseen.returncode == 0 and "never seen in training (north)" in unseen.stderr and "<unknown>" in unseen.stderr
    wrong = subprocess.run([*cli, "--meta", "colour=red"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "metadata fields are ['region']" in wrong.stderr

    evaluated, _ = Run(fused.path).evaluate()
    assert evaluated["test/accuracy"] == pytest.approx(fused.metrics["test/accuracy"])


def test_conus_recipe_runs_on_a_region_species_tree(tmp_path):
    from pathlib import Path

    recipe = Path(__file__).parents[1] / "examples" / "conus.yaml"
    config = load_config(recipe)
    assert (config.model.backbone, config.model.head, config.model.freeze) == ("legacy_xception", [1024], "backbone")
    assert (config.data.image_size, config.train.batch_size, config.train.epochs) == (224, 16, 50)
    assert (config.data.split.val, config.data.split.test, config.data.label_level) == (0.1, 0.0, -2)
    assert config.augment.rotate == 45 and config.augment.vflip == 0.5 and config.augment.noise == 0.2
    assert "head: [1024, 600]" in recipe.read_text()
    tree = make_region_tree(tmp_path / "conus", per_species=10, size=32)
    run = train(load_config(recipe, data=tree, overrides=[
        "model.backbone=test_resnet", "model.pretrained=false", "data.image_size=32", "train.epochs=1",
        "train.progress=false", f"run.dir={tmp_path / 'runs'}",
    ]))
    assert run.classes == ["q0-east", "q0-west", "q3-east", "q3-west"]
    assert run.metrics["val/samples"] == 4 and "test/accuracy" not in run.metrics
    assert "val/top_2" in run.metrics and (run.path / "val" / "worst.png").is_file()
