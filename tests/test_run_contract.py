"""The run directory has one owner (runs.py): atomic writes, statuses, safe loading, release checks."""

import json
import os
from pathlib import Path

import lightning as L
import pytest
import torch

import trilla
from conftest import make_image_folder
from trilla import load_config, train
from trilla.atomic import write_json, write_text
from trilla.checkpoints import load_checkpoint
from trilla.errors import TrillaError
from trilla.runs import Run

FAST = ["train.progress=false", "train.epochs=1", "data.image_size=16"]


class _Planted:
    """Unpickling this runs a command that leaves a file behind: the proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    folder = make_image_folder(root / "images", {"a": 10, "b": 10})
    return train(load_config(data=folder, overrides=[*FAST, f"run.dir={root / 'runs'}"]))


def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(run, tmp_path):
    marker = tmp_path / "ran"
    checkpoint = torch.load(run.checkpoint("best"), map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["planted"] = _Planted(marker)
    crafted = tmp_path / "crafted"
    crafted.mkdir()
    for name in ("config.yaml", "classes.json", "run.json"):
        (crafted / name).write_bytes((run.path / name).read_bytes())
    (crafted / "checkpoints").mkdir()
    torch.save(checkpoint, crafted / "checkpoints" / "best.ckpt")
    with pytest.raises(TrillaError, match="refused to load .*best.ckpt.*could run code"):
        Run(crafted).predict([sorted(run.config.data.path.rglob("*.png"))[0]])
    with pytest.raises(TrillaError, match="refused to load"):
        load_checkpoint(crafted / "checkpoints" / "best.ckpt")
    with pytest.raises(TrillaError, match="refused to load"):
        train(load_config(data=run.config.data.path, overrides=[
            *FAST, f"run.dir={tmp_path / 'runs'}", "model={name: timm, backbone: test_resnet, head: [8]}",
            f"model.pretrained={crafted / 'checkpoints' / 'best.ckpt'}",
        ]))
    assert not marker.exists(), "the planted command ran"
    assert run.predictor().predict([sorted(run.config.data.path.rglob("*.png"))[0]])[0]["predictions"], "trilla's own checkpoints load"


def test_yaml_is_read_with_the_safe_loader(run, tmp_path):
    marker = tmp_path / "ran"
    payload = f"data: !!python/object/apply:os.system ['touch {marker}']\n"
    (tmp_path / "evil.yaml").write_text(payload)
    with pytest.raises(TrillaError, match="not valid YAML"):
        load_config(tmp_path / "evil.yaml")
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.yaml").write_text(payload)
    with pytest.raises(TrillaError, match="not valid YAML"):
        _ = Run(copy).config
    assert not marker.exists()


def test_a_run_from_a_newer_release_is_refused_by_name(run, tmp_path):
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "config.yaml").write_bytes((run.path / "config.yaml").read_bytes())
    info = {**run.info, "format": 99, "versions": {**run.info["versions"], "trilla": "9.0.0"}}
    (newer / "run.json").write_text(json.dumps(info))
    with pytest.raises(TrillaError, match="written by trilla 9.0.0.*open it with trilla 9.0.0 or later"):
        Run(newer)
    assert Run(run.path).info["format"] == 1


def test_statuses_say_finished_failed_and_running(run, tmp_path):
    assert run.status == "finished" and "pid" not in run.info

    class Broken(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            raise ValueError("the disk is on fire")

    with pytest.raises(ValueError):
        train(load_config(data=run.config.data.path, overrides=[*FAST, f"run.dir={tmp_path / 'runs'}"]), callbacks=[Broken()])
    (failed,) = (tmp_path / "runs").iterdir()
    info = Run(failed).info
    assert info["status"] == "failed" and info["error"] == "ValueError: the disk is on fire"
    Run(failed).set_status("running")
    assert Run(failed).info["pid"] == os.getpid()
    with pytest.raises(ValueError, match="unknown run status"):
        Run(failed).set_status("done")


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"a": 1})

    class Unserializable:
        pass

    with pytest.raises(TypeError):
        write_json(target, {"a": Unserializable()})
    assert json.loads(target.read_text()) == {"a": 1}, "a failed write leaves the old file whole"
    write_text(target, "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_only_runs_py_opens_a_runs_files():
    """The modules that read a run do so through runs.Run; models never open a run's files."""
    root = Path(trilla.__file__).parent
    forbidden = {
        "evaluation/report.py": ("json.loads", "yaml.safe_load", "pd.read_csv", "read_text"),
        "evaluation/review.py": ("run.path /", "torch.load", "json.loads"),
        "training/sweep.py": ("last.ckpt", "json.loads", "run.path /"),
        "models/backbones.py": ("torch.load", "best.ckpt", '/ "checkpoints"'),
        "data/dataset.py": ("run.info", "run.config", "run.json"),
    }
    for name, needles in forbidden.items():
        text = (root / name).read_text()
        assert [n for n in needles if n in text] == [], name
