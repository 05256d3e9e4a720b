"""An interrupted run, resumed, ends with exactly the weights of an uninterrupted one with the same seed."""

import json

import lightning as L
import pandas as pd
import pytest
import torch

from trilla import load_config, resume, train
from trilla.checkpoints import load_checkpoint
from trilla.errors import TrillaError
from trilla.runs import Run, checkpoint_state


class Interrupted(BaseException):
    """Stands for Ctrl+C or a kill: not an error of the run, so it ends "interrupted", not "failed"."""

    pass


class StopAfterEpoch(L.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 == self.epoch:
            raise Interrupted


def _weights(run_dir):
    return checkpoint_state(Run(run_dir).checkpoint("last"))


def test_interrupted_run_resumes_to_identical_weights(folder, tmp_path):
    # Default augmentation and dropout both draw random numbers, so this checks RNG continuity too.
    overrides = ["data.image_size=16", "train.epochs=4", "train.early_stopping=null", "train.progress=false"]
    straight = train(load_config(data=folder, overrides=[*overrides, f"run.dir={tmp_path / 'a'}"]))
    with pytest.raises(Interrupted):
        train(load_config(data=folder, overrides=[*overrides, f"run.dir={tmp_path / 'b'}"]), callbacks=[StopAfterEpoch(2)])
    (interrupted,) = list((tmp_path / "b").iterdir())
    assert json.loads((interrupted / "run.json").read_text())["status"] == "interrupted"
    assert len(pd.read_csv(interrupted / "history.csv")) == 2 and not (interrupted / "metrics.json").exists()

    resumed = resume(interrupted)
    assert resumed.path == interrupted and resumed.info["status"] == "finished"
    a, b = _weights(straight.path), _weights(resumed.path)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    history_a, history_b = straight.history, resumed.history
    assert history_b["epoch"].tolist() == [1, 2, 3, 4]
    pd.testing.assert_series_equal(history_a["val/loss"], history_b["val/loss"])
    assert resumed.metrics["test/accuracy"] == straight.metrics["test/accuracy"]
    with pytest.raises(TrillaError, match="already finished"):
        resume(interrupted)


def test_last_checkpoint_is_the_latest_epoch_even_when_it_is_not_the_best(folder, tmp_path):
    # Lightning's save_last copies only epochs that become the best, so a run cut short after its best epoch
    # used to resume from that best one and redo everything since.
    overrides = ["data.image_size=16", "train.epochs=6", "train.monitor=val/accuracy", "train.early_stopping=null", "train.progress=false"]
    with pytest.raises(Interrupted):
        train(load_config(data=folder, overrides=[*overrides, f"run.dir={tmp_path / 'runs'}"]), callbacks=[StopAfterEpoch(6)])
    (run_dir,) = list((tmp_path / "runs").iterdir())
    accuracy = pd.read_csv(run_dir / "history.csv")["val/accuracy"]
    assert accuracy.idxmax() < 4  # epochs 5 and 6 do not beat the best, so the best and the latest differ

    def saved():
        return {name: load_checkpoint(Run(run_dir).checkpoint(name))["epoch"] for name in ("best", "last")}

    assert saved() == {"best": accuracy.idxmax(), "last": 4}  # Lightning counts from 0; epoch 6 ended with the interruption
    started = []

    class FirstEpoch(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            started.append(trainer.current_epoch)

    resumed = resume(run_dir, callbacks=[FirstEpoch()])
    assert started == [5] and resumed.history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert saved() == {"best": accuracy.idxmax(), "last": 5}  # the resumed run kept its best, which epoch 6 did not beat
