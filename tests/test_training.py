"""Training options: optimizers, schedules, imbalance handling, augmentation, samplers."""

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_image_folder
from trilla import load_config, train
from trilla.config import AugmentConfig, TrainConfig
from trilla.data.datamodule import EpochSampler, StoreDataModule
from trilla.errors import TrillaError
from trilla.kinds.image import decode as images
from trilla.kinds.image.augment import build_augment
from trilla.training.train import planned_epochs


@pytest.mark.parametrize(
    "optimizer,schedule,imbalance,monitor",
    [
        ("sgd", "constant", "none", "val/loss"),
        ("adam", "cosine", "class_weights", "val/accuracy"),
        ("adamw", "onecycle", "balanced_sampler", "val/balanced_accuracy"),
        ("rmsprop", "constant", "none", "val/loss"),
    ],
)
def test_each_optimizer_schedule_and_imbalance_trains(tmp_path, optimizer, schedule, imbalance, monitor):
    data = make_image_folder(tmp_path / "d", {"many": 48, "few": 12})
    run = train(load_config(data=data, overrides=[
        "data.image_size=16", "train.epochs=3", "train.progress=false", f"run.dir={tmp_path / 'runs'}", "train.lr=0.01",
        f"train.optimizer={optimizer}", f"train.schedule={schedule}", f"train.imbalance={imbalance}", f"train.monitor={monitor}",
    ]))
    lr = run.history["lr"].to_numpy()
    if schedule == "constant":
        assert np.allclose(lr, 0.01)
    elif schedule == "cosine":
        assert lr[0] > lr[1] > lr[2]
    else:
        assert lr[-1] < 0.2 * lr.max()  # warms up, then anneals far below its peak
    checkpoint = torch.load(run.checkpoint("best"), map_location="cpu", weights_only=True)
    assert type(checkpoint["optimizer_states"][0]["param_groups"][0]["lr"]) is float
    assert checkpoint["hyper_parameters"]["train"]["optimizer"] == optimizer
    if imbalance == "class_weights":
        few, many = checkpoint["hyper_parameters"]["class_weights"]  # classes sorted: few, many
        assert few == pytest.approx(4 * many, rel=0.15)


def test_balanced_sampler_draws_classes_evenly_and_reproducibly():
    targets = np.array([0] * 90 + [1] * 10)
    weights = np.bincount(targets)[targets] ** -1.0
    sampler = EpochSampler(len(targets), seed=0, weights=weights)
    drawn = targets[list(sampler)]
    assert 0.35 < drawn.mean() < 0.65
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    plain = EpochSampler(100, seed=3)
    assert sorted(plain) == list(range(100))


def test_augmentation_only_in_training_and_keeps_shape(folder):
    config = load_config(data=folder, overrides=["data.image_size=24"])
    datamodule = StoreDataModule(config, progress=False)
    datamodule.prepare()
    train_set = datamodule.train_dataloader().dataset
    val_set = datamodule.val_dataloader().dataset
    assert train_set.transform is not None and val_set.transform is None
    torch.manual_seed(0)
    augmented = train_set.__getitems__(list(range(8)))["image"]
    raw = torch.from_numpy(datamodule.data.inputs(train_set.positions[:8])["image"]).permute(0, 3, 1, 2)
    assert augmented.shape == raw.shape and augmented.dtype == torch.uint8
    assert not torch.equal(augmented, raw)
    off = load_config(data=folder, overrides=["augment=null"])
    assert off.augment is None and build_augment(off.augment, 24) is None
    assert build_augment(AugmentConfig(rotate=0, zoom=0, shift=0), 24) is None


def test_every_augmentation_runs_on_grey_and_colour():
    transform = build_augment(AugmentConfig(hflip=1, vflip=1, rotate=30, rotate_p=1, zoom=0.2, shift=0.1, noise=0.2, color=0.3, elastic=1), 32)
    for channels in (1, 3):
        image = torch.randint(0, 256, (channels, 32, 32), dtype=torch.uint8)
        out = transform(image)
        assert out.shape == image.shape and out.dtype == torch.uint8 and not torch.equal(out, image)


def test_auto_size_follows_the_pictures():
    assert images.auto_size([20] * 9 + [300]) == 32
    assert images.auto_size([8]) == 32 and images.auto_size([40]) == 48 and images.auto_size([150, 150]) == 64
    assert images.auto_size([]) == 64


def test_auto_size_resolved_in_the_run(tmp_path):
    data = make_image_folder(tmp_path / "d", {"a": 20, "b": 20}, size=40)
    run = train(load_config(data=data, overrides=["train.epochs=1", "train.progress=false", f"run.dir={tmp_path / 'r'}"]))
    assert run.info["data"]["image_size"] == 48 and run.config.data.image_size == "auto"
    assert run.predictor().spec["size"] == 48


