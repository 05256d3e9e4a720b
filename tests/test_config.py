import pytest
import yaml

from trilla.config import Config, load_config
from trilla.errors import TrillaError


def test_defaults_need_no_file(tmp_path):
    config = load_config(data=tmp_path)
    assert config.data.path == tmp_path
    assert config.model.name == "small_cnn"
    assert config.train.epochs == 60 and config.data.split.val == 0.15 and config.data.image_size == "auto"


def test_unknown_key_names_key_and_closest(tmp_path):
    with pytest.raises(TrillaError) as err:
        load_config(data=tmp_path, overrides=["train.optimzer=sgd"])
    message = str(err.value)
    assert "train.optimzer: unknown key" in message
    assert "did you mean 'train.optimizer'" in message
    assert "batch_size" in message  # lists the valid keys


def test_bad_value_lists_allowed_values_and_closest(tmp_path):
    with pytest.raises(TrillaError) as err:
        load_config(data=tmp_path, overrides=["train.optimizer=sgdd"])
    message = str(err.value)
    assert "train.optimizer: 'sgdd'" in message
    assert "did you mean 'sgd'" in message
    assert "adamw" in message and "rmsprop" in message


def test_model_keys_are_validated_by_the_model(tmp_path):
    with pytest.raises(TrillaError, match=r"model\.conv\.0\.mapz: unknown key; did you mean 'model\.conv\.0\.maps'"):
        load_config(data=tmp_path, overrides=["model.conv.0.mapz=3"])
    with pytest.raises(TrillaError, match="unknown model 'smal_cnn'; did you mean 'small_cnn'"):
        load_config(data=tmp_path, overrides=["model.name=smal_cnn"])
    with pytest.raises(TrillaError, match=r"model\.dropout"):
        load_config(data=tmp_path, overrides=["model.dropout=1.5"])


def test_set_overrides_any_key_including_list_items(tmp_path):
    config = load_config(
        data=tmp_path,
        overrides=["model.conv.0.maps=5", "train.lr=0.01", "data.split.seed=3", "model.hidden=[100, 50]", "run.name=x"],
    )
    assert config.model.conv[0].maps == 5 and len(config.model.conv) == 4
    assert config.train.lr == 0.01 and config.data.split.seed == 3
    assert config.model.hidden == [100, 50] and config.run.name == "x"
    with pytest.raises(TrillaError, match="has no item 7"):
        load_config(data=tmp_path, overrides=["model.conv.7.maps=5"])
    with pytest.raises(TrillaError, match="dotted.key=value"):
        load_config(data=tmp_path, overrides=["train.lr"])


def test_yaml_file_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": "x", "image_size": 150}, "model": {"name": "small_cnn", "conv": [{"maps": 10, "kernel": 5}]}}))
    config = load_config(path, ["train.batch_size=8"])
    assert config.data.image_size == 150 and config.model.conv[0].kernel == 5 and config.train.batch_size == 8
    again = Config.model_validate(yaml.safe_load(config.to_yaml()))
    assert again == config


def test_file_errors(tmp_path):
    with pytest.raises(TrillaError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(TrillaError, match="looks like data, not a config file: use trilla train --data"):
        load_config(tmp_path)
    with pytest.raises(TrillaError, match="looks like data"):
        load_config(tmp_path / "labels.csv")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(TrillaError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(TrillaError, match=r"data\.split\.val"):
        load_config(data=tmp_path, overrides=["data.split.val=0"])


def test_examples_validate():
    from pathlib import Path

    examples = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))
    assert {p.name for p in examples} >= {"guitar_bass.yaml", "digits.yaml"}
    for path in examples:
        load_config(path)
    t6 = load_config(Path(__file__).parent.parent / "examples" / "guitar_bass.yaml")
    assert (t6.model.conv[0].maps, t6.model.conv[0].kernel, len(t6.model.conv)) == (10, 5, 1)
    assert (t6.train.optimizer, t6.train.lr, t6.train.momentum, t6.train.batch_size) == ("sgd", 0.003, 0.3, 32)
    assert t6.model.batch_norm and t6.model.dropout == 0.5 and t6.data.image_size == 150 and t6.data.channels == "rgb"
