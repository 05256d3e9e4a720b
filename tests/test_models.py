from pathlib import Path

import pytest
import torch

from trilla.config import load_config
from trilla.errors import TrillaError
from trilla.models import InputSpec, build, list_models, params_class


def test_registry_lists_and_builds_small_cnn():
    assert "small_cnn" in list_models()
    model = build(params_class("small_cnn")(), InputSpec(channels=1, size=64), 10)
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 10)
    with pytest.raises(TrillaError, match="did you mean 'small_cnn'"):
        params_class("small_ccn")


@pytest.mark.parametrize("global_pool", ["flatten", "avg", "max"])
def test_small_cnn_knobs(global_pool):
    params = params_class("small_cnn")(
        conv=[{"maps": 5, "kernel": 3, "pool": 2}, {"maps": 7, "kernel": 5, "pool": 1}],
        batch_norm=False, dropout=0.0, hidden=[11], pool="avg", global_pool=global_pool,
    )
    model = build(params, InputSpec(channels=3, size=20), 4)
    assert model(torch.zeros(3, 3, 20, 20)).shape == (3, 4)
    kinds = [type(m).__name__ for m in model.modules()]
    assert "BatchNorm2d" not in kinds and "AvgPool2d" in kinds and kinds.count("Conv2d") == 2
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [11, 4]
    if global_pool == "flatten":
        assert linears[0].in_features == 7 * 10 * 10


def test_t6_has_the_study_shape():
    config = load_config(Path(__file__).parent.parent / "examples" / "guitar_bass.yaml")
    model = build(config.model, InputSpec(channels=3, size=150), 2)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (3, 10, (5, 5))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.5]
    assert model(torch.zeros(1, 3, 150, 150)).shape == (1, 2)
    assert config.model.summary() == "1 conv [5x5:10] bn=yes dp=0.5"


def test_too_many_pools_for_the_image_is_an_error():
    params = params_class("small_cnn")(conv=[{"maps": 4}] * 5)
    with pytest.raises(TrillaError, match="too small"):
        build(params, InputSpec(channels=1, size=16), 2)
