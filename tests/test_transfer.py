"""timm backbones: weights from a file or a trilla run, offline errors, freezing, the feature cache, transfer."""

from __future__ import annotations

import huggingface_hub
import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from trilla import load_config, train
from trilla.datasets import write_sklearn_digits
from trilla.errors import TrillaError
from trilla.models import InputSpec, build, params_class

TINY = ["model.name=timm", "model.backbone=test_resnet", "data.image_size=32", "train.progress=false", "model.head=[32]"]


def _params(**kw):
    return params_class("timm").model_validate({"name": "timm", "backbone": "test_resnet", **kw})


def test_weights_file_is_loaded_through_timm(tmp_path):
    source = timm.create_model("test_resnet", num_classes=7)
    file = tmp_path / "weights.safetensors"
    save_file(source.state_dict(), file)
    net = build(_params(pretrained=file), InputSpec(3, 32), 4)
    for name, tensor in net.backbone.state_dict().items():
        assert torch.equal(tensor, source.state_dict()[name]), name
    grey = build(_params(pretrained=file), InputSpec(1, 32), 4)  # timm adapts the input conv to one channel
    assert grey.backbone.conv1[0].weight.shape[1] == 1


def test_unreachable_pretrained_weights_explain_the_offline_fix(tmp_path, monkeypatch):
    # huggingface_hub reads HF_HUB_OFFLINE and HF_HOME once, when imported (timm imports it): set what it read,
    # or the hub is tried over the network until it times out
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(TrillaError, match="Offline.*model.pretrained"):
        build(_params(pretrained=True), InputSpec(3, 32), 4)
    with pytest.raises(TrillaError, match="does not exist"):
        build(_params(pretrained=tmp_path / "missing.pth"), InputSpec(3, 32), 4)
    with pytest.raises(TrillaError, match="timm has no model 'test_resnett'; did you mean test_resnet"):
        load_config(overrides=["model.name=timm", "model.backbone=test_resnett"])


def test_freeze_modes_and_normalization():
    frozen = build(_params(pretrained=False), InputSpec(3, 32), 4).train()
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
    assert all(p.requires_grad for p in frozen.head.parameters())
    assert not frozen.backbone.conv1[1].training, "frozen batch norm must keep its statistics"
    gradual = build(_params(pretrained=False, freeze="gradual", unfreeze_at=2, unfreeze_every=1), InputSpec(3, 32), 4)
    trainable = []
    for epoch in range(6):
        gradual.thaw(epoch)
        trainable.append(sum(any(p.requires_grad for p in group) for group in gradual._groups))
    assert trainable == [0, 0, 1, 2, 3, 4], trainable
    assert any(p.requires_grad for p in gradual._groups[-1]) and not any(p.requires_grad for p in gradual._groups[0])
    config = load_config(overrides=["model.name=timm", "model.backbone=legacy_xception"])
    assert config.model.normalization({"channels": 3}) == ([0.5] * 3, [0.5] * 3)
    assert config.model.normalization({"channels": 1}) == ([0.5], [0.5])


def test_feature_cache_trains_like_the_frozen_backbone(tmp_path, folder):
    common = [*TINY, f"run.dir={tmp_path / 'runs'}", "augment=null", "train.epochs=4", "model.pretrained=false"]
    cached = train(load_config(data=folder, overrides=common))
    assert cached.info["feature_cache"].endswith(".npy")
    through = train(load_config(data=folder, overrides=[*common, "train.feature_cache=false"]))
    assert "feature_cache" not in through.info
    a, b = cached.history, through.history
    np.testing.assert_allclose(a["val/loss"], b["val/loss"], rtol=1e-4)
    np.testing.assert_allclose(a["train/loss"], b["train/loss"], rtol=1e-4)
    again = train(load_config(data=folder, overrides=common))
    assert again.info["feature_cache"] == cached.info["feature_cache"]  # same backbone weights: reused
    augmented = train(load_config(data=folder, overrides=[*TINY, f"run.dir={tmp_path / 'runs'}", "train.epochs=1", "model.pretrained=false"]))
    assert "feature_cache" not in augmented.info, "augmentation changes the pixels every epoch: nothing to cache"


def test_pretrained_backbone_transfers_to_a_small_dataset(tmp_path):
    """Digits 0-4 teach strokes; with 8 images per digit, 5-9 are learnt far better from those weights."""
    write_sklearn_digits(tmp_path / "a", classes=range(5))
    write_sklearn_digits(tmp_path / "b", classes=range(5, 10), per_class=slice(0, 8))
    write_sklearn_digits(tmp_path / "b_test", classes=range(5, 10), per_class=slice(8, None))
    common = [*TINY, f"run.dir={tmp_path / 'runs'}", "model.head=[64]", "model.dropout=0.2", "data.split.test=0"]
    source = train(load_config(data=tmp_path / "a", overrides=[*common, "model.pretrained=false", "model.freeze=none", "train.epochs=10"]))
    assert source.metrics["val/accuracy"] > 0.9
    small = [*common, "train.epochs=30", "data.split.val=0.3", f"data.test_path={tmp_path / 'b_test'}"]
    transfer = train(load_config(data=tmp_path / "b", overrides=[*small, f"model.pretrained={source.path}", "augment=null"]))
    scratch = train(load_config(data=tmp_path / "b", overrides=[*small, "model.pretrained=false", "model.freeze=none"]))
    assert transfer.metrics["test/samples"] == scratch.metrics["test/samples"] > 800
    assert transfer.metrics["test/accuracy"] > scratch.metrics["test/accuracy"] + 0.15, (transfer.metrics, scratch.metrics)