def test_early_stopping_stops_when_validation_stalls(tmp_path):
    rng = np.random.default_rng(0)
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "noise" / label).mkdir(parents=True)
        for i in range(30):
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(tmp_path / "noise" / label / f"{i}.png")
    run = train(load_config(data=tmp_path / "noise", overrides=[
        "data.image_size=16", "train.epochs=25", "train.early_stopping=2", "train.progress=false", "train.lr=0.05",
        "train.schedule=constant", "train.ema=null", f"run.dir={tmp_path / 'runs'}",
    ]))
    assert run.metrics["stopped_early"] and run.metrics["epochs"] < 25
    assert run.metrics["epochs"] - run.metrics["best_epoch"] == 2


def test_min_steps_raises_the_epochs_to_that_many_updates(tmp_path, caplog):
    data = make_image_folder(tmp_path / "d", {"a": 30, "b": 30})
    overrides = ["data.image_size=16", "train.epochs=2", "train.batch_size=8", "train.min_steps=20", "train.progress=false", f"run.dir={tmp_path / 'r'}"]
    with caplog.at_level("INFO", logger="trilla"):
        run = train(load_config(data=data, overrides=overrides))
    training = int(pd.read_csv(run.path / "counts.csv", index_col=0)["train"].sum())
    per_epoch = -(-training // 8)
    assert run.config.train.epochs == -(-20 // per_epoch) > 2  # the resolved config says what ran
    assert f"train.min_steps 20: {run.config.train.epochs} epochs of {per_epoch} batch(es) instead of 2 (for a quick trial set train.epochs" in caplog.text
    assert len(run.history) == run.config.train.epochs
    assert torch.load(run.checkpoint("last"), map_location="cpu", weights_only=True)["global_step"] == run.config.train.epochs * per_epoch
    lr = run.history["lr"].to_numpy()
    assert lr[-1] < 0.2 * lr.max()  # one-cycle planned over all of them
    assert f"up to {run.config.train.epochs} epochs (planned for at least 20 optimizer steps)" in (run.path / "report.md").read_text()
    assert planned_epochs(TrainConfig(epochs=40, batch_size=8, min_steps=20), training) == 40  # enough steps already
    again = load_config(run.path / "config.yaml", ["train.epochs=3"])  # a later word on epochs is taken as given
    assert (again.train.epochs, again.train.min_steps) == (3, None)
    kept = load_config(run.path / "config.yaml", ["train.epochs=3", "train.min_steps=20"])
    assert (kept.train.epochs, kept.train.min_steps) == (3, 20)
    assert load_config(run.path / "config.yaml").train.min_steps == 20
    assert planned_epochs(TrainConfig(epochs=3), training) == 3
    with pytest.raises(TrillaError, match="min_steps 10000000 needs .* epochs"):
        train(load_config(data=data, overrides=[*overrides, "train.min_steps=10000000"]))


@pytest.mark.parametrize("ema", [0.9, None])
def test_ema_weights_are_what_checkpoints_hold(folder, tmp_path, ema):
    run = train(load_config(data=folder, overrides=[
        "data.image_size=16", "train.epochs=2", "train.progress=false", f"run.dir={tmp_path / 'runs'}", f"train.ema={ema if ema else 'null'}",
    ]))
    checkpoint = torch.load(run.checkpoint("last"), map_location="cpu", weights_only=True)
    if ema is None:
        assert "current_model_state" not in checkpoint
        return
    averaged, current = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert averaged.keys() == current.keys()
    assert any(not torch.equal(averaged[k], current[k]) for k in averaged if averaged[k].is_floating_point())
    predictor_weights = run.predictor().task.state_dict()
    best = torch.load(run.checkpoint("best"), map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(predictor_weights[k], best[k]) for k in best)


def test_the_progress_bar_counts_epochs_as_the_report_does():
    from types import SimpleNamespace

    from trilla.training.callbacks import EpochBar

    bar = EpochBar()
    bar._trainer = SimpleNamespace(max_epochs=60)
    assert bar._get_train_description(0).strip() == "Epoch 1/60"
    assert bar._get_train_description(59).strip() == "Epoch 60/60"
    bar._trainer = SimpleNamespace(max_epochs=175, current_epoch=5)  # a resumed fit: its own epochs time the rest
    bar.on_train_start(bar._trainer, None)
    bar._began = (bar._began[0] - 300, 5)  # two epochs of 150 s done since it started
    assert bar._get_train_description(7).strip() == "Epoch 8/175, about 7 h 00 min left"  # 168 epochs left
    assert bar._get_train_description(125).strip() == "Epoch 126/175, about 2 min left"  # 2.5 s an epoch, 50 left
    assert bar._get_train_description(174).strip() == "Epoch 175/175, about a minute or less left"
    assert bar._get_train_description(5).strip() == "Epoch 6/175"  # nothing timed yet
