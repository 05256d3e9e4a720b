import subprocess
import sys

import pytest
import yaml

from conftest import make_tone_folder, trilla
from trilla.config import Config, load_config
from trilla.errors import TrillaError
from trilla.harvest.site import label_for, load_site


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
    for path in examples:  # training configs, and the harvest's site files
        load_site(path) if "start_urls" in yaml.safe_load(path.read_text()) else load_config(path)
    shop = load_site(Path(__file__).parent.parent / "examples" / "shop_guitar_bass.yaml")
    for path, label in ((["guitars-and-basses"], None), (["guitars-and-basses", "keyboards"], None),  # the root is walked, labels nothing
                        (["guitars-and-basses", "basses", "4-string-basses"], "bass"), (["guitars-and-basses", "strings"], "skip"),
                        (["guitars-and-basses", "electric-basses"], "bass"),
                        (["guitars-and-basses", "electric-guitars", "guitar-sets"], "skip"), (["guitars-and-basses", "bass-amps"], "skip"),
                        (["guitars-and-basses", "ukuleles"], "skip"), (["guitars-and-basses", "acoustic-guitars", "dreadnought"], "guitar")):
        assert label_for(shop.rules, path)[0] == label, path
    t6 = load_config(Path(__file__).parent.parent / "examples" / "guitar_bass.yaml")
    assert (t6.model.conv[0].maps, t6.model.conv[0].kernel, len(t6.model.conv)) == (10, 5, 1)
    assert (t6.train.optimizer, t6.train.lr, t6.train.momentum, t6.train.batch_size) == ("sgd", 0.003, 0.3, 32)
    assert t6.model.batch_norm and t6.model.dropout == 0.5 and t6.data.image_size == 150 and t6.data.channels == "rgb"


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["augment.flipp=true"], r"augment\.flipp: unknown key; did you mean 'augment\.vflip'"),
        (["augment.rotate=abc"], r"augment\.rotate: Input should be a valid number"),
        (["input.type=audio", "input.secondz=2"], r"input\.secondz: unknown key; did you mean 'input\.seconds'"),
        (["input.type=image", "input.foo=1"], r"input\.foo: unknown key Valid keys here: type"),
        (["input.type=audio", "augment.flip=true"], r"augment\.flip: unknown key Valid keys here: time_masks"),
        (["run.name=" + "x" * 100_000], r"run\.name: String should have at most 120 characters"),
        (["train.epochs=" + "9" * 5000], r"--set train\.epochs: the value is not valid YAML"),
        (["train.epochs=" + "9" * 30], r"train\.epochs: Input should be less than or equal to 100000"),
        (["data.split.seed=" + "9" * 30], r"data\.split\.seed: Input should be less than 4294967296"),
        (["model.conv.0.maps=" + "9" * 20], r"model\.conv\.0\.maps: .* is far beyond any sensible value"),
    ],
)
def test_every_config_mistake_is_a_clear_error(tmp_path, overrides, expected):
    with pytest.raises(TrillaError, match=expected) as err:
        load_config(data=tmp_path, overrides=overrides)
    assert len(str(err.value)) < 2000  # the offending value is quoted short, not 100k characters back


@pytest.mark.parametrize("override", ["input.secondz=2", "train.epochs=" + "9" * 5000])
def test_a_config_mistake_exits_2_from_the_command_line(tmp_path, override):
    result = trilla("train", "--data", tmp_path, "--set", "input.type=audio", "--set", override, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1].startswith(("  input.secondz: unknown key", "error: --set train.epochs"))


def test_a_config_file_that_is_not_text_or_not_yaml_is_a_clear_error(tmp_path):
    binary, broken = tmp_path / "binary.yaml", tmp_path / "broken.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01 not text")
    broken.write_text("train: {epochs: [1,\n")
    with pytest.raises(TrillaError, match="is not text"):
        load_config(binary)
    with pytest.raises(TrillaError, match="is not valid YAML"):
        load_config(broken)


def test_a_config_validates_without_torchvision(tmp_path):
    """Reading a config, augment section included, does not load torchvision (seconds to import): it loads
    only when a run builds its image augmentation."""
    probe = ("import sys, trilla.config as c; c.load_config(data=sys.argv[1], overrides=['augment.rotate=5']);"
             "c.load_config(data=sys.argv[1], overrides=['input.type=audio', 'augment.pitch_shift=2']);"
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_set_on_input_or_augment_keeps_the_input_type_inferred_from_the_data(tmp_path):
    """`--set augment.X` / `input.X` with --data on a folder of sound files used to write the image kind's
    sections (the type a config without `input:` defaults to) before the folder was looked at."""
    make_tone_folder(tmp_path, {"low": 1, "high": 1})
    config = load_config(data=tmp_path, overrides=["augment.pitch_shift=2", "input.seconds=1"])
    assert (config.input.type, config.input.seconds, config.augment.pitch_shift) == ("audio", 1, 2)
    assert config.augment.freq_masks == 2  # the audio kind's own defaults fill the rest
